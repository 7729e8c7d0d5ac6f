/* SPDX-License-Identifier: MIT */
/* The connect gate's token bucket (GCRA reservations) and the per-second peak meter. */
#include <check.h>
#include <stdint.h>

#include "manager/ratelimit.h"

#define S 1000000ull

START_TEST(test_unlimited)
{
	struct bq_ratelimit rl;

	bq_ratelimit_init(&rl, 0, 0);
	for (int i = 0; i < 1000; i++) {
		ck_assert_uint_eq(bq_ratelimit_reserve(&rl, 5), 0);
	}
	ck_assert(bq_ratelimit_try(&rl, 5));
}
END_TEST

START_TEST(test_burst_then_spaced)
{
	struct bq_ratelimit rl;
	uint64_t now = 10 * S;

	bq_ratelimit_init(&rl, 100, 5); /* one per 10 ms after a burst of 5 */
	for (int i = 0; i < 5; i++) {
		ck_assert_uint_eq(bq_ratelimit_reserve(&rl, now), 0);
	}
	/* Reservations are distinct, evenly spaced slots. */
	ck_assert_uint_eq(bq_ratelimit_reserve(&rl, now), 10000);
	ck_assert_uint_eq(bq_ratelimit_reserve(&rl, now), 20000);
	ck_assert_uint_eq(bq_ratelimit_reserve(&rl, now), 30000);
	/* try refuses while slots are taken ahead, and takes nothing. */
	ck_assert(!bq_ratelimit_try(&rl, now));
	ck_assert(!bq_ratelimit_try(&rl, now + 39999));
	ck_assert(bq_ratelimit_try(&rl, now + 40000));
}
END_TEST

START_TEST(test_idle_does_not_bank)
{
	struct bq_ratelimit rl;
	uint64_t now = S;
	int free_now = 0;

	bq_ratelimit_init(&rl, 10, 3);
	/* An hour idle still allows only the burst at once. */
	now += 3600 * S;
	for (int i = 0; i < 10; i++) {
		if (bq_ratelimit_reserve(&rl, now) == 0) {
			free_now++;
		}
	}
	ck_assert_int_eq(free_now, 3);
}
END_TEST

/* Any 1 s window holds at most rate + burst events when everyone waits their slot. */
START_TEST(test_bound_over_window)
{
	struct bq_ratelimit rl;
	struct bq_rate_meter m;
	uint64_t t0 = 5 * S;
	uint64_t due[3000];

	bq_ratelimit_init(&rl, 1000, 50);
	bq_rate_meter_init(&m);
	for (int i = 0; i < 3000; i++) {
		due[i] = t0 + bq_ratelimit_reserve(&rl, t0);
	}
	for (int i = 0; i < 3000; i++) {
		ck_assert(i == 0 || due[i] >= due[i - 1]);
		bq_rate_meter_hit(&m, due[i]);
	}
	ck_assert_uint_eq(m.total, 3000);
	ck_assert_uint_le(m.peak, 1050);
	ck_assert_uint_ge(m.peak, 1000);
	/* The last of 3000 waits about (3000 - 50) ms. */
	ck_assert_uint_eq(due[2999] - t0, 2950 * 1000ull);
}
END_TEST

START_TEST(test_meter_windows)
{
	struct bq_rate_meter m;

	bq_rate_meter_init(&m);
	for (int i = 0; i < 7; i++) {
		bq_rate_meter_hit(&m, S + (uint64_t)i * 1000);
	}
	ck_assert_uint_eq(m.peak, 7);
	bq_rate_meter_hit(&m, 2 * S + 500000); /* a new window */
	ck_assert_uint_eq(m.count, 1);
	ck_assert_uint_eq(m.peak, 7);
	ck_assert_uint_eq(m.total, 8);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_unlimited);
	tcase_add_test(tc, test_burst_then_spaced);
	tcase_add_test(tc, test_idle_does_not_bank);
	tcase_add_test(tc, test_bound_over_window);
	tcase_add_test(tc, test_meter_windows);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
