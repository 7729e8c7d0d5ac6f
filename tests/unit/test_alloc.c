/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

/* Call the allocator selected by kind once; returns the block (NULL on failure). */
static void *alloc_kind(int kind)
{
	switch (kind) {
	case 0:
		return bq_malloc(16);
	case 1:
		return bq_calloc(4, 4);
	case 2:
		return bq_realloc(NULL, 16);
	case 3:
		return bq_strdup("sixteen bytes!!");
	default:
		return bq_strndup("sixteen bytes!!", 8);
	}
}

/* fail_nth(n) fails exactly the nth call, for every allocator and every n in 1..6. */
START_TEST(test_fail_nth_exact)
{
	for (int kind = 0; kind < 5; kind++) {
		for (unsigned long n = 1; n <= 6; n++) {
			bq_alloc_fail_nth(n);
			for (unsigned long call = 1; call <= 10; call++) {
				void *p = alloc_kind(kind);

				if (call == n) {
					ck_assert_msg(p == NULL, "kind %d n %lu call %lu", kind, n,
						      call);
				} else {
					ck_assert_msg(p != NULL, "kind %d n %lu call %lu", kind, n,
						      call);
				}
				bq_free(p);
			}
		}
	}
}
END_TEST

/* The countdown is shared: mixing allocators counts every call once. */
START_TEST(test_fail_nth_mixed)
{
	char *s;
	void *a, *b, *c;

	bq_alloc_fail_nth(3);
	a = bq_malloc(1);
	b = bq_calloc(1, 1);
	s = bq_strdup("x");
	c = bq_realloc(NULL, 8);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_null(s);
	ck_assert_ptr_nonnull(c);
	bq_free(a);
	bq_free(b);
	bq_free(c);
}
END_TEST

START_TEST(test_disarm)
{
	bq_alloc_fail_nth(2);
	bq_alloc_fail_nth(0);
	for (int i = 0; i < 5; i++) {
		void *p = bq_malloc(8);

		ck_assert_ptr_nonnull(p);
		bq_free(p);
	}
}
END_TEST

START_TEST(test_calls_counted)
{
	unsigned long before = bq_alloc_calls();
	char *s = bq_strdup("abc");
	char *t = bq_strndup("abcdef", 2);
	void *p = bq_malloc(1);

	/* strdup and strndup are one allocation each. */
	ck_assert_uint_eq(bq_alloc_calls() - before, 3);
	p = bq_realloc(p, 100);
	ck_assert_uint_eq(bq_alloc_calls() - before, 4);
	bq_free(NULL);
	ck_assert_uint_eq(bq_alloc_calls() - before, 4);
	bq_free(s);
	bq_free(t);
	bq_free(p);
}
END_TEST

/* A failed realloc leaves the old block intact and owned by the caller. */
START_TEST(test_realloc_failure_keeps_block)
{
	char *p = bq_malloc(6);
	char *q;

	ck_assert_ptr_nonnull(p);
	memcpy(p, "hello", 6);
	bq_alloc_fail_nth(1);
	q = bq_realloc(p, 1 << 20);
	ck_assert_ptr_null(q);
	ck_assert_str_eq(p, "hello");
	q = bq_realloc(p, 1 << 20);
	ck_assert_ptr_nonnull(q);
	ck_assert_str_eq(q, "hello");
	bq_free(q);
}
END_TEST

START_TEST(test_calloc_overflow)
{
	ck_assert_ptr_null(bq_calloc(SIZE_MAX / 2 + 1, 2));
	ck_assert_ptr_null(bq_calloc(SIZE_MAX, SIZE_MAX));
	ck_assert_ptr_null(bq_calloc((size_t)1 << (sizeof(size_t) * 4), (size_t)1
								       << (sizeof(size_t) * 4)));
}
END_TEST

START_TEST(test_calloc_zeroes)
{
	unsigned char *p = bq_calloc(100, 3);

	ck_assert_ptr_nonnull(p);
	for (int i = 0; i < 300; i++) {
		ck_assert_uint_eq(p[i], 0);
	}
	bq_free(p);
}
END_TEST

/* Zero-sized requests still return a block, so NULL always means failure. */
START_TEST(test_zero_size)
{
	void *a = bq_malloc(0);
	void *b = bq_calloc(0, 10);
	void *c = bq_realloc(NULL, 0);

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(c);
	bq_free(a);
	bq_free(b);
	bq_free(c);
}
END_TEST

START_TEST(test_strndup)
{
	char *a = bq_strndup("hello", 3);
	char *b = bq_strndup("hi", 10);
	char *c = bq_strndup("hello", 0);
	char *d = bq_strdup("");

	ck_assert_str_eq(a, "hel");
	ck_assert_str_eq(b, "hi");
	ck_assert_str_eq(c, "");
	ck_assert_str_eq(d, "");
	bq_free(a);
	bq_free(b);
	bq_free(c);
	bq_free(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("alloc");
	TCase *tc = tcase_create("alloc");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_fail_nth_exact);
	tcase_add_test(tc, test_fail_nth_mixed);
	tcase_add_test(tc, test_disarm);
	tcase_add_test(tc, test_calls_counted);
	tcase_add_test(tc, test_realloc_failure_keeps_block);
	tcase_add_test(tc, test_calloc_overflow);
	tcase_add_test(tc, test_calloc_zeroes);
	tcase_add_test(tc, test_zero_size);
	tcase_add_test(tc, test_strndup);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
