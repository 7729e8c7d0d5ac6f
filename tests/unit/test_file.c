/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "testutil.h"

static void read_text(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	n = read(fd, out, cap - 1);
	ck_assert_int_ge(n, 0);
	out[n] = '\0';
	close(fd);
}

START_TEST(test_replace_writes_whole_file_and_mode)
{
	const char *dir = bq_test_tmpdir();
	char path[512], tmp[540], text[64];
	struct stat st;

	snprintf(path, sizeof(path), "%s/map", dir);
	ck_assert_int_eq(bq_file_write_atomic(path, "first\n", 6, 0640, true), 0);
	ck_assert_int_eq(bq_file_write_atomic(path, "second\n", 7, 0640, true), 0);
	read_text(path, text, sizeof(text));
	ck_assert_str_eq(text, "second\n");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	ck_assert_int_eq(access(tmp, F_OK), -1);
}
END_TEST

/* Without replace the first writer wins and the file is left exactly as it was. */
START_TEST(test_no_replace_keeps_existing)
{
	const char *dir = bq_test_tmpdir();
	char path[512], tmp[540], text[64];

	snprintf(path, sizeof(path), "%s/key", dir);
	ck_assert_int_eq(bq_file_write_atomic(path, "one", 3, 0600, false), 0);
	ck_assert_int_eq(bq_file_write_atomic(path, "two", 3, 0600, false), -EEXIST);
	read_text(path, text, sizeof(text));
	ck_assert_str_eq(text, "one");
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	ck_assert_int_eq(access(tmp, F_OK), -1);
}
END_TEST

START_TEST(test_missing_directory_fails_cleanly)
{
	const char *dir = bq_test_tmpdir();
	char path[512];

	snprintf(path, sizeof(path), "%s/no/such/dir/file", dir);
	ck_assert_int_eq(bq_file_write_atomic(path, "x", 1, 0600, true), -ENOENT);
}
END_TEST

START_TEST(test_read_all_short_file)
{
	const char *dir = bq_test_tmpdir();
	char path[512], buf[8];
	int fd;

	snprintf(path, sizeof(path), "%s/short", dir);
	ck_assert_int_eq(bq_file_write_atomic(path, "abc", 3, 0600, true), 0);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(bq_file_read_all(fd, buf, 3), 0);
	ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
	close(fd);
	fd = open(path, O_RDONLY);
	ck_assert_int_eq(bq_file_read_all(fd, buf, 4), -EIO);
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("file");
	TCase *tc = tcase_create("file");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_replace_writes_whole_file_and_mode);
	tcase_add_test(tc, test_no_replace_keeps_existing);
	tcase_add_test(tc, test_missing_directory_fails_cleanly);
	tcase_add_test(tc, test_read_all_short_file);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
