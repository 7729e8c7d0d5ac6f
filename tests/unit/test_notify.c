/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/notify.h"
#include "testutil.h"

/* A datagram socket standing in for systemd's, bound to name ("/path" or "@abstract"). */
static int listener(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	int fd, one = 1;

	ck_assert_uint_lt(len, sizeof(sa.sun_path));
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@') {
		sa.sun_path[0] = '\0';
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	/* As systemd does: the kernel then tells which process sent each datagram. */
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
			 0);
	return fd;
}

/* The one datagram waiting on fd (none: -1), and the sender's pid. */
static ssize_t take(int fd, char *buf, size_t cap, pid_t *sender)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = cap - 1};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	ssize_t n;

	mh.msg_control = ctl.b;
	mh.msg_controllen = sizeof(ctl.b);
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0) {
		return -1;
	}
	buf[n] = '\0';
	*sender = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred uc;

			memcpy(&uc, CMSG_DATA(c), sizeof(uc));
			*sender = uc.pid;
		}
	}
	return n;
}

static void sock_path(char *out, size_t cap, const char *leaf)
{
	const char *dir = bq_test_tmpdir();

	ck_assert_ptr_nonnull(dir);
	ck_assert_int_lt(snprintf(out, cap, "%s/%s", dir, leaf), (int)cap);
}

START_TEST(test_ready_to_path)
{
	char path[108], buf[64];
	pid_t sender = -1;
	int fd;

	sock_path(path, sizeof(path), "notify.sock");
	fd = listener(path);
	ck_assert_int_eq(bq_notify_to(path, "READY=1"), 1);
	ck_assert_int_eq(take(fd, buf, sizeof(buf), &sender), 7);
	ck_assert_str_eq(buf, "READY=1");
	ck_assert_int_eq(sender, getpid());
	/* Exactly one datagram per call. */
	ck_assert_int_eq(take(fd, buf, sizeof(buf), &sender), -1);
	close(fd);
	unlink(path);
}
END_TEST

START_TEST(test_ready_to_abstract)
{
	char name[64], buf[64];
	pid_t sender = -1;
	int fd;

	snprintf(name, sizeof(name), "@bq-notify-test-%ld", (long)getpid());
	fd = listener(name);
	ck_assert_int_eq(bq_notify_to(name, "READY=1\nSTATUS=serving"), 1);
	ck_assert_int_eq(take(fd, buf, sizeof(buf), &sender), 22);
	ck_assert_str_eq(buf, "READY=1\nSTATUS=serving");
	close(fd);
}
END_TEST

START_TEST(test_env)
{
	char path[108], buf[64];
	pid_t sender;
	int fd;

	unsetenv(BQ_NOTIFY_ENV);
	ck_assert_int_eq(bq_notify("READY=1"), 0); /* not under systemd: nothing to do */
	setenv(BQ_NOTIFY_ENV, "", 1);
	ck_assert_int_eq(bq_notify("READY=1"), 0);

	sock_path(path, sizeof(path), "env.sock");
	fd = listener(path);
	setenv(BQ_NOTIFY_ENV, path, 1);
	ck_assert_int_eq(bq_notify("STOPPING=1"), 1);
	ck_assert_int_eq(take(fd, buf, sizeof(buf), &sender), 10);
	ck_assert_str_eq(buf, "STOPPING=1");
	unsetenv(BQ_NOTIFY_ENV);
	close(fd);
	unlink(path);
}
END_TEST

START_TEST(test_bad_input)
{
	char path[108], big[BQ_NOTIFY_STATE_MAX + 2], longname[200];
	int fd;

	ck_assert_int_eq(bq_notify_to(NULL, "READY=1"), -EINVAL);
	ck_assert_int_eq(bq_notify_to("/x", NULL), -EINVAL);
	ck_assert_int_eq(bq_notify_to("/x", ""), -EINVAL);
	ck_assert_int_eq(bq_notify_to("relative.sock", "READY=1"), -EINVAL);
	ck_assert_int_eq(bq_notify_to("@", "READY=1"), -EINVAL);
	ck_assert_int_eq(bq_notify_to("vsock:2:1234", "READY=1"), -EINVAL);

	/* sun_path holds 108 bytes: 107 characters plus the NUL is the longest path. */
	memset(longname, 'a', sizeof(longname));
	longname[0] = '/';
	longname[108] = '\0';
	ck_assert_int_eq(bq_notify_to(longname, "READY=1"), -ENAMETOOLONG);
	longname[107] = '\0';
	ck_assert_int_eq(bq_notify_to(longname, "READY=1"), -ENOENT);

	/* The state's bound: the maximum passes, one more byte does not. */
	sock_path(path, sizeof(path), "big.sock");
	fd = listener(path);
	memset(big, 'S', sizeof(big));
	big[BQ_NOTIFY_STATE_MAX] = '\0';
	ck_assert_int_eq(bq_notify_to(path, big), 1);
	big[BQ_NOTIFY_STATE_MAX] = 'S';
	big[BQ_NOTIFY_STATE_MAX + 1] = '\0';
	ck_assert_int_eq(bq_notify_to(path, big), -EINVAL);
	close(fd);

	/* A socket file nobody serves any more: refused, not silently dropped. */
	ck_assert_int_eq(bq_notify_to(path, "READY=1"), -ECONNREFUSED);
	unlink(path);
	ck_assert_int_eq(bq_notify_to(path, "READY=1"), -ENOENT);
}
END_TEST

static Suite *notify_suite(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_ready_to_path);
	tcase_add_test(tc, test_ready_to_abstract);
	tcase_add_test(tc, test_env);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(notify_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
