/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loop/loop.h"

const char *bq_test_tmpdir(void)
{
	static char path[256];
	const char *base = getenv("TMPDIR");

	snprintf(path, sizeof(path), "%s/bqtest.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(path)) {
		return NULL;
	}
	return path;
}

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool bq_test_run_until(struct bq_loop *loop, bool (*done)(void *user_data), void *user_data,
		       int timeout_ms)
{
	long long end = real_ms() + timeout_ms;

	while (!done(user_data)) {
		long long left = end - real_ms();

		if (left <= 0) {
			return false;
		}
		bq_loop_run_once(loop, left > 50 ? 50 : (int)left);
	}
	return true;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

int bq_test_hex(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;

	for (; *hex; hex++) {
		int v;

		if (*hex == ' ' || *hex == '\n' || *hex == '\t' || *hex == '|') {
			continue;
		}
		v = hexval((unsigned char)*hex);
		if (v < 0) {
			return -1;
		}
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= cap) {
			return -1;
		}
		out[n++] = (unsigned char)(hi << 4 | v);
		hi = -1;
	}
	return hi < 0 ? (int)n : -1;
}
