/* SPDX-License-Identifier: MIT */
#include "core/proc.h"

#include <sys/resource.h>

uint64_t bq_proc_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		/* A refusal leaves the old limit, which getrlimit then reports. */
		(void)setrlimit(RLIMIT_NOFILE, &rl);
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	return (uint64_t)rl.rlim_cur;
}
