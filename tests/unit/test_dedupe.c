/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "proto/dedupe.h"

START_TEST(test_duplicates)
{
	struct bq_dedupe *d = bq_dedupe_new(16, 1000);

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(bq_dedupe_contains(d, 42, 0), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 42, 0), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 42, 1), 1);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 42, 2), 1);
	ck_assert_int_eq(bq_dedupe_contains(d, 42, 3), 1);
	/* 0 and UINT64_MAX are keys like any other */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 0, 3), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, UINT64_MAX, 3), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 0, 4), 1);
	ck_assert_int_eq(bq_dedupe_check_insert(d, UINT64_MAX, 4), 1);
	ck_assert_int_eq(bq_dedupe_contains(d, 43, 4), 0);
	ck_assert_uint_eq(bq_dedupe_size(d), 3);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 0);
	ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	bq_dedupe_free(d);
}
END_TEST

START_TEST(test_expiry)
{
	struct bq_dedupe *d = bq_dedupe_new(16, 1000);

	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 5000), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 2, 5500), 0);
	/* a duplicate while now < t + ttl */
	ck_assert_int_eq(bq_dedupe_contains(d, 1, 5999), 1);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 5999), 1);
	ck_assert_int_eq(bq_dedupe_contains(d, 1, 6000), 0);
	ck_assert_int_eq(bq_dedupe_contains(d, 2, 6000), 1);
	/* new again at t + ttl (and its time restarts) */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 6000), 0);
	ck_assert_uint_eq(bq_dedupe_size(d), 2);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 6999), 1);
	/* key 2 expired lazily when something is inserted */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 3, 6500), 0);
	ck_assert_uint_eq(bq_dedupe_size(d), 2);
	ck_assert_int_eq(bq_dedupe_contains(d, 2, 6500), 0);
	/* everything gone much later */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 4, 100000), 0);
	ck_assert_uint_eq(bq_dedupe_size(d), 1);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 0);
	ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	bq_dedupe_free(d);
}
END_TEST

START_TEST(test_no_ttl)
{
	struct bq_dedupe *d = bq_dedupe_new(4, 0);

	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 0), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, UINT64_MAX), 1);
	bq_dedupe_free(d);
}
END_TEST

/* A clock that steps back never makes entries expire early or crash the table. */
START_TEST(test_clock_backwards)
{
	struct bq_dedupe *d = bq_dedupe_new(8, 100);

	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 1000), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 2, 500), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 1, 400), 1);
	/* key 2 (inserted "at 500") expires at 600 although key 1 before it has not */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 2, 650), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 2, 700), 1);
	ck_assert_uint_eq(bq_dedupe_size(d), 2);
	ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	/* fill well past capacity: dead ring records are recycled, not counted as evictions */
	for (uint64_t k = 10; k < 18; k++) {
		ck_assert_int_eq(bq_dedupe_check_insert(d, k, 700), 0);
		ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	}
	ck_assert_uint_eq(bq_dedupe_size(d), 8);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 2);
	bq_dedupe_free(d);
}
END_TEST

START_TEST(test_eviction_when_full)
{
	struct bq_dedupe *d = bq_dedupe_new(4, 60000);

	for (uint64_t k = 1; k <= 4; k++) {
		ck_assert_int_eq(bq_dedupe_check_insert(d, k, k), 0);
	}
	ck_assert_uint_eq(bq_dedupe_size(d), 4);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 0);
	ck_assert_int_eq(bq_dedupe_check_insert(d, 5, 5), 0);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 1);
	ck_assert_uint_eq(bq_dedupe_size(d), 4);
	/* the oldest went */
	ck_assert_int_eq(bq_dedupe_contains(d, 1, 5), 0);
	for (uint64_t k = 2; k <= 5; k++) {
		ck_assert_int_eq(bq_dedupe_contains(d, k, 5), 1);
	}
	/* a duplicate does not evict */
	ck_assert_int_eq(bq_dedupe_check_insert(d, 3, 6), 1);
	ck_assert_uint_eq(bq_dedupe_evictions(d), 1);
	for (uint64_t k = 100; k < 200; k++) {
		ck_assert_int_eq(bq_dedupe_check_insert(d, k, 10), 0);
	}
	ck_assert_uint_eq(bq_dedupe_evictions(d), 101);
	ck_assert_uint_eq(bq_dedupe_size(d), 4);
	for (uint64_t k = 196; k < 200; k++) {
		ck_assert_int_eq(bq_dedupe_contains(d, k, 10), 1);
	}
	ck_assert_int_eq(bq_dedupe_contains(d, 195, 10), 0);
	ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	bq_dedupe_free(d);
}
END_TEST

/* ---- reference model: a FIFO array searched linearly ------------------------------- */

struct ref {
	uint64_t *key, *ts; /* a ring: oldest at head */
	size_t cap, head, len;
	uint64_t ttl, evictions;
};

static size_t ref_at(const struct ref *r, size_t i)
{
	return (r->head + i) % r->cap;
}

static int ref_expired(const struct ref *r, uint64_t ts, uint64_t now)
{
	return r->ttl && now >= ts && now - ts >= r->ttl;
}

static void ref_pop(struct ref *r)
{
	r->head = (r->head + 1) % r->cap;
	r->len--;
}

static int ref_contains(const struct ref *r, uint64_t key, uint64_t now)
{
	for (size_t i = 0; i < r->len; i++) {
		size_t at = ref_at(r, i);

		if (r->key[at] == key) {
			return !ref_expired(r, r->ts[at], now);
		}
	}
	return 0;
}

static int ref_check_insert(struct ref *r, uint64_t key, uint64_t now)
{
	while (r->len && ref_expired(r, r->ts[r->head], now)) {
		ref_pop(r);
	}
	if (ref_contains(r, key, now)) {
		return 1;
	}
	if (r->len == r->cap) {
		ref_pop(r);
		r->evictions++;
	}
	r->key[ref_at(r, r->len)] = key;
	r->ts[ref_at(r, r->len)] = now;
	r->len++;
	return 0;
}

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so a failure replays */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

struct cfg {
	size_t cap;
	uint64_t ttl;
	uint64_t domain; /* keys drawn from [0, domain) so that duplicates happen */
	uint64_t max_step; /* time advances 0..max_step per operation */
	int ops;
	int check_every; /* run the self-check every N operations */
};

static const struct cfg cfgs[] = {
	{ 1, 50, 4, 10, 20000, 1 },
	{ 3, 40, 10, 5, 40000, 1 },
	{ 4, 1000, 64, 3, 40000, 1 },     /* table of 8: long clusters wrapping around */
	{ 7, 0, 20, 1, 40000, 1 },        /* no ttl: eviction only */
	{ 64, 500, 200, 20, 100000, 97 }, /* the 100,000 random inserts */
	{ 1000, 2000, 3000, 3, 100000, 997 },
	{ 1000, 0, UINT64_MAX, 1, 50000, 4999 }, /* all distinct: steady eviction */
};

START_TEST(test_against_reference)
{
	const struct cfg *c = &cfgs[_i];
	struct bq_dedupe *d = bq_dedupe_new(c->cap, c->ttl);
	struct ref r = { .cap = c->cap, .ttl = c->ttl };
	uint64_t now = 1000;
	int dups = 0;

	ck_assert_ptr_nonnull(d);
	r.key = calloc(c->cap, sizeof(*r.key));
	r.ts = calloc(c->cap, sizeof(*r.ts));
	rng_state = 0x9e3779b97f4a7c15ULL + (uint64_t)_i;
	for (int op = 0; op < c->ops; op++) {
		uint64_t key = c->domain == UINT64_MAX ? rng() : rng() % c->domain;
		uint64_t probe = c->domain == UINT64_MAX ? rng() : rng() % c->domain;
		int want, got;

		now += rng() % (c->max_step + 1);
		want = ref_check_insert(&r, key, now);
		got = bq_dedupe_check_insert(d, key, now);
		/* plain ifs: a passing ck_assert costs a write, and this loop runs 400,000 times */
		if (got != want) {
			ck_abort_msg("cfg %d op %d key %llu: got %d want %d", _i, op,
				     (unsigned long long)key, got, want);
		}
		dups += got;
		if (bq_dedupe_contains(d, probe, now) != ref_contains(&r, probe, now) ||
		    bq_dedupe_size(d) != r.len || bq_dedupe_evictions(d) != r.evictions) {
			ck_abort_msg("cfg %d op %d: contains/size/evictions differ (size %zu/%zu, "
				     "evictions %llu/%llu)", _i, op, bq_dedupe_size(d), r.len,
				     (unsigned long long)bq_dedupe_evictions(d),
				     (unsigned long long)r.evictions);
		}
		if (op % c->check_every == 0 && bq__dedupe_selfcheck(d) != 0) {
			ck_abort_msg("cfg %d op %d: table invariants broken", _i, op);
		}
	}
	ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
	/* every key the reference holds is found, and only those */
	for (size_t i = 0; i < r.len; i++) {
		size_t at = ref_at(&r, i);

		ck_assert_int_eq(bq_dedupe_contains(d, r.key[at], now),
				 !ref_expired(&r, r.ts[at], now));
	}
	if (c->domain != UINT64_MAX) {
		ck_assert_int_gt(dups, 0); /* the run exercised the duplicate path */
	}
	free(r.key);
	free(r.ts);
	bq_dedupe_free(d);
}
END_TEST

/*
 * Deletion: keys expire and are evicted from the middle of probe clusters. With a
 * table of 8 slots for 4 keys and 1000 keys cycling through, every cluster shape and
 * wrap-around occurs; the self-check walks every probe chain after each step.
 */
START_TEST(test_deletion_keeps_chains_intact)
{
	for (size_t cap = 1; cap <= 9; cap++) {
		struct bq_dedupe *d = bq_dedupe_new(cap, 30);
		uint64_t now = 0;

		rng_state = 12345 + cap;
		for (int op = 0; op < 30000; op++) {
			uint64_t key = rng() % 1000;

			now += rng() % 4;
			bq_dedupe_check_insert(d, key, now);
			if (bq__dedupe_selfcheck(d) != 0) {
				ck_abort_msg("cap %zu op %d: table invariants broken", cap, op);
			}
		}
		/* Once everything has expired, a new insert drains the table to one key. */
		now += 1000;
		ck_assert_int_eq(bq_dedupe_check_insert(d, 5000, now), 0);
		ck_assert_uint_eq(bq_dedupe_size(d), 1);
		ck_assert_int_eq(bq__dedupe_selfcheck(d), 0);
		bq_dedupe_free(d);
	}
}
END_TEST

START_TEST(test_key_mixing)
{
	const uint8_t o1[6] = { 0xd8, 0x3a, 0xdd, 0x03, 0x1e, 0x77 };
	const uint8_t o2[6] = { 0xd8, 0x3a, 0xdd, 0x03, 0x1e, 0x76 };
	const uint8_t o3[6] = { 0x58, 0x3a, 0xdd, 0x03, 0x1e, 0x77 };
	struct bq_dedupe *d = bq_dedupe_new(200000, 0);
	int collisions = 0;

	ck_assert_uint_eq(bq_dedupe_key(o1, 7, 0), bq_dedupe_key(o1, 7, 0));
	ck_assert_uint_ne(bq_dedupe_key(o1, 7, 0), bq_dedupe_key(o2, 7, 0));
	ck_assert_uint_ne(bq_dedupe_key(o1, 7, 0), bq_dedupe_key(o3, 7, 0));
	ck_assert_uint_ne(bq_dedupe_key(o1, 7, 0), bq_dedupe_key(o1, 8, 0));
	ck_assert_uint_ne(bq_dedupe_key(o1, 7, 0), bq_dedupe_key(o1, 7, 1));
	ck_assert_uint_ne(bq_dedupe_key(o1, 1ULL << 63, 0), bq_dedupe_key(o1, 0, 0));
	/* (msg_id, attempt) pairs that would collide under a naive xor do not */
	ck_assert_uint_ne(bq_dedupe_key(o1, 1, 0), bq_dedupe_key(o1, 0, 1));
	/* 160,000 structured inputs, no collision (the set itself is the checker) */
	for (uint64_t id = 0; id < 20000; id++) {
		for (uint32_t att = 0; att < 4; att++) {
			collisions += bq_dedupe_check_insert(d, bq_dedupe_key(o1, id, att), 0);
			collisions += bq_dedupe_check_insert(d, bq_dedupe_key(o2, id, att), 0);
		}
	}
	ck_assert_int_eq(collisions, 0);
	ck_assert_uint_eq(bq_dedupe_size(d), 160000);
	bq_dedupe_free(d);
}
END_TEST

START_TEST(test_new_limits_and_oom)
{
	struct bq_dedupe *d;

	ck_assert_ptr_null(bq_dedupe_new(0, 10));
	ck_assert_ptr_null(bq_dedupe_new((size_t)1 << 40, 10));
	bq_dedupe_free(NULL);
	for (unsigned long n = 1; n <= 3; n++) {
		bq_alloc_fail_nth(n);
		ck_assert_ptr_null(bq_dedupe_new(100, 10));
	}
	bq_alloc_fail_nth(4);
	d = bq_dedupe_new(100, 10);
	bq_alloc_fail_nth(0);
	ck_assert_ptr_nonnull(d);
	bq_dedupe_free(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dedupe");
	TCase *tc = tcase_create("dedupe");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_no_ttl);
	tcase_add_test(tc, test_clock_backwards);
	tcase_add_test(tc, test_eviction_when_full);
	tcase_add_loop_test(tc, test_against_reference, 0, (int)(sizeof(cfgs) / sizeof(cfgs[0])));
	tcase_add_test(tc, test_deletion_keeps_chains_intact);
	tcase_add_test(tc, test_key_mixing);
	tcase_add_test(tc, test_new_limits_and_oom);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
