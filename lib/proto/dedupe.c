/* SPDX-License-Identifier: MIT */
/*
 * A bounded set of recently seen keys.
 *
 * Keys and their insertion times live in a FIFO ring of `capacity` records, oldest at
 * the head; the ring gives O(1) eviction when full and lazy expiry (pop expired records
 * from the head on insert). A linear-probing table of at least 2 x capacity slots maps
 * keys to ring positions, so lookups stay short (load factor <= 1/2). Removal uses
 * backward-shift deletion, not tombstones, so the table never degrades over time.
 *
 * A ring record is dead when the table no longer points at it: that happens only when
 * the caller's clock went backwards and a key expired out of order (it is removed from
 * the table and inserted again at the tail). Dead records are skipped at the head.
 */
#include "proto/dedupe.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/alloc.h"

/* Keeps ring indexes in 32 bits and the table allocation sane. */
#define DEDUPE_CAP_MAX (1u << 28)

struct slot {
	uint64_t key;
	uint32_t ref; /* ring position + 1; 0 = empty */
};

struct rec {
	uint64_t key;
	uint64_t ts_ms;
};

struct bq_dedupe {
	struct slot *slots;
	size_t mask; /* table size - 1 */
	struct rec *ring;
	size_t cap, head, used; /* used: ring records, live or dead */
	size_t live;
	uint64_t ttl_ms;
	uint64_t seed;
	uint64_t evictions;
};

/* splitmix64's finalizer: a bijection with full avalanche; fast, not cryptographic. */
static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t bq_dedupe_key(const uint8_t origin[6], uint64_t msg_id, uint32_t extra)
{
	uint64_t o = 0;

	for (int i = 0; i < 6; i++) {
		o = (o << 8) | origin[i];
	}
	/* Chained so that swapping fields between positions changes the key. */
	return mix64(mix64(mix64(o ^ 0x9e3779b97f4a7c15ULL) ^ msg_id) ^
		     ((uint64_t)extra | 0x5bd1e99500000000ULL));
}

static uint64_t random_seed(void)
{
	uint64_t seed = 0;
	struct timespec ts;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed)) {
		return seed;
	}
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed);
}

/*
 * The slot a key wants. Seeded per table: keys derive from peer-chosen message ids, and
 * an unseeded bijection would let a peer aim every key at one probe chain.
 */
static size_t home_of(const struct bq_dedupe *d, uint64_t key)
{
	return (size_t)mix64(key ^ d->seed) & d->mask;
}

struct bq_dedupe *bq_dedupe_new(size_t capacity, uint64_t ttl_ms)
{
	struct bq_dedupe *d;
	size_t size = 4;

	if (capacity == 0 || capacity > DEDUPE_CAP_MAX) {
		return NULL;
	}
	while (size < 2 * capacity) {
		size <<= 1;
	}
	d = bq_calloc(1, sizeof(*d));
	if (!d) {
		return NULL;
	}
	d->slots = bq_calloc(size, sizeof(*d->slots));
	d->ring = bq_calloc(capacity, sizeof(*d->ring));
	if (!d->slots || !d->ring) {
		bq_dedupe_free(d);
		return NULL;
	}
	d->mask = size - 1;
	d->cap = capacity;
	d->ttl_ms = ttl_ms;
	d->seed = random_seed();
	return d;
}

void bq_dedupe_free(struct bq_dedupe *d)
{
	if (!d) {
		return;
	}
	bq_free(d->slots);
	bq_free(d->ring);
	bq_free(d);
}

/* A clock that went backwards makes an entry look young, never expired. */
static int expired(const struct bq_dedupe *d, uint64_t ts_ms, uint64_t now_ms)
{
	return d->ttl_ms && now_ms >= ts_ms && now_ms - ts_ms >= d->ttl_ms;
}

/* Index of the key's slot, or -1 if absent. */
static long find_slot(const struct bq_dedupe *d, uint64_t key)
{
	size_t i = home_of(d, key);

	while (d->slots[i].ref) {
		if (d->slots[i].key == key) {
			return (long)i;
		}
		i = (i + 1) & d->mask;
	}
	return -1;
}

/*
 * Backward-shift deletion: walk the cluster after the hole and move back every entry
 * whose home does not lie cyclically in (hole, j], so that no probe chain crosses an
 * empty slot it used to cross full.
 */
static void delete_slot(struct bq_dedupe *d, size_t hole)
{
	size_t j = hole;

	for (;;) {
		size_t k;

		j = (j + 1) & d->mask;
		if (!d->slots[j].ref) {
			break;
		}
		k = home_of(d, d->slots[j].key);
		if (hole <= j ? (hole < k && k <= j) : (hole < k || k <= j)) {
			continue;
		}
		d->slots[hole] = d->slots[j];
		hole = j;
	}
	d->slots[hole].ref = 0;
	d->slots[hole].key = 0;
}

/* Drop the oldest ring record; returns 1 if it was live (its key left the set). */
static int pop_head(struct bq_dedupe *d)
{
	const struct rec *r = &d->ring[d->head];
	long s = find_slot(d, r->key);
	int was_live = 0;

	if (s >= 0 && d->slots[s].ref == d->head + 1) {
		delete_slot(d, (size_t)s);
		d->live--;
		was_live = 1;
	}
	d->head = (d->head + 1) % d->cap;
	d->used--;
	return was_live;
}

static void expire(struct bq_dedupe *d, uint64_t now_ms)
{
	while (d->used && expired(d, d->ring[d->head].ts_ms, now_ms)) {
		pop_head(d);
	}
}

int bq_dedupe_check_insert(struct bq_dedupe *d, uint64_t key, uint64_t now_ms)
{
	long s;
	size_t pos, i;

	expire(d, now_ms);
	s = find_slot(d, key);
	if (s >= 0) {
		if (!expired(d, d->ring[d->slots[s].ref - 1].ts_ms, now_ms)) {
			return 1;
		}
		/* Expired out of order (clock went back): its ring record becomes dead. */
		delete_slot(d, (size_t)s);
		d->live--;
	}
	if (d->used == d->cap) {
		if (pop_head(d)) {
			d->evictions++;
		}
	}
	pos = (d->head + d->used) % d->cap;
	d->ring[pos].key = key;
	d->ring[pos].ts_ms = now_ms;
	d->used++;
	d->live++;
	i = home_of(d, key);
	while (d->slots[i].ref) {
		i = (i + 1) & d->mask;
	}
	d->slots[i].key = key;
	d->slots[i].ref = (uint32_t)(pos + 1);
	return 0;
}

int bq_dedupe_contains(const struct bq_dedupe *d, uint64_t key, uint64_t now_ms)
{
	long s = find_slot(d, key);

	return s >= 0 && !expired(d, d->ring[d->slots[s].ref - 1].ts_ms, now_ms);
}

size_t bq_dedupe_size(const struct bq_dedupe *d)
{
	return d->live;
}

uint64_t bq_dedupe_evictions(const struct bq_dedupe *d)
{
	return d->evictions;
}

int bq__dedupe_selfcheck(const struct bq_dedupe *d)
{
	size_t occupied = 0, live = 0;

	for (size_t i = 0; i <= d->mask; i++) {
		const struct slot *sl = &d->slots[i];
		size_t pos, j;

		if (!sl->ref) {
			continue;
		}
		occupied++;
		pos = sl->ref - 1;
		/* The ring position must be in use and hold this key. */
		if (pos >= d->cap || (pos + d->cap - d->head) % d->cap >= d->used ||
		    d->ring[pos].key != sl->key) {
			return -EBADMSG;
		}
		/* No empty slot between the key's home and where it sits. */
		for (j = home_of(d, sl->key); j != i; j = (j + 1) & d->mask) {
			if (!d->slots[j].ref) {
				return -EBADMSG;
			}
		}
		/* Keys are unique. */
		if (find_slot(d, sl->key) != (long)i) {
			return -EBADMSG;
		}
	}
	for (size_t n = 0; n < d->used; n++) {
		size_t pos = (d->head + n) % d->cap;
		long s = find_slot(d, d->ring[pos].key);

		if (s >= 0 && d->slots[s].ref == pos + 1) {
			live++;
		}
	}
	if (occupied != d->live || live != d->live || d->used > d->cap) {
		return -EBADMSG;
	}
	return 0;
}
