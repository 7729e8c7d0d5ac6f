/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"

/* The "PING auth" script of test_frame.c / docs/protocol.md, tag still zero. */
static const char ping_auth_hex[] =
	"00 38 | 01 09 02 00 00 00 | 01 02 03 04 05 06 07 09 | d8 3a dd 03 1e 77 | "
	"00 00 01 8b cf e5 68 00 | 00 | 00 | 00 08 | 11 22 33 44 55 66 77 88 | "
	"00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
/*
 * Its tag under the key 00 01 .. 1f, computed independently of libsodium with
 * Python's hashlib.blake2b(frame[2:-16], key=bytes(range(32)), digest_size=16).
 */
static const char ping_auth_tag_hex[] = "6a 6e 03 88 ad b7 23 25 e1 e8 5f 14 72 ef 8e 45";

static void test_key(uint8_t key[BQ_KEY_LEN])
{
	for (int i = 0; i < BQ_KEY_LEN; i++) {
		key[i] = (uint8_t)i;
	}
}

static size_t script(uint8_t *buf, size_t cap)
{
	int n = bq_test_hex(ping_auth_hex, buf, cap);

	ck_assert_int_eq(n, 58);
	return (size_t)n;
}

START_TEST(test_known_answer)
{
	uint8_t key[BQ_KEY_LEN], frame[64], tag[BQ_TAG_LEN];
	size_t n = script(frame, sizeof(frame));
	struct bq_auth *a;

	test_key(key);
	a = bq_auth_new(key);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(bq_test_hex(ping_auth_tag_hex, tag, sizeof(tag)), BQ_TAG_LEN);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), -EBADMSG); /* zero tag */
	ck_assert_int_eq(bq_auth_sign(a, frame, n), 0);
	ck_assert_mem_eq(frame + n - BQ_TAG_LEN, tag, BQ_TAG_LEN);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), 0);
	bq_auth_free(a);
}
END_TEST

START_TEST(test_every_bit_flip_fails)
{
	uint8_t key[BQ_KEY_LEN], frame[64];
	size_t n = script(frame, sizeof(frame));
	struct bq_auth *a;

	test_key(key);
	a = bq_auth_new(key);
	ck_assert_int_eq(bq_auth_sign(a, frame, n), 0);
	for (size_t byte = 0; byte < n; byte++) {
		for (int bit = 0; bit < 8; bit++) {
			frame[byte] ^= (uint8_t)(1u << bit);
			ck_assert_msg(bq_auth_verify(a, frame, n) == -EBADMSG,
				      "flip of byte %zu bit %d verified", byte, bit);
			frame[byte] ^= (uint8_t)(1u << bit);
		}
	}
	ck_assert_int_eq(bq_auth_verify(a, frame, n), 0);
	bq_auth_free(a);
}
END_TEST

START_TEST(test_wrong_key_fails)
{
	uint8_t key[BQ_KEY_LEN], frame[64];
	size_t n = script(frame, sizeof(frame));
	struct bq_auth *a, *b;

	test_key(key);
	a = bq_auth_new(key);
	key[31] ^= 1;
	b = bq_auth_new(key);
	ck_assert_int_eq(bq_auth_sign(a, frame, n), 0);
	ck_assert_int_eq(bq_auth_verify(b, frame, n), -EBADMSG);
	ck_assert_int_eq(bq_auth_sign(b, frame, n), 0);
	ck_assert_int_eq(bq_auth_verify(b, frame, n), 0);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), -EBADMSG);
	bq_auth_free(a);
	bq_auth_free(b);
}
END_TEST

/* A relay changes ttl and hops: the old tag fails, re-signing fixes it. */
START_TEST(test_relay_resign)
{
	uint8_t key[BQ_KEY_LEN], frame[64];
	size_t n = script(frame, sizeof(frame));
	struct bq_auth *a;
	struct bq_frame f;

	test_key(key);
	a = bq_auth_new(key);
	ck_assert_int_eq(bq_auth_sign(a, frame, n), 0);
	bq_frame_patch_hops(frame, 6, 1);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), -EBADMSG);
	ck_assert_int_eq(bq_auth_sign(a, frame, n), 0);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), 0);
	ck_assert_int_eq(bq_frame_decode(frame, n, &f), (int)n);
	ck_assert_uint_eq(f.hops, 1);
	bq_auth_free(a);
}
END_TEST

START_TEST(test_refuses_untagged_frames)
{
	uint8_t key[BQ_KEY_LEN], frame[64];
	size_t n = script(frame, sizeof(frame));
	struct bq_auth *a;

	test_key(key);
	a = bq_auth_new(key);
	/* length field disagrees with len */
	ck_assert_int_eq(bq_auth_sign(a, frame, n - 1), -EINVAL);
	ck_assert_int_eq(bq_auth_verify(a, frame, n - 1), -EBADMSG);
	/* too short to hold a header and a tag */
	ck_assert_int_eq(bq_auth_sign(a, frame, 10), -EINVAL);
	ck_assert_int_eq(bq_auth_sign(a, NULL, n), -EINVAL);
	ck_assert_int_eq(bq_auth_sign(NULL, frame, n), -EINVAL);
	ck_assert_int_eq(bq_auth_verify(NULL, frame, n), -EBADMSG);
	/* no AUTH flag */
	frame[4] = 0;
	ck_assert_int_eq(bq_auth_sign(a, frame, n), -EINVAL);
	ck_assert_int_eq(bq_auth_verify(a, frame, n), -EBADMSG);
	bq_auth_free(a);
	bq_auth_free(NULL);
}
END_TEST

START_TEST(test_new_oom)
{
	uint8_t key[BQ_KEY_LEN] = { 0 };
	struct bq_auth *a;

	bq_alloc_fail_nth(1);
	ck_assert_ptr_null(bq_auth_new(key));
	a = bq_auth_new(key);
	ck_assert_ptr_nonnull(a);
	bq_auth_free(a);
}
END_TEST

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
	ck_assert_int_lt(snprintf(out, cap, "%s/%s", dir, name), (int)cap);
}

START_TEST(test_key_file_created_and_reloaded)
{
	const char *dir = bq_test_tmpdir();
	char path[512], tmp[540], err[256];
	uint8_t k1[BQ_KEY_LEN], k2[BQ_KEY_LEN], zero[BQ_KEY_LEN] = { 0 };
	struct stat st;

	ck_assert_ptr_nonnull(dir);
	path_in(path, sizeof(path), dir, "network.key");
	memset(k1, 0, sizeof(k1));
	ck_assert_int_eq(bq_auth_load_or_create_key(path, k1, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, BQ_KEY_LEN);
	ck_assert_mem_ne(k1, zero, BQ_KEY_LEN);
	/* no temporary file left behind */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	ck_assert_int_eq(access(tmp, F_OK), -1);
	/* the second start loads the same key */
	memset(k2, 0, sizeof(k2));
	ck_assert_int_eq(bq_auth_load_or_create_key(path, k2, err, sizeof(err)), 0);
	ck_assert_mem_eq(k1, k2, BQ_KEY_LEN);
	/* err may be NULL */
	ck_assert_int_eq(bq_auth_load_or_create_key(path, k2, NULL, 0), 0);
	unlink(path);
	/* a fresh key is a different key */
	ck_assert_int_eq(bq_auth_load_or_create_key(path, k2, err, sizeof(err)), 0);
	ck_assert_mem_ne(k1, k2, BQ_KEY_LEN);
	unlink(path);
	rmdir(dir);
}
END_TEST

static void write_file(const char *path, const void *data, size_t n, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
	close(fd);
	ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(test_key_file_refused)
{
	const char *dir = bq_test_tmpdir();
	char path[512], tmp[540], err[256];
	uint8_t key[BQ_KEY_LEN], data[BQ_KEY_LEN + 1] = { 1 };

	ck_assert_ptr_nonnull(dir);
	path_in(path, sizeof(path), dir, "network.key");
	/* readable by others */
	write_file(path, data, BQ_KEY_LEN, 0644);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EPERM);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	ck_assert_ptr_nonnull(strstr(err, path));
	/* group-writable only is refused too */
	ck_assert_int_eq(chmod(path, 0620), 0);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EPERM);
	/* the fix the message names works */
	ck_assert_int_eq(chmod(path, 0600), 0);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), 0);
	ck_assert_mem_eq(key, data, BQ_KEY_LEN);
	/* wrong sizes */
	write_file(path, data, BQ_KEY_LEN - 1, 0600);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "31 bytes"));
	write_file(path, data, BQ_KEY_LEN + 1, 0600);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EINVAL);
	write_file(path, data, 0, 0600);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EINVAL);
	unlink(path);
	/* a link planted where the temporary file goes is removed, never written through */
	{
		char victim[560];
		struct stat vst;

		snprintf(victim, sizeof(victim), "%s.victim", path);
		write_file(victim, data, 3, 0600);
		snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
		ck_assert_int_eq(symlink(victim, tmp), 0);
		ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), 0);
		ck_assert_int_eq(stat(victim, &vst), 0);
		ck_assert_int_eq(vst.st_size, 3);
		ck_assert_int_eq(access(tmp, F_OK), -1);
		ck_assert_int_eq(stat(path, &vst), 0);
		ck_assert_int_eq(vst.st_size, BQ_KEY_LEN);
		unlink(victim);
		unlink(path);
	}
	/* a directory where the key should be */
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -EINVAL);
	rmdir(path);
	/* missing parent directory */
	path_in(path, sizeof(path), dir, "nope/network.key");
	ck_assert_int_eq(bq_auth_load_or_create_key(path, key, err, sizeof(err)), -ENOENT);
	ck_assert_int_ne(err[0], '\0');
	ck_assert_int_eq(bq_auth_load_or_create_key("", key, err, sizeof(err)), -EINVAL);
	rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("auth");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_known_answer);
	tcase_add_test(tc, test_every_bit_flip_fails);
	tcase_add_test(tc, test_wrong_key_fails);
	tcase_add_test(tc, test_relay_resign);
	tcase_add_test(tc, test_refuses_untagged_frames);
	tcase_add_test(tc, test_new_oom);
	tcase_add_test(tc, test_key_file_created_and_reloaded);
	tcase_add_test(tc, test_key_file_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
