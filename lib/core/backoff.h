/* SPDX-License-Identifier: MIT */
/*
 * backoff: decorrelated-jitter reconnect delays (AWS architecture blog; mosquitto's
 * bridge reconnects): next = min(cap, uniform(base, prev * 3)), reset to base on
 * success. Jitter spreads many clients so a restarted peer is not stormed.
 */
#ifndef BQ_CORE_BACKOFF_H
#define BQ_CORE_BACKOFF_H

#include <stdint.h>

struct bq_backoff {
	uint32_t base_ms;
	uint32_t cap_ms;
	uint32_t prev_ms;
	uint64_t rng; /* xorshift state; never 0 */
};

/* seed 0 picks a random seed (libsodium randombytes). */
void bq_backoff_init(struct bq_backoff *b, uint32_t base_ms, uint32_t cap_ms, uint64_t seed);
/* The next delay, always in [base_ms, cap_ms]. */
uint32_t bq_backoff_next(struct bq_backoff *b);
void bq_backoff_reset(struct bq_backoff *b);

#endif
