/* SPDX-License-Identifier: MIT */
/* The frame FIFO behind mailboxes and route-hold queues. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "mesh/store.h"

START_TEST(test_fifo_order_and_accounting)
{
	struct bq_fifo q, taken;
	struct bq_fifo_item *it;

	bq_fifo_init(&q);
	ck_assert_ptr_null(bq_fifo_pop(&q));
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"one", 3, 10, 1), 0);
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"three", 5, 20, 2), 0);
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"", 0, 30, 3), 0);
	ck_assert_uint_eq(q.count, 3);
	ck_assert_uint_eq(q.bytes, 8);
	ck_assert(bq_fifo_has_tag(&q, 2));
	ck_assert(!bq_fifo_has_tag(&q, 4));

	it = bq_fifo_pop(&q);
	ck_assert_uint_eq(it->len, 3);
	ck_assert_mem_eq(it->data, "one", 3);
	ck_assert_uint_eq(it->at_ms, 10);
	ck_assert_uint_eq(it->tag, 1);
	bq_free(it);
	ck_assert_uint_eq(q.count, 2);
	ck_assert_uint_eq(q.bytes, 5);

	bq_fifo_take(&q, &taken);
	ck_assert_uint_eq(q.count, 0);
	ck_assert_ptr_null(q.head);
	ck_assert_ptr_null(q.tail);
	ck_assert_uint_eq(taken.count, 2);
	/* The emptied queue works again on its own. */
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"x", 1, 40, 9), 0);
	ck_assert_ptr_eq(q.head, q.tail);
	it = bq_fifo_pop(&taken);
	ck_assert_mem_eq(it->data, "three", 5);
	bq_free(it);
	it = bq_fifo_pop(&taken);
	ck_assert_uint_eq(it->len, 0);
	bq_free(it);
	ck_assert_ptr_null(bq_fifo_pop(&taken));
	ck_assert_ptr_null(taken.tail);
	bq_fifo_clear(&q);
	ck_assert_uint_eq(q.count, 0);
	ck_assert_uint_eq(q.bytes, 0);
}
END_TEST

START_TEST(test_fifo_push_oom)
{
	struct bq_fifo q;

	bq_fifo_init(&q);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"a", 1, 0, 0), -ENOMEM);
	ck_assert_uint_eq(q.count, 0);
	ck_assert_ptr_null(q.head);
	ck_assert_int_eq(bq_fifo_push(&q, (const uint8_t *)"a", 1, 0, 0), 0);
	bq_fifo_clear(&q);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("fifo");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_fifo_order_and_accounting);
	tcase_add_test(tc, test_fifo_push_oom);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
