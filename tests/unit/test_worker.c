/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/worker.h"
#include "loop/loop.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------------- */

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A gate a work function waits at (at most 5 s, so a broken test cannot hang). */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
};

static void gate_init(struct gate *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->open = false;
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void gate_wait(struct gate *g)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&g->mu);
	while (!g->open) {
		if (pthread_cond_timedwait(&g->cv, &g->mu, &until) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&g->mu);
}

static void gate_destroy(struct gate *g)
{
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

/* Wait (real time, bounded) until the pool reports `running` jobs running. */
static bool wait_running(struct bq_worker *w, size_t running)
{
	struct bq_worker_stats st;
	long long until = real_ms() + 5000;

	do {
		bq_worker_get_stats(w, &st);
		if (st.running == running) {
			return true;
		}
		usleep(1000);
	} while (real_ms() < until);
	return false;
}

/* One job's record. Written by work on a pool thread, read by done on the loop thread. */
struct job {
	struct gate *gate; /* NULL: do not wait */
	unsigned sleep_ms;
	int in;
	int out;
	int work_calls;
	int done_calls;
	bool cancelled;
	bool signals_blocked;
	pthread_t work_thread;
	pthread_t done_thread;
	int *order; /* done appends its index here */
	int *norder;
	struct bq_worker *w;   /* for done callbacks that submit */
	int submit_in_done_rc; /* what a submit from done returned */
	bool submit_in_done;
};

static void job_work(void *ud)
{
	struct job *j = ud;
	sigset_t cur;

	j->work_thread = pthread_self();
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	j->signals_blocked = sigismember(&cur, SIGTERM) == 1 && sigismember(&cur, SIGINT) == 1 &&
			     sigismember(&cur, SIGUSR1) == 1 && sigismember(&cur, SIGCHLD) == 1;
	if (j->gate) {
		gate_wait(j->gate);
	}
	if (j->sleep_ms) {
		usleep(j->sleep_ms * 1000);
	}
	j->out = j->in * j->in + 1;
	j->work_calls++;
}

static void job_done(void *ud, bool cancelled)
{
	struct job *j = ud;

	j->done_calls++;
	j->cancelled = cancelled;
	j->done_thread = pthread_self();
	if (j->order) {
		j->order[(*j->norder)++] = j->in;
	}
	if (j->submit_in_done) {
		j->submit_in_done_rc = bq_worker_submit(j->w, job_work, job_done, j);
	}
}

struct count_ctx {
	struct job *jobs;
	int n;
};

static bool all_done(void *ud)
{
	struct count_ctx *c = ud;

	for (int i = 0; i < c->n; i++) {
		if (c->jobs[i].done_calls == 0) {
			return false;
		}
	}
	return true;
}

/* ---- tests ------------------------------------------------------------------------- */

START_TEST(test_many_jobs_exactly_once)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 4, 0, NULL);
	struct job *jobs = calloc(100, sizeof(*jobs));
	struct count_ctx c = {jobs, 100};
	struct bq_worker_stats st;
	pthread_t me = pthread_self();
	bool any_other_thread = false;

	ck_assert_ptr_nonnull(w);
	for (int i = 0; i < 100; i++) {
		jobs[i].in = i;
		ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[i]), 0);
	}
	ck_assert(bq_test_run_until(loop, all_done, &c, 5000));
	/* A later round must not deliver anything twice. */
	bq_loop_run_once(loop, 20);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(jobs[i].work_calls, 1);
		ck_assert_int_eq(jobs[i].done_calls, 1);
		ck_assert(!jobs[i].cancelled);
		ck_assert_int_eq(jobs[i].out, i * i + 1);
		ck_assert(pthread_equal(jobs[i].done_thread, me));
		ck_assert(jobs[i].signals_blocked);
		if (!pthread_equal(jobs[i].work_thread, me)) {
			any_other_thread = true;
		}
	}
	ck_assert(any_other_thread);
	bq_worker_get_stats(w, &st);
	ck_assert_uint_eq(st.queued, 0);
	ck_assert_uint_eq(st.running, 0);
	ck_assert_uint_eq(st.completed, 100);
	ck_assert_uint_eq(st.cancelled, 0);
	bq_worker_free(w);
	bq_loop_free(loop);
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(jobs[i].done_calls, 1);
	}
	free(jobs);
}
END_TEST

START_TEST(test_done_in_completion_order)
{
	/* One thread finishes jobs in submission order, so done must follow it. */
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 0, NULL);
	struct job jobs[20];
	struct count_ctx c = {jobs, 20};
	int order[20], norder = 0;

	ck_assert_ptr_nonnull(w);
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < 20; i++) {
		jobs[i].in = i;
		jobs[i].order = order;
		jobs[i].norder = &norder;
		ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[i]), 0);
	}
	ck_assert(bq_test_run_until(loop, all_done, &c, 5000));
	ck_assert_int_eq(norder, 20);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(order[i], i);
	}
	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_eagain_at_max_queued)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 2, NULL);
	struct gate g;
	struct job jobs[4], extra;
	struct count_ctx c = {jobs, 3};
	struct bq_worker_stats st;

	ck_assert_ptr_nonnull(w);
	gate_init(&g);
	memset(jobs, 0, sizeof(jobs));
	memset(&extra, 0, sizeof(extra));
	jobs[0].gate = &g;
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[0]), 0);
	ck_assert(wait_running(w, 1));
	/* The running job does not count: two may wait, the third is refused. */
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[1]), 0);
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[2]), 0);
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[3]), -EAGAIN);
	bq_worker_get_stats(w, &st);
	ck_assert_uint_eq(st.queued, 2);
	ck_assert_uint_eq(st.running, 1);
	ck_assert_uint_eq(st.rejected, 1);

	gate_open(&g);
	ck_assert(bq_test_run_until(loop, all_done, &c, 5000));
	bq_loop_run_once(loop, 20);
	ck_assert_int_eq(jobs[3].done_calls, 0);
	ck_assert_int_eq(jobs[3].work_calls, 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(jobs[i].done_calls, 1);
	}
	/* Room again once the queue drained. */
	c.jobs = &extra;
	c.n = 1;
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &extra), 0);
	ck_assert(bq_test_run_until(loop, all_done, &c, 5000));

	bq_worker_free(w);
	ck_assert_int_eq(jobs[3].done_calls, 0);
	bq_loop_free(loop);
	gate_destroy(&g);
}
END_TEST

struct opener {
	struct bq_worker *w;
	struct gate *g;
};

/*
 * Opens the gate once bq_worker_free has taken the queue (queued drops to 0 while the
 * gated job still runs), so exactly the queued jobs are cancelled. The pool cannot be
 * freed before the gate opens: free joins the gated job.
 */
static void *opener_main(void *arg)
{
	struct opener *o = arg;
	struct bq_worker_stats st;
	long long until = real_ms() + 5000;

	do {
		bq_worker_get_stats(o->w, &st);
		if (st.queued == 0) {
			break;
		}
		usleep(1000);
	} while (real_ms() < until);
	usleep(10000);
	gate_open(o->g);
	return NULL;
}

START_TEST(test_free_cancels_queued)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 0, NULL);
	struct gate g;
	struct job jobs[6];
	struct opener o;
	pthread_t th;
	pthread_t me = pthread_self();

	ck_assert_ptr_nonnull(w);
	gate_init(&g);
	memset(jobs, 0, sizeof(jobs));
	jobs[0].gate = &g;
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[0]), 0);
	ck_assert(wait_running(w, 1));
	for (int i = 1; i < 6; i++) {
		jobs[i].in = i;
		/* A cancelled job's done that submits again is refused, and never called. */
		jobs[i].submit_in_done = true;
		jobs[i].w = w;
		ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[i]), 0);
	}
	o.w = w;
	o.g = &g;
	ck_assert_int_eq(pthread_create(&th, NULL, opener_main, &o), 0);
	bq_worker_free(w);
	ck_assert_int_eq(pthread_join(th, NULL), 0);

	/* The running job was waited for and reported as done, not cancelled. */
	ck_assert_int_eq(jobs[0].work_calls, 1);
	ck_assert_int_eq(jobs[0].done_calls, 1);
	ck_assert(!jobs[0].cancelled);
	ck_assert(pthread_equal(jobs[0].done_thread, me));
	for (int i = 1; i < 6; i++) {
		ck_assert_int_eq(jobs[i].work_calls, 0);
		ck_assert_int_eq(jobs[i].done_calls, 1);
		ck_assert(jobs[i].cancelled);
		ck_assert(pthread_equal(jobs[i].done_thread, me));
		ck_assert_int_eq(jobs[i].submit_in_done_rc, -ESHUTDOWN);
	}
	/* Nothing is left behind for the loop. */
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	bq_loop_free(loop);
	gate_destroy(&g);
}
END_TEST

START_TEST(test_free_delivers_finished)
{
	/* Work that finished while the loop never ran is still reported, once. */
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 2, 0, NULL);
	struct job jobs[3];
	struct bq_worker_stats st;
	long long until = real_ms() + 5000;

	ck_assert_ptr_nonnull(w);
	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &jobs[i]), 0);
	}
	do {
		bq_worker_get_stats(w, &st);
		if (st.completed == 3) {
			break;
		}
		usleep(1000);
	} while (real_ms() < until);
	ck_assert_uint_eq(st.completed, 3);
	bq_worker_free(w);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(jobs[i].done_calls, 1);
		ck_assert(!jobs[i].cancelled);
	}
	ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	bq_loop_free(loop);
}
END_TEST

struct noblock {
	struct job job;
	long long start;
	long long timer_at; /* ms after start, -1 until it fires */
	bool job_done_at_timer;
};

static void noblock_timer(struct bq_timer *t, void *ud)
{
	struct noblock *nb = ud;

	nb->timer_at = real_ms() - nb->start;
	nb->job_done_at_timer = nb->job.done_calls > 0;
}

static bool noblock_done(void *ud)
{
	struct noblock *nb = ud;

	return nb->job.done_calls > 0 && nb->timer_at >= 0;
}

START_TEST(test_slow_job_does_not_block_loop)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 0, NULL);
	struct noblock nb;
	struct bq_timer *t;

	ck_assert_ptr_nonnull(w);
	memset(&nb, 0, sizeof(nb));
	nb.job.sleep_ms = 50;
	nb.timer_at = -1;
	t = bq_timer_new(loop, noblock_timer, &nb);
	ck_assert_ptr_nonnull(t);
	nb.start = real_ms();
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &nb.job), 0);
	ck_assert_int_eq(bq_timer_start(t, 10), 0);
	ck_assert(bq_test_run_until(loop, noblock_done, &nb, 5000));
	/* The 10 ms timer fired on time while the 50 ms job was still running. */
	ck_assert(!nb.job_done_at_timer);
	ck_assert_int_lt(nb.timer_at, 45);
	ck_assert_int_eq(nb.job.done_calls, 1);
	bq_timer_free(t);
	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

/* Each done submits the next job until `left` runs out. */
struct chain {
	struct bq_worker *w;
	int left;
	int works;
	int dones;
};

static void chain_work(void *ud)
{
	struct chain *c = ud;

	c->works++;
}

static void chain_done(void *ud, bool cancelled)
{
	struct chain *c = ud;

	c->dones++;
	ck_assert(!cancelled);
	if (--c->left > 0) {
		ck_assert_int_eq(bq_worker_submit(c->w, chain_work, chain_done, c), 0);
	}
}

static bool chain_finished(void *ud)
{
	struct chain *c = ud;

	return c->left == 0;
}

START_TEST(test_submit_from_done)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct chain c = {0};

	c.w = bq_worker_new(loop, 2, 1, NULL);
	ck_assert_ptr_nonnull(c.w);
	c.left = 10;
	ck_assert_int_eq(bq_worker_submit(c.w, chain_work, chain_done, &c), 0);
	ck_assert(bq_test_run_until(loop, chain_finished, &c, 5000));
	ck_assert_int_eq(c.works, 10);
	ck_assert_int_eq(c.dones, 10);
	bq_worker_free(c.w);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_bad_arguments_and_enomem)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w;
	struct job j;
	struct count_ctx c = {&j, 1};
	struct bq_worker_stats st;

	memset(&j, 0, sizeof(j));
	ck_assert_ptr_null(bq_worker_new(NULL, 1, 0, NULL));
	ck_assert_ptr_null(bq_worker_new(loop, BQ_WORKER_MAX_THREADS + 1, 0, NULL));
	bq_worker_free(NULL);
	bq_worker_get_stats(NULL, &st);
	ck_assert_uint_eq(st.completed, 0);

	w = bq_worker_new(loop, BQ_WORKER_MAX_THREADS, 0, NULL);
	ck_assert_ptr_nonnull(w);
	bq_worker_free(w);

	/* Every allocation failure while creating leaves nothing behind (ASan checks). */
	w = NULL;
	for (unsigned long n = 1; n < 50 && !w; n++) {
		bq_alloc_fail_nth(n);
		w = bq_worker_new(loop, 0, 0, NULL);
		bq_alloc_fail_nth(0);
	}
	ck_assert_ptr_nonnull(w);

	ck_assert_int_eq(bq_worker_submit(NULL, job_work, job_done, &j), -EINVAL);
	ck_assert_int_eq(bq_worker_submit(w, NULL, job_done, &j), -EINVAL);
	ck_assert_int_eq(bq_worker_submit(w, job_work, NULL, &j), -EINVAL);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &j), -ENOMEM);
	bq_alloc_fail_nth(0);
	bq_loop_run_once(loop, 20);
	ck_assert_int_eq(j.work_calls, 0);
	ck_assert_int_eq(j.done_calls, 0);

	ck_assert_int_eq(bq_worker_submit(w, job_work, job_done, &j), 0);
	ck_assert(bq_test_run_until(loop, all_done, &c, 5000));
	ck_assert_int_eq(j.done_calls, 1);
	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

static Suite *worker_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("worker");

	tcase_add_test(tc, test_many_jobs_exactly_once);
	tcase_add_test(tc, test_done_in_completion_order);
	tcase_add_test(tc, test_eagain_at_max_queued);
	tcase_add_test(tc, test_free_cancels_queued);
	tcase_add_test(tc, test_free_delivers_finished);
	tcase_add_test(tc, test_slow_job_does_not_block_loop);
	tcase_add_test(tc, test_submit_from_done);
	tcase_add_test(tc, test_bad_arguments_and_enomem);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(worker_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
