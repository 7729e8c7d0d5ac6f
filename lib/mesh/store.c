/* SPDX-License-Identifier: MIT */
#include "mesh/store.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"

void bq_fifo_init(struct bq_fifo *q)
{
	memset(q, 0, sizeof(*q));
}

int bq_fifo_push(struct bq_fifo *q, const uint8_t *data, size_t len, uint64_t now_ms,
		 uint64_t tag)
{
	struct bq_fifo_item *it = bq_malloc(sizeof(*it) + len);

	if (!it) {
		return -ENOMEM;
	}
	it->next = NULL;
	it->at_ms = now_ms;
	it->tag = tag;
	it->len = len;
	memcpy(it->data, data, len);
	if (q->tail) {
		q->tail->next = it;
	} else {
		q->head = it;
	}
	q->tail = it;
	q->count++;
	q->bytes += len;
	return 0;
}

bool bq_fifo_has_tag(const struct bq_fifo *q, uint64_t tag)
{
	for (const struct bq_fifo_item *it = q->head; it; it = it->next) {
		if (it->tag == tag) {
			return true;
		}
	}
	return false;
}

struct bq_fifo_item *bq_fifo_pop(struct bq_fifo *q)
{
	struct bq_fifo_item *it = q->head;

	if (!it) {
		return NULL;
	}
	q->head = it->next;
	if (!q->head) {
		q->tail = NULL;
	}
	q->count--;
	q->bytes -= it->len;
	it->next = NULL;
	return it;
}

void bq_fifo_take(struct bq_fifo *q, struct bq_fifo *out)
{
	*out = *q;
	bq_fifo_init(q);
}

void bq_fifo_clear(struct bq_fifo *q)
{
	struct bq_fifo_item *it;

	while ((it = bq_fifo_pop(q))) {
		bq_free(it);
	}
}
