/* SPDX-License-Identifier: MIT */
/* Helpers shared by the unit tests. */
#ifndef BQ_TESTUTIL_H
#define BQ_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>

struct bq_loop;

/* A fresh private directory under $TMPDIR (removed by the OS; tests may rm it). */
const char *bq_test_tmpdir(void);

/*
 * Run the loop until done(user_data) is true or timeout_ms of real time pass.
 * Returns true if done() became true.
 */
bool bq_test_run_until(struct bq_loop *loop, bool (*done)(void *user_data), void *user_data,
		       int timeout_ms);

/* Parse "0a 1b ff" style hex (spaces ignored) into out; returns bytes or -1. */
int bq_test_hex(const char *hex, unsigned char *out, size_t cap);

#endif
