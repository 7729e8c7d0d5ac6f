/* SPDX-License-Identifier: MIT */
/*
 * heap: an intrusive binary min-heap keyed by uint64_t (libuv's timer heap idea, array
 * based). Timers embed a struct bq_heap_node; the heap stores pointers and keeps each
 * node's index so removal is O(log n). Thousands of per-session timers stay cheap.
 */
#ifndef BQ_LOOP_HEAP_H
#define BQ_LOOP_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct bq_heap_node {
	uint64_t key;
	uint64_t seq;   /* insertion order, breaks ties so equal keys fire FIFO */
	size_t index;   /* position in the heap array; SIZE_MAX when not in a heap */
};

struct bq_heap;

struct bq_heap *bq_heap_new(void);
/* Frees the array only; the nodes belong to their owners. */
void bq_heap_free(struct bq_heap *h);

void bq_heap_node_init(struct bq_heap_node *n);
/* 0 or -ENOMEM (heap unchanged). The node must not already be in a heap. */
int bq_heap_push(struct bq_heap *h, struct bq_heap_node *n);
/* Remove a node that is in this heap; a node not in a heap is ignored. */
void bq_heap_remove(struct bq_heap *h, struct bq_heap_node *n);
struct bq_heap_node *bq_heap_peek(const struct bq_heap *h);
struct bq_heap_node *bq_heap_pop(struct bq_heap *h);
size_t bq_heap_size(const struct bq_heap *h);
int bq_heap_node_active(const struct bq_heap_node *n);

/*
 * Give a node that is in this heap a new key and a fresh seq (it then sorts after
 * every node already holding that key), in place: never allocates, never fails.
 * A node not in a heap is ignored.
 */
void bq_heap_update(struct bq_heap *h, struct bq_heap_node *n, uint64_t key);
/* The seq the next push or update will assign; nodes with a lower seq were there before. */
uint64_t bq_heap_next_seq(const struct bq_heap *h);

#endif
