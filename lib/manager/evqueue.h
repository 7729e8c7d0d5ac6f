/* SPDX-License-Identifier: MIT */
/*
 * evqueue: the manager's bounded queue of events waiting for the backend
 * (POST /api/bluetooth/events). Events are JSON objects kept as text, each with a
 * sequence number; the pusher takes a batch from the head, and on the backend's 2xx
 * acknowledges everything up to the batch's last sequence number.
 *
 * Bounded in count and in bytes: when either bound would be passed, the OLDEST events
 * are dropped and counted (a backend that is down for hours gets the recent states,
 * not a manager that ran out of memory). Acknowledging by sequence number rather than
 * by count keeps a drop during an in-flight batch from removing the wrong events.
 */
#ifndef BQ_MANAGER_EVQUEUE_H
#define BQ_MANAGER_EVQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct bq_evq;

struct bq_evq_stats {
	size_t len;	   /* events queued now */
	size_t bytes;	   /* their JSON text */
	uint64_t pushed;   /* since creation */
	uint64_t dropped;  /* oldest events dropped to make room */
	uint64_t acked;	   /* taken by the backend */
	uint64_t next_seq; /* the sequence number the next push gets */
};

/* max_events >= 1, max_bytes >= 1. NULL on -ENOMEM or -EINVAL. */
struct bq_evq *bq_evq_new(size_t max_events, size_t max_bytes);
void bq_evq_free(struct bq_evq *q);

/*
 * Append a copy of json (len bytes, one JSON value). Drops the oldest events as
 * needed. 0, -EMSGSIZE (this one event is larger than max_bytes; nothing changes),
 * -ENOMEM.
 */
int bq_evq_push(struct bq_evq *q, const char *json, size_t len);

/*
 * Append up to max_n events from the head to out as a JSON array "[e1,e2,...]",
 * stopping before the array would pass max_bytes (at least one event is taken if it
 * fits out at all). *n_out gets the count, *last_seq the sequence number of the last
 * one. 0 (n_out may be 0 when empty), or bq_buf_append's errors.
 */
int bq_evq_peek(const struct bq_evq *q, size_t max_n, size_t max_bytes, struct bq_buf *out,
		size_t *n_out, uint64_t *last_seq);

/* Remove every event with sequence number <= seq (already dropped ones are skipped). */
void bq_evq_ack(struct bq_evq *q, uint64_t seq);

size_t bq_evq_len(const struct bq_evq *q);
void bq_evq_get_stats(const struct bq_evq *q, struct bq_evq_stats *out);

#endif
