/* SPDX-License-Identifier: MIT */
/*
 * store: a FIFO of encoded frames with their arrival time, the building block of the
 * node's store-and-forward: one per offline local user (the mailbox) and one per
 * unreachable destination node (the route-hold queue). Oldest first, so expiry only
 * ever looks at the head.
 *
 * A value type embedded in its owner (not opaque). The FIFO itself has no limit:
 * the owner checks count and bytes before pushing, because the limits (per user,
 * per node, per process) and what to answer when they are hit belong to the node.
 */
#ifndef BQ_MESH_STORE_H
#define BQ_MESH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bq_fifo_item {
	struct bq_fifo_item *next;
	uint64_t at_ms; /* arrival, loop clock */
	uint64_t tag;   /* the owner's (e.g. a hash of source user and message id) */
	size_t len;
	uint8_t data[]; /* the frame, len bytes */
};

struct bq_fifo {
	struct bq_fifo_item *head; /* owned: the whole chain */
	struct bq_fifo_item *tail;
	uint32_t count;
	size_t bytes; /* sum of len */
};

void bq_fifo_init(struct bq_fifo *q);
/* Copy len bytes in at the tail. 0 or -ENOMEM (q unchanged). */
int bq_fifo_push(struct bq_fifo *q, const uint8_t *data, size_t len, uint64_t now_ms,
		 uint64_t tag);
/* True when an item with this tag is queued (linear: queues are short by design). */
bool bq_fifo_has_tag(const struct bq_fifo *q, uint64_t tag);
/* Detach the head; the caller owns it and frees it with bq_free. NULL when empty. */
struct bq_fifo_item *bq_fifo_pop(struct bq_fifo *q);
/* Move the whole content of q to *out (which must be empty or uninitialised); q empties. */
void bq_fifo_take(struct bq_fifo *q, struct bq_fifo *out);
/* Free every item. */
void bq_fifo_clear(struct bq_fifo *q);

#endif
