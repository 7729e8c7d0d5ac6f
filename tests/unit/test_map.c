/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/map.h"

static char *key_of(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "user-%d", i);
	return buf;
}

START_TEST(test_set_get_replace)
{
	struct bq_map *m = bq_map_new();
	int a = 1, b = 2;

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(bq_map_set(m, "alice", 5, &a), 0);
	ck_assert_ptr_eq(bq_map_get(m, "alice", 5), &a);
	ck_assert_ptr_null(bq_map_get(m, "alic", 4));
	ck_assert_int_eq(bq_map_set(m, "alice", 5, &b), 0);
	ck_assert_ptr_eq(bq_map_get(m, "alice", 5), &b);
	ck_assert_uint_eq(bq_map_size(m), 1);
	ck_assert_ptr_eq(bq_map_remove(m, "alice", 5), &b);
	ck_assert_ptr_null(bq_map_get(m, "alice", 5));
	ck_assert_ptr_null(bq_map_remove(m, "alice", 5));
	ck_assert_uint_eq(bq_map_size(m), 0);
	bq_map_free(m);
}
END_TEST

/* Random inserts and removals cross-checked against a plain array. */
START_TEST(test_against_reference)
{
	enum { N = 20000 };
	static int present[N];
	struct bq_map *m = bq_map_new();
	char k[32];
	size_t count = 0;

	srand(7);
	memset(present, 0, sizeof(present));
	for (int step = 0; step < 200000; step++) {
		int i = rand() % N;

		key_of(i, k, sizeof(k));
		if (rand() % 3) {
			ck_assert_int_eq(bq_map_set(m, k, strlen(k), &present[i]), 0);
			count += !present[i];
			present[i] = 1;
		} else {
			void *v = bq_map_remove(m, k, strlen(k));

			ck_assert_ptr_eq(v, present[i] ? &present[i] : NULL);
			count -= present[i];
			present[i] = 0;
		}
	}
	ck_assert_uint_eq(bq_map_size(m), count);
	for (int i = 0; i < N; i++) {
		key_of(i, k, sizeof(k));
		ck_assert_ptr_eq(bq_map_get(m, k, strlen(k)), present[i] ? &present[i] : NULL);
	}
	bq_map_free(m);
}
END_TEST

START_TEST(test_iterate_visits_each_once)
{
	struct bq_map *m = bq_map_new();
	static int vals[500];
	int seen[500] = { 0 };
	size_t pos = 0, n = 0;
	const char *key;
	size_t key_len;
	void *v;
	char k[32];

	for (int i = 0; i < 500; i++) {
		key_of(i, k, sizeof(k));
		ck_assert_int_eq(bq_map_set(m, k, strlen(k), &vals[i]), 0);
	}
	while ((v = bq_map_next(m, &pos, &key, &key_len))) {
		int i = (int)((int *)v - vals);

		ck_assert_int_ge(i, 0);
		ck_assert_int_lt(i, 500);
		key_of(i, k, sizeof(k));
		ck_assert_uint_eq(key_len, strlen(k));
		ck_assert_int_eq(memcmp(key, k, key_len), 0);
		seen[i]++;
		n++;
	}
	ck_assert_uint_eq(n, 500);
	for (int i = 0; i < 500; i++) {
		ck_assert_int_eq(seen[i], 1);
	}
	bq_map_free(m);
}
END_TEST

/* Every allocation failure during growth leaves the map intact and usable. */
START_TEST(test_alloc_failure_leaves_map_intact)
{
	struct bq_map *m = bq_map_new();
	static int v;
	char k[32];
	int failures = 0;

	for (int i = 0; i < 100; i++) {
		key_of(i, k, sizeof(k));
		bq_alloc_fail_nth(1);
		if (bq_map_set(m, k, strlen(k), &v) < 0) {
			failures++;
			ck_assert_ptr_null(bq_map_get(m, k, strlen(k)));
			ck_assert_int_eq(bq_map_set(m, k, strlen(k), &v), 0);
		}
		bq_alloc_fail_nth(0);
	}
	ck_assert_int_eq(failures, 100);
	ck_assert_uint_eq(bq_map_size(m), 100);
	for (int i = 0; i < 100; i++) {
		key_of(i, k, sizeof(k));
		ck_assert_ptr_eq(bq_map_get(m, k, strlen(k)), &v);
	}
	bq_map_free(m);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("map");
	TCase *tc = tcase_create("map");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_set_get_replace);
	tcase_add_test(tc, test_against_reference);
	tcase_add_test(tc, test_iterate_visits_each_once);
	tcase_add_test(tc, test_alloc_failure_leaves_map_intact);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
