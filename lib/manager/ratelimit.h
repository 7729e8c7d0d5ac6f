/* SPDX-License-Identifier: MIT */
/*
 * ratelimit: a token bucket in its GCRA form (the "virtual scheduling" algorithm of
 * ATM traffic shaping), plus a meter of the peak number of events per second.
 *
 * bq_ratelimit_reserve does not answer "try again later": it hands out the next free
 * slot and commits to it, so N waiters get N distinct, evenly spaced times and each
 * costs one call (no herd of timers re-asking every few milliseconds). This is the
 * connect gate that keeps thousands of manager sessions from storming a restarted Odin.
 *
 * Both are plain value types owned by the caller; times are the caller's monotonic
 * microseconds (the loop clock), so tests drive them with a fake clock.
 */
#ifndef BQ_MANAGER_RATELIMIT_H
#define BQ_MANAGER_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct bq_ratelimit {
	uint64_t interval_us;  /* one token every interval_us; 0 = unlimited */
	uint64_t tolerance_us; /* (burst - 1) * interval_us: how far ahead slots may be used */
	uint64_t tat_us;       /* theoretical arrival time of the next event */
};

/* rate_per_s 0 means unlimited; burst 0 is taken as 1. */
void bq_ratelimit_init(struct bq_ratelimit *rl, uint32_t rate_per_s, uint32_t burst);
/*
 * Reserve one event at now_us. Returns the microseconds to wait before it may happen
 * (0: at once). The slot is taken either way.
 */
uint64_t bq_ratelimit_reserve(struct bq_ratelimit *rl, uint64_t now_us);
/* Take a token only if one is free now. */
bool bq_ratelimit_try(struct bq_ratelimit *rl, uint64_t now_us);

/* Events per fixed one-second window (aligned to the first event), and the busiest one. */
struct bq_rate_meter {
	uint64_t window_start_us;
	uint32_t count; /* events in the current window */
	uint32_t peak;	/* most events seen in one window */
	uint64_t total;
};

void bq_rate_meter_init(struct bq_rate_meter *m);
void bq_rate_meter_hit(struct bq_rate_meter *m, uint64_t now_us);

#endif
