/* SPDX-License-Identifier: MIT */
#include "loop/heap.h"

#include <errno.h>

#include "core/alloc.h"

struct bq_heap {
	struct bq_heap_node **a;
	size_t n;
	size_t cap;
	/* 64 bits never wrap in practice, so (key, seq) is a strict total order. */
	uint64_t next_seq;
};

static inline int less(const struct bq_heap_node *x, const struct bq_heap_node *y)
{
	if (x->key != y->key) {
		return x->key < y->key;
	}
	return x->seq < y->seq;
}

static inline void place(struct bq_heap *h, size_t i, struct bq_heap_node *n)
{
	h->a[i] = n;
	n->index = i;
}

/* Hole-based sifts: move the hole instead of swapping, one store per level. */
static void sift_up(struct bq_heap *h, size_t i)
{
	struct bq_heap_node *n = h->a[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!less(n, h->a[parent])) {
			break;
		}
		place(h, i, h->a[parent]);
		i = parent;
	}
	place(h, i, n);
}

static void sift_down(struct bq_heap *h, size_t i)
{
	struct bq_heap_node *n = h->a[i];

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= h->n) {
			break;
		}
		if (child + 1 < h->n && less(h->a[child + 1], h->a[child])) {
			child++;
		}
		if (!less(h->a[child], n)) {
			break;
		}
		place(h, i, h->a[child]);
		i = child;
	}
	place(h, i, n);
}

/* After a node at i changed (or was replaced), restore the invariant around it. */
static void fix(struct bq_heap *h, size_t i)
{
	if (i > 0 && less(h->a[i], h->a[(i - 1) / 2])) {
		sift_up(h, i);
	} else {
		sift_down(h, i);
	}
}

struct bq_heap *bq_heap_new(void)
{
	return bq_calloc(1, sizeof(struct bq_heap));
}

void bq_heap_free(struct bq_heap *h)
{
	if (!h) {
		return;
	}
	/* Leave no node claiming to be in a heap that no longer exists. */
	for (size_t i = 0; i < h->n; i++) {
		h->a[i]->index = SIZE_MAX;
	}
	bq_free(h->a);
	bq_free(h);
}

void bq_heap_node_init(struct bq_heap_node *n)
{
	n->key = 0;
	n->seq = 0;
	n->index = SIZE_MAX;
}

int bq_heap_push(struct bq_heap *h, struct bq_heap_node *n)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct bq_heap_node **a;

		if (cap > SIZE_MAX / sizeof(*a)) {
			return -ENOMEM;
		}
		a = bq_realloc(h->a, cap * sizeof(*a));
		if (!a) {
			return -ENOMEM;
		}
		h->a = a;
		h->cap = cap;
	}
	n->seq = h->next_seq++;
	place(h, h->n, n);
	h->n++;
	sift_up(h, h->n - 1);
	return 0;
}

static int in_heap(const struct bq_heap *h, const struct bq_heap_node *n)
{
	return n->index < h->n && h->a[n->index] == n;
}

void bq_heap_remove(struct bq_heap *h, struct bq_heap_node *n)
{
	size_t i;
	struct bq_heap_node *last;

	if (!in_heap(h, n)) {
		return;
	}
	i = n->index;
	n->index = SIZE_MAX;
	last = h->a[--h->n];
	if (i == h->n) {
		return;
	}
	place(h, i, last);
	fix(h, i);
}

struct bq_heap_node *bq_heap_peek(const struct bq_heap *h)
{
	return h->n ? h->a[0] : NULL;
}

struct bq_heap_node *bq_heap_pop(struct bq_heap *h)
{
	struct bq_heap_node *top = bq_heap_peek(h);

	if (top) {
		bq_heap_remove(h, top);
	}
	return top;
}

size_t bq_heap_size(const struct bq_heap *h)
{
	return h->n;
}

int bq_heap_node_active(const struct bq_heap_node *n)
{
	return n->index != SIZE_MAX;
}

void bq_heap_update(struct bq_heap *h, struct bq_heap_node *n, uint64_t key)
{
	if (!in_heap(h, n)) {
		return;
	}
	n->key = key;
	n->seq = h->next_seq++;
	fix(h, n->index);
}

uint64_t bq_heap_next_seq(const struct bq_heap *h)
{
	return h->next_seq;
}
