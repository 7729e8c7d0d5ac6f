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

/*
 * capacity 1..2^28 keys; ttl_ms 0 means no time expiry (only eviction when full).
 * NULL on -ENOMEM or a capacity out of range. The caller owns the result.
 */
struct bq_dedupe *bq_dedupe_new(size_t capacity, uint64_t ttl_ms);
void bq_dedupe_free(struct bq_dedupe *d);

/*
 * Record key at time now_ms (any clock, normally monotonic milliseconds). Returns 1 if
 * it was already present and not expired (a duplicate; its time is not refreshed), 0 if
 * newly inserted. A key inserted at t is a duplicate while now_ms < t + ttl_ms.
 */
int bq_dedupe_check_insert(struct bq_dedupe *d, uint64_t key, uint64_t now_ms);
int bq_dedupe_contains(const struct bq_dedupe *d, uint64_t key, uint64_t now_ms);
/* Keys held; expiry is lazy (on insert), so this may count some already expired. */
size_t bq_dedupe_size(const struct bq_dedupe *d);
/* Live keys pushed out because the set was full (not counting expiry). */
uint64_t bq_dedupe_evictions(const struct bq_dedupe *d);

/*
 * A 64-bit key from (origin, msg_id, extra), e.g. extra = attempt, chained through the
 * splitmix64 finalizer. Not cryptographic and not stable across versions: keys are only
 * ever compared inside one process, never sent. (The table itself hashes keys with a
 * random per-table seed, so peers cannot aim keys at one probe chain.)
 */
uint64_t bq_dedupe_key(const uint8_t origin[6], uint64_t msg_id, uint32_t extra);

/* Test hook: 0 if the table's internal invariants hold, else -EBADMSG. */
int bq__dedupe_selfcheck(const struct bq_dedupe *d);

#endif
