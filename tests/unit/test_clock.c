/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <time.h>

#include "core/clock.h"

START_TEST(test_system_monotonic)
{
	const struct bq_clock *c = bq_clock_system();
	uint64_t prev = bq_clock_now_us(c);

	ck_assert_ptr_eq(c, bq_clock_system());
	for (int i = 0; i < 100000; i++) {
		uint64_t now = bq_clock_now_us(c);

		ck_assert_uint_ge(now, prev);
		prev = now;
	}
}
END_TEST

START_TEST(test_system_advances)
{
	const struct bq_clock *c = bq_clock_system();
	struct timespec d = { 0, 20 * 1000 * 1000 };
	uint64_t t0 = bq_clock_now_us(c), t1, ms0, ms1;

	ms0 = bq_clock_now_ms(c);
	nanosleep(&d, NULL);
	t1 = bq_clock_now_us(c);
	ms1 = bq_clock_now_ms(c);
	ck_assert_uint_ge(t1 - t0, 20000);
	ck_assert_uint_lt(t1 - t0, 2000000);
	ck_assert_uint_ge(ms1 - ms0, 19);
	ck_assert_uint_lt(ms1 - ms0, 2000);
	/* The monotonic clock counts from boot, not from the epoch. */
	ck_assert_uint_lt(t1, bq_wall_ms() * 1000);
}
END_TEST

START_TEST(test_wall_ms)
{
	uint64_t w = bq_wall_ms();
	uint64_t t = (uint64_t)time(NULL) * 1000;

	ck_assert_uint_ge(w + 2000, t);
	ck_assert_uint_le(w, t + 2000);
	/* Past 2020-01-01: a units mistake (s vs ms) would fail here. */
	ck_assert_uint_gt(w, 1577836800000ULL);
	ck_assert_uint_lt(w, 4102444800000ULL);
}
END_TEST

START_TEST(test_fake_clock)
{
	struct bq_fake_clock f, g;
	const struct bq_clock *c = &f.clock;

	bq_fake_clock_init(&f, 1000);
	bq_fake_clock_init(&g, 5);
	ck_assert_uint_eq(bq_clock_now_us(c), 1000);
	ck_assert_uint_eq(bq_clock_now_ms(c), 1);
	bq_fake_clock_advance(&f, 2500);
	ck_assert_uint_eq(bq_clock_now_us(c), 3500);
	ck_assert_uint_eq(bq_clock_now_ms(c), 3);
	bq_fake_clock_advance(&f, 0);
	ck_assert_uint_eq(bq_clock_now_us(c), 3500);
	/* Two fakes are independent. */
	ck_assert_uint_eq(bq_clock_now_us(&g.clock), 5);
	bq_fake_clock_advance(&g, 10ULL * 24 * 3600 * 1000000);
	ck_assert_uint_eq(bq_clock_now_us(&g.clock), 5 + 10ULL * 24 * 3600 * 1000000);
	ck_assert_uint_eq(bq_clock_now_us(c), 3500);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("clock");
	TCase *tc = tcase_create("clock");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_system_monotonic);
	tcase_add_test(tc, test_system_advances);
	tcase_add_test(tc, test_wall_ms);
	tcase_add_test(tc, test_fake_clock);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
