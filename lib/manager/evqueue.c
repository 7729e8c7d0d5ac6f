/* SPDX-License-Identifier: MIT */
#include "manager/evqueue.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"

struct evq_item {
	uint64_t seq;
	char *json;
	size_t len;
};

struct bq_evq {
	struct evq_item *ring; /* max_events slots */
	size_t max_events, max_bytes;
	size_t head, len, bytes;
	uint64_t next_seq, pushed, dropped, acked;
};

struct bq_evq *bq_evq_new(size_t max_events, size_t max_bytes)
{
	struct bq_evq *q;

	if (max_events == 0 || max_bytes == 0) {
		return NULL;
	}
	q = bq_calloc(1, sizeof(*q));
	if (!q) {
		return NULL;
	}
	q->ring = bq_calloc(max_events, sizeof(*q->ring));
	if (!q->ring) {
		bq_free(q);
		return NULL;
	}
	q->max_events = max_events;
	q->max_bytes = max_bytes;
	q->next_seq = 1;
	return q;
}

static struct evq_item *item_at(const struct bq_evq *q, size_t i)
{
	return &q->ring[(q->head + i) % q->max_events];
}

static void pop_head(struct bq_evq *q)
{
	struct evq_item *it = item_at(q, 0);

	q->bytes -= it->len;
	bq_free(it->json);
	it->json = NULL;
	q->head = (q->head + 1) % q->max_events;
	q->len--;
}

void bq_evq_free(struct bq_evq *q)
{
	if (!q) {
		return;
	}
	while (q->len) {
		pop_head(q);
	}
	bq_free(q->ring);
	bq_free(q);
}

int bq_evq_push(struct bq_evq *q, const char *json, size_t len)
{
	struct evq_item *it;
	char *copy;

	if (len > q->max_bytes) {
		return -EMSGSIZE;
	}
	copy = bq_malloc(len + 1);
	if (!copy) {
		return -ENOMEM;
	}
	memcpy(copy, json, len);
	copy[len] = '\0';
	while (q->len && (q->len == q->max_events || q->bytes + len > q->max_bytes)) {
		pop_head(q);
		q->dropped++;
	}
	it = item_at(q, q->len);
	it->seq = q->next_seq++;
	it->json = copy;
	it->len = len;
	q->len++;
	q->bytes += len;
	q->pushed++;
	return 0;
}

int bq_evq_peek(const struct bq_evq *q, size_t max_n, size_t max_bytes, struct bq_buf *out,
		size_t *n_out, uint64_t *last_seq)
{
	size_t n = 0, size = 2; /* "[" and "]" */
	int rc;

	*n_out = 0;
	*last_seq = 0;
	rc = bq_buf_append(out, "[", 1);
	if (rc < 0) {
		return rc;
	}
	while (n < q->len && n < max_n) {
		const struct evq_item *it = item_at(q, n);
		size_t add = it->len + (n ? 1 : 0);

		/* The first event always goes, so an event near the limit cannot block the queue.
		 */
		if (n && size + add > max_bytes) {
			break;
		}
		if ((n && (rc = bq_buf_append(out, ",", 1)) < 0) ||
		    (rc = bq_buf_append(out, it->json, it->len)) < 0) {
			return rc;
		}
		size += add;
		*last_seq = it->seq;
		n++;
	}
	rc = bq_buf_append(out, "]", 1);
	if (rc < 0) {
		return rc;
	}
	*n_out = n;
	return 0;
}

void bq_evq_ack(struct bq_evq *q, uint64_t seq)
{
	while (q->len && item_at(q, 0)->seq <= seq) {
		pop_head(q);
		q->acked++;
	}
}

size_t bq_evq_len(const struct bq_evq *q)
{
	return q->len;
}

void bq_evq_get_stats(const struct bq_evq *q, struct bq_evq_stats *out)
{
	out->len = q->len;
	out->bytes = q->bytes;
	out->pushed = q->pushed;
	out->dropped = q->dropped;
	out->acked = q->acked;
	out->next_seq = q->next_seq;
}
