/* SPDX-License-Identifier: MIT */
/*
 * worker: a fixed thread pool whose results come back to the loop (design:
 * docs/internals/core.md, "worker").
 *
 * Threads and what each may touch:
 *   loop thread  job allocation and freeing, the async, logging, `freeing`.
 *   pool threads the job they have taken (its work and user_data) and nothing else.
 *   both         the fields under "shared", only with mu held.
 * A job is handed over through the locked lists, which is what orders every write the
 * work function made before the done callback's reads on the loop thread.
 */
#include "core/worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "core/alloc.h"

#define MOD "worker"

struct job {
	struct job *next;
	bq_work_fn work;
	bq_work_done_cb done;
	void *user_data;
};

struct job_list {
	struct job *head;
	struct job *tail;
};

struct bq_worker {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_async *async;
	size_t max_queued;
	bool freeing;
	unsigned nthreads; /* started */
	pthread_t threads[BQ_WORKER_MAX_THREADS];

	/* shared */
	pthread_mutex_t mu;
	pthread_cond_t cond; /* signalled when a job is queued or when stopping */
	struct job_list queue;
	struct job_list finished; /* in completion order, waiting for the loop */
	bool stopping;
	size_t queued;
	size_t running;
	uint64_t completed;
	uint64_t cancelled;
	uint64_t rejected;
};

static void list_push(struct job_list *l, struct job *j)
{
	j->next = NULL;
	if (l->tail) {
		l->tail->next = j;
	} else {
		l->head = j;
	}
	l->tail = j;
}

static struct job *list_take_all(struct job_list *l)
{
	struct job *head = l->head;

	l->head = NULL;
	l->tail = NULL;
	return head;
}

static void *thread_main(void *arg)
{
	struct bq_worker *w = arg;
	struct job *j;
	bool wake;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stopping && !w->queue.head) {
			pthread_cond_wait(&w->cond, &w->mu);
		}
		/* Jobs still queued at stop belong to bq_worker_free, which cancels them. */
		if (w->stopping) {
			break;
		}
		j = w->queue.head;
		w->queue.head = j->next;
		if (!w->queue.head) {
			w->queue.tail = NULL;
		}
		w->queued--;
		w->running++;
		pthread_mutex_unlock(&w->mu);

		j->work(j->user_data);

		pthread_mutex_lock(&w->mu);
		w->running--;
		w->completed++;
		/*
		 * One wake-up per batch: the loop empties the whole list in one callback, so
		 * only the job that finds it empty has to send.
		 */
		wake = !w->finished.head;
		list_push(&w->finished, j);
		if (wake) {
			/* Cannot fail short of a closed descriptor; the async outlives us. */
			(void)bq_async_send(w->async);
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Run and free a chain of jobs; done may submit more (to the lists, not this chain). */
static void run_done(struct job *j, bool cancelled)
{
	struct job *next;

	for (; j; j = next) {
		next = j->next;
		j->done(j->user_data, cancelled);
		bq_free(j);
	}
}

static void async_cb(struct bq_async *a, void *user_data)
{
	struct bq_worker *w = user_data;
	struct job *j;

	pthread_mutex_lock(&w->mu);
	j = list_take_all(&w->finished);
	pthread_mutex_unlock(&w->mu);
	run_done(j, false);
}

/* Pool threads must never take a process signal: the loop handles them via signalfd. */
static int start_thread(struct bq_worker *w, pthread_t *t)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, thread_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

static void stop_threads(struct bq_worker *w)
{
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < w->nthreads; i++) {
		pthread_join(w->threads[i], NULL);
	}
	w->nthreads = 0;
}

struct bq_worker *bq_worker_new(struct bq_loop *loop, unsigned threads, size_t max_queued,
				struct bq_log *log)
{
	struct bq_worker *w;
	int err;

	if (!loop || threads > BQ_WORKER_MAX_THREADS) {
		bq_warn(log, MOD, "msg=\"bad arguments\" threads=%u max=%u", threads,
			BQ_WORKER_MAX_THREADS);
		return NULL;
	}
	w = bq_calloc(1, sizeof(*w));
	if (!w) {
		return NULL;
	}
	w->loop = loop;
	w->log = log;
	w->max_queued = max_queued ? max_queued : BQ_WORKER_DEFAULT_MAX_QUEUED;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		goto err_free;
	}
	if (pthread_cond_init(&w->cond, NULL) != 0) {
		goto err_mutex;
	}
	w->async = bq_async_new(loop, async_cb, w);
	if (!w->async) {
		goto err_cond;
	}
	threads = threads ? threads : BQ_WORKER_DEFAULT_THREADS;
	for (unsigned i = 0; i < threads; i++) {
		err = start_thread(w, &w->threads[i]);
		if (err < 0) {
			bq_err(log, MOD, "msg=\"cannot start thread\" n=%u err=%d", i, err);
			goto err_threads;
		}
		w->nthreads++;
	}
	bq_debug(log, MOD, "msg=\"started\" threads=%u max_queued=%zu", w->nthreads, w->max_queued);
	return w;

err_threads:
	stop_threads(w);
	bq_async_free(w->async);
err_cond:
	pthread_cond_destroy(&w->cond);
err_mutex:
	pthread_mutex_destroy(&w->mu);
err_free:
	bq_free(w);
	return NULL;
}

int bq_worker_submit(struct bq_worker *w, bq_work_fn work, bq_work_done_cb done, void *user_data)
{
	struct job *j;

	if (!w || !work || !done) {
		return -EINVAL;
	}
	if (w->freeing) {
		return -ESHUTDOWN;
	}
	j = bq_malloc(sizeof(*j));
	if (!j) {
		return -ENOMEM;
	}
	j->work = work;
	j->done = done;
	j->user_data = user_data;

	pthread_mutex_lock(&w->mu);
	if (w->queued >= w->max_queued) {
		w->rejected++;
		pthread_mutex_unlock(&w->mu);
		bq_free(j);
		return -EAGAIN;
	}
	list_push(&w->queue, j);
	w->queued++;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void bq_worker_get_stats(const struct bq_worker *w, struct bq_worker_stats *out)
{
	/* The mutex is the only thing touched through the cast; w was never const-defined. */
	struct bq_worker *mw = (struct bq_worker *)w;

	memset(out, 0, sizeof(*out));
	if (!w) {
		return;
	}
	pthread_mutex_lock(&mw->mu);
	out->queued = w->queued;
	out->running = w->running;
	out->completed = w->completed;
	out->cancelled = w->cancelled;
	out->rejected = w->rejected;
	pthread_mutex_unlock(&mw->mu);
}

void bq_worker_free(struct bq_worker *w)
{
	struct job *unstarted, *finished;
	size_t n_cancel;

	if (!w) {
		return;
	}
	w->freeing = true;

	/* Take the unstarted jobs first so no thread picks one up while we join. */
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	unstarted = list_take_all(&w->queue);
	n_cancel = w->queued;
	w->cancelled += n_cancel;
	w->queued = 0;
	pthread_mutex_unlock(&w->mu);

	stop_threads(w);

	/* The threads are gone: the lists are ours without the lock from here on. */
	finished = list_take_all(&w->finished);
	if (n_cancel || finished) {
		bq_debug(w->log, MOD, "msg=\"stopping\" cancelled=%zu", n_cancel);
	}
	run_done(finished, false);
	run_done(unstarted, true);

	bq_async_free(w->async);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	bq_free(w);
}
