/* SPDX-License-Identifier: MIT */
/*
 * The event loop. Design and callback contract: docs/internals/loop.md.
 *
 * One round of bq_loop_run_once: epoll_wait (level-triggered, batch of BQ_LOOP_BATCH),
 * I/O callbacks, expired timers, deferred calls, before-sleep hooks.
 */
#include "loop/loop.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/alloc.h"
#include "loop/heap.h"

#define BQ_LOOP_BATCH 256
/* Deferred calls queued by deferred calls run in the same round, but only this deep. */
#define BQ_DEFER_PASSES 3
/* bq_loop_free drains deferred calls harder: nothing may be left behind, but no hang. */
#define BQ_DEFER_FREE_PASSES 64

struct io_entry {
	bq_io_cb cb;
	void *user_data;
	unsigned events;
	/*
	 * Bumped on every add and remove. epoll_event.data carries (fd | gen << 32), so an
	 * event fetched before a remove (or remove + re-add) in the same batch no longer
	 * matches and is dropped.
	 */
	uint32_t gen;
	bool active;
};

struct sig_entry {
	bq_signal_cb cb;
	void *user_data;
};

struct defer_item {
	bq_defer_cb fn;
	void *user_data;
};

struct defer_queue {
	struct defer_item *items;
	size_t n;
	size_t cap;
};

struct hook {
	bq_hook_cb cb; /* NULL once removed while the hooks were running */
	void *user_data;
};

struct bq_timer {
	struct bq_heap_node node; /* key: due time, loop-clock microseconds */
	struct bq_loop *loop;	  /* NULL once the loop is gone */
	bq_timer_cb cb;
	void *user_data;
	/* Every timer of a loop, armed or not, so bq_loop_free can detach them. */
	struct bq_timer *prev;
	struct bq_timer *next;
};

struct bq_async {
	struct bq_loop *loop; /* NULL once the loop is gone */
	int fd;
	bq_async_cb cb;
	void *user_data;
	struct bq_async *prev;
	struct bq_async *next;
};

struct bq_loop {
	const struct bq_clock *clock;
	struct bq_log *log;
	int epfd;
	bool stop;

	struct io_entry *io; /* indexed by fd, grown on demand */
	size_t nio;

	struct bq_heap *timers;
	struct bq_timer *all_timers;
	struct bq_async *all_asyncs;

	int sigfd;
	sigset_t sigmask;
	struct sig_entry sigs[NSIG];

	struct defer_queue defer;   /* queued */
	struct defer_queue running; /* being run; swapped with defer each pass */

	struct hook *hooks;
	size_t nhooks;
	size_t cap_hooks;
	bool in_hooks;
	bool hooks_dirty;

	struct epoll_event events[BQ_LOOP_BATCH];
};

static const char *const MOD = "loop";

/* ---- lifetime ---------------------------------------------------------------------- */

struct bq_loop *bq_loop_new(const struct bq_clock *clock, struct bq_log *log)
{
	struct bq_loop *loop = bq_calloc(1, sizeof(*loop));

	if (!loop) {
		return NULL;
	}
	loop->clock = clock ? clock : bq_clock_system();
	loop->log = log;
	loop->sigfd = -1;
	sigemptyset(&loop->sigmask);
	loop->timers = bq_heap_new();
	if (!loop->timers) {
		goto err;
	}
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		bq_err(log, MOD, "msg=\"epoll_create1 failed\" err=%d", errno);
		goto err;
	}
	return loop;
err:
	bq_heap_free(loop->timers);
	bq_free(loop);
	return NULL;
}

static void run_deferred(struct bq_loop *loop, int passes, int *count);

void bq_loop_free(struct bq_loop *loop)
{
	if (!loop) {
		return;
	}
	run_deferred(loop, BQ_DEFER_FREE_PASSES, NULL);

	for (struct bq_timer *t = loop->all_timers; t; t = t->next) {
		t->loop = NULL;
	}
	/* Marks every node still armed as not in a heap. */
	bq_heap_free(loop->timers);
	/* The eventfds stay open until bq_async_free: a worker may still be sending. */
	for (struct bq_async *a = loop->all_asyncs; a; a = a->next) {
		a->loop = NULL;
	}
	if (loop->sigfd >= 0) {
		close(loop->sigfd);
	}
	close(loop->epfd);
	bq_free(loop->io);
	bq_free(loop->defer.items);
	bq_free(loop->running.items);
	bq_free(loop->hooks);
	bq_free(loop);
}

void bq_loop_stop(struct bq_loop *loop)
{
	loop->stop = true;
}

bool bq_loop_stopped(const struct bq_loop *loop)
{
	return loop->stop;
}

uint64_t bq_loop_now_us(const struct bq_loop *loop)
{
	return bq_clock_now_us(loop->clock);
}

uint64_t bq_loop_now_ms(const struct bq_loop *loop)
{
	return bq_clock_now_ms(loop->clock);
}

const struct bq_clock *bq_loop_clock(const struct bq_loop *loop)
{
	return loop->clock;
}

struct bq_log *bq_loop_log(const struct bq_loop *loop)
{
	return loop->log;
}

/* ---- descriptors ------------------------------------------------------------------- */

static uint32_t to_epoll(unsigned events)
{
	uint32_t e = 0;

	if (events & BQ_EV_READ) {
		e |= EPOLLIN;
	}
	if (events & BQ_EV_WRITE) {
		e |= EPOLLOUT;
	}
	return e;
}

static int io_reserve(struct bq_loop *loop, int fd)
{
	size_t need = (size_t)fd + 1;
	size_t n;
	struct io_entry *io;

	if (need <= loop->nio) {
		return 0;
	}
	n = loop->nio ? loop->nio : 64;
	while (n < need) {
		n *= 2;
	}
	io = bq_realloc(loop->io, n * sizeof(*io));
	if (!io) {
		return -ENOMEM;
	}
	memset(io + loop->nio, 0, (n - loop->nio) * sizeof(*io));
	loop->io = io;
	loop->nio = n;
	return 0;
}

static struct io_entry *io_lookup(struct bq_loop *loop, int fd)
{
	if (fd < 0 || (size_t)fd >= loop->nio || !loop->io[fd].active) {
		return NULL;
	}
	return &loop->io[fd];
}

int bq_loop_io_add(struct bq_loop *loop, int fd, unsigned events, bq_io_cb cb, void *user_data)
{
	struct epoll_event ev = {0};
	struct io_entry *e;
	int r;

	if (fd < 0 || !cb) {
		return fd < 0 ? -EBADF : -EINVAL;
	}
	if (io_lookup(loop, fd)) {
		return -EEXIST;
	}
	r = io_reserve(loop, fd);
	if (r < 0) {
		return r;
	}
	e = &loop->io[fd];
	e->gen++;
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)(uint32_t)fd | (uint64_t)e->gen << 32;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		return -errno;
	}
	e->cb = cb;
	e->user_data = user_data;
	e->events = events;
	e->active = true;
	return 0;
}

int bq_loop_io_modify(struct bq_loop *loop, int fd, unsigned events)
{
	struct epoll_event ev = {0};
	struct io_entry *e = io_lookup(loop, fd);

	if (!e) {
		return -ENOENT;
	}
	if (to_epoll(events) == to_epoll(e->events)) {
		e->events = events;
		return 0;
	}
	ev.events = to_epoll(events);
	ev.data.u64 = (uint64_t)(uint32_t)fd | (uint64_t)e->gen << 32;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) {
		return -errno;
	}
	e->events = events;
	return 0;
}

void bq_loop_io_remove(struct bq_loop *loop, int fd)
{
	struct io_entry *e = io_lookup(loop, fd);

	if (!e) {
		return;
	}
	/* Fails harmlessly with EBADF if the owner already closed fd. */
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	e->gen++;
	e->active = false;
	e->cb = NULL;
	e->user_data = NULL;
	e->events = 0;
}

static int dispatch_io(struct bq_loop *loop, int nev)
{
	int count = 0;

	for (int i = 0; i < nev; i++) {
		uint64_t data = loop->events[i].data.u64;
		uint32_t ep = loop->events[i].events;
		int fd = (int)(uint32_t)data;
		/* Re-read every time: a callback may grow (move) the table. */
		struct io_entry *e = io_lookup(loop, fd);
		unsigned ev = 0;

		if (!e || e->gen != (uint32_t)(data >> 32)) {
			continue;
		}
		if ((ep & (EPOLLIN | EPOLLPRI)) && (e->events & BQ_EV_READ)) {
			ev |= BQ_EV_READ;
		}
		if ((ep & EPOLLOUT) && (e->events & BQ_EV_WRITE)) {
			ev |= BQ_EV_WRITE;
		}
		if (ep & (EPOLLERR | EPOLLHUP)) {
			ev |= BQ_EV_ERROR;
		}
		/* Interest narrowed by a callback earlier in this batch. */
		if (!ev) {
			continue;
		}
		e->cb(loop, fd, ev, e->user_data);
		count++;
	}
	return count;
}

/* ---- timers ------------------------------------------------------------------------ */

struct bq_timer *bq_timer_new(struct bq_loop *loop, bq_timer_cb cb, void *user_data)
{
	struct bq_timer *t;

	if (!loop || !cb) {
		return NULL;
	}
	t = bq_calloc(1, sizeof(*t));
	if (!t) {
		return NULL;
	}
	bq_heap_node_init(&t->node);
	t->loop = loop;
	t->cb = cb;
	t->user_data = user_data;
	t->next = loop->all_timers;
	if (t->next) {
		t->next->prev = t;
	}
	loop->all_timers = t;
	return t;
}

int bq_timer_start(struct bq_timer *t, uint64_t delay_ms)
{
	uint64_t now, due;

	if (!t->loop) {
		return -EINVAL;
	}
	now = bq_clock_now_us(t->loop->clock);
	/* Saturate instead of wrapping: a huge delay means "never", not "now". */
	if (delay_ms > (UINT64_MAX - now) / 1000) {
		due = UINT64_MAX;
	} else {
		due = now + delay_ms * 1000;
	}
	if (bq_heap_node_active(&t->node)) {
		/* In place: re-arming never allocates, so it cannot fail. */
		bq_heap_update(t->loop->timers, &t->node, due);
		return 0;
	}
	t->node.key = due;
	return bq_heap_push(t->loop->timers, &t->node);
}

void bq_timer_stop(struct bq_timer *t)
{
	if (t->loop) {
		bq_heap_remove(t->loop->timers, &t->node);
	}
}

bool bq_timer_active(const struct bq_timer *t)
{
	return bq_heap_node_active(&t->node);
}

uint64_t bq_timer_due_us(const struct bq_timer *t)
{
	return bq_heap_node_active(&t->node) ? t->node.key : 0;
}

void bq_timer_free(struct bq_timer *t)
{
	struct bq_loop *loop;

	if (!t) {
		return;
	}
	loop = t->loop;
	if (loop) {
		bq_heap_remove(loop->timers, &t->node);
		if (t->prev) {
			t->prev->next = t->next;
		} else {
			loop->all_timers = t->next;
		}
		if (t->next) {
			t->next->prev = t->prev;
		}
	}
	bq_free(t);
}

int64_t bq_loop_next_timer_ms(const struct bq_loop *loop)
{
	const struct bq_heap_node *n = bq_heap_peek(loop->timers);
	uint64_t now, left, ms;

	if (!n) {
		return -1;
	}
	now = bq_clock_now_us(loop->clock);
	if (n->key <= now) {
		return 0;
	}
	/* Round up: waking a little early would only spin until the timer is due. */
	left = n->key - now;
	ms = left / 1000 + (left % 1000 != 0);
	return ms > INT64_MAX ? INT64_MAX : (int64_t)ms;
}

static struct bq_timer *timer_of(struct bq_heap_node *n)
{
	return (struct bq_timer *)((char *)n - offsetof(struct bq_timer, node));
}

static int dispatch_timers(struct bq_loop *loop)
{
	uint64_t now = bq_clock_now_us(loop->clock);
	/*
	 * Only timers armed before this point fire in this round, so a callback that
	 * re-arms with delay 0 runs again next round instead of spinning here. Due times
	 * are never in the past when armed (monotonic clock), so a newer node can only
	 * reach the top once no older due node is left.
	 */
	uint64_t seq_limit = bq_heap_next_seq(loop->timers);
	int count = 0;

	for (;;) {
		struct bq_heap_node *n = bq_heap_peek(loop->timers);
		struct bq_timer *t;

		if (!n || n->key > now || n->seq >= seq_limit) {
			break;
		}
		bq_heap_pop(loop->timers);
		t = timer_of(n);
		/* t may be freed or re-armed by the callback; do not touch it afterwards. */
		t->cb(t, t->user_data);
		count++;
	}
	return count;
}

/* ---- signals ----------------------------------------------------------------------- */

static void signal_io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct signalfd_siginfo si[16];

	for (;;) {
		ssize_t r = read(fd, si, sizeof(si));

		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			if (errno != EAGAIN) {
				bq_warn(loop->log, MOD, "msg=\"signalfd read failed\" err=%d",
					errno);
			}
			return;
		}
		for (size_t i = 0; i < (size_t)r / sizeof(si[0]); i++) {
			int signo = (int)si[i].ssi_signo;

			if (signo > 0 && signo < NSIG && loop->sigs[signo].cb) {
				loop->sigs[signo].cb(loop, signo, loop->sigs[signo].user_data);
			}
		}
		if ((size_t)r < sizeof(si)) {
			return;
		}
	}
}

int bq_loop_signal(struct bq_loop *loop, int signo, bq_signal_cb cb, void *user_data)
{
	sigset_t one, mask, old;
	bool first = loop->sigfd < 0;
	int fd, r;

	if (signo <= 0 || signo >= NSIG || !cb) {
		return -EINVAL;
	}
	if (loop->sigs[signo].cb) {
		return -EEXIST;
	}
	sigemptyset(&one);
	sigaddset(&one, signo);
	/* Blocked first, so no instance slips through to the default action. */
	r = pthread_sigmask(SIG_BLOCK, &one, &old);
	if (r != 0) {
		return -r;
	}
	mask = loop->sigmask;
	sigaddset(&mask, signo);
	fd = signalfd(loop->sigfd, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto err_unblock;
	}
	if (first) {
		r = bq_loop_io_add(loop, fd, BQ_EV_READ, signal_io_cb, NULL);
		if (r < 0) {
			close(fd);
			goto err_unblock;
		}
		loop->sigfd = fd;
	}
	loop->sigmask = mask;
	loop->sigs[signo].cb = cb;
	loop->sigs[signo].user_data = user_data;
	return 0;

err_unblock:
	if (!sigismember(&old, signo)) {
		pthread_sigmask(SIG_UNBLOCK, &one, NULL);
	}
	return r;
}

/* ---- deferred calls and hooks ------------------------------------------------------ */

int bq_loop_defer(struct bq_loop *loop, bq_defer_cb fn, void *user_data)
{
	struct defer_queue *q = &loop->defer;

	if (!fn) {
		return -EINVAL;
	}
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		struct defer_item *items = bq_realloc(q->items, cap * sizeof(*items));

		if (!items) {
			return -ENOMEM;
		}
		q->items = items;
		q->cap = cap;
	}
	q->items[q->n].fn = fn;
	q->items[q->n].user_data = user_data;
	q->n++;
	return 0;
}

static void run_deferred(struct bq_loop *loop, int passes, int *count)
{
	for (int p = 0; p < passes && loop->defer.n; p++) {
		/* Swap so calls queued from here land in the (now empty) other array. */
		struct defer_queue q = loop->defer;

		loop->defer = loop->running;
		loop->running = q;
		for (size_t i = 0; i < loop->running.n; i++) {
			struct defer_item *d = &loop->running.items[i];

			d->fn(d->user_data);
			if (count) {
				(*count)++;
			}
		}
		loop->running.n = 0;
	}
}

int bq_loop_before_sleep(struct bq_loop *loop, bq_hook_cb cb, void *user_data)
{
	if (!cb) {
		return -EINVAL;
	}
	if (loop->nhooks == loop->cap_hooks) {
		size_t cap = loop->cap_hooks ? loop->cap_hooks * 2 : 8;
		struct hook *hooks = bq_realloc(loop->hooks, cap * sizeof(*hooks));

		if (!hooks) {
			return -ENOMEM;
		}
		loop->hooks = hooks;
		loop->cap_hooks = cap;
	}
	loop->hooks[loop->nhooks].cb = cb;
	loop->hooks[loop->nhooks].user_data = user_data;
	loop->nhooks++;
	return 0;
}

int bq_loop_before_sleep_remove(struct bq_loop *loop, bq_hook_cb cb, void *user_data)
{
	for (size_t i = 0; i < loop->nhooks; i++) {
		struct hook *h = &loop->hooks[i];

		if (h->cb != cb || h->user_data != user_data) {
			continue;
		}
		if (loop->in_hooks) {
			/* Compacted after the hooks ran; indices must not move under them. */
			h->cb = NULL;
			loop->hooks_dirty = true;
		} else {
			memmove(h, h + 1, (loop->nhooks - i - 1) * sizeof(*h));
			loop->nhooks--;
		}
		return 0;
	}
	return -ENOENT;
}

static void run_hooks(struct bq_loop *loop)
{
	/* Hooks added by a hook run from the next round on. */
	size_t n = loop->nhooks;
	size_t j = 0;

	loop->in_hooks = true;
	for (size_t i = 0; i < n; i++) {
		struct hook h = loop->hooks[i];

		if (h.cb) {
			h.cb(loop, h.user_data);
		}
	}
	loop->in_hooks = false;
	if (!loop->hooks_dirty) {
		return;
	}
	for (size_t i = 0; i < loop->nhooks; i++) {
		if (loop->hooks[i].cb) {
			loop->hooks[j++] = loop->hooks[i];
		}
	}
	loop->nhooks = j;
	loop->hooks_dirty = false;
}

/* ---- running ----------------------------------------------------------------------- */

int bq_loop_run_once(struct bq_loop *loop, int timeout_ms)
{
	int64_t next = bq_loop_next_timer_ms(loop);
	int wait = timeout_ms < 0 ? -1 : timeout_ms;
	int count = 0;
	int nev;

	if (next >= 0 && (wait < 0 || next < wait)) {
		wait = next > INT_MAX ? INT_MAX : (int)next;
	}
	if (loop->defer.n) {
		wait = 0;
	}
	nev = epoll_wait(loop->epfd, loop->events, BQ_LOOP_BATCH, wait);
	if (nev < 0) {
		if (errno != EINTR) {
			int err = errno;

			bq_err(loop->log, MOD, "msg=\"epoll_wait failed\" err=%d", err);
			return -err;
		}
		nev = 0;
	}
	count += dispatch_io(loop, nev);
	count += dispatch_timers(loop);
	run_deferred(loop, BQ_DEFER_PASSES, &count);
	run_hooks(loop);
	return count;
}

int bq_loop_run(struct bq_loop *loop)
{
	loop->stop = false;
	while (!loop->stop) {
		int r = bq_loop_run_once(loop, -1);

		if (r < 0) {
			return r;
		}
	}
	return 0;
}

/* ---- async ------------------------------------------------------------------------- */

static void async_io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct bq_async *a = user_data;
	uint64_t v;

	/* Reading resets the counter: every send since the last read becomes one call. */
	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
		return;
	}
	a->cb(a, a->user_data);
}

struct bq_async *bq_async_new(struct bq_loop *loop, bq_async_cb cb, void *user_data)
{
	struct bq_async *a;

	if (!loop || !cb) {
		return NULL;
	}
	a = bq_calloc(1, sizeof(*a));
	if (!a) {
		return NULL;
	}
	a->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (a->fd < 0) {
		bq_warn(loop->log, MOD, "msg=\"eventfd failed\" err=%d", errno);
		bq_free(a);
		return NULL;
	}
	if (bq_loop_io_add(loop, a->fd, BQ_EV_READ, async_io_cb, a) < 0) {
		close(a->fd);
		bq_free(a);
		return NULL;
	}
	a->loop = loop;
	a->cb = cb;
	a->user_data = user_data;
	a->next = loop->all_asyncs;
	if (a->next) {
		a->next->prev = a;
	}
	loop->all_asyncs = a;
	return a;
}

int bq_async_send(struct bq_async *a)
{
	uint64_t one = 1;

	for (;;) {
		if (write(a->fd, &one, sizeof(one)) == (ssize_t)sizeof(one)) {
			return 0;
		}
		if (errno == EINTR) {
			continue;
		}
		/* The counter is full, so a wake-up is already pending: coalesced. */
		if (errno == EAGAIN) {
			return 0;
		}
		return -errno;
	}
}

void bq_async_free(struct bq_async *a)
{
	struct bq_loop *loop;

	if (!a) {
		return;
	}
	loop = a->loop;
	if (loop) {
		bq_loop_io_remove(loop, a->fd);
		if (a->prev) {
			a->prev->next = a->next;
		} else {
			loop->all_asyncs = a->next;
		}
		if (a->next) {
			a->next->prev = a->prev;
		}
	}
	close(a->fd);
	bq_free(a);
}
