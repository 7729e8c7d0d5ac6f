/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "loop/loop.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------------- */

static long long real_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void make_pipe(int p[2])
{
	ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void put_byte(int fd)
{
	ck_assert_int_eq(write(fd, "x", 1), 1);
}

/* A record of what ran, in order, as short tags. */
struct trace {
	char tags[64][16];
	int n;
};

static void trace_add(struct trace *t, const char *tag)
{
	ck_assert_int_lt(t->n, 64);
	snprintf(t->tags[t->n++], sizeof(t->tags[0]), "%s", tag);
}

/* ---- I/O --------------------------------------------------------------------------- */

struct io_rec {
	struct bq_loop *loop;
	int calls;
	int fd;
	unsigned events;
	int remove_fd; /* fd to remove from the callback, -1 none */
	bool remove_self;
	bool readded; /* readd_cb has replaced remove_fd's registration */
	int cb2_calls;
	int cb2_after_readd;
};

static void io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct io_rec *r = user_data;

	r->calls++;
	r->fd = fd;
	r->events = events;
	if (r->remove_self) {
		bq_loop_io_remove(loop, fd);
	}
	if (r->remove_fd >= 0) {
		bq_loop_io_remove(loop, r->remove_fd);
	}
}

static void io_cb2(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct io_rec *r = user_data;

	r->cb2_calls++;
	if (r->readded) {
		r->cb2_after_readd++;
	}
}

START_TEST(test_io_read_write_modify)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct io_rec rr = {.remove_fd = -1}, wr = {.remove_fd = -1};
	int p[2];
	char c;

	ck_assert_ptr_nonnull(loop);
	make_pipe(p);
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, io_cb, &rr), 0);
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, io_cb, &rr), -EEXIST);
	ck_assert_int_eq(bq_loop_io_modify(loop, p[1], BQ_EV_WRITE), -ENOENT);
	ck_assert_int_eq(bq_loop_io_add(loop, -1, BQ_EV_READ, io_cb, &rr), -EBADF);

	/* Nothing readable: nothing runs. */
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(rr.calls, 0);

	put_byte(p[1]);
	ck_assert_int_eq(bq_loop_run_once(loop, 100), 1);
	ck_assert_int_eq(rr.calls, 1);
	ck_assert_int_eq(rr.fd, p[0]);
	ck_assert_uint_eq(rr.events, BQ_EV_READ);

	/* Level-triggered: still readable, fires again until drained. */
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(rr.calls, 2);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(rr.calls, 2);

	/* The write end, registered with no interest, then switched to WRITE. */
	ck_assert_int_eq(bq_loop_io_add(loop, p[1], 0, io_cb, &wr), 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(wr.calls, 0);
	ck_assert_int_eq(bq_loop_io_modify(loop, p[1], BQ_EV_WRITE), 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(wr.calls, 1);
	ck_assert_int_eq(wr.fd, p[1]);
	ck_assert_uint_eq(wr.events, BQ_EV_WRITE);
	ck_assert_int_eq(bq_loop_io_modify(loop, p[1], 0), 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(wr.calls, 1);

	/* Closing the write end reports an error (hang-up) on the read end. */
	bq_loop_io_remove(loop, p[1]);
	close(p[1]);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_uint_eq(rr.events & BQ_EV_ERROR, BQ_EV_ERROR);

	bq_loop_io_remove(loop, p[0]);
	bq_loop_io_remove(loop, p[0]); /* twice: ignored */
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	close(p[0]);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_io_remove_self)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct io_rec rr = {.remove_fd = -1, .remove_self = true};
	int p[2];

	make_pipe(p);
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, io_cb, &rr), 0);
	put_byte(p[1]);
	ck_assert_int_eq(bq_loop_run_once(loop, 100), 1);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(rr.calls, 1);
	/* The slot is free again. */
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, io_cb, &rr), 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(rr.calls, 2);
	close(p[0]);
	close(p[1]);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_io_remove_other_in_same_batch)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct io_rec a = {0}, b = {0};
	int pa[2], pb[2];

	make_pipe(pa);
	make_pipe(pb);
	a.remove_fd = pb[0];
	b.remove_fd = pa[0];
	ck_assert_int_eq(bq_loop_io_add(loop, pa[0], BQ_EV_READ, io_cb, &a), 0);
	ck_assert_int_eq(bq_loop_io_add(loop, pb[0], BQ_EV_READ, io_cb, &b), 0);
	/* Both readable before the wait, so both events come back in one batch. */
	put_byte(pa[1]);
	put_byte(pb[1]);
	/* Whichever runs first removes the other, whose fetched event must be dropped. */
	ck_assert_int_eq(bq_loop_run_once(loop, 100), 1);
	ck_assert_int_eq(a.calls + b.calls, 1);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(a.calls + b.calls, 2);
	ck_assert_int_eq(a.calls, b.calls ? 0 : 2);
	close(pa[0]);
	close(pa[1]);
	close(pb[0]);
	close(pb[1]);
	bq_loop_free(loop);
}
END_TEST

static void readd_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct io_rec *r = user_data;

	r->calls++;
	bq_loop_io_remove(loop, r->remove_fd);
	ck_assert_int_eq(bq_loop_io_add(loop, r->remove_fd, BQ_EV_READ, io_cb2, r), 0);
	r->readded = true;
	bq_loop_io_remove(loop, fd);
}

START_TEST(test_io_remove_readd_drops_stale_event)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct io_rec r = {0};
	int pa[2], pb[2];

	make_pipe(pa);
	make_pipe(pb);
	r.remove_fd = pb[0];
	/* Both fds point at the same record: whoever fires first re-adds pb[0] fresh. */
	ck_assert_int_eq(bq_loop_io_add(loop, pa[0], BQ_EV_READ, readd_cb, &r), 0);
	ck_assert_int_eq(bq_loop_io_add(loop, pb[0], BQ_EV_READ, io_cb2, &r), 0);
	put_byte(pa[1]);
	put_byte(pb[1]);
	bq_loop_run_once(loop, 100);
	ck_assert_int_eq(r.calls, 1);
	/*
	 * epoll hands events back in the order they became ready, so pa's comes first;
	 * pb's, fetched before the re-add, must not reach the new registration.
	 */
	ck_assert_int_eq(r.cb2_calls, 0);
	ck_assert_int_eq(r.cb2_after_readd, 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(r.cb2_after_readd, 1);
	close(pa[0]);
	close(pa[1]);
	close(pb[0]);
	close(pb[1]);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_io_high_fd)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct io_rec rr = {.remove_fd = -1};
	struct rlimit rl;
	int p[2], hi;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < 20001 && rl.rlim_max >= 20001) {
		rl.rlim_cur = 20001;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	make_pipe(p);
	hi = fcntl(p[0], F_DUPFD_CLOEXEC, rl.rlim_cur >= 20001 ? 20000 : (int)rl.rlim_cur - 1);
	ck_assert_int_ge(hi, 0);
	ck_assert_int_eq(bq_loop_io_add(loop, p[1], BQ_EV_WRITE, io_cb, &rr), 0);
	ck_assert_int_eq(bq_loop_io_add(loop, hi, BQ_EV_READ, io_cb, &rr), 0);
	ck_assert_int_eq(bq_loop_io_modify(loop, p[1], 0), 0);
	put_byte(p[1]);
	ck_assert_int_eq(bq_loop_run_once(loop, 100), 1);
	ck_assert_int_eq(rr.fd, hi);
	bq_loop_io_remove(loop, hi);
	bq_loop_io_remove(loop, p[1]);
	close(hi);
	close(p[0]);
	close(p[1]);
	bq_loop_free(loop);
}
END_TEST

/* ---- timers ------------------------------------------------------------------------ */

struct tctx {
	struct trace *tr;
	const char *tag;
	struct bq_timer *t;
	int calls;
	uint64_t rearm_ms; /* re-arm with this delay while rearm_left > 0 */
	int rearm_left;
	bool free_self;
	struct tctx *free_other;
	struct bq_loop *stop_loop;
};

static void timer_cb(struct bq_timer *t, void *user_data)
{
	struct tctx *c = user_data;

	ck_assert_ptr_eq(t, c->t);
	ck_assert(!bq_timer_active(t));
	c->calls++;
	if (c->tr) {
		trace_add(c->tr, c->tag);
	}
	if (c->rearm_left > 0) {
		c->rearm_left--;
		ck_assert_int_eq(bq_timer_start(t, c->rearm_ms), 0);
	}
	if (c->free_other) {
		bq_timer_free(c->free_other->t);
		c->free_other->t = NULL;
	}
	if (c->stop_loop) {
		bq_loop_stop(c->stop_loop);
	}
	if (c->free_self) {
		bq_timer_free(t);
		c->t = NULL;
	}
}

static struct bq_timer *mk_timer(struct bq_loop *loop, struct tctx *c)
{
	c->t = bq_timer_new(loop, timer_cb, c);
	ck_assert_ptr_nonnull(c->t);
	return c->t;
}

START_TEST(test_timer_order_fake_clock)
{
	struct bq_fake_clock fc;
	struct bq_loop *loop;
	struct trace tr = {0};
	struct tctx a = {.tr = &tr, .tag = "a"}, b = {.tr = &tr, .tag = "b"},
		    c = {.tr = &tr, .tag = "c"}, d = {.tr = &tr, .tag = "d"};

	bq_fake_clock_init(&fc, 1000000);
	loop = bq_loop_new(&fc.clock, NULL);
	ck_assert_ptr_eq(bq_loop_clock(loop), &fc.clock);
	ck_assert_uint_eq(bq_loop_now_us(loop), 1000000);
	ck_assert_uint_eq(bq_loop_now_ms(loop), 1000);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), -1);

	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &a), 30), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &b), 10), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &c), 20), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &d), 20), 0); /* same due: after c */
	ck_assert(bq_timer_active(a.t));
	ck_assert_uint_eq(bq_timer_due_us(a.t), 1030000);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), 10);

	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(tr.n, 0);

	/* 9.999 ms: not yet; the wait rounds up so the loop would not spin. */
	bq_fake_clock_advance(&fc, 9999);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), 1);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	bq_fake_clock_advance(&fc, 1);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), 0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(tr.n, 1);
	ck_assert_str_eq(tr.tags[0], "b");
	ck_assert(!bq_timer_active(b.t));
	ck_assert_uint_eq(bq_timer_due_us(b.t), 0);

	bq_fake_clock_advance(&fc, 100000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 3);
	ck_assert_int_eq(tr.n, 4);
	ck_assert_str_eq(tr.tags[1], "c");
	ck_assert_str_eq(tr.tags[2], "d");
	ck_assert_str_eq(tr.tags[3], "a");
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), -1);

	bq_timer_free(a.t);
	bq_timer_free(b.t);
	bq_timer_free(c.t);
	bq_timer_free(d.t);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_timer_rearm_and_stop)
{
	struct bq_fake_clock fc;
	struct bq_loop *loop;
	struct tctx a = {.rearm_ms = 10, .rearm_left = 2}, z = {.rearm_ms = 0, .rearm_left = 5};
	struct tctx s = {0};

	bq_fake_clock_init(&fc, 0);
	loop = bq_loop_new(&fc.clock, NULL);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &a), 10), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &s), 5), 0);
	bq_timer_stop(s.t);
	ck_assert(!bq_timer_active(s.t));
	bq_timer_stop(s.t); /* stopping a stopped timer is fine */

	/* Re-arming an armed timer moves it (here: later). */
	ck_assert_int_eq(bq_timer_start(a.t, 20), 0);
	bq_fake_clock_advance(&fc, 10000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	bq_fake_clock_advance(&fc, 10000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(a.calls, 1);
	ck_assert(bq_timer_active(a.t)); /* re-armed itself */
	bq_fake_clock_advance(&fc, 10000);
	bq_loop_run_once(loop, 0);
	bq_fake_clock_advance(&fc, 10000);
	bq_loop_run_once(loop, 0);
	bq_fake_clock_advance(&fc, 10000);
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(a.calls, 3);
	ck_assert(!bq_timer_active(a.t));
	ck_assert_int_eq(s.calls, 0);

	/* A zero-delay re-arm fires once per round, it never spins inside one. */
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &z), 0), 0);
	for (int i = 1; i <= 6; i++) {
		ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
		ck_assert_int_eq(z.calls, i);
	}
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);

	/* A delay too large to represent saturates to "never" instead of wrapping to now. */
	ck_assert_int_eq(bq_timer_start(s.t, UINT64_MAX / 2), 0);
	ck_assert_uint_eq(bq_timer_due_us(s.t), UINT64_MAX);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop),
			 (UINT64_MAX - bq_loop_now_us(loop)) / 1000 + 1);
	bq_fake_clock_advance(&fc, 1000000000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	ck_assert_int_eq(s.calls, 0);

	bq_timer_free(a.t);
	bq_timer_free(s.t);
	bq_timer_free(z.t);
	bq_timer_free(NULL);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_timer_free_inside_callback)
{
	struct bq_fake_clock fc;
	struct bq_loop *loop;
	struct trace tr = {0};
	struct tctx a = {.tr = &tr, .tag = "a", .free_self = true};
	struct tctx b = {.tr = &tr, .tag = "b"};
	struct tctx c = {.tr = &tr, .tag = "c"};
	struct tctx d = {.tr = &tr, .tag = "d", .rearm_left = 1, .rearm_ms = 0, .free_self = true};

	bq_fake_clock_init(&fc, 0);
	loop = bq_loop_new(&fc.clock, NULL);
	/* a frees itself and b (due at the same time, later), c still fires. */
	a.free_other = &b;
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &a), 5), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &b), 5), 0);
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &c), 5), 0);
	/* d re-arms and then frees itself: the free must also disarm it. */
	ck_assert_int_eq(bq_timer_start(mk_timer(loop, &d), 5), 0);
	bq_fake_clock_advance(&fc, 5000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 3);
	ck_assert_int_eq(tr.n, 3);
	ck_assert_str_eq(tr.tags[0], "a");
	ck_assert_str_eq(tr.tags[1], "c");
	ck_assert_str_eq(tr.tags[2], "d");
	ck_assert_ptr_null(a.t);
	ck_assert_ptr_null(b.t);
	ck_assert_ptr_null(d.t);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), -1);
	bq_fake_clock_advance(&fc, 5000);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	bq_timer_free(c.t);
	bq_loop_free(loop);
}
END_TEST

#define NT 10000

struct many {
	struct bq_timer *t;
	uint64_t due;
	int order;
};

static struct many many[NT];
static int many_fired;
static uint64_t many_last_due;

static void many_cb(struct bq_timer *t, void *user_data)
{
	struct many *m = user_data;

	if (m->due < many_last_due) {
		ck_abort_msg("timer due %llu fired after %llu", (unsigned long long)m->due,
			     (unsigned long long)many_last_due);
	}
	many_last_due = m->due;
	m->order = many_fired++;
}

START_TEST(test_timer_many_random)
{
	struct bq_fake_clock fc;
	struct bq_loop *loop;
	unsigned seed = 12345;

	bq_fake_clock_init(&fc, 0);
	loop = bq_loop_new(&fc.clock, NULL);
	for (int i = 0; i < NT; i++) {
		uint64_t delay = rand_r(&seed) % 2000;

		many[i].t = bq_timer_new(loop, many_cb, &many[i]);
		ck_assert_ptr_nonnull(many[i].t);
		ck_assert_int_eq(bq_timer_start(many[i].t, delay), 0);
		many[i].due = delay * 1000;
		ck_assert_uint_eq(bq_timer_due_us(many[i].t), many[i].due);
		many[i].order = -1;
	}
	/* Stop every tenth: they must not fire. */
	for (int i = 0; i < NT; i += 10) {
		bq_timer_stop(many[i].t);
	}
	/* Half the way, then the rest. */
	bq_fake_clock_advance(&fc, 1000 * 1000);
	bq_loop_run_once(loop, 0);
	for (int i = 0; i < NT; i++) {
		if (i % 10 != 0) {
			ck_assert_int_eq(many[i].order >= 0, many[i].due <= 1000 * 1000);
		}
	}
	bq_fake_clock_advance(&fc, 1000 * 1000);
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(many_fired, NT - NT / 10);
	/* Equal due times fired in arming order. */
	for (int i = 0; i < NT; i++) {
		for (int j = i + 1; j < NT && j < i + 50; j++) {
			if (i % 10 && j % 10 && many[i].due == many[j].due) {
				ck_assert_int_lt(many[i].order, many[j].order);
			}
		}
		if (i % 10 == 0) {
			ck_assert_int_eq(many[i].order, -1);
		}
	}
	for (int i = 0; i < NT; i++) {
		bq_timer_free(many[i].t);
	}
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_timer_real_clock)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct tctx a = {0};
	long long start, elapsed;

	ck_assert_ptr_eq(bq_loop_clock(loop), bq_clock_system());
	mk_timer(loop, &a);
	start = real_us();
	ck_assert_int_eq(bq_timer_start(a.t, 20), 0);
	while (a.calls == 0 && real_us() - start < 2000000) {
		ck_assert_int_ge(bq_loop_run_once(loop, -1), 0);
	}
	elapsed = real_us() - start;
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_ge(elapsed, 20000);
	ck_assert_int_lt(elapsed, 1000000);
	bq_timer_free(a.t);
	bq_loop_free(loop);
}
END_TEST

/* ---- signals ----------------------------------------------------------------------- */

static int sig_calls[NSIG];

static void sig_cb(struct bq_loop *loop, int signo, void *user_data)
{
	ck_assert_ptr_eq(user_data, &sig_calls);
	sig_calls[signo]++;
}

static bool sigs_done(void *user_data)
{
	return sig_calls[SIGUSR1] >= 2 && sig_calls[SIGUSR2] >= 1;
}

static bool usr1_done(void *user_data)
{
	return sig_calls[SIGUSR1] >= 1;
}

START_TEST(test_signal)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	sigset_t cur;

	ck_assert_int_eq(bq_loop_signal(loop, SIGUSR1, sig_cb, &sig_calls), 0);
	ck_assert_int_eq(bq_loop_signal(loop, SIGUSR1, sig_cb, &sig_calls), -EEXIST);
	ck_assert_int_eq(bq_loop_signal(loop, 0, sig_cb, &sig_calls), -EINVAL);
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &cur), 0);
	ck_assert(sigismember(&cur, SIGUSR1));

	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert(bq_test_run_until(loop, usr1_done, NULL, 2000));
	ck_assert_int_eq(sig_calls[SIGUSR1], 1);

	/* A second signal updates the one signalfd. */
	ck_assert_int_eq(bq_loop_signal(loop, SIGUSR2, sig_cb, &sig_calls), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR2), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert(bq_test_run_until(loop, sigs_done, NULL, 2000));
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(sig_calls[SIGUSR1], 2);
	ck_assert_int_eq(sig_calls[SIGUSR2], 1);
	bq_loop_free(loop);
}
END_TEST

/* ---- deferred calls and hooks ------------------------------------------------------ */

struct order_ctx {
	struct bq_loop *loop;
	struct trace tr;
	int forever;
};

static void defer2(void *user_data)
{
	struct order_ctx *o = user_data;

	trace_add(&o->tr, "defer2");
}

static void defer1(void *user_data)
{
	struct order_ctx *o = user_data;

	trace_add(&o->tr, "defer1");
	ck_assert_int_eq(bq_loop_defer(o->loop, defer2, o), 0);
}

static void order_io(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct order_ctx *o = user_data;
	char c;

	ck_assert_int_eq(read(fd, &c, 1), 1);
	trace_add(&o->tr, "io");
	ck_assert_int_eq(bq_loop_defer(loop, defer1, o), 0);
}

static void order_timer(struct bq_timer *t, void *user_data)
{
	struct order_ctx *o = user_data;

	trace_add(&o->tr, "timer");
}

static void order_hook(struct bq_loop *loop, void *user_data)
{
	struct order_ctx *o = user_data;

	trace_add(&o->tr, "hook");
}

static void forever_defer(void *user_data)
{
	struct order_ctx *o = user_data;

	o->forever++;
	ck_assert_int_eq(bq_loop_defer(o->loop, forever_defer, o), 0);
}

START_TEST(test_defer_and_hooks_order)
{
	struct bq_fake_clock fc;
	struct order_ctx o = {0};
	struct bq_timer *t;
	int p[2];

	bq_fake_clock_init(&fc, 0);
	o.loop = bq_loop_new(&fc.clock, NULL);
	make_pipe(p);
	ck_assert_int_eq(bq_loop_io_add(o.loop, p[0], BQ_EV_READ, order_io, &o), 0);
	t = bq_timer_new(o.loop, order_timer, &o);
	ck_assert_int_eq(bq_timer_start(t, 0), 0);
	ck_assert_int_eq(bq_loop_before_sleep(o.loop, order_hook, &o), 0);
	put_byte(p[1]);

	/* io, timer, defer1, defer2: four callbacks; hooks are not counted. */
	ck_assert_int_eq(bq_loop_run_once(o.loop, 100), 4);
	ck_assert_int_eq(o.tr.n, 5);
	ck_assert_str_eq(o.tr.tags[0], "io");
	ck_assert_str_eq(o.tr.tags[1], "timer");
	ck_assert_str_eq(o.tr.tags[2], "defer1");
	ck_assert_str_eq(o.tr.tags[3], "defer2");
	ck_assert_str_eq(o.tr.tags[4], "hook");

	/* Hooks run every round, until removed. */
	ck_assert_int_eq(bq_loop_run_once(o.loop, 0), 0);
	ck_assert_int_eq(o.tr.n, 6);
	ck_assert_int_eq(bq_loop_before_sleep_remove(o.loop, order_hook, &o), 0);
	ck_assert_int_eq(bq_loop_before_sleep_remove(o.loop, order_hook, &o), -ENOENT);
	ck_assert_int_eq(bq_loop_run_once(o.loop, 0), 0);
	ck_assert_int_eq(o.tr.n, 6);

	/* A deferred call that always re-defers itself runs a bounded number of times. */
	ck_assert_int_eq(bq_loop_defer(o.loop, forever_defer, &o), 0);
	ck_assert_int_eq(bq_loop_run_once(o.loop, 0), 3);
	ck_assert_int_eq(o.forever, 3);
	/* The leftover makes the next round not sleep: a long timeout returns at once. */
	{
		long long start = real_us();

		ck_assert_int_eq(bq_loop_run_once(o.loop, 5000), 3);
		ck_assert_int_lt(real_us() - start, 1000000);
	}
	ck_assert_int_eq(o.forever, 6);

	bq_loop_io_remove(o.loop, p[0]);
	close(p[0]);
	close(p[1]);
	bq_timer_free(t);
	/* bq_loop_free still drains the queue (bounded), so no call is lost silently. */
	bq_loop_free(o.loop);
	ck_assert_int_gt(o.forever, 6);
}
END_TEST

struct hook_ctx {
	int a, b, c;
	struct bq_loop *loop;
};

static void hook_b(struct bq_loop *loop, void *user_data);

static void hook_c(struct bq_loop *loop, void *user_data)
{
	struct hook_ctx *h = user_data;

	h->c++;
}

static void hook_a(struct bq_loop *loop, void *user_data)
{
	struct hook_ctx *h = user_data;

	h->a++;
	/* Remove itself and the next hook, add a new one: all while iterating. */
	ck_assert_int_eq(bq_loop_before_sleep_remove(loop, hook_a, h), 0);
	ck_assert_int_eq(bq_loop_before_sleep_remove(loop, hook_b, h), 0);
	ck_assert_int_eq(bq_loop_before_sleep(loop, hook_c, h), 0);
}

static void hook_b(struct bq_loop *loop, void *user_data)
{
	struct hook_ctx *h = user_data;

	h->b++;
}

START_TEST(test_hooks_modified_while_running)
{
	struct hook_ctx h = {0};

	h.loop = bq_loop_new(NULL, NULL);
	ck_assert_int_eq(bq_loop_before_sleep(h.loop, hook_a, &h), 0);
	ck_assert_int_eq(bq_loop_before_sleep(h.loop, hook_b, &h), 0);
	bq_loop_run_once(h.loop, 0);
	ck_assert_int_eq(h.a, 1);
	ck_assert_int_eq(h.b, 0);
	ck_assert_int_eq(h.c, 0);
	bq_loop_run_once(h.loop, 0);
	bq_loop_run_once(h.loop, 0);
	ck_assert_int_eq(h.a, 1);
	ck_assert_int_eq(h.b, 0);
	ck_assert_int_eq(h.c, 2);
	bq_loop_free(h.loop);
}
END_TEST

static int never_calls;

static void noop_async(struct bq_async *a, void *user_data)
{
	never_calls++;
}

static void never(void *user_data)
{
	never_calls++;
}

START_TEST(test_enomem_paths)
{
	struct bq_loop *loop;
	int p[2];

	/* bq_loop_new: every allocation failure gives NULL (LeakSanitizer checks the rest). */
	for (unsigned long n = 1; n <= 2; n++) {
		bq_alloc_fail_nth(n);
		ck_assert_ptr_null(bq_loop_new(NULL, NULL));
	}
	bq_alloc_fail_nth(0);
	loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(loop);

	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_loop_defer(loop, never, NULL), -ENOMEM);
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(never_calls, 0);

	bq_alloc_fail_nth(1);
	ck_assert_ptr_null(bq_timer_new(loop, timer_cb, NULL));
	bq_alloc_fail_nth(0);
	ck_assert_int_eq(bq_loop_next_timer_ms(loop), -1);

	make_pipe(p);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, order_io, NULL), -ENOMEM);
	bq_alloc_fail_nth(0);
	put_byte(p[1]);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);

	bq_alloc_fail_nth(1);
	ck_assert_ptr_null(bq_async_new(loop, noop_async, NULL));
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_loop_before_sleep(loop, order_hook, NULL), -ENOMEM);
	bq_alloc_fail_nth(0);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);

	close(p[0]);
	close(p[1]);
	bq_loop_free(loop);
}
END_TEST

/* ---- async ------------------------------------------------------------------------- */

struct async_ctx {
	struct bq_async *a;
	int calls;
	int sends;
};

static void async_cb(struct bq_async *a, void *user_data)
{
	struct async_ctx *c = user_data;

	ck_assert_ptr_eq(a, c->a);
	c->calls++;
}

static void *sender(void *arg)
{
	struct async_ctx *c = arg;

	/* Give the loop time to block in epoll_wait first. */
	usleep(20000);
	for (int i = 0; i < c->sends; i++) {
		if (bq_async_send(c->a) != 0) {
			return (void *)1;
		}
	}
	return NULL;
}

START_TEST(test_async_from_thread)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct async_ctx c = {.sends = 1000};
	pthread_t th;
	void *ret;
	long long start;

	c.a = bq_async_new(loop, async_cb, &c);
	ck_assert_ptr_nonnull(c.a);

	/* Sends before the loop runs coalesce into one call. */
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(bq_async_send(c.a), 0);
	}
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 1);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);

	/* A thread wakes a loop blocked with no timeout. */
	c.calls = 0;
	ck_assert_int_eq(pthread_create(&th, NULL, sender, &c), 0);
	start = real_us();
	ck_assert_int_ge(bq_loop_run_once(loop, 5000), 1);
	ck_assert_int_lt(real_us() - start, 4000000);
	ck_assert_int_eq(pthread_join(th, &ret), 0);
	ck_assert_ptr_null(ret);
	/* Sends made after the wake-up (all done now: joined) give at most one more call. */
	{
		int before = c.calls;

		bq_loop_run_once(loop, 0);
		ck_assert_int_le(c.calls, before + 1);
	}
	/* Coalesced: far fewer calls than sends, and at least one. */
	ck_assert_int_ge(c.calls, 1);
	ck_assert_int_lt(c.calls, c.sends);
	/* Every send was consumed: nothing left pending. */
	{
		int before = c.calls;

		bq_loop_run_once(loop, 0);
		ck_assert_int_eq(c.calls, before);
	}
	bq_async_free(c.a);
	bq_async_free(NULL);
	bq_loop_free(loop);
}
END_TEST

/* ---- run / stop / free ------------------------------------------------------------- */

START_TEST(test_stop_from_callback)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct tctx a = {.rearm_ms = 1, .rearm_left = 1000};
	struct tctx s = {0};

	mk_timer(loop, &a);
	mk_timer(loop, &s);
	s.stop_loop = loop;
	ck_assert_int_eq(bq_timer_start(a.t, 1), 0);
	ck_assert_int_eq(bq_timer_start(s.t, 30), 0);
	ck_assert(!bq_loop_stopped(loop));
	ck_assert_int_eq(bq_loop_run(loop), 0);
	ck_assert(bq_loop_stopped(loop));
	ck_assert_int_eq(s.calls, 1);
	ck_assert_int_gt(a.calls, 3);
	ck_assert(bq_timer_active(a.t));

	/* Runs again after a stop: run clears the flag. */
	ck_assert_int_eq(bq_timer_start(s.t, 5), 0);
	ck_assert_int_eq(bq_loop_run(loop), 0);
	ck_assert_int_eq(s.calls, 2);

	bq_timer_free(a.t);
	bq_timer_free(s.t);
	bq_loop_free(loop);
}
END_TEST

static void count_defer(void *user_data)
{
	(*(int *)user_data)++;
}

START_TEST(test_free_with_registrations_left)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct tctx a = {0}, b = {0};
	struct async_ctx c = {0};
	int deferred = 0;
	int p[2];

	make_pipe(p);
	ck_assert_int_eq(bq_loop_io_add(loop, p[0], BQ_EV_READ, io_cb, NULL), 0);
	mk_timer(loop, &a);
	mk_timer(loop, &b);
	ck_assert_int_eq(bq_timer_start(a.t, 1000), 0);
	c.a = bq_async_new(loop, async_cb, &c);
	ck_assert_ptr_nonnull(c.a);
	ck_assert_int_eq(bq_loop_before_sleep(loop, order_hook, NULL), 0);
	ck_assert_int_eq(bq_loop_defer(loop, count_defer, &deferred), 0);
	bq_loop_free(loop);
	ck_assert_int_eq(deferred, 1);

	/* Owners free after the loop: detached objects must not touch it. */
	ck_assert(!bq_timer_active(a.t));
	ck_assert_int_eq(bq_timer_start(b.t, 5), -EINVAL);
	bq_timer_stop(a.t);
	ck_assert_int_eq(bq_async_send(c.a), 0);
	bq_timer_free(a.t);
	bq_timer_free(b.t);
	bq_async_free(c.a);
	close(p[0]);
	close(p[1]);
	bq_loop_free(NULL);
}
END_TEST

static Suite *loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *io = tcase_create("io");
	TCase *tm = tcase_create("timers");
	TCase *misc = tcase_create("misc");

	tcase_add_test(io, test_io_read_write_modify);
	tcase_add_test(io, test_io_remove_self);
	tcase_add_test(io, test_io_remove_other_in_same_batch);
	tcase_add_test(io, test_io_remove_readd_drops_stale_event);
	tcase_add_test(io, test_io_high_fd);
	suite_add_tcase(s, io);

	tcase_add_test(tm, test_timer_order_fake_clock);
	tcase_add_test(tm, test_timer_rearm_and_stop);
	tcase_add_test(tm, test_timer_free_inside_callback);
	tcase_add_test(tm, test_timer_many_random);
	tcase_add_test(tm, test_timer_real_clock);
	suite_add_tcase(s, tm);

	tcase_add_test(misc, test_signal);
	tcase_add_test(misc, test_defer_and_hooks_order);
	tcase_add_test(misc, test_hooks_modified_while_running);
	tcase_add_test(misc, test_enomem_paths);
	tcase_add_test(misc, test_async_from_thread);
	tcase_add_test(misc, test_stop_from_callback);
	tcase_add_test(misc, test_free_with_registrations_left);
	suite_add_tcase(s, misc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(loop_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
