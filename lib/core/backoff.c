/* SPDX-License-Identifier: MIT */
#include "core/backoff.h"

#include <sodium.h>

#include "core/clock.h"

/*
 * splitmix64 spreads small seeds (1, 2, 3 in tests, user ids in production) over the
 * whole state; xorshift64* alone would start out correlated for neighbouring seeds.
 */
static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint64_t xorshift64star(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

void bq_backoff_init(struct bq_backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed)
{
	/* A zero base would pin every delay at 0 (prev * 3 stays 0): a reconnect storm. */
	if (base_ms == 0) {
		base_ms = 1;
	}
	if (cap_ms < base_ms) {
		cap_ms = base_ms;
	}
	b->base_ms = base_ms;
	b->cap_ms = cap_ms;
	b->prev_ms = base_ms;
	if (seed == 0) {
		/* sodium_init is idempotent and thread-safe, so every caller may run it. */
		if (sodium_init() >= 0) {
			randombytes_buf(&seed, sizeof(seed));
		} else {
			/* Still spreads clients apart: times and addresses differ per process. */
			seed = bq_clock_now_us(bq_clock_system()) ^ (uint64_t)(uintptr_t)b;
		}
	}
	b->rng = splitmix64(seed);
	if (b->rng == 0) {
		/* xorshift has a fixed point at 0. */
		b->rng = 0x9e3779b97f4a7c15ULL;
	}
}

uint32_t bq_backoff_next(struct bq_backoff *b)
{
	uint64_t lo = b->base_ms;
	uint64_t hi = (uint64_t)b->prev_ms * 3;
	uint64_t v;

	if (hi < lo) {
		hi = lo;
	}
	/* Modulo bias is at most 2^32 / 2^64: far below anything a reconnect could notice. */
	v = lo + xorshift64star(&b->rng) % (hi - lo + 1);
	if (v > b->cap_ms) {
		v = b->cap_ms;
	}
	b->prev_ms = (uint32_t)v;
	return (uint32_t)v;
}

void bq_backoff_reset(struct bq_backoff *b)
{
	b->prev_ms = b->base_ms;
}
