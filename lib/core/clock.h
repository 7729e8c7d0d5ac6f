/* SPDX-License-Identifier: MIT */
/*
 * clock: an injectable monotonic clock, so tests control time (mosquitto's stubbed
 * mosquitto_time). Everything that measures time or arms timers reads it through
 * a struct bq_clock; production code uses bq_clock_system().
 */
#ifndef BQ_CORE_CLOCK_H
#define BQ_CORE_CLOCK_H

#include <stdint.h>

struct bq_clock {
	/* Monotonic microseconds; never goes backwards. */
	uint64_t (*now_us)(void *user_data);
	void *user_data;
};

/* CLOCK_MONOTONIC. The returned struct is static and immutable. */
const struct bq_clock *bq_clock_system(void);

static inline uint64_t bq_clock_now_us(const struct bq_clock *c)
{
	return c->now_us(c->user_data);
}

static inline uint64_t bq_clock_now_ms(const struct bq_clock *c)
{
	return c->now_us(c->user_data) / 1000;
}

/* Wall-clock milliseconds since the Unix epoch (for frame timestamps and logs). */
uint64_t bq_wall_ms(void);

/* A fake clock for tests: starts at start_us and moves only when told. */
struct bq_fake_clock {
	struct bq_clock clock; /* pass &fake.clock wherever a clock is wanted */
	uint64_t now;
};

void bq_fake_clock_init(struct bq_fake_clock *f, uint64_t start_us);
void bq_fake_clock_advance(struct bq_fake_clock *f, uint64_t delta_us);

#endif
