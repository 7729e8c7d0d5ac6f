/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "loop/loop.h"
#include "store/db.h"
#include "store/outbox.h"
#include "testutil.h"

#define MAX_CALLS 60000

/* What the accept callbacks saw, in the order they ran. */
struct calls {
	size_t n;
	size_t want;
	uint64_t ids[MAX_CALLS];
	int errs[MAX_CALLS];
};

static struct calls calls;

static void accept_cb(struct bq_outbox *ob, int err, uint64_t id, void *user_data)
{
	ck_assert_ptr_eq(user_data, &calls);
	ck_assert_uint_lt(calls.n, MAX_CALLS);
	calls.ids[calls.n] = id;
	calls.errs[calls.n] = err;
	calls.n++;
}

static bool all_called(void *ud)
{
	return calls.n >= calls.want;
}

static void make_path(char *out, size_t cap, const char *name)
{
	const char *dir = bq_test_tmpdir();

	ck_assert_ptr_nonnull(dir);
	snprintf(out, cap, "%s/%s", dir, name);
}

static struct bq_outbox *open_ob(struct bq_loop *loop, const char *path, size_t max_ops,
				 bool sync_normal)
{
	struct bq_outbox_opts opts = {.max_ops = max_ops, .sync_normal = sync_normal};
	struct bq_outbox *ob = NULL;

	ck_assert_int_eq(bq_outbox_open(path, loop, NULL, &opts, &ob), 0);
	ck_assert_ptr_nonnull(ob);
	return ob;
}

static int accept1(struct bq_outbox *ob, uint64_t id, const char *from, const char *to,
		   const char *body, uint64_t *id_out)
{
	struct bq_outbox_new m = {
		.id = id,
		.user_id = from,
		.destination = to,
		.body = body,
		.body_len = strlen(body),
	};

	return bq_outbox_accept(ob, &m, accept_cb, &calls, id_out);
}

static void wait_calls(struct bq_loop *loop, size_t want)
{
	calls.want = want;
	ck_assert(bq_test_run_until(loop, all_called, NULL, 20000));
	ck_assert_uint_eq(calls.n, want);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void setup(void)
{
	memset(&calls, 0, sizeof(calls));
}

START_TEST(test_names_and_ids)
{
	enum bq_outbox_state s;
	char buf[BQ_OUTBOX_ID_LEN + 1];
	uint64_t id;

	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_ACCEPTED), "accepted");
	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_QUEUED), "queued");
	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_SENT), "sent");
	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_DELIVERED), "delivered");
	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_FAILED), "failed");
	ck_assert_str_eq(bq_outbox_state_name(BQ_OUTBOX_BROADCAST), "broadcast");
	ck_assert_str_eq(bq_outbox_state_label(BQ_OUTBOX_BROADCAST), "sent to mesh");
	ck_assert_str_eq(bq_outbox_state_label(BQ_OUTBOX_SENT), "sent");
	ck_assert_int_eq(bq_outbox_state_parse("delivered", &s), 0);
	ck_assert_int_eq(s, BQ_OUTBOX_DELIVERED);
	ck_assert_int_eq(bq_outbox_state_parse("sent to mesh", &s), -EINVAL);
	ck_assert_int_eq(bq_outbox_state_parse(NULL, &s), -EINVAL);
	ck_assert(!bq_outbox_state_terminal(BQ_OUTBOX_SENT));
	ck_assert(bq_outbox_state_terminal(BQ_OUTBOX_BROADCAST));
	ck_assert(bq_outbox_state_terminal(BQ_OUTBOX_FAILED));

	bq_outbox_id_format(0x0123456789abcdefULL, buf);
	ck_assert_str_eq(buf, "0123456789abcdef");
	bq_outbox_id_format(1, buf);
	ck_assert_str_eq(buf, "0000000000000001");
	ck_assert_int_eq(bq_outbox_id_parse("FFFFFFFFFFFFFFFF", &id), 0);
	ck_assert_uint_eq(id, UINT64_MAX);
	ck_assert_int_eq(bq_outbox_id_parse("0123456789abcdef", &id), 0);
	ck_assert_uint_eq(id, 0x0123456789abcdefULL);
	ck_assert_int_eq(bq_outbox_id_parse("0123456789abcde", &id), -EINVAL);
	ck_assert_int_eq(bq_outbox_id_parse("0123456789abcdef0", &id), -EINVAL);
	ck_assert_int_eq(bq_outbox_id_parse("0123456789abcdeg", &id), -EINVAL);
	ck_assert_int_eq(bq_outbox_id_parse("0000000000000000", &id), -EINVAL);
	ck_assert_int_eq(bq_outbox_id_parse("", &id), -EINVAL);
}
END_TEST

START_TEST(test_accept_then_readable)
{
	static const char body[] = "hello\0world"; /* any byte, NUL included */
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_msg *m;
	struct bq_outbox_new nm = {
		.id = 0,
		.user_id = "alice",
		.destination = "bob",
		.body = body,
		.body_len = sizeof(body) - 1,
	};
	uint64_t id = 0;

	make_path(path, sizeof(path), "deep/er/outbox.db");
	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(bq_outbox_accept(ob, &nm, accept_cb, &calls, &id), 0);
	ck_assert_uint_ne(id, 0);
	/* Never from inside accept: only after the commit, from the loop. */
	ck_assert_uint_eq(calls.n, 0);
	wait_calls(loop, 1);
	ck_assert_int_eq(calls.errs[0], 0);
	ck_assert_uint_eq(calls.ids[0], id);

	ck_assert_int_eq(bq_outbox_get(ob, id, &m), 0);
	ck_assert_uint_eq(m->id, id);
	ck_assert_str_eq(m->user_id, "alice");
	ck_assert_str_eq(m->destination, "bob");
	ck_assert_uint_eq(m->body_len, sizeof(body) - 1);
	ck_assert_mem_eq(m->body, body, sizeof(body));
	ck_assert_int_eq(m->state, BQ_OUTBOX_ACCEPTED);
	ck_assert_ptr_null(m->reason);
	ck_assert_uint_eq(m->attempts, 0);
	ck_assert_uint_gt(m->created_ms, 1600000000000ULL);
	ck_assert_uint_eq(m->updated_ms, m->created_ms);
	ck_assert_uint_eq(m->n_events, 1);
	ck_assert_int_eq(m->events[0].state, BQ_OUTBOX_ACCEPTED);
	ck_assert_uint_eq(m->events[0].at_ms, m->created_ms);
	bq_outbox_msg_free(m);

	ck_assert_int_eq(bq_outbox_get(ob, id ^ 1, &m), -ENOENT);
	ck_assert_ptr_null(m);
	bq_outbox_close(ob);
	ck_assert_uint_eq(calls.n, 1);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_bad_input_no_callback)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	char longname[BQ_OUTBOX_MAX_NAME + 2];
	char *big = bq_malloc(BQ_OUTBOX_MAX_BODY + 1);
	struct bq_outbox *ob;
	struct bq_outbox_new m = {.user_id = "a", .destination = "b", .body = big};
	struct bq_outbox_stats st;

	make_path(path, sizeof(path), "bad.db");
	ob = open_ob(loop, path, 0, false);
	memset(big, 'x', BQ_OUTBOX_MAX_BODY + 1);
	m.body_len = BQ_OUTBOX_MAX_BODY + 1;
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), -EMSGSIZE);
	m.body_len = BQ_OUTBOX_MAX_BODY; /* the maximum itself is fine */
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), 0);
	m.body_len = 0;
	m.body = NULL; /* empty body */
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), 0);
	m.user_id = "";
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), -EINVAL);
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	m.user_id = longname;
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), -EINVAL);
	longname[BQ_OUTBOX_MAX_NAME] = '\0';
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), 0);
	m.destination = NULL;
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), -EINVAL);
	m.destination = "b";
	m.body_len = 3; /* length without a pointer */
	ck_assert_int_eq(bq_outbox_accept(ob, &m, accept_cb, &calls, NULL), -EINVAL);
	ck_assert_int_eq(bq_outbox_accept(ob, &m, NULL, NULL, NULL), -EINVAL);
	ck_assert_int_eq(bq_outbox_set_state(ob, 5, BQ_OUTBOX_ACCEPTED, NULL), -EINVAL);
	ck_assert_int_eq(bq_outbox_set_state(ob, 0, BQ_OUTBOX_SENT, NULL), -EINVAL);
	ck_assert_int_eq(bq_outbox_set_state(ob, 5, (enum bq_outbox_state)99, NULL), -EINVAL);
	wait_calls(loop, 3);
	ck_assert_int_eq(calls.errs[0], 0);
	ck_assert_int_eq(calls.errs[1], 0);
	ck_assert_int_eq(calls.errs[2], 0);
	bq_outbox_get_stats(ob, &st);
	ck_assert_uint_eq(st.accepted, 3);
	ck_assert_uint_eq(st.queued, 0);
	bq_outbox_close(ob);
	ck_assert_uint_eq(calls.n, 3);
	bq_free(big);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_callback_order_and_duplicates)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	uint64_t expect[2000];
	struct bq_outbox_msg *m;

	make_path(path, sizeof(path), "order.db");
	ob = open_ob(loop, path, 0, false);
	/* Several waves so the order holds across many transactions, not just within one. */
	for (size_t i = 0; i < 2000; i++) {
		uint64_t given = i % 3 == 0 ? 0x1000 + i : 0;

		ck_assert_int_eq(accept1(ob, given, "u", "v", "x", &expect[i]), 0);
		if (given) {
			ck_assert_uint_eq(expect[i], given);
		}
		if (i % 500 == 499) {
			bq_loop_run_once(loop, 0);
		}
	}
	/* A caller-given id that is already there fails alone; the row stays as it was. */
	ck_assert_int_eq(accept1(ob, 0x1000, "mallory", "v", "overwrite?", NULL), 0);
	ck_assert_int_eq(accept1(ob, 0x1000 + 3, "u", "v", "x", NULL), 0);
	ck_assert_int_eq(accept1(ob, 0x9999999, "u", "v", "after", NULL), 0);
	wait_calls(loop, 2003);
	for (size_t i = 0; i < 2000; i++) {
		ck_assert_uint_eq(calls.ids[i], expect[i]);
		ck_assert_int_eq(calls.errs[i], 0);
	}
	ck_assert_int_eq(calls.errs[2000], -EEXIST);
	ck_assert_uint_eq(calls.ids[2000], 0x1000);
	ck_assert_int_eq(calls.errs[2001], -EEXIST);
	ck_assert_int_eq(calls.errs[2002], 0);
	ck_assert_int_eq(bq_outbox_get(ob, 0x1000, &m), 0);
	ck_assert_str_eq(m->user_id, "u");
	ck_assert_str_eq(m->body, "x");
	bq_outbox_msg_free(m);
	ck_assert_int_eq(bq_outbox_get(ob, 0x9999999, &m), 0);
	ck_assert_str_eq(m->body, "after");
	bq_outbox_msg_free(m);
	bq_outbox_close(ob);
	bq_loop_free(loop);
}
END_TEST

static void run_bulk(const char *name, size_t n, bool sync_normal, bool check_all)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_stats st;
	uint64_t *ids = bq_calloc(n, sizeof(*ids));
	double t0, t1;

	memset(&calls, 0, sizeof(calls));
	make_path(path, sizeof(path), name);
	ob = open_ob(loop, path, 0, sync_normal);
	t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(
			accept1(ob, 0, "sender", "receiver", "a short chat message", &ids[i]), 0);
		/* Let completions run as they come, the way the manager's loop would. */
		if (i % 256 == 255) {
			bq_loop_run_once(loop, 0);
		}
	}
	wait_calls(loop, n);
	t1 = now_s();
	bq_outbox_get_stats(ob, &st);
	ck_assert_uint_eq(st.accepted, n);
	ck_assert_uint_eq(st.failed_ops, 0);
	printf("outbox: %zu accepts, synchronous=%s: %.0f msg/s end to end, %llu commits, "
	       "largest batch %zu\n",
	       n, sync_normal ? "NORMAL" : "FULL", (double)n / (t1 - t0),
	       (unsigned long long)st.commits, st.max_batch);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(calls.ids[i], ids[i]);
		ck_assert_int_eq(calls.errs[i], 0);
	}
	if (check_all) {
		for (size_t i = 0; i < n; i++) {
			struct bq_outbox_msg *m;

			ck_assert_int_eq(bq_outbox_get(ob, ids[i], &m), 0);
			ck_assert_int_eq(m->state, BQ_OUTBOX_ACCEPTED);
			bq_outbox_msg_free(m);
		}
	}
	/* One message at a time: every accept waits for its own fsync (no batching). */
	memset(&calls, 0, sizeof(calls));
	t0 = now_s();
	for (size_t i = 0; i < 200; i++) {
		ck_assert_int_eq(accept1(ob, 0, "sender", "receiver", "one by one", NULL), 0);
		wait_calls(loop, i + 1);
	}
	t1 = now_s();
	printf("outbox: synchronous=%s: one accept alone waits %.3f ms for its commit\n",
	       sync_normal ? "NORMAL" : "FULL", (t1 - t0) * 1000.0 / 200);
	bq_outbox_close(ob);
	bq_free(ids);
	bq_loop_free(loop);
}

/*
 * Under ASan every access and allocation costs several times more, and on a loaded
 * 2-core machine the bulk tests then ran past their limit: the sanitizer build checks the
 * same things on a tenth of the messages (the figures printed are the normal build's).
 */
#if defined(__SANITIZE_ADDRESS__)
#define BULK(n) ((n) / 10)
#else
#define BULK(n) (n)
#endif

START_TEST(test_bulk_50000)
{
	run_bulk("bulk.db", BULK(50000), false, true);
}
END_TEST

START_TEST(test_throughput_sync_normal)
{
	run_bulk("bulk-normal.db", BULK(20000), true, false);
}
END_TEST

/* ---- whole message lives: insert, queued, sent, delivered ---------------------------- */

struct committed {
	struct bq_outbox *ob;
	uint64_t updates;
};

static bool all_committed(void *ud)
{
	struct committed *c = ud;
	struct bq_outbox_stats st;

	bq_outbox_get_stats(c->ob, &st);
	return calls.n >= calls.want && st.updates >= c->updates && st.queued == 0;
}

/* Wait until want accept callbacks ran and updates state changes are committed. */
static void wait_committed(struct bq_loop *loop, struct bq_outbox *ob, size_t want,
			   uint64_t updates)
{
	struct committed c = {.ob = ob, .updates = updates};

	calls.want = want;
	ck_assert(bq_test_run_until(loop, all_committed, &c, 60000));
	ck_assert_uint_eq(calls.n, want);
}

static double cpu_s(void)
{
	struct rusage ru;

	ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/*
 * n messages, each through the four writes the manager makes. lag 0: all four queued
 * back to back (a batch holds whole lives); otherwise sent trails the insert by lag / 2
 * messages and delivered by lag, as when the answers come back later.
 */
static void run_lifecycle(const char *name, size_t n, size_t lag)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_stats st;
	uint64_t *ids = bq_calloc(n, sizeof(*ids));
	double t0, t1, c0, c1;

	memset(&calls, 0, sizeof(calls));
	make_path(path, sizeof(path), name);
	/* Room for every op at once: the figure is the writer's, not the back-pressure's. */
	ob = open_ob(loop, path, 4 * n, false);
	t0 = now_s();
	c0 = cpu_s();
	for (size_t i = 0; i < n + lag; i++) {
		if (i < n) {
			ck_assert_int_eq(accept1(ob, 0, "sender", "receiver",
						 "a short chat message", &ids[i]),
					 0);
			ck_assert_int_eq(bq_outbox_set_state(ob, ids[i], BQ_OUTBOX_QUEUED, NULL),
					 0);
		}
		if (i >= lag / 2 && i - lag / 2 < n) {
			ck_assert_int_eq(
				bq_outbox_set_state(ob, ids[i - lag / 2], BQ_OUTBOX_SENT, NULL), 0);
		}
		if (i >= lag && i - lag < n) {
			ck_assert_int_eq(
				bq_outbox_set_state(ob, ids[i - lag], BQ_OUTBOX_DELIVERED, NULL),
				0);
		}
		if (i % 256 == 255) {
			bq_loop_run_once(loop, 0);
		}
	}
	wait_committed(loop, ob, n, 3 * (uint64_t)n);
	t1 = now_s();
	c1 = cpu_s();
	bq_outbox_get_stats(ob, &st);
	ck_assert_uint_eq(st.accepted, n);
	ck_assert_uint_eq(st.updates, 3 * (uint64_t)n);
	ck_assert_uint_eq(st.failed_ops, 0);
	printf("outbox: %zu messages x (insert + queued + sent + delivered), lag %zu: %.0f msg/s "
	       "end to end, %.1f us CPU per message (all threads), %llu commits, largest batch "
	       "%zu\n",
	       n, lag, (double)n / (t1 - t0), (c1 - c0) * 1e6 / (double)n,
	       (unsigned long long)st.commits, st.max_batch);
	for (size_t i = 0; i < n; i++) {
		struct bq_outbox_msg *m;

		ck_assert_uint_eq(calls.ids[i], ids[i]);
		ck_assert_int_eq(calls.errs[i], 0);
		ck_assert_int_eq(bq_outbox_get(ob, ids[i], &m), 0);
		ck_assert_int_eq(m->state, BQ_OUTBOX_DELIVERED);
		ck_assert_uint_eq(m->attempts, 1);
		ck_assert_uint_eq(m->n_events, 4);
		ck_assert_int_eq(m->events[0].state, BQ_OUTBOX_ACCEPTED);
		ck_assert_int_eq(m->events[1].state, BQ_OUTBOX_QUEUED);
		ck_assert_int_eq(m->events[2].state, BQ_OUTBOX_SENT);
		ck_assert_int_eq(m->events[3].state, BQ_OUTBOX_DELIVERED);
		ck_assert_uint_eq(m->events[3].at_ms, m->updated_ms);
		bq_outbox_msg_free(m);
	}
	bq_outbox_close(ob);
	bq_free(ids);
	bq_loop_free(loop);
}

START_TEST(test_lifecycle_50000)
{
	run_lifecycle("life.db", BULK(50000), 0);
	run_lifecycle("life-lag.db", BULK(50000), 2000);
}
END_TEST

static void expect_history(struct bq_outbox_msg *m, const enum bq_outbox_state *want, size_t n)
{
	ck_assert_uint_eq(m->n_events, n);
	for (size_t i = 0; i < n; i++) {
		ck_assert_int_eq(m->events[i].state, want[i]);
		if (i) {
			ck_assert_uint_ge(m->events[i].at_ms, m->events[i - 1].at_ms);
		}
	}
}

START_TEST(test_states_and_history)
{
	static const enum bq_outbox_state h1[] = {
		BQ_OUTBOX_ACCEPTED, BQ_OUTBOX_QUEUED, BQ_OUTBOX_SENT,
		BQ_OUTBOX_QUEUED,   BQ_OUTBOX_SENT,   BQ_OUTBOX_DELIVERED,
	};
	static const enum bq_outbox_state h2[] = {BQ_OUTBOX_ACCEPTED, BQ_OUTBOX_FAILED};
	static const enum bq_outbox_state h3[] = {BQ_OUTBOX_ACCEPTED, BQ_OUTBOX_QUEUED,
						  BQ_OUTBOX_BROADCAST};
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	char longreason[BQ_OUTBOX_MAX_REASON + 50];
	struct bq_outbox *ob;
	struct bq_outbox_msg *m;
	uint64_t a, b, c;

	make_path(path, sizeof(path), "states.db");
	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(accept1(ob, 0, "alice", "bob", "one", &a), 0);
	/* Updates queued right behind the insert apply after it, in order. */
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_QUEUED, NULL), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_SENT, NULL), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_QUEUED, "link lost"), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_SENT, NULL), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_DELIVERED, NULL), 0);
	/* Terminal: ignored, and no history entry. */
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_FAILED, "late"), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, a, BQ_OUTBOX_SENT, NULL), 0);

	ck_assert_int_eq(accept1(ob, 0, "alice", "nobody", "two", &b), 0);
	memset(longreason, 'r', sizeof(longreason) - 1);
	longreason[sizeof(longreason) - 1] = '\0';
	memcpy(longreason, "unknown user", 12);
	ck_assert_int_eq(bq_outbox_set_state(ob, b, BQ_OUTBOX_FAILED, longreason), 0);

	ck_assert_int_eq(accept1(ob, 0, "alice", BQ_OUTBOX_BROADCAST_DEST, "three", &c), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, c, BQ_OUTBOX_QUEUED, NULL), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, c, BQ_OUTBOX_BROADCAST, NULL), 0);
	/* An unknown id is ignored too. */
	ck_assert_int_eq(bq_outbox_set_state(ob, 0xdeadULL, BQ_OUTBOX_SENT, NULL), 0);
	wait_calls(loop, 3);
	/* set_state has no callback: close is the flush that makes them all visible. */
	bq_outbox_close(ob);
	ob = open_ob(loop, path, 0, false);

	ck_assert_int_eq(bq_outbox_get(ob, a, &m), 0);
	ck_assert_int_eq(m->state, BQ_OUTBOX_DELIVERED);
	ck_assert_ptr_null(m->reason);
	ck_assert_uint_eq(m->attempts, 2);
	expect_history(m, h1, 6);
	ck_assert_str_eq(m->events[3].reason, "link lost");
	ck_assert_ptr_null(m->events[4].reason);
	ck_assert_uint_ge(m->updated_ms, m->created_ms);
	bq_outbox_msg_free(m);

	ck_assert_int_eq(bq_outbox_get(ob, b, &m), 0);
	ck_assert_int_eq(m->state, BQ_OUTBOX_FAILED);
	ck_assert_uint_eq(strlen(m->reason), BQ_OUTBOX_MAX_REASON);
	ck_assert_int_eq(strncmp(m->reason, "unknown user", 12), 0);
	ck_assert_uint_eq(m->attempts, 0);
	expect_history(m, h2, 2);
	ck_assert_str_eq(m->events[1].reason, m->reason);
	bq_outbox_msg_free(m);

	ck_assert_int_eq(bq_outbox_get(ob, c, &m), 0);
	ck_assert_int_eq(m->state, BQ_OUTBOX_BROADCAST);
	ck_assert_str_eq(bq_outbox_state_label(m->state), "sent to mesh");
	ck_assert_str_eq(m->destination, "broadcast");
	ck_assert_uint_eq(m->attempts, 1);
	expect_history(m, h3, 3);
	bq_outbox_msg_free(m);

	ck_assert_int_eq(bq_outbox_get(ob, 0xdeadULL, &m), -ENOENT);
	bq_outbox_close(ob);
	bq_loop_free(loop);
}
END_TEST

/* ---- several changes of one message in one transaction ------------------------------- */

/* One call a test made, and whether the outbox must apply it (see check_row). */
struct rec {
	uint64_t id;
	enum bq_outbox_state state; /* BQ_OUTBOX_ACCEPTED: the insert */
	const char *reason;
	uint64_t lo, hi; /* wall clock around the call: the event's at_ms lies inside */
	bool applies;
	int want_err; /* inserts: what the callback must report */
};

struct recs {
	size_t n;
	struct rec r[128];
};

static struct rec *rec_add(struct recs *rs, uint64_t id, enum bq_outbox_state s, const char *reason,
			   bool applies)
{
	struct rec *r;

	ck_assert_uint_lt(rs->n, sizeof(rs->r) / sizeof(rs->r[0]));
	r = &rs->r[rs->n++];
	r->id = id;
	r->state = s;
	r->reason = reason;
	r->applies = applies;
	r->lo = bq_wall_ms();
	return r;
}

static uint64_t rec_accept(struct bq_outbox *ob, struct recs *rs, uint64_t given, const char *from,
			   int want_err)
{
	struct rec *r = rec_add(rs, given, BQ_OUTBOX_ACCEPTED, NULL, want_err == 0);
	const char *body = want_err ? "overwrite?" : "m";

	ck_assert_int_eq(accept1(ob, given, from, "bob", body, &r->id), 0);
	r->hi = bq_wall_ms();
	r->want_err = want_err;
	return r->id;
}

static void rec_state(struct bq_outbox *ob, struct recs *rs, uint64_t id, enum bq_outbox_state s,
		      const char *reason, bool applies)
{
	struct rec *r = rec_add(rs, id, s, reason, applies);

	ck_assert_int_eq(bq_outbox_set_state(ob, id, s, reason), 0);
	r->hi = bq_wall_ms();
}

/*
 * The committed row of id: its history is exactly the applied calls on id, in call
 * order, each with its own reason and a time taken during its call; the row's state,
 * reason and updated_ms are the last applied call's.
 */
static void check_row(struct bq_outbox *ob, const struct recs *rs, uint64_t id,
		      enum bq_outbox_state want_state, uint32_t want_attempts, size_t want_events)
{
	struct bq_outbox_msg *m;
	const struct rec *last = NULL;
	size_t k = 0;

	ck_assert_int_eq(bq_outbox_get(ob, id, &m), 0);
	ck_assert_str_eq(m->user_id, "alice");
	ck_assert_str_eq(m->body, "m");
	ck_assert_int_eq(m->state, want_state);
	ck_assert_uint_eq(m->attempts, want_attempts);
	ck_assert_uint_eq(m->n_events, want_events);
	for (size_t i = 0; i < rs->n; i++) {
		const struct rec *r = &rs->r[i];
		const struct bq_outbox_event *ev;

		if (r->id != id || !r->applies) {
			continue;
		}
		ck_assert_uint_lt(k, m->n_events);
		ev = &m->events[k++];
		ck_assert_int_eq(ev->state, r->state);
		if (r->reason) {
			ck_assert_str_eq(ev->reason, r->reason);
		} else {
			ck_assert_ptr_null(ev->reason);
		}
		ck_assert_uint_ge(ev->at_ms, r->lo);
		ck_assert_uint_le(ev->at_ms, r->hi);
		last = r;
	}
	ck_assert_uint_eq(k, want_events);
	ck_assert_int_eq(last->state, want_state);
	ck_assert_uint_eq(m->created_ms, m->events[0].at_ms);
	ck_assert_uint_eq(m->updated_ms, m->events[k - 1].at_ms);
	if (last->reason) {
		ck_assert_str_eq(m->reason, last->reason);
	} else {
		ck_assert_ptr_null(m->reason);
	}
	bq_outbox_msg_free(m);
}

/*
 * Rows committed first, then one batch mixing whole lives, late changes after a terminal
 * one, unknown ids, duplicate ids and lives longer than one statement carries. Every
 * result is asserted; returns whether the ops after the filler really shared one
 * transaction (the writer takes what is queued when it wakes, so a split is possible).
 */
static bool coalesce_round(const char *name)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct recs *rs = bq_calloc(1, sizeof(*rs));
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_stats st;
	struct bq_db *lock = NULL;
	struct bq_outbox_msg *m;
	uint64_t e, d, t, u, a, b, c, l, f, dd, filler;
	uint64_t commits0, updates0, accepted0, n_states = 0, n_ok = 0;
	size_t first, n_accepts = 0, k = 0;
	bool one_batch;

	memset(&calls, 0, sizeof(calls));
	make_path(path, sizeof(path), name);
	ob = open_ob(loop, path, 0, false);

	/* Rows already in the database when the batch runs. */
	e = rec_accept(ob, rs, 0xe0, "alice", 0);
	rec_state(ob, rs, e, BQ_OUTBOX_QUEUED, NULL, true);
	d = rec_accept(ob, rs, 0xd0, "alice", 0);
	t = rec_accept(ob, rs, 0x70, "alice", 0);
	rec_state(ob, rs, t, BQ_OUTBOX_SENT, NULL, true);
	rec_state(ob, rs, t, BQ_OUTBOX_DELIVERED, NULL, true);
	u = rec_accept(ob, rs, 0x40, "alice", 0);
	wait_committed(loop, ob, 4, 3);
	bq_outbox_get_stats(ob, &st);
	commits0 = st.commits;
	updates0 = st.updates;
	accepted0 = st.accepted;

	/*
	 * With the write lock held elsewhere the writer takes the filler and waits in its
	 * BEGIN, so everything queued meanwhile is the next batch.
	 */
	ck_assert_int_eq(bq_db_open(path, 0, 100, NULL, &lock), 0);
	ck_assert_int_eq(bq_db_begin(lock), 0);
	filler = rec_accept(ob, rs, 0, "alice", 0);
	usleep(20000);
	first = rs->n;

	a = rec_accept(ob, rs, 0, "alice", 0);
	b = rec_accept(ob, rs, 0xb0, "alice", 0);
	rec_state(ob, rs, a, BQ_OUTBOX_QUEUED, NULL, true);
	rec_state(ob, rs, b, BQ_OUTBOX_QUEUED, "waiting for a link", true);
	rec_state(ob, rs, e, BQ_OUTBOX_SENT, NULL, true);
	rec_state(ob, rs, 0xdead, BQ_OUTBOX_SENT, NULL, false); /* unknown id */
	rec_state(ob, rs, a, BQ_OUTBOX_SENT, NULL, true);
	rec_state(ob, rs, t, BQ_OUTBOX_QUEUED, NULL, false); /* terminal before the batch */
	rec_state(ob, rs, b, BQ_OUTBOX_BROADCAST, NULL, true);
	c = rec_accept(ob, rs, 0xc0, "alice", 0);
	rec_state(ob, rs, c, BQ_OUTBOX_FAILED, "unknown user", true); /* first change ends it */
	rec_state(ob, rs, a, BQ_OUTBOX_DELIVERED, NULL, true);
	rec_state(ob, rs, e, BQ_OUTBOX_DELIVERED, "acked", true);
	/* Terminal earlier in the same batch: ignored, no history. */
	rec_state(ob, rs, a, BQ_OUTBOX_FAILED, "late", false);
	rec_state(ob, rs, b, BQ_OUTBOX_QUEUED, NULL, false);
	rec_state(ob, rs, c, BQ_OUTBOX_QUEUED, NULL, false);
	rec_state(ob, rs, c, BQ_OUTBOX_SENT, NULL, false);
	rec_state(ob, rs, e, BQ_OUTBOX_QUEUED, "late", false);
	rec_state(ob, rs, a, BQ_OUTBOX_SENT, NULL, false);
	/* A caller-given id already committed fails alone; its changes go to the row there. */
	rec_accept(ob, rs, d, "mallory", -EEXIST);
	rec_state(ob, rs, d, BQ_OUTBOX_QUEUED, "after the duplicate", true);
	rec_state(ob, rs, d, BQ_OUTBOX_SENT, NULL, true);
	/* The same caller-given id twice in the batch. */
	dd = rec_accept(ob, rs, 0xdd, "alice", 0);
	rec_state(ob, rs, dd, BQ_OUTBOX_QUEUED, NULL, true);
	rec_accept(ob, rs, dd, "mallory", -EEXIST);
	rec_state(ob, rs, dd, BQ_OUTBOX_SENT, NULL, true);
	/* A change queued before the insert of its id finds no row. */
	rec_state(ob, rs, 0xf0, BQ_OUTBOX_QUEUED, "too early", false);
	f = rec_accept(ob, rs, 0xf0, "alice", 0);
	rec_state(ob, rs, f, BQ_OUTBOX_SENT, NULL, true);
	/* Lives longer than one statement carries: a new row and a committed one. */
	l = rec_accept(ob, rs, 0x10, "alice", 0);
	for (int i = 0; i < 6; i++) {
		rec_state(ob, rs, l, BQ_OUTBOX_QUEUED, i ? "retry" : NULL, true);
		rec_state(ob, rs, u, BQ_OUTBOX_QUEUED, NULL, true);
		rec_state(ob, rs, l, BQ_OUTBOX_SENT, NULL, true);
		rec_state(ob, rs, u, BQ_OUTBOX_SENT, NULL, true);
	}
	rec_state(ob, rs, l, BQ_OUTBOX_DELIVERED, NULL, true);
	rec_state(ob, rs, u, BQ_OUTBOX_FAILED, "expired", true);
	rec_state(ob, rs, u, BQ_OUTBOX_DELIVERED, NULL, false);
	ck_assert_int_eq(bq_db_commit(lock), 0);
	bq_db_close(lock);

	for (size_t i = 0; i < rs->n; i++) {
		if (rs->r[i].state == BQ_OUTBOX_ACCEPTED) {
			n_accepts++;
			n_ok += i >= first - 1 && rs->r[i].want_err == 0;
		} else if (i >= first) {
			n_states++;
		}
	}
	wait_committed(loop, ob, n_accepts, updates0 + n_states);
	for (size_t i = 0; i < rs->n; i++) {
		if (rs->r[i].state == BQ_OUTBOX_ACCEPTED) {
			ck_assert_uint_eq(calls.ids[k], rs->r[i].id);
			ck_assert_int_eq(calls.errs[k], rs->r[i].want_err);
			k++;
		}
	}
	bq_outbox_get_stats(ob, &st);
	ck_assert_uint_eq(st.updates, updates0 + n_states);
	ck_assert_uint_eq(st.accepted, accepted0 + n_ok);
	ck_assert_uint_eq(st.failed_ops, 0);
	/* The filler alone then the rest, or all of it at once: the rest shared one batch. */
	one_batch = (st.commits == commits0 + 2 && st.max_batch == rs->n - first) ||
		    (st.commits == commits0 + 1 && st.max_batch == rs->n - first + 1);
	printf("outbox coalesce: %zu ops in %llu commits, largest batch %zu\n", rs->n - first + 1,
	       (unsigned long long)(st.commits - commits0), st.max_batch);

	check_row(ob, rs, filler, BQ_OUTBOX_ACCEPTED, 0, 1);
	check_row(ob, rs, a, BQ_OUTBOX_DELIVERED, 1, 4);
	check_row(ob, rs, b, BQ_OUTBOX_BROADCAST, 1, 3);
	check_row(ob, rs, c, BQ_OUTBOX_FAILED, 0, 2);
	check_row(ob, rs, e, BQ_OUTBOX_DELIVERED, 1, 4);
	check_row(ob, rs, d, BQ_OUTBOX_SENT, 1, 3);
	check_row(ob, rs, t, BQ_OUTBOX_DELIVERED, 1, 3);
	check_row(ob, rs, dd, BQ_OUTBOX_SENT, 1, 3);
	check_row(ob, rs, f, BQ_OUTBOX_SENT, 1, 2);
	check_row(ob, rs, l, BQ_OUTBOX_DELIVERED, 6, 14);
	check_row(ob, rs, u, BQ_OUTBOX_FAILED, 6, 14);
	ck_assert_int_eq(bq_outbox_get(ob, 0xdead, &m), -ENOENT);
	bq_outbox_close(ob);
	bq_free(rs);
	bq_loop_free(loop);
	return one_batch;
}

START_TEST(test_coalesce_one_batch)
{
	bool one_batch = false;

	for (int round = 0; round < 3 && !one_batch; round++) {
		char name[32];

		snprintf(name, sizeof(name), "coalesce%d.db", round);
		one_batch = coalesce_round(name);
	}
	ck_assert_msg(one_batch, "the batch was split in every round");
}
END_TEST

struct seen {
	size_t n;
	size_t stop_at;
	uint64_t ids[16];
	enum bq_outbox_state states[16];
	uint64_t created[16];
};

static int pending_cb(void *ud, const struct bq_outbox_msg *m)
{
	struct seen *s = ud;

	ck_assert_uint_lt(s->n, 16);
	ck_assert_ptr_null(m->events);
	ck_assert_str_eq(m->user_id, "u");
	s->ids[s->n] = m->id;
	s->states[s->n] = m->state;
	s->created[s->n] = m->created_ms;
	s->n++;
	return s->stop_at && s->n == s->stop_at;
}

START_TEST(test_pending)
{
	static const enum bq_outbox_state plan[] = {
		BQ_OUTBOX_ACCEPTED, BQ_OUTBOX_QUEUED,	 BQ_OUTBOX_SENT, BQ_OUTBOX_DELIVERED,
		BQ_OUTBOX_FAILED,   BQ_OUTBOX_BROADCAST, BQ_OUTBOX_SENT, BQ_OUTBOX_ACCEPTED,
	};
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct seen s = {0};
	uint64_t ids[8];
	size_t k = 0;

	make_path(path, sizeof(path), "pending.db");
	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(bq_outbox_pending(ob, pending_cb, &s), 0);
	for (size_t i = 0; i < 8; i++) {
		ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", &ids[i]), 0);
		if (plan[i] != BQ_OUTBOX_ACCEPTED) {
			ck_assert_int_eq(bq_outbox_set_state(ob, ids[i], plan[i], NULL), 0);
		}
		/* Distinct creation times, so "oldest first" is checkable. */
		wait_calls(loop, i + 1);
		usleep(2000);
	}
	bq_outbox_close(ob);

	/* After a restart, with the same ids. */
	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(bq_outbox_pending(ob, pending_cb, &s), 5);
	ck_assert_uint_eq(s.n, 5);
	for (size_t i = 0; i < 8; i++) {
		if (bq_outbox_state_terminal(plan[i])) {
			continue;
		}
		ck_assert_uint_eq(s.ids[k], ids[i]);
		ck_assert_int_eq(s.states[k], plan[i]);
		if (k) {
			ck_assert_uint_gt(s.created[k], s.created[k - 1]);
		}
		k++;
	}
	ck_assert_uint_eq(k, 5);
	/* The callback can stop the walk. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	ck_assert_int_eq(bq_outbox_pending(ob, pending_cb, &s), 2);
	ck_assert_uint_eq(s.ids[0], ids[0]);
	bq_outbox_close(ob);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_bounded_queue)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_stats st;
	uint64_t first;

	make_path(path, sizeof(path), "bounded.db");
	ob = open_ob(loop, path, 10, false);
	/* The loop does not run, so nothing completes: the bound is reached. */
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", i ? NULL : &first), 0);
	}
	ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", NULL), -EAGAIN);
	/* State updates keep room for the messages already in flight, up to twice the bound. */
	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(bq_outbox_set_state(ob, first, BQ_OUTBOX_QUEUED, NULL), 0);
	}
	ck_assert_int_eq(bq_outbox_set_state(ob, first, BQ_OUTBOX_SENT, NULL), -EAGAIN);
	bq_outbox_get_stats(ob, &st);
	ck_assert_uint_eq(st.queued, 20);
	ck_assert_uint_eq(st.rejected, 2);
	ck_assert_uint_eq(calls.n, 0);
	/* Once completions run, there is room again. */
	wait_calls(loop, 10);
	ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", NULL), 0);
	wait_calls(loop, 11);
	ck_assert_int_eq(calls.errs[10], 0);
	bq_outbox_close(ob);
	bq_loop_free(loop);
}
END_TEST

static void reaccept_cb(struct bq_outbox *ob, int err, uint64_t id, void *ud)
{
	accept_cb(ob, err, id, ud);
	/* A callback run by close cannot queue more. */
	ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", NULL), -ESHUTDOWN);
	ck_assert_int_eq(bq_outbox_set_state(ob, id, BQ_OUTBOX_SENT, NULL), -ESHUTDOWN);
}

START_TEST(test_close_flushes)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob;
	struct bq_outbox_new nm = {.user_id = "u", .destination = "v", .body = "m", .body_len = 1};
	uint64_t ids[300];
	struct bq_db *db;
	int version;

	make_path(path, sizeof(path), "close.db");
	ob = open_ob(loop, path, 0, false);
	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(bq_outbox_accept(ob, &nm, reaccept_cb, &calls, &ids[i]), 0);
	}
	/* The loop never ran: close commits and calls back every one of them. */
	bq_outbox_close(ob);
	ck_assert_uint_eq(calls.n, 300);
	for (int i = 0; i < 300; i++) {
		ck_assert_uint_eq(calls.ids[i], ids[i]);
		ck_assert_int_eq(calls.errs[i], 0);
	}
	/* Reopening keeps the schema at its version and the rows. */
	ob = open_ob(loop, path, 0, false);
	for (int i = 0; i < 300; i++) {
		struct bq_outbox_msg *m;

		ck_assert_int_eq(bq_outbox_get(ob, ids[i], &m), 0);
		bq_outbox_msg_free(m);
	}
	bq_outbox_close(ob);
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 100, NULL, &db), 0);
	ck_assert_int_eq(bq_db_version(db, &version), 0);
	ck_assert_int_eq(version, 2);
	bq_db_close(db);
	bq_outbox_close(NULL);
	bq_loop_free(loop);
}
END_TEST

static int pending_first(void *ud, const struct bq_outbox_msg *m)
{
	*(uint64_t *)ud = m->id;
	return 0;
}

/* A database written by schema 1 (rows plus a separate event table) opens as schema 2
 * with every message, its state and its whole history, and pending still works. */
START_TEST(test_migrate_v1)
{
	static const struct bq_db_migration v1[] = {
		{1, "CREATE TABLE messages (id TEXT NOT NULL PRIMARY KEY, user_id TEXT NOT NULL,"
		    " destination TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL,"
		    " reason TEXT, created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,"
		    " attempts INTEGER NOT NULL DEFAULT 0);"
		    "CREATE INDEX messages_state ON messages (state);"
		    "CREATE TABLE message_events (message_id TEXT NOT NULL REFERENCES messages (id)"
		    " ON DELETE CASCADE, seq INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT,"
		    " at_ms BIGINT NOT NULL, PRIMARY KEY (message_id, seq));"
		    "INSERT INTO messages VALUES ('00000000000000a1', 'alice', 'bob', 'hi',"
		    " 'delivered', NULL, 100, 130, 1);"
		    "INSERT INTO message_events VALUES ('00000000000000a1', 2, 'queued', NULL, 110);"
		    "INSERT INTO message_events VALUES ('00000000000000a1', 1, 'accepted', NULL, 100);"
		    "INSERT INTO message_events VALUES ('00000000000000a1', 3, 'sent', 'x\"y', 120);"
		    "INSERT INTO message_events VALUES ('00000000000000a1', 4, 'delivered', NULL, 130);"
		    "INSERT INTO messages VALUES ('00000000000000b2', 'alice', 'carol', 'later',"
		    " 'queued', NULL, 200, 210, 0);"
		    "INSERT INTO message_events VALUES ('00000000000000b2', 1, 'accepted', NULL, 200);"
		    "INSERT INTO message_events VALUES ('00000000000000b2', 2, 'queued', NULL, 210);"},
	};
	static const enum bq_outbox_state h[] = {BQ_OUTBOX_ACCEPTED, BQ_OUTBOX_QUEUED,
						 BQ_OUTBOX_SENT, BQ_OUTBOX_DELIVERED};
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_db *db = NULL;
	struct bq_outbox *ob;
	struct bq_outbox_msg *m;
	char path[512];
	int version = 0;
	uint64_t pending_id = 0;

	make_path(path, sizeof(path), "v1.db");
	ck_assert_int_eq(bq_db_open(path, 0, 100, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, v1, 1), 0);
	bq_db_close(db);

	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(bq_outbox_get(ob, 0xa1, &m), 0);
	ck_assert_int_eq(m->state, BQ_OUTBOX_DELIVERED);
	ck_assert_str_eq(m->body, "hi");
	ck_assert_uint_eq(m->attempts, 1);
	expect_history(m, h, 4);
	ck_assert_uint_eq(m->events[1].at_ms, 110);
	ck_assert_str_eq(m->events[2].reason, "x\"y");
	ck_assert_ptr_null(m->events[3].reason);
	bq_outbox_msg_free(m);
	ck_assert_int_eq(bq_outbox_pending(ob, pending_first, &pending_id), 1);
	ck_assert_uint_eq(pending_id, 0xb2);
	/* And it takes new states on migrated rows. */
	ck_assert_int_eq(bq_outbox_set_state(ob, 0xb2, BQ_OUTBOX_FAILED, "expired"), 0);
	bq_outbox_close(ob);
	ob = open_ob(loop, path, 0, false);
	ck_assert_int_eq(bq_outbox_get(ob, 0xb2, &m), 0);
	ck_assert_int_eq(m->state, BQ_OUTBOX_FAILED);
	ck_assert_uint_eq(m->n_events, 3);
	ck_assert_str_eq(m->events[2].reason, "expired");
	bq_outbox_msg_free(m);
	bq_outbox_close(ob);
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 100, NULL, &db), 0);
	ck_assert_int_eq(bq_db_version(db, &version), 0);
	ck_assert_int_eq(version, 2);
	bq_db_close(db);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_open_errors)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[600];
	char junk[4096];
	struct bq_outbox *ob = (struct bq_outbox *)1;
	int fd;

	make_path(path, sizeof(path), "garbage.db");
	memset(junk, 0x5a, sizeof(junk));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	ck_assert_int_eq(bq_outbox_open(path, loop, NULL, NULL, &ob), -EBADMSG);
	ck_assert_ptr_null(ob);
	/* A file where the directory should be. */
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/sub/outbox.db");
	ck_assert_int_eq(bq_outbox_open(path, loop, NULL, NULL, &ob), -ENOTDIR);
	ck_assert_int_eq(bq_outbox_open(NULL, loop, NULL, NULL, &ob), -EINVAL);
	ck_assert_int_eq(bq_outbox_open(path, NULL, NULL, NULL, &ob), -EINVAL);
	bq_loop_free(loop);
}
END_TEST

/* Every allocation on the loop thread can fail without a leak or a stray callback. */
START_TEST(test_alloc_failures)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	struct bq_outbox *ob = NULL;
	struct bq_outbox_msg *m;
	uint64_t id;
	int err = -ENOMEM;
	unsigned long n;

	make_path(path, sizeof(path), "alloc.db");
	for (n = 1; n < 200 && err == -ENOMEM; n++) {
		bq_alloc_fail_nth(n);
		err = bq_outbox_open(path, loop, NULL, NULL, &ob);
	}
	bq_alloc_fail_nth(0);
	ck_assert_int_eq(err, 0);
	ck_assert_uint_gt(n, 2);

	bq_alloc_fail_nth(1);
	ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", NULL), -ENOMEM);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_outbox_set_state(ob, 1, BQ_OUTBOX_SENT, NULL), -ENOMEM);
	ck_assert_int_eq(accept1(ob, 0, "u", "v", "m", &id), 0);
	ck_assert_int_eq(bq_outbox_set_state(ob, id, BQ_OUTBOX_QUEUED, "why"), 0);
	wait_calls(loop, 1);
	bq_outbox_close(ob);
	ob = open_ob(loop, path, 0, false);
	err = -ENOMEM;
	for (n = 1; n < 50 && err == -ENOMEM; n++) {
		bq_alloc_fail_nth(n);
		err = bq_outbox_get(ob, id, &m);
		if (err == -ENOMEM) {
			ck_assert_ptr_null(m);
		}
	}
	bq_alloc_fail_nth(0);
	ck_assert_int_eq(err, 0);
	ck_assert_uint_gt(n, 5);
	ck_assert_uint_eq(m->n_events, 2);
	ck_assert_str_eq(m->events[1].reason, "why");
	bq_outbox_msg_free(m);
	bq_outbox_close(ob);
	ck_assert_uint_eq(calls.n, 1);
	bq_loop_free(loop);
}
END_TEST

/* ---- crash safety: kill -9 in the middle of a burst --------------------------------- */

static int report_fd = -1;

static void child_cb(struct bq_outbox *ob, int err, uint64_t id, void *ud)
{
	size_t *inflight = ud;

	(*inflight)--;
	if (err == 0 && write(report_fd, &id, sizeof(id)) != (ssize_t)sizeof(id)) {
		_exit(3);
	}
}

/* Accept as fast as possible forever, reporting each id whose callback said committed. */
static void child_main(const char *path)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_outbox *ob;
	size_t inflight = 0;

	if (!loop || bq_outbox_open(path, loop, NULL, NULL, &ob) < 0) {
		_exit(2);
	}
	for (;;) {
		while (inflight < 5000) {
			struct bq_outbox_new m = {
				.user_id = "u",
				.destination = "v",
				.body = "crash",
				.body_len = 5,
			};

			if (bq_outbox_accept(ob, &m, child_cb, &inflight, NULL) < 0) {
				_exit(4);
			}
			inflight++;
		}
		bq_loop_run_once(loop, 10);
	}
}

START_TEST(test_kill9_loses_nothing)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	char path[512];
	uint64_t *ids = bq_calloc(1u << 20, sizeof(*ids));
	size_t n = 0;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();

	/* Every round reuses the database: each is a restart after the previous crash. */
	make_path(path, sizeof(path), "crash/outbox.db");
	for (int round = 0; round < 3; round++) {
		struct bq_outbox *ob;
		int fds[2];
		pid_t pid;
		int status;
		size_t before = n, missing = 0;
		/* Kill somewhere after 500 to 15,000 reported commits. */
		size_t kill_after = 500 + (size_t)(rand_r(&seed) % 14500);
		ssize_t r;

		ck_assert_int_eq(pipe(fds), 0);
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			report_fd = fds[1];
			child_main(path);
		}
		close(fds[1]);
		while ((r = read(fds[0], &ids[n], sizeof(ids[n]))) == (ssize_t)sizeof(ids[n])) {
			n++;
			ck_assert_uint_lt(n, 1u << 20);
			if (n - before == kill_after) {
				kill(pid, SIGKILL);
			}
		}
		/* EOF: the child is dead and everything it reported has been read. */
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFSIGNALED(status));
		ck_assert_int_eq(WTERMSIG(status), SIGKILL);
		close(fds[0]);
		ck_assert_uint_ge(n - before, kill_after);

		ob = open_ob(loop, path, 0, false);
		for (size_t i = 0; i < n; i++) {
			struct bq_outbox_msg *m;

			if (bq_outbox_get(ob, ids[i], &m) < 0) {
				missing++;
				continue;
			}
			ck_assert_str_eq(m->body, "crash");
			bq_outbox_msg_free(m);
		}
		printf("outbox kill -9 round %d: %zu reported committed, %zu missing\n", round,
		       n - before, missing);
		ck_assert_uint_eq(missing, 0);
		bq_outbox_close(ob);
	}
	bq_free(ids);
	bq_loop_free(loop);
}
END_TEST

static Suite *outbox_suite(void)
{
	Suite *s = suite_create("outbox");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_names_and_ids);
	tcase_add_test(tc, test_accept_then_readable);
	tcase_add_test(tc, test_bad_input_no_callback);
	tcase_add_test(tc, test_callback_order_and_duplicates);
	tcase_add_test(tc, test_bulk_50000);
	tcase_add_test(tc, test_throughput_sync_normal);
	tcase_add_test(tc, test_lifecycle_50000);
	tcase_add_test(tc, test_states_and_history);
	tcase_add_test(tc, test_coalesce_one_batch);
	tcase_add_test(tc, test_pending);
	tcase_add_test(tc, test_bounded_queue);
	tcase_add_test(tc, test_close_flushes);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_migrate_v1);
	tcase_add_test(tc, test_alloc_failures);
	tcase_add_test(tc, test_kill9_loses_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(outbox_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
