/* SPDX-License-Identifier: MIT */
/*
 * ratelimit: GCRA token bucket and a per-second peak meter. See ratelimit.h.
 */
#include "manager/ratelimit.h"

#include <string.h>

void bq_ratelimit_init(struct bq_ratelimit *rl, uint32_t rate_per_s, uint32_t burst)
{
	memset(rl, 0, sizeof(*rl));
	if (rate_per_s == 0) {
		return;
	}
	if (burst == 0) {
		burst = 1;
	}
	rl->interval_us = 1000000ull / rate_per_s;
	if (rl->interval_us == 0) {
		rl->interval_us = 1;
	}
	rl->tolerance_us = (uint64_t)(burst - 1) * rl->interval_us;
}

uint64_t bq_ratelimit_reserve(struct bq_ratelimit *rl, uint64_t now_us)
{
	uint64_t tat, earliest;

	if (rl->interval_us == 0) {
		return 0;
	}
	/* An idle bucket does not bank more than the burst: start from now. */
	tat = rl->tat_us > now_us ? rl->tat_us : now_us;
	earliest = tat > rl->tolerance_us ? tat - rl->tolerance_us : 0;
	rl->tat_us = tat + rl->interval_us;
	return earliest > now_us ? earliest - now_us : 0;
}

bool bq_ratelimit_try(struct bq_ratelimit *rl, uint64_t now_us)
{
	uint64_t tat;

	if (rl->interval_us == 0) {
		return true;
	}
	tat = rl->tat_us > now_us ? rl->tat_us : now_us;
	if (tat > now_us + rl->tolerance_us) {
		return false;
	}
	rl->tat_us = tat + rl->interval_us;
	return true;
}

void bq_rate_meter_init(struct bq_rate_meter *m)
{
	memset(m, 0, sizeof(*m));
}

void bq_rate_meter_hit(struct bq_rate_meter *m, uint64_t now_us)
{
	if (m->total == 0 || now_us >= m->window_start_us + 1000000ull) {
		m->window_start_us = now_us;
		m->count = 0;
	}
	m->count++;
	m->total++;
	if (m->count > m->peak) {
		m->peak = m->count;
	}
}
