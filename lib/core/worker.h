/* SPDX-License-Identifier: MIT */
/*
 * worker: a small fixed pool of threads for blocking work (Argon2id hashing, the odd
 * slow system call) whose results are posted back to the loop thread, so the loop
 * itself never blocks (libuv's uv_queue_work).
 *
 * Threading: every function here except bq_worker_get_stats is for the loop thread only,
 * and so is every done callback. A work function runs on a pool thread: it must touch nothing but
 * what its user_data gives it, must not allocate through bq_malloc (the test hook's counter has no
 * lock), must not log (the logger is not thread-safe) and must not use the loop. Pool threads block
 * every signal: the loop takes signals through signalfd.
 *
 * Contract (libuv): when bq_worker_submit returns 0, done(user_data, cancelled) runs
 * exactly once, on the loop thread: with cancelled=false after work(user_data) has
 * returned, or with cancelled=true from bq_worker_free if work never started. When it
 * fails, neither work nor done ever runs and user_data still belongs to the caller.
 * Done callbacks run in the order the work finished.
 */
#ifndef BQ_CORE_WORKER_H
#define BQ_CORE_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"

struct bq_worker;

#define BQ_WORKER_DEFAULT_THREADS 2u
#define BQ_WORKER_MAX_THREADS 16u
#define BQ_WORKER_DEFAULT_MAX_QUEUED 1024u

/* Runs on a pool thread. */
typedef void (*bq_work_fn)(void *user_data);
/* Runs on the loop thread (or the thread calling bq_worker_free), exactly once per job. */
typedef void (*bq_work_done_cb)(void *user_data, bool cancelled);

struct bq_worker_stats {
	size_t queued;	    /* submitted, not yet taken by a thread */
	size_t running;	    /* work functions running now */
	uint64_t completed; /* work functions that have returned (done may still be pending) */
	uint64_t cancelled; /* jobs dropped by bq_worker_free before they started */
	uint64_t rejected;  /* submits refused with -EAGAIN */
};

/*
 * threads: 1..BQ_WORKER_MAX_THREADS, 0 = BQ_WORKER_DEFAULT_THREADS. max_queued: jobs
 * that may wait for a thread (running ones do not count), 0 = BQ_WORKER_DEFAULT_MAX_QUEUED.
 * loop and log are borrowed (log may be NULL) and must outlive the pool.
 * NULL on a bad argument, out of memory, or when a thread cannot be started.
 */
struct bq_worker *bq_worker_new(struct bq_loop *loop, unsigned threads, size_t max_queued,
				struct bq_log *log);

/*
 * Queue work(user_data) for a pool thread. 0, or: -EINVAL (w or work or done NULL),
 * -ESHUTDOWN (bq_worker_free is running, e.g. from a cancelled job's done), -EAGAIN
 * (max_queued jobs are already waiting), -ENOMEM. user_data is borrowed until done runs.
 */
int bq_worker_submit(struct bq_worker *w, bq_work_fn work, bq_work_done_cb done, void *user_data);

/* Takes the pool's lock, so any thread may call it while the pool exists. w may be NULL. */
void bq_worker_get_stats(const struct bq_worker *w, struct bq_worker_stats *out);

/*
 * Stop the pool: jobs not started get done(user_data, true); running jobs are waited
 * for, then they and any finished job not yet reported get done(user_data, false); the
 * threads are joined. Every done runs on the calling thread before this returns, and a
 * done may call bq_worker_submit (it gets -ESHUTDOWN). Never call this from a done
 * callback of the same pool. Blocks as long as the longest running job. w may be NULL.
 */
void bq_worker_free(struct bq_worker *w);

#endif
