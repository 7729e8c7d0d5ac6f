/* SPDX-License-Identifier: MIT */
/*
 * dedupe: a bounded, expiring set of recently seen 64-bit keys, for duplicate
 * suppression in relays and at destinations. Fixed capacity chosen at creation:
 * when full, the oldest entry is evicted (counted). Entries older than ttl_ms are
 * forgotten. O(1) average insert and lookup (open addressing + a FIFO ring).
 */
#ifndef BQ_PROTO_DEDUPE_H
#define BQ_PROTO_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

struct bq_dedupe;

struct bq_dedupe *bq_dedupe_new(size_t capacity, uint64_t ttl_ms);
void bq_dedupe_free(struct bq_dedupe *d);

/*
 * Record key at time now_ms. Returns 1 if it was already present and not expired
 * (a duplicate), 0 if newly inserted.
 */
int bq_dedupe_check_insert(struct bq_dedupe *d, uint64_t key, uint64_t now_ms);
int bq_dedupe_contains(const struct bq_dedupe *d, uint64_t key, uint64_t now_ms);
size_t bq_dedupe_size(const struct bq_dedupe *d);
uint64_t bq_dedupe_evictions(const struct bq_dedupe *d);

/* A 64-bit key from (origin, msg_id, extra) — e.g. extra = attempt — via SipHash-like mixing. */
uint64_t bq_dedupe_key(const uint8_t origin[6], uint64_t msg_id, uint32_t extra);

#endif
