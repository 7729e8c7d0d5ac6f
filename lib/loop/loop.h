/* SPDX-License-Identifier: MIT */
/*
 * loop: one event loop per process: epoll for descriptors, a min-heap of timers,
 * signalfd for signals, before-sleep hooks (flush coalesced writes, Redis's
 * beforeSleep), deferred frees (Redis's freeClientAsync) and a thread-safe wake-up
 * (eventfd) for worker threads that post results back.
 *
 * Contract (libuv): a registration that fails never calls its callback; one that
 * succeeds calls it until it is removed. Callbacks may add and remove any
 * registration, including their own, from inside a callback.
 */
#ifndef BQ_LOOP_LOOP_H
#define BQ_LOOP_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/log.h"

struct bq_loop;
struct bq_timer;
struct bq_async;

enum {
	BQ_EV_READ = 1u << 0,
	BQ_EV_WRITE = 1u << 1,
	BQ_EV_ERROR = 1u << 2, /* EPOLLERR or EPOLLHUP; always reported */
};

typedef void (*bq_io_cb)(struct bq_loop *loop, int fd, unsigned events, void *user_data);
typedef void (*bq_timer_cb)(struct bq_timer *t, void *user_data);
typedef void (*bq_signal_cb)(struct bq_loop *loop, int signo, void *user_data);
typedef void (*bq_hook_cb)(struct bq_loop *loop, void *user_data);
typedef void (*bq_defer_cb)(void *user_data);
typedef void (*bq_async_cb)(struct bq_async *a, void *user_data);

/* clock may be NULL (system clock); it and log are borrowed and must outlive the loop. */
struct bq_loop *bq_loop_new(const struct bq_clock *clock, struct bq_log *log);
/*
 * Runs pending deferred calls, then frees. Registrations still present are dropped
 * (no callback runs). Owners should free their timers and asyncs first; any left are
 * detached: bq_timer_start then returns -EINVAL, bq_timer_free and bq_async_free still
 * work. Registered signals stay blocked. loop may be NULL.
 */
void bq_loop_free(struct bq_loop *loop);

/*
 * Run until bq_loop_stop. Returns 0, or a negative errno if epoll itself failed.
 * Clears the stop flag on entry, so a stopped loop can be run again.
 */
int bq_loop_run(struct bq_loop *loop);
/*
 * One iteration: wait at most timeout_ms (-1: until the next timer or event, 0: poll),
 * dispatch I/O, expired timers, deferred calls and before-sleep hooks.
 * Returns the number of callbacks run (I/O, timer, signal, async and deferred; not
 * before-sleep hooks), or a negative errno. Not reentrant: never call it from a callback.
 */
int bq_loop_run_once(struct bq_loop *loop, int timeout_ms);
/* Loop thread only (from a callback); another thread wakes the loop with an async. */
void bq_loop_stop(struct bq_loop *loop);
bool bq_loop_stopped(const struct bq_loop *loop);

/* The loop's clock, read now. */
uint64_t bq_loop_now_us(const struct bq_loop *loop);
uint64_t bq_loop_now_ms(const struct bq_loop *loop);
const struct bq_clock *bq_loop_clock(const struct bq_loop *loop);
struct bq_log *bq_loop_log(const struct bq_loop *loop);

/*
 * Descriptors, keyed by fd (one registration per fd). Level-triggered.
 * add: 0, -EEXIST, -ENOMEM or the epoll error. The loop never closes the fd.
 */
int bq_loop_io_add(struct bq_loop *loop, int fd, unsigned events, bq_io_cb cb, void *user_data);
int bq_loop_io_modify(struct bq_loop *loop, int fd, unsigned events);
/*
 * Safe to call from inside any callback; pending events for fd are then dropped.
 * Call it before closing fd: a closed fd left registered makes a later add of the same
 * number fail with -EEXIST.
 */
void bq_loop_io_remove(struct bq_loop *loop, int fd);

/*
 * Timers: allocate once per owner, arm many times. A stopped timer costs nothing in
 * the heap. bq_timer_free may be called from the timer's own callback.
 */
struct bq_timer *bq_timer_new(struct bq_loop *loop, bq_timer_cb cb, void *user_data);
/*
 * (Re)arm to fire once after delay_ms on the loop's clock. 0 or -ENOMEM (only when the
 * timer was not armed; re-arming an armed timer never fails), -EINVAL after the loop
 * was freed. A timer re-armed with delay 0 from its own callback fires in the next
 * round, not again in this one.
 */
int bq_timer_start(struct bq_timer *t, uint64_t delay_ms);
void bq_timer_stop(struct bq_timer *t);
bool bq_timer_active(const struct bq_timer *t);
/* Absolute due time in loop-clock microseconds, 0 if not armed. */
uint64_t bq_timer_due_us(const struct bq_timer *t);
void bq_timer_free(struct bq_timer *t);
/* Milliseconds until the earliest timer, or -1 if none (used by run_once). */
int64_t bq_loop_next_timer_ms(const struct bq_loop *loop);

/*
 * Signals through signalfd; the signal is blocked for the whole process.
 * 0, -EEXIST, or a negative errno.
 * The mask is set on the calling thread and inherited by threads created later:
 * register signals before starting threads, or a thread that has the signal unblocked
 * takes its default action.
 */
int bq_loop_signal(struct bq_loop *loop, int signo, bq_signal_cb cb, void *user_data);

/* Called after each dispatch round, before the loop sleeps again. 0 or -ENOMEM. */
int bq_loop_before_sleep(struct bq_loop *loop, bq_hook_cb cb, void *user_data);
int bq_loop_before_sleep_remove(struct bq_loop *loop, bq_hook_cb cb, void *user_data);

/*
 * Run fn(user_data) after the current dispatch round (deferred free: an object that
 * fails inside its own callback is released here, never in the middle of its stack).
 * If queuing fails (-ENOMEM) fn is not called.
 */
int bq_loop_defer(struct bq_loop *loop, bq_defer_cb fn, void *user_data);

/*
 * Thread-safe wake-up: any thread may call bq_async_send; cb then runs once on the
 * loop thread (several sends before it runs coalesce into one call).
 */
struct bq_async *bq_async_new(struct bq_loop *loop, bq_async_cb cb, void *user_data);
int bq_async_send(struct bq_async *a);
void bq_async_free(struct bq_async *a);

#endif
