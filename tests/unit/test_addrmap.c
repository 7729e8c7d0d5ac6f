/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "transport/addr.h"
#include "transport/addrmap.h"

static char dir[256];
static char path[512];

static void setup(void)
{
	const char *d = bq_test_tmpdir();

	ck_assert_ptr_nonnull(d);
	snprintf(dir, sizeof(dir), "%s", d);
	snprintf(path, sizeof(path), "%s/map", dir);
	unsetenv(BQ_ADDRMAP_ENV);
}

static void teardown(void)
{
	char tmp[600];

	unlink(path);
	snprintf(tmp, sizeof(tmp), "%s/other", dir);
	unlink(tmp);
	rmdir(dir);
}

static void write_file(const char *p, const char *text)
{
	FILE *f = fopen(p, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

static struct bq_addr parse(const char *s)
{
	struct bq_addr a;
	char err[160];

	ck_assert_msg(bq_addr_parse(s, &a, err, sizeof(err)) == 0, "%s: %s", s, err);
	return a;
}

START_TEST(test_hit)
{
	struct bq_addr in = parse("D8:3A:DD:03:1E:77"), out;
	char err[256] = "";

	write_file(path, "# comment\n"
			 "02:00:00:00:00:02 unix:/tmp/node-2.sock\n"
			 "  d8:3a:dd:03:1e:77\tunix:/tmp/node-1.sock   # Odin\n");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_int_eq(out.kind, BQ_ADDR_UNIX);
	ck_assert_str_eq(out.path, "/tmp/node-1.sock");

	in = parse("bt-l2cap://02:00:00:00:00:02/0x1001");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_str_eq(out.path, "/tmp/node-2.sock");

	/* In place, tcp target, and no newline at the end of the file. */
	write_file(path, "02:00:00:00:00:03 tcp://127.0.0.1:7003");
	in = parse("bt-rfcomm://02:00:00:00:00:03/4");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &in, err, sizeof(err)), 1);
	ck_assert_int_eq(in.kind, BQ_ADDR_TCP);
	ck_assert_str_eq(in.host, "127.0.0.1");
	ck_assert_uint_eq(in.port, 7003);
}
END_TEST

START_TEST(test_miss)
{
	struct bq_addr in = parse("D8:3A:DD:03:1E:78"), out;
	char err[256] = "";

	write_file(path, "D8:3A:DD:03:1E:77 unix:/tmp/node-1.sock\n");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 0);
	ck_assert_int_eq(out.kind, BQ_ADDR_RFCOMM);
	ck_assert_mem_eq(out.bdaddr, in.bdaddr, 6);

	/* Not a Bluetooth address: never mapped. */
	in = parse("unix:/x.sock");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 0);
	ck_assert_str_eq(out.path, "/x.sock");

	/* No file at all: unchanged, no error. */
	in = parse("D8:3A:DD:03:1E:77");
	ck_assert_int_eq(bq_addrmap_resolve_file("/nonexistent/blueq/map", &in, &out, err,
						 sizeof(err)), 0);
	ck_assert_int_eq(out.kind, BQ_ADDR_RFCOMM);
}
END_TEST

START_TEST(test_malformed_lines)
{
	struct bq_addr in = parse("D8:3A:DD:03:1E:77"), out;
	char err[256] = "";
	char big[2048];
	char text[4096];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "D8:3A:DD:03:1E:77\n"                             /* one field */
		 "D8:3A:DD:03:1E:77 unix:/a unix:/b\n"             /* three fields */
		 "D8:3A:DD:03:1E:ZZ unix:/c\n"                     /* bad MAC */
		 "D8:3A:DD:03:1E:77 bogus://thing\n"               /* bad target */
		 "D8:3A:DD:03:1E:77 02:00:00:00:00:09\n"           /* bt target refused */
		 "D8:3A:DD:03:1E:77 unix:/%s\n"                    /* line too long */
		 "\n\n   \t\n#D8:3A:DD:03:1E:77 unix:/commented\n"
		 "D8:3A:DD:03:1E:77 unix:/good.sock\n",
		 big);
	write_file(path, text);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_str_eq(out.path, "/good.sock");

	/* Binary junk: no crash, no match. */
	{
		FILE *f = fopen(path, "w");

		ck_assert_ptr_nonnull(f);
		for (int i = 0; i < 5000; i++) {
			fputc((i * 131) & 0xff, f);
		}
		fclose(f);
	}
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 0);
}
END_TEST

START_TEST(test_too_big)
{
	struct bq_addr in = parse("D8:3A:DD:03:1E:77"), out;
	char err[256] = "";
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs("D8:3A:DD:03:1E:77 unix:/good.sock\n", f);
	for (int i = 0; i < BQ_ADDRMAP_FILE_MAX; i++) {
		fputc('#', f);
	}
	fclose(f);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), -EFBIG);
	ck_assert_ptr_nonnull(strstr(err, "larger than"));
	ck_assert_int_eq(out.kind, BQ_ADDR_RFCOMM);
}
END_TEST

/* A map anyone may rewrite could send Odin's address to anyone's socket: refused. */
START_TEST(test_untrusted_map)
{
	struct bq_addr in = parse("D8:3A:DD:03:1E:77"), out;
	char err[256] = "";
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs("D8:3A:DD:03:1E:77 unix:/evil.sock\n", f);
	fclose(f);
	ck_assert_int_eq(chmod(path, 0666), 0);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "not trusted"));
	ck_assert_int_eq(out.kind, BQ_ADDR_RFCOMM);
	ck_assert_int_eq(chmod(path, 0644), 0);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_int_eq(out.kind, BQ_ADDR_UNIX);
}
END_TEST

START_TEST(test_env_override)
{
	char other[600];
	char buf[600];
	struct bq_addr in = parse("D8:3A:DD:03:1E:77"), out;
	char err[256] = "";

	snprintf(other, sizeof(other), "%s/other", dir);
	write_file(path, "D8:3A:DD:03:1E:77 unix:/from-path.sock\n");
	write_file(other, "D8:3A:DD:03:1E:77 unix:/from-env.sock\n");
	setenv(BQ_ADDRMAP_ENV, other, 1);
	ck_assert_str_eq(bq_addrmap_default_path(buf, sizeof(buf)), other);
	ck_assert_str_eq(bq_addrmap_default_write_path(buf, sizeof(buf)), other);
	ck_assert_int_eq(bq_addrmap_resolve(&in, &out, err, sizeof(err)), 1);
	ck_assert_str_eq(out.path, "/from-env.sock");
	setenv(BQ_ADDRMAP_ENV, path, 1);
	ck_assert_int_eq(bq_addrmap_resolve(&in, &out, err, sizeof(err)), 1);
	ck_assert_str_eq(out.path, "/from-path.sock");
	unsetenv(BQ_ADDRMAP_ENV);
	ck_assert_str_ne(bq_addrmap_default_path(buf, sizeof(buf)), path);
}
END_TEST

START_TEST(test_write_roundtrip)
{
	struct bq_addrmap_entry e[2] = {
		{.bdaddr = {0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77}, .target = "unix:/s/node-1.sock"},
		{.bdaddr = {0x02, 0, 0, 0, 0, 0x02}, .target = "tcp://127.0.0.1:9"},
	};
	struct bq_addrmap_entry bad = {.bdaddr = {1, 2, 3, 4, 5, 6}, .target = "D8:3A:DD:03:1E:77"};
	struct bq_addr in = parse("02:00:00:00:00:02"), out;
	char err[256] = "";

	ck_assert_int_eq(bq_addrmap_write(path, e, 2, err, sizeof(err)), 0);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_int_eq(out.kind, BQ_ADDR_TCP);
	in = parse("D8:3A:DD:03:1E:77");
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_str_eq(out.path, "/s/node-1.sock");
	/* A bad target leaves the old file in place. */
	ck_assert_int_eq(bq_addrmap_write(path, &bad, 1, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(bq_addrmap_resolve_file(path, &in, &out, err, sizeof(err)), 1);
	ck_assert_int_eq(bq_addrmap_write("/nonexistent/dir/map", e, 1, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/map"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("addrmap");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hit);
	tcase_add_test(tc, test_miss);
	tcase_add_test(tc, test_malformed_lines);
	tcase_add_test(tc, test_too_big);
	tcase_add_test(tc, test_untrusted_map);
	tcase_add_test(tc, test_env_override);
	tcase_add_test(tc, test_write_roundtrip);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
