/* SPDX-License-Identifier: MIT */
#include <check.h>

#include "core/backoff.h"

#define BASE 100
#define CAP 30000

/* Every draw is in [base, cap] and never above 3x the previous one (or base). */
START_TEST(test_bounds)
{
	struct bq_backoff b;
	uint32_t prev = BASE;
	int hit_cap = 0, hit_low = 0;

	bq_backoff_init(&b, BASE, CAP, 42);
	for (int i = 0; i < 10000; i++) {
		uint32_t v = bq_backoff_next(&b);
		uint32_t hi = prev * 3 > BASE ? prev * 3 : BASE;

		ck_assert_uint_ge(v, BASE);
		ck_assert_uint_le(v, CAP);
		ck_assert_uint_le(v, hi);
		hit_cap += v == CAP;
		hit_low += v < 3 * BASE;
		prev = v;
		if (i % 97 == 96) {
			bq_backoff_reset(&b);
			prev = BASE;
		}
	}
	/* Both ends are actually reached, so the bounds above were exercised. */
	ck_assert_int_gt(hit_cap, 100);
	ck_assert_int_gt(hit_low, 100);
}
END_TEST

/*
 * Averaged over many clients, the k-th delay grows, then levels off: decorrelated jitter
 * keeps spreading clients even at the cap, so the plateau is about half the cap, with a
 * good share of draws sitting exactly at it.
 */
START_TEST(test_mean_grows_then_saturates)
{
	enum { CLIENTS = 2000, STEPS = 60 };
	static double mean[STEPS];
	int at_cap = 0, late = 0;

	for (int k = 0; k < STEPS; k++) {
		mean[k] = 0;
	}
	for (int c = 0; c < CLIENTS; c++) {
		struct bq_backoff b;

		bq_backoff_init(&b, BASE, CAP, (uint64_t)c + 1);
		for (int k = 0; k < STEPS; k++) {
			uint32_t v = bq_backoff_next(&b);

			mean[k] += (double)v / CLIENTS;
			if (k >= 30) {
				at_cap += v == CAP;
				late++;
			}
		}
	}
	/* First draw is uniform in [100, 300]. */
	ck_assert(mean[0] > 180 && mean[0] < 220);
	for (int k = 1; k < 8; k++) {
		ck_assert_msg(mean[k] > mean[k - 1] * 1.2, "step %d: %f after %f", k, mean[k],
			      mean[k - 1]);
	}
	for (int k = 30; k < STEPS; k++) {
		ck_assert_msg(mean[k] > CAP * 0.4 && mean[k] < CAP * 0.55, "step %d: %f", k,
			      mean[k]);
		ck_assert_msg(mean[k] > mean[30] * 0.9 && mean[k] < mean[30] * 1.1, "step %d: %f",
			      k, mean[k]);
	}
	ck_assert_msg(at_cap > late / 10, "%d of %d at the cap", at_cap, late);
}
END_TEST

START_TEST(test_reset)
{
	struct bq_backoff b;

	bq_backoff_init(&b, BASE, CAP, 7);
	for (int round = 0; round < 200; round++) {
		uint32_t v;

		for (int i = 0; i < 30; i++) {
			bq_backoff_next(&b);
		}
		bq_backoff_reset(&b);
		v = bq_backoff_next(&b);
		ck_assert_uint_ge(v, BASE);
		ck_assert_uint_le(v, 3 * BASE);
	}
}
END_TEST

START_TEST(test_same_seed_same_sequence)
{
	struct bq_backoff a, b, c;
	int differ = 0;

	bq_backoff_init(&a, BASE, CAP, 12345);
	bq_backoff_init(&b, BASE, CAP, 12345);
	bq_backoff_init(&c, BASE, CAP, 12346);
	for (int i = 0; i < 1000; i++) {
		uint32_t va = bq_backoff_next(&a);

		ck_assert_uint_eq(va, bq_backoff_next(&b));
		differ += va != bq_backoff_next(&c);
		if (i % 50 == 49) {
			bq_backoff_reset(&a);
			bq_backoff_reset(&b);
			bq_backoff_reset(&c);
		}
	}
	ck_assert_int_gt(differ, 500);
}
END_TEST

/* Seed 0 draws a random seed: two such clients do not march in step. */
START_TEST(test_random_seed)
{
	struct bq_backoff a, b;
	int same = 0;

	bq_backoff_init(&a, BASE, CAP, 0);
	bq_backoff_init(&b, BASE, CAP, 0);
	ck_assert_uint_ne(a.rng, 0);
	ck_assert_uint_ne(a.rng, b.rng);
	for (int i = 0; i < 100; i++) {
		same += bq_backoff_next(&a) == bq_backoff_next(&b);
	}
	ck_assert_int_lt(same, 50);
}
END_TEST

START_TEST(test_degenerate_parameters)
{
	struct bq_backoff b;

	/* cap == base: always base. */
	bq_backoff_init(&b, 500, 500, 1);
	for (int i = 0; i < 100; i++) {
		ck_assert_uint_eq(bq_backoff_next(&b), 500);
	}
	/* cap below base is raised to base. */
	bq_backoff_init(&b, 500, 10, 1);
	for (int i = 0; i < 100; i++) {
		ck_assert_uint_eq(bq_backoff_next(&b), 500);
	}
	/* base 0 would pin every delay at 0; it becomes 1 and still grows. */
	bq_backoff_init(&b, 0, 1000, 1);
	{
		uint32_t max = 0;

		for (int i = 0; i < 200; i++) {
			uint32_t v = bq_backoff_next(&b);

			ck_assert_uint_ge(v, 1);
			ck_assert_uint_le(v, 1000);
			max = v > max ? v : max;
		}
		ck_assert_uint_gt(max, 500);
	}
	/* A huge cap: prev * 3 must not wrap in 32 bits. */
	bq_backoff_init(&b, 1000, UINT32_MAX, 3);
	{
		uint32_t prev = 1000;

		for (int i = 0; i < 1000; i++) {
			uint32_t v = bq_backoff_next(&b);
			uint64_t hi = (uint64_t)prev * 3;

			ck_assert_uint_ge(v, 1000);
			ck_assert_uint_le(v, hi < 1000 ? 1000 : hi);
			prev = v;
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc = tcase_create("backoff");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_mean_grows_then_saturates);
	tcase_add_test(tc, test_reset);
	tcase_add_test(tc, test_same_seed_same_sequence);
	tcase_add_test(tc, test_random_seed);
	tcase_add_test(tc, test_degenerate_parameters);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
