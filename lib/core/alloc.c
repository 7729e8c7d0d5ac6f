/* SPDX-License-Identifier: MIT */
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

/*
 * The only process-wide state in the library, and only a test hook: counting is one
 * increment, and the countdown stays 0 (disarmed) unless a test arms it.
 */
static unsigned long alloc_calls;
static unsigned long fail_countdown;

/* Count one allocation call; true when this one must fail. */
static int alloc_should_fail(void)
{
	alloc_calls++;
	if (fail_countdown == 0) {
		return 0;
	}
	return --fail_countdown == 0;
}

/*
 * Zero-size requests are rounded up to one byte so NULL always means failure; callers
 * never have to tell "allocated nothing" from "out of memory".
 */
void *bq_malloc(size_t n)
{
	if (alloc_should_fail()) {
		return NULL;
	}
	return malloc(n ? n : 1);
}

void *bq_calloc(size_t nmemb, size_t size)
{
	size_t total;

	if (alloc_should_fail()) {
		return NULL;
	}
	if (__builtin_mul_overflow(nmemb, size, &total)) {
		return NULL;
	}
	return calloc(total ? nmemb : 1, total ? size : 1);
}

/* On failure p is left untouched and still owned by the caller, as with realloc(). */
void *bq_realloc(void *p, size_t n)
{
	if (alloc_should_fail()) {
		return NULL;
	}
	return realloc(p, n ? n : 1);
}

char *bq_strdup(const char *s)
{
	size_t n = strlen(s);
	char *d = bq_malloc(n + 1);

	if (!d) {
		return NULL;
	}
	memcpy(d, s, n + 1);
	return d;
}

char *bq_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d = bq_malloc(len + 1);

	if (!d) {
		return NULL;
	}
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

void bq_free(void *p)
{
	free(p);
}

void bq_alloc_fail_nth(unsigned long n)
{
	fail_countdown = n;
}

unsigned long bq_alloc_calls(void)
{
	return alloc_calls;
}
