/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "loop/heap.h"

#define N 10000

/*
 * ck_assert records a checkpoint per call (a syscall in fork mode); in loops of
 * thousands use this, which only costs anything when it fails.
 */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #cond);                      \
		}                                                                                  \
	} while (0)

static struct bq_heap_node nodes[N];

/* Deterministic, so a failure reproduces. */
static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static int node_less(const struct bq_heap_node *a, const struct bq_heap_node *b)
{
	return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

/*
 * Full invariant check through the public API only: the nodes that claim to be in the
 * heap occupy exactly the indices 0..size-1, once each, and no child sorts before its
 * parent.
 */
static void check_heap(struct bq_heap *h, struct bq_heap_node *ns, size_t count)
{
	size_t size = bq_heap_size(h);
	struct bq_heap_node **at = calloc(size ? size : 1, sizeof(*at));
	size_t active = 0;

	REQUIRE(at != NULL);
	for (size_t i = 0; i < count; i++) {
		if (!bq_heap_node_active(&ns[i])) {
			continue;
		}
		REQUIRE(ns[i].index < size);
		REQUIRE(at[ns[i].index] == NULL);
		at[ns[i].index] = &ns[i];
		active++;
	}
	REQUIRE(active == size);
	for (size_t i = 1; i < size; i++) {
		REQUIRE(!node_less(at[i], at[(i - 1) / 2]));
	}
	if (size) {
		REQUIRE(bq_heap_peek(h) == at[0]);
	} else {
		REQUIRE(bq_heap_peek(h) == NULL);
	}
	free(at);
}

static void pop_all_sorted(struct bq_heap *h)
{
	struct bq_heap_node *prev = NULL, *n;
	size_t left = bq_heap_size(h);

	while ((n = bq_heap_pop(h))) {
		REQUIRE(!bq_heap_node_active(n));
		REQUIRE(n->index == SIZE_MAX);
		if (prev) {
			REQUIRE(node_less(prev, n));
		}
		prev = n;
		left--;
		REQUIRE(bq_heap_size(h) == left);
	}
	REQUIRE(left == 0);
}

START_TEST(test_random_pop_sorted)
{
	struct bq_heap *h = bq_heap_new();

	REQUIRE(h != NULL);
	for (size_t i = 0; i < N; i++) {
		bq_heap_node_init(&nodes[i]);
		REQUIRE(!bq_heap_node_active(&nodes[i]));
		nodes[i].key = rnd() % 5000; /* plenty of duplicates */
		REQUIRE(bq_heap_push(h, &nodes[i]) == 0);
		REQUIRE(bq_heap_node_active(&nodes[i]));
	}
	REQUIRE(bq_heap_size(h) == N);
	check_heap(h, nodes, N);
	pop_all_sorted(h);
	REQUIRE(bq_heap_pop(h) == NULL);
	bq_heap_free(h);
}
END_TEST

START_TEST(test_remove_keeps_invariant)
{
	struct bq_heap *h = bq_heap_new();
	size_t count = 2000;

	for (size_t i = 0; i < count; i++) {
		bq_heap_node_init(&nodes[i]);
		nodes[i].key = rnd() % 100000;
		REQUIRE(bq_heap_push(h, &nodes[i]) == 0);
	}
	check_heap(h, nodes, count);

	/* The root, the last slot, and a middle slot, by position. */
	for (int round = 0; round < 300; round++) {
		for (int k = 0; k < 3; k++) {
			size_t size = bq_heap_size(h);
			size_t want[3] = {0, size - 1, size / 2};
			struct bq_heap_node *victim = NULL;

			for (size_t i = 0; i < count; i++) {
				if (bq_heap_node_active(&nodes[i]) && nodes[i].index == want[k]) {
					victim = &nodes[i];
					break;
				}
			}
			REQUIRE(victim != NULL);
			bq_heap_remove(h, victim);
			REQUIRE(!bq_heap_node_active(victim));
			check_heap(h, nodes, count);
		}
	}
	REQUIRE(bq_heap_size(h) == count - 900);

	/* Random nodes, including ones already removed (ignored). */
	for (int i = 0; i < 2000; i++) {
		bq_heap_remove(h, &nodes[rnd() % count]);
	}
	check_heap(h, nodes, count);
	pop_all_sorted(h);
	bq_heap_free(h);
}
END_TEST

START_TEST(test_fifo_equal_keys)
{
	struct bq_heap *h = bq_heap_new();

	for (size_t i = 0; i < 1000; i++) {
		bq_heap_node_init(&nodes[i]);
		nodes[i].key = i % 3 == 0 ? 7 : 9;
		ck_assert_int_eq(bq_heap_push(h, &nodes[i]), 0);
	}
	for (uint64_t key = 7; key <= 9; key += 2) {
		for (size_t i = 0; i < 1000; i++) {
			if ((key == 7) != (i % 3 == 0)) {
				continue;
			}
			ck_assert_ptr_eq(bq_heap_pop(h), &nodes[i]);
		}
	}
	ck_assert_uint_eq(bq_heap_size(h), 0);
	bq_heap_free(h);
}
END_TEST

START_TEST(test_update)
{
	struct bq_heap *h = bq_heap_new();
	uint64_t seq;

	for (size_t i = 0; i < 100; i++) {
		bq_heap_node_init(&nodes[i]);
		nodes[i].key = 10 * i;
		ck_assert_int_eq(bq_heap_push(h, &nodes[i]), 0);
	}
	seq = bq_heap_next_seq(h);
	ck_assert_uint_eq(seq, 100);
	/* Down to the top, up to the bottom, and onto an existing key (goes after it). */
	bq_heap_update(h, &nodes[50], 0);
	ck_assert_uint_eq(nodes[50].seq, seq);
	check_heap(h, nodes, 100);
	ck_assert_ptr_eq(bq_heap_peek(h), &nodes[0]);
	bq_heap_update(h, &nodes[0], 5000);
	check_heap(h, nodes, 100);
	ck_assert_ptr_eq(bq_heap_peek(h), &nodes[50]);
	bq_heap_update(h, &nodes[3], 20);
	check_heap(h, nodes, 100);
	ck_assert_ptr_eq(bq_heap_pop(h), &nodes[50]);
	ck_assert_ptr_eq(bq_heap_pop(h), &nodes[1]);
	ck_assert_ptr_eq(bq_heap_pop(h), &nodes[2]);
	ck_assert_ptr_eq(bq_heap_pop(h), &nodes[3]);
	ck_assert_ptr_eq(bq_heap_pop(h), &nodes[4]);

	/* A node that is not in the heap is left alone. */
	bq_heap_update(h, &nodes[50], 1);
	ck_assert(!bq_heap_node_active(&nodes[50]));
	ck_assert_uint_eq(bq_heap_size(h), 95);
	pop_all_sorted(h);
	bq_heap_free(h);
}
END_TEST

START_TEST(test_push_enomem_unchanged)
{
	struct bq_heap *h = bq_heap_new();
	struct bq_heap_node extra;
	size_t i = 0;
	int r;

	bq_heap_node_init(&extra);
	extra.key = 0;
	/* The first push allocates: it fails cleanly on an empty heap. */
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_heap_push(h, &extra), -ENOMEM);
	ck_assert_uint_eq(bq_heap_size(h), 0);
	ck_assert(!bq_heap_node_active(&extra));
	ck_assert_uint_eq(bq_heap_next_seq(h), 0);

	/* Fill until a push fails on growth; every earlier push succeeded. */
	bq_heap_node_init(&nodes[0]);
	nodes[0].key = 1000;
	ck_assert_int_eq(bq_heap_push(h, &nodes[0]), 0);
	i = 1;
	for (;;) {
		bq_heap_node_init(&nodes[i]);
		nodes[i].key = 1000 - i;
		bq_alloc_fail_nth(1);
		r = bq_heap_push(h, &nodes[i]);
		bq_alloc_fail_nth(0);
		if (r < 0) {
			break;
		}
		i++;
		ck_assert_uint_lt(i, 100000);
	}
	ck_assert_int_eq(r, -ENOMEM);
	ck_assert_uint_gt(i, 0);
	ck_assert_uint_eq(bq_heap_size(h), i);
	ck_assert(!bq_heap_node_active(&nodes[i]));
	ck_assert_uint_eq(bq_heap_next_seq(h), i);
	check_heap(h, nodes, i + 1);
	ck_assert_ptr_eq(bq_heap_peek(h), &nodes[i - 1]);

	/* And it works again afterwards. */
	ck_assert_int_eq(bq_heap_push(h, &nodes[i]), 0);
	check_heap(h, nodes, i + 1);
	pop_all_sorted(h);
	bq_heap_free(h);
}
END_TEST

START_TEST(test_free_detaches_nodes)
{
	struct bq_heap *h = bq_heap_new();

	for (size_t i = 0; i < 10; i++) {
		bq_heap_node_init(&nodes[i]);
		ck_assert_int_eq(bq_heap_push(h, &nodes[i]), 0);
	}
	bq_heap_free(h);
	for (size_t i = 0; i < 10; i++) {
		ck_assert(!bq_heap_node_active(&nodes[i]));
	}
	bq_heap_free(NULL);
}
END_TEST

static Suite *heap_suite(void)
{
	Suite *s = suite_create("heap");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_random_pop_sorted);
	tcase_add_test(tc, test_remove_keeps_invariant);
	tcase_add_test(tc, test_fifo_equal_keys);
	tcase_add_test(tc, test_update);
	tcase_add_test(tc, test_push_enomem_unchanged);
	tcase_add_test(tc, test_free_detaches_nodes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(heap_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
