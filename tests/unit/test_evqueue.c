/* SPDX-License-Identifier: MIT */
/* The backend event queue: batches, acknowledgement by sequence, bounded drops. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "manager/evqueue.h"

static void push_n(struct bq_evq *q, int from, int to)
{
	char ev[32];

	for (int i = from; i < to; i++) {
		int w = snprintf(ev, sizeof(ev), "{\"n\":%d}", i);

		ck_assert_int_eq(bq_evq_push(q, ev, (size_t)w), 0);
	}
}

START_TEST(test_batch_and_ack)
{
	struct bq_evq *q = bq_evq_new(100, 1 << 20);
	struct bq_buf b;
	size_t n;
	uint64_t last;

	bq_buf_init(&b, 1 << 20);
	ck_assert_int_eq(bq_evq_peek(q, 10, 4096, &b, &n, &last), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "[]");
	push_n(q, 0, 5);
	bq_buf_reset(&b);
	ck_assert_int_eq(bq_evq_peek(q, 3, 4096, &b, &n, &last), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(last, 3);
	ck_assert_str_eq(bq_buf_cstr(&b), "[{\"n\":0},{\"n\":1},{\"n\":2}]");
	bq_evq_ack(q, last);
	ck_assert_uint_eq(bq_evq_len(q), 2);
	bq_buf_reset(&b);
	/* The byte bound stops the batch but never below one event. */
	ck_assert_int_eq(bq_evq_peek(q, 10, 3, &b, &n, &last), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(bq_buf_cstr(&b), "[{\"n\":3}]");
	bq_buf_reset(&b);
	ck_assert_int_eq(bq_evq_peek(q, 10, 4096, &b, &n, &last), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(last, 5);
	bq_evq_ack(q, 5);
	ck_assert_uint_eq(bq_evq_len(q), 0);
	bq_buf_free(&b);
	bq_evq_free(q);
}
END_TEST

START_TEST(test_drop_oldest_by_count)
{
	struct bq_evq *q = bq_evq_new(4, 1 << 20);
	struct bq_evq_stats st;
	struct bq_buf b;
	size_t n;
	uint64_t last;

	push_n(q, 0, 10);
	bq_evq_get_stats(q, &st);
	ck_assert_uint_eq(st.len, 4);
	ck_assert_uint_eq(st.dropped, 6);
	ck_assert_uint_eq(st.pushed, 10);
	bq_buf_init(&b, 4096);
	ck_assert_int_eq(bq_evq_peek(q, 10, 4096, &b, &n, &last), 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "[{\"n\":6},{\"n\":7},{\"n\":8},{\"n\":9}]");
	/* A batch in flight loses its head to drops; the ack still removes only up to last. */
	push_n(q, 10, 12);
	bq_evq_ack(q, last);
	ck_assert_uint_eq(bq_evq_len(q), 2);
	bq_buf_reset(&b);
	ck_assert_int_eq(bq_evq_peek(q, 10, 4096, &b, &n, &last), 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "[{\"n\":10},{\"n\":11}]");
	bq_buf_free(&b);
	bq_evq_free(q);
}
END_TEST

START_TEST(test_drop_oldest_by_bytes)
{
	struct bq_evq *q = bq_evq_new(100, 20);
	struct bq_evq_stats st;

	ck_assert_int_eq(bq_evq_push(q, "0123456789", 10), 0);
	ck_assert_int_eq(bq_evq_push(q, "0123456789", 10), 0);
	ck_assert_int_eq(bq_evq_push(q, "01234", 5), 0);
	bq_evq_get_stats(q, &st);
	ck_assert_uint_eq(st.len, 2);
	ck_assert_uint_eq(st.bytes, 15);
	ck_assert_uint_eq(st.dropped, 1);
	ck_assert_int_eq(bq_evq_push(q, "012345678901234567890", 21), -EMSGSIZE);
	bq_evq_get_stats(q, &st);
	ck_assert_uint_eq(st.len, 2);
	bq_evq_free(q);
}
END_TEST

START_TEST(test_alloc_failure)
{
	struct bq_evq *q = bq_evq_new(4, 100);

	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_evq_push(q, "{}", 2), -ENOMEM);
	bq_alloc_fail_nth(0);
	ck_assert_uint_eq(bq_evq_len(q), 0);
	ck_assert_int_eq(bq_evq_push(q, "{}", 2), 0);
	bq_evq_free(q);
	ck_assert_ptr_null(bq_evq_new(0, 1));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("evqueue");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_batch_and_ack);
	tcase_add_test(tc, test_drop_oldest_by_count);
	tcase_add_test(tc, test_drop_oldest_by_bytes);
	tcase_add_test(tc, test_alloc_failure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
