/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

START_TEST(test_append_to_max)
{
	struct bq_buf b;
	char chunk[100];

	memset(chunk, 'x', sizeof(chunk));
	bq_buf_init(&b, 250);
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(bq_buf_append(&b, chunk, 100), 0);
	ck_assert_int_eq(bq_buf_append(&b, chunk, 100), 0);
	/* 200 + 51 > 250: refused, buffer unchanged. */
	ck_assert_int_eq(bq_buf_append(&b, "y", 0), 0);
	ck_assert_int_eq(bq_buf_append(&b, chunk, 51), -EMSGSIZE);
	ck_assert_uint_eq(b.len, 200);
	/* Exactly to max is fine; max + 1 is not. */
	ck_assert_int_eq(bq_buf_append(&b, chunk, 50), 0);
	ck_assert_uint_eq(b.len, 250);
	ck_assert_int_eq(bq_buf_append(&b, "z", 1), -EMSGSIZE);
	ck_assert_uint_eq(b.len, 250);
	ck_assert_uint_le(b.cap, 251);
	ck_assert_uint_eq(strlen(bq_buf_cstr(&b)), 250);
	bq_buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

/* Growth is geometric (few reallocations) and never above max + 1 (the NUL slot). */
START_TEST(test_growth_bounded)
{
	struct bq_buf b;
	unsigned long before = bq_alloc_calls();
	size_t last_cap = 0;

	bq_buf_init(&b, 100000);
	for (int i = 0; i < 100000; i++) {
		ck_assert_int_eq(bq_buf_append(&b, "a", 1), 0);
		ck_assert_uint_le(b.cap, 100001);
		ck_assert_uint_gt(b.cap, b.len);
		ck_assert_uint_ge(b.cap, last_cap);
		last_cap = b.cap;
	}
	ck_assert_uint_eq(b.cap, 100001);
	ck_assert_uint_le(bq_alloc_calls() - before, 15);
	ck_assert_int_eq(bq_buf_append(&b, "a", 1), -EMSGSIZE);
	bq_buf_free(&b);

	/* A small max never allocates beyond it, even on the first append. */
	bq_buf_init(&b, 10);
	ck_assert_int_eq(bq_buf_append(&b, "abc", 3), 0);
	ck_assert_uint_le(b.cap, 11);
	bq_buf_free(&b);
}
END_TEST

START_TEST(test_binary_and_cstr)
{
	struct bq_buf b;
	static const char bin[5] = { 'a', 0, 'b', 0, 'c' };

	bq_buf_init(&b, 64);
	ck_assert_str_eq(bq_buf_cstr(&b), "");
	ck_assert_int_eq(bq_buf_append(&b, bin, 5), 0);
	ck_assert_mem_eq(b.data, bin, 5);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_uint_eq(bq_buf_cstr(&b)[5], '\0');
	bq_buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_str_eq(bq_buf_cstr(&b), "");
	bq_buf_free(&b);
	/* Reusable after free. */
	ck_assert_int_eq(bq_buf_append(&b, "again", 5), 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "again");
	bq_buf_free(&b);
}
END_TEST

START_TEST(test_printf)
{
	struct bq_buf b;
	char big[300];

	bq_buf_init(&b, 200);
	ck_assert_int_eq(bq_buf_printf(&b, "user_id=%s n=%d", "alice", 42), 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "user_id=alice n=42");
	ck_assert_int_eq(bq_buf_printf(&b, "%s", ""), 0);
	ck_assert_uint_eq(b.len, 18);
	/* Beyond the first allocation: the retry path. */
	memset(big, 'q', 150);
	big[150] = '\0';
	ck_assert_int_eq(bq_buf_printf(&b, " %s", big), 0);
	ck_assert_uint_eq(b.len, 18 + 151);
	ck_assert_uint_eq(strlen(bq_buf_cstr(&b)), 18 + 151);
	/* Too long: refused, old contents intact and still terminated. */
	ck_assert_int_eq(bq_buf_printf(&b, "%s", big), -EMSGSIZE);
	ck_assert_uint_eq(b.len, 169);
	ck_assert_uint_eq(strlen(bq_buf_cstr(&b)), 169);
	ck_assert_int_eq(strncmp(bq_buf_cstr(&b), "user_id=alice n=42 qqq", 22), 0);
	/* Exactly to max. */
	ck_assert_int_eq(bq_buf_printf(&b, "%31s", "x"), 0);
	ck_assert_uint_eq(b.len, 200);
	ck_assert_int_eq(bq_buf_printf(&b, "%s", "1"), -EMSGSIZE);
	ck_assert_uint_le(b.cap, 201);
	bq_buf_free(&b);
}
END_TEST

START_TEST(test_reserve_commit)
{
	struct bq_buf b;
	uint8_t *p;
	int err = 1;

	bq_buf_init(&b, 100);
	p = bq_buf_reserve(&b, 40, &err);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(err, 0);
	memcpy(p, "hello", 5);
	bq_buf_commit(&b, 5);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_str_eq(bq_buf_cstr(&b), "hello");
	/* 5 + 96 > 100. */
	p = bq_buf_reserve(&b, 96, &err);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(err, -EMSGSIZE);
	p = bq_buf_reserve(&b, 95, &err);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_eq(p, b.data + 5);
	memset(p, '!', 95);
	bq_buf_commit(&b, 95);
	ck_assert_uint_eq(b.len, 100);
	ck_assert_uint_eq(strlen(bq_buf_cstr(&b)), 100);
	bq_buf_free(&b);
}
END_TEST

START_TEST(test_consume)
{
	struct bq_buf b;

	bq_buf_init(&b, 100);
	ck_assert_int_eq(bq_buf_append(&b, "0123456789", 10), 0);
	bq_buf_consume(&b, 3);
	ck_assert_str_eq(bq_buf_cstr(&b), "3456789");
	bq_buf_consume(&b, 0);
	ck_assert_uint_eq(b.len, 7);
	bq_buf_consume(&b, 7);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "");
	ck_assert_int_eq(bq_buf_append(&b, "ab", 2), 0);
	bq_buf_consume(&b, 50);
	ck_assert_uint_eq(b.len, 0);
	/* Consuming makes room under the max again. */
	ck_assert_int_eq(bq_buf_append(&b, "0123456789", 10), 0);
	for (int i = 0; i < 9; i++) {
		ck_assert_int_eq(bq_buf_append(&b, "0123456789", 10), 0);
	}
	ck_assert_int_eq(bq_buf_append(&b, "x", 1), -EMSGSIZE);
	bq_buf_consume(&b, 1);
	ck_assert_int_eq(bq_buf_append(&b, "x", 1), 0);
	ck_assert_uint_eq(b.data[99], 'x');
	ck_assert_uint_eq(b.data[0], '1');
	bq_buf_free(&b);
}
END_TEST

START_TEST(test_zero_max)
{
	struct bq_buf b;
	int err;

	bq_buf_init(&b, 0);
	ck_assert_int_eq(bq_buf_append(&b, "x", 1), -EMSGSIZE);
	ck_assert_int_eq(bq_buf_append(&b, NULL, 0), 0);
	ck_assert_int_eq(bq_buf_printf(&b, "x"), -EMSGSIZE);
	ck_assert_int_eq(bq_buf_printf(&b, "%s", ""), 0);
	ck_assert_ptr_null(bq_buf_reserve(&b, 1, &err));
	ck_assert_int_eq(err, -EMSGSIZE);
	ck_assert_str_eq(bq_buf_cstr(&b), "");
	bq_buf_free(&b);
}
END_TEST

/* Allocation failure is -ENOMEM and leaves the buffer as it was. */
START_TEST(test_alloc_failure)
{
	struct bq_buf b;
	char chunk[500];
	int err = 0;

	memset(chunk, 'k', sizeof(chunk));
	bq_buf_init(&b, 10000);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_buf_append(&b, "abc", 3), -ENOMEM);
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(bq_buf_append(&b, "abc", 3), 0);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_buf_append(&b, chunk, sizeof(chunk)), -ENOMEM);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(bq_buf_cstr(&b), "abc");
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_buf_printf(&b, "%.500s", chunk), -ENOMEM);
	ck_assert_str_eq(bq_buf_cstr(&b), "abc");
	bq_alloc_fail_nth(1);
	ck_assert_ptr_null(bq_buf_reserve(&b, 1000, &err));
	ck_assert_int_eq(err, -ENOMEM);
	ck_assert_uint_eq(b.len, 3);
	bq_buf_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("buf");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_append_to_max);
	tcase_add_test(tc, test_growth_bounded);
	tcase_add_test(tc, test_binary_and_cstr);
	tcase_add_test(tc, test_printf);
	tcase_add_test(tc, test_reserve_commit);
	tcase_add_test(tc, test_consume);
	tcase_add_test(tc, test_zero_max);
	tcase_add_test(tc, test_alloc_failure);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
