/* SPDX-License-Identifier: MIT */
/*
 * Rate limits on POST /api/register and /api/login, per client address: each address
 * has a small GCRA bucket per endpoint (lib/manager/ratelimit.h), kept in a map and a
 * list in order of last use. The map is bounded: past LIMITS_MAX addresses the least
 * recently used entry goes (an address that rested long enough to refill both buckets
 * loses nothing by being forgotten; one that did not gets a full bucket back, the price
 * of a bounded table). Loopback is not exempt.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "core/alloc.h"
#include "manager/ratelimit.h"

static const char *const MOD = "accounts";

#define LIMITS_MAX 10000
/* Fully refilled entries dropped from the old end per new address (keeps the table lean). */
#define SWEEP_PER_INSERT 8
#define PEER_MAX 64

struct lim_entry {
	char key[PEER_MAX];
	struct bq_ratelimit bucket[BE_LIMIT_NKINDS];
	struct lim_entry *prev, *next; /* prev: more recently used */
};

struct be_limits {
	struct bq_map *map;
	struct lim_entry *head, *tail; /* head: most recently used */
	struct bq_ratelimit tpl[BE_LIMIT_NKINDS];
};

static const char *const kind_name[BE_LIMIT_NKINDS] = {"register", "login"};

/* per_min 0: no limit. The bucket is a plain value: set per minute, not per second. */
static void bucket_init(struct bq_ratelimit *rl, int64_t per_min, int64_t burst)
{
	memset(rl, 0, sizeof(*rl));
	if (per_min <= 0) {
		return;
	}
	rl->interval_us = 60000000ull / (uint64_t)per_min;
	if (rl->interval_us == 0) {
		rl->interval_us = 1;
	}
	rl->tolerance_us = (uint64_t)(burst > 1 ? burst - 1 : 0) * rl->interval_us;
}

static void lru_unlink(struct be_limits *l, struct lim_entry *e)
{
	if (e->prev) {
		e->prev->next = e->next;
	} else {
		l->head = e->next;
	}
	if (e->next) {
		e->next->prev = e->prev;
	} else {
		l->tail = e->prev;
	}
	e->prev = e->next = NULL;
}

static void lru_push_head(struct be_limits *l, struct lim_entry *e)
{
	e->next = l->head;
	if (l->head) {
		l->head->prev = e;
	}
	l->head = e;
	if (!l->tail) {
		l->tail = e;
	}
}

static void entry_drop(struct be_limits *l, struct lim_entry *e)
{
	lru_unlink(l, e);
	bq_map_remove(l->map, e->key, strlen(e->key));
	bq_free(e);
}

static bool entry_idle(const struct lim_entry *e, uint64_t now)
{
	for (int k = 0; k < BE_LIMIT_NKINDS; k++) {
		if (e->bucket[k].tat_us > now) {
			return false;
		}
	}
	return true;
}

static struct lim_entry *entry_get(struct be_limits *l, const char *key, uint64_t now)
{
	struct lim_entry *e = bq_map_get(l->map, key, strlen(key));

	if (e) {
		lru_unlink(l, e);
		lru_push_head(l, e);
		return e;
	}
	for (int i = 0; i < SWEEP_PER_INSERT && l->tail && entry_idle(l->tail, now); i++) {
		entry_drop(l, l->tail);
	}
	if (bq_map_size(l->map) >= LIMITS_MAX) {
		entry_drop(l, l->tail);
	}
	e = bq_calloc(1, sizeof(*e));
	if (!e) {
		return NULL;
	}
	snprintf(e->key, sizeof(e->key), "%s", key);
	memcpy(e->bucket, l->tpl, sizeof(e->bucket));
	if (bq_map_set(l->map, e->key, strlen(e->key), e) < 0) {
		bq_free(e);
		return NULL;
	}
	lru_push_head(l, e);
	return e;
}

bool be_limit_check(struct be *b, struct bq_http_req *req, enum be_limit_kind kind)
{
	struct be_limits *l = b->limits;
	uint64_t now = bq_loop_now_us(b->loop);
	struct bq_ratelimit *rl;
	struct lim_entry *e;
	char peer[PEER_MAX];
	char secs[24];
	uint64_t wait_us, wait_s;

	if (!l || l->tpl[kind].interval_us == 0) {
		return true;
	}
	if (bq_http_req_peer(req, peer, sizeof(peer)) < 0) {
		/* Not a TCP/IP client (cannot happen with a TCP listener): one shared bucket. */
		snprintf(peer, sizeof(peer), "?");
	}
	e = entry_get(l, peer, now);
	if (!e) {
		/* Out of memory: refusing is safer than letting an attacker past the limit. */
		bq_http_reply_error(req, 503, "busy", "out of memory");
		return false;
	}
	rl = &e->bucket[kind];
	if (bq_ratelimit_try(rl, now)) {
		return true;
	}
	/* Refused: the next token frees at tat - tolerance. */
	wait_us = rl->tat_us - rl->tolerance_us > now ? rl->tat_us - rl->tolerance_us - now : 0;
	wait_s = (wait_us + 999999) / 1000000;
	if (wait_s == 0) {
		wait_s = 1;
	}
	b->rate_limited++;
	bq_info(b->log, MOD, "msg=\"rate limited\" endpoint=%s peer=%s retry_after_s=%" PRIu64,
		kind_name[kind], peer, wait_s);
	snprintf(secs, sizeof(secs), "%" PRIu64, wait_s);
	bq_http_req_add_header(req, "Retry-After", secs);
	bq_http_reply_error(req, 429, "rate_limited",
			    "too many attempts; try again in %" PRIu64 " s", wait_s);
	return false;
}

int be_limits_start(struct be *b, char *err, size_t errlen)
{
	struct be_limits *l = bq_calloc(1, sizeof(*l));

	if (l) {
		l->map = bq_map_new();
	}
	if (!l || !l->map) {
		bq_free(l);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bucket_init(&l->tpl[BE_LIMIT_REGISTER], b->o->register_rate, b->o->register_burst);
	bucket_init(&l->tpl[BE_LIMIT_LOGIN], b->o->login_rate, b->o->login_burst);
	b->limits = l;
	return 0;
}

void be_limits_stop(struct be *b)
{
	struct be_limits *l = b->limits;

	if (!l) {
		return;
	}
	while (l->head) {
		entry_drop(l, l->head);
	}
	bq_map_free(l->map);
	bq_free(l);
	b->limits = NULL;
}

size_t be_limits_tracked(const struct be *b)
{
	const struct be_limits *l = b->limits;

	return l ? bq_map_size(l->map) : 0;
}
