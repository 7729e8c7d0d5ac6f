/* SPDX-License-Identifier: MIT */
/* Process set-up: the descriptor limit is raised to the hard limit and reported. */
#include <check.h>
#include <sys/resource.h>

#include "core/proc.h"

START_TEST(test_raise_nofile)
{
	struct rlimit rl, now;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max > 64) {
		/* Start low, as a daemon under the default soft limit would. */
		struct rlimit low = {.rlim_cur = 64, .rlim_max = rl.rlim_max};

		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	}
	ck_assert_uint_eq(bq_proc_raise_nofile(), (uint64_t)rl.rlim_max);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &now), 0);
	ck_assert_uint_eq(now.rlim_cur, rl.rlim_max);
	/* Already at the hard limit: unchanged, and said so. */
	ck_assert_uint_eq(bq_proc_raise_nofile(), (uint64_t)rl.rlim_max);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_raise_nofile);
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
