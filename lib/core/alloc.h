/* SPDX-License-Identifier: MIT */
/*
 * alloc: every allocation in blueq goes through these wrappers so that tests can
 * fail the Nth allocation and walk every error path (curl's torture mode, SQLite's
 * OOM tests).
 *
 * The fail-after counter is the library's single piece of process-wide state; it is
 * a test hook only and never changes behaviour unless a test arms it.
 */
#ifndef BQ_CORE_ALLOC_H
#define BQ_CORE_ALLOC_H

#include <stddef.h>

/* Return NULL on failure (or on an injected failure). Caller owns the result. */
void *bq_malloc(size_t n);
void *bq_calloc(size_t nmemb, size_t size);
void *bq_realloc(void *p, size_t n);
char *bq_strdup(const char *s);
char *bq_strndup(const char *s, size_t n);
void bq_free(void *p);

/*
 * Test hook: make the nth allocation from now fail (n >= 1) and every later one
 * succeed again. n == 0 disarms. Not thread-safe; tests arm it on one thread.
 */
void bq_alloc_fail_nth(unsigned long n);
/* Number of allocation calls since start (for tests that sweep N). */
unsigned long bq_alloc_calls(void);

#endif
