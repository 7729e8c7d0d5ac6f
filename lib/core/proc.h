/* SPDX-License-Identifier: MIT */
/*
 * proc: process-wide set-up every daemon does the same way at start.
 */
#ifndef BQ_CORE_PROC_H
#define BQ_CORE_PROC_H

#include <stdint.h>

/*
 * Raise the soft RLIMIT_NOFILE to the hard limit (thousands of links need thousands of
 * descriptors; the default soft limit is 1024) and return the soft limit now in force,
 * 0 if it cannot be read. Daemons report it in their status.
 */
uint64_t bq_proc_raise_nofile(void);

#endif
