/* SPDX-License-Identifier: MIT */
#include "core/clock.h"

#include <time.h>

static uint64_t system_now_us(void *user_data)
{
	struct timespec ts;

	(void)user_data;
	/* CLOCK_MONOTONIC cannot fail with a valid pointer on Linux. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const struct bq_clock system_clock = {
	.now_us = system_now_us,
	.user_data = NULL,
};

const struct bq_clock *bq_clock_system(void)
{
	return &system_clock;
}

uint64_t bq_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec < 0) {
		return 0;
	}
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t fake_now_us(void *user_data)
{
	const struct bq_fake_clock *f = user_data;

	return f->now;
}

void bq_fake_clock_init(struct bq_fake_clock *f, uint64_t start_us)
{
	f->clock.now_us = fake_now_us;
	f->clock.user_data = f;
	f->now = start_us;
}

void bq_fake_clock_advance(struct bq_fake_clock *f, uint64_t delta_us)
{
	f->now += delta_us;
}
