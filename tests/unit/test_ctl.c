/* SPDX-License-Identifier: MIT */
/* The control-socket line server: order of answers, line limits, socket file lifetime. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"
#include "loop/loop.h"
#include "mesh/ctl.h"
#include "testutil.h"

static struct bq_loop *loop;
static char path[100];
static int calls;

static void handler(const char *line, struct bq_buf *reply, void *ud)
{
	calls++;
	bq_buf_printf(reply, "{\"you\":\"%s\",\"n\":%d}", line, calls);
}

static void setup(void)
{
	loop = bq_loop_new(NULL, NULL);
	snprintf(path, sizeof(path), "%s/ctl.sock", bq_test_tmpdir());
	calls = 0;
}

static void teardown(void)
{
	bq_loop_free(loop);
}

static int dial(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Run the loop and collect what the server sends until `lines` newlines or EOF. */
static ssize_t collect(int fd, char *out, size_t cap, int lines, bool *eof)
{
	size_t got = 0;
	int seen = 0;

	*eof = false;
	for (int i = 0; i < 300 && seen < lines && !*eof; i++) {
		ssize_t n;

		bq_loop_run_once(loop, 10);
		n = recv(fd, out + got, cap - 1 - got, MSG_DONTWAIT);
		if (n == 0) {
			*eof = true;
		} else if (n > 0) {
			for (ssize_t k = 0; k < n; k++) {
				seen += out[got + (size_t)k] == '\n';
			}
			got += (size_t)n;
		}
	}
	out[got] = '\0';
	return (ssize_t)got;
}

START_TEST(test_lines_in_order)
{
	char err[256], buf[512];
	struct bq_ctl *c = bq_ctl_new(loop, path, handler, NULL, NULL, err, sizeof(err));
	int fd;
	bool eof;

	ck_assert_msg(c != NULL, "%s", err);
	fd = dial();
	ck_assert_int_eq(write(fd, "stats\nusers\r\npart", 17), 17);
	collect(fd, buf, sizeof(buf), 2, &eof);
	ck_assert_str_eq(buf, "{\"you\":\"stats\",\"n\":1}\n{\"you\":\"users\",\"n\":2}\n");
	ck_assert_int_eq(write(fd, "ial\n", 4), 4);
	collect(fd, buf, sizeof(buf), 1, &eof);
	ck_assert_str_eq(buf, "{\"you\":\"partial\",\"n\":3}\n");
	/* Half-close: pending answers are written, then the server closes. */
	ck_assert_int_eq(write(fd, "last\n", 5), 5);
	shutdown(fd, SHUT_WR);
	collect(fd, buf, sizeof(buf), 5, &eof);
	ck_assert_str_eq(buf, "{\"you\":\"last\",\"n\":4}\n");
	ck_assert(eof);
	close(fd);
	bq_ctl_free(c);
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(test_line_too_long)
{
	char err[256], buf[512], line[BQ_CTL_LINE_MAX + 2];
	struct bq_ctl *c = bq_ctl_new(loop, path, handler, NULL, NULL, err, sizeof(err));
	int fd;
	bool eof;

	ck_assert_ptr_nonnull(c);
	/* Exactly the limit is fine. */
	fd = dial();
	memset(line, 'x', BQ_CTL_LINE_MAX);
	line[BQ_CTL_LINE_MAX] = '\n';
	ck_assert_int_eq(write(fd, line, BQ_CTL_LINE_MAX + 1), BQ_CTL_LINE_MAX + 1);
	collect(fd, buf, sizeof(buf), 1, &eof);
	ck_assert_int_eq(calls, 1);
	close(fd);
	/* One byte more is refused and the connection closed. */
	fd = dial();
	memset(line, 'y', sizeof(line));
	line[BQ_CTL_LINE_MAX + 1] = '\n';
	ck_assert_int_eq(write(fd, line, sizeof(line)), (ssize_t)sizeof(line));
	collect(fd, buf, sizeof(buf), 5, &eof);
	ck_assert_str_eq(buf, "{\"error\":\"command line too long\"}\n");
	ck_assert(eof);
	ck_assert_int_eq(calls, 1);
	close(fd);
	bq_ctl_free(c);
}
END_TEST

START_TEST(test_stale_socket_and_bad_path)
{
	char err[256];
	struct bq_ctl *c;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* A socket file nobody listens on (left by a killed daemon)... */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(access(path, F_OK), 0);
	/* ...is replaced. */
	c = bq_ctl_new(loop, path, handler, NULL, NULL, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	bq_ctl_free(c);
	ck_assert_ptr_null(bq_ctl_new(loop, "", handler, NULL, NULL, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "empty or too long"));
	bq_ctl_free(NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("lines");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_lines_in_order);
	tcase_add_test(tc, test_line_too_long);
	tcase_add_test(tc, test_stale_socket_and_bad_path);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
