/* SPDX-License-Identifier: MIT */
/*
 * The session registry against a real node engine in the same process (same loop),
 * listening on unix:TMPDIR/odin.sock with a fixed network key, in both link modes.
 * Real time with short intervals; every wait is bounded.
 */
#include <check.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "manager/sessions.h"
#include "mesh/node.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"
#include "transport/addr.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static const uint8_t KEY[BQ_KEY_LEN] = {1,  2,	3,  4,	5,  6,	7,  8,	9,  10, 11,
					12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
					23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

#define MAX_TRANS 64

struct trans {
	enum bq_session_state from, to;
};

static struct {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_auth *auth;
	char dir[256];
	char listen[300];
	char *lv[1];
	struct bq_strlist ll;
	struct bq_node *node;
	struct bq_sessions *reg;
	int destroyed;

	/* What the registry reported. */
	char watch[BQ_USER_ID_MAX + 1]; /* transitions of this user are recorded */
	struct trans trans[MAX_TRANS];
	int n_trans;
	int n_state_cb;
	int msgs;
	char msg_src[BQ_USER_ID_MAX + 1], msg_dst[BQ_USER_ID_MAX + 1], msg_to[BQ_USER_ID_MAX + 1];
	char msg_text[128];
	uint64_t msg_id;
	int msg_broadcast;
	struct {
		uint64_t id;
		uint8_t status;
		char user[BQ_USER_ID_MAX + 1];
	} acks[64];
	int n_acks;
	int dir_cbs;
} T;

static double real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void cb_state(struct bq_session *s, enum bq_session_state from, enum bq_session_state to,
		     int err, const char *reason, void *ud)
{
	ck_assert_int_ne(from, to);
	ck_assert_ptr_nonnull(reason);
	T.n_state_cb++;
	if (strcmp(bq_session_user_id(s), T.watch) == 0 && T.n_trans < MAX_TRANS) {
		T.trans[T.n_trans].from = from;
		T.trans[T.n_trans].to = to;
		T.n_trans++;
	}
}

static void cb_message(struct bq_session *s, const char *src, const char *dst, uint64_t msg_id,
		       const void *text, size_t len, void *ud)
{
	T.msgs++;
	snprintf(T.msg_src, sizeof(T.msg_src), "%s", src);
	snprintf(T.msg_dst, sizeof(T.msg_dst), "%s", dst ? dst : "");
	snprintf(T.msg_to, sizeof(T.msg_to), "%s", bq_session_user_id(s));
	snprintf(T.msg_text, sizeof(T.msg_text), "%.*s", (int)len, (const char *)text);
	T.msg_id = msg_id;
	T.msg_broadcast += dst == NULL;
}

static void cb_ack(struct bq_session *s, uint64_t msg_id, uint8_t status, const char *reason,
		   void *ud)
{
	if (T.n_acks < 64) {
		T.acks[T.n_acks].id = msg_id;
		T.acks[T.n_acks].status = status;
		snprintf(T.acks[T.n_acks].user, sizeof(T.acks[0].user), "%s",
			 bq_session_user_id(s));
		T.n_acks++;
	}
}

static void cb_dir(const struct bq_dir_entry *e, void *ud)
{
	T.dir_cbs++;
}

static void cb_destroy(void *ud)
{
	ck_assert_ptr_eq(ud, &T);
	T.destroyed++;
}

static const struct bq_sessions_cbs CBS = {
	.state = cb_state,
	.message = cb_message,
	.ack = cb_ack,
	.directory = cb_dir,
};

static void start_node(void)
{
	struct bq_node_config cfg;
	char err[256];

	bq_node_config_defaults(&cfg);
	cfg.name = "Odin";
	T.lv[0] = T.listen;
	T.ll.v = T.lv;
	T.ll.n = 1;
	cfg.listen = &T.ll;
	cfg.auth = T.auth;
	T.node = bq_node_new(T.loop, &cfg, T.log, err, sizeof(err));
	ck_assert_msg(T.node != NULL, "bq_node_new: %s", err);
	ck_assert_msg(bq_node_start(T.node, err, sizeof(err)) == 0, "bq_node_start: %s", err);
}

static void setup(void)
{
	memset(&T, 0, sizeof(T));
	setenv("BLUEQ_ADDR_MAP", "/nonexistent/blueq-test-map", 1);
	T.loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(T.loop);
	if (getenv("BQ_TEST_LOG")) {
		T.log = bq_log_new("test_sessions");
		bq_log_set_level(T.log, BQ_LOG_DEBUG);
	}
	T.auth = bq_auth_new(KEY);
	ck_assert_ptr_nonnull(T.auth);
	snprintf(T.dir, sizeof(T.dir), "%s", bq_test_tmpdir());
	snprintf(T.listen, sizeof(T.listen), "unix:%s/odin.sock", T.dir);
}

static void teardown(void)
{
	if (T.reg) {
		bq_sessions_stop(T.reg);
		for (int i = 0; i < 200 && bq_sessions_busy(T.reg); i++) {
			bq_loop_run_once(T.loop, 10);
		}
		bq_sessions_free(T.reg);
		ck_assert_int_eq(T.destroyed, 1);
	}
	bq_node_free(T.node);
	bq_loop_free(T.loop);
	bq_auth_free(T.auth);
	bq_log_free(T.log);
	unlink(T.listen + strlen("unix:"));
	rmdir(T.dir);
}

static void new_registry(enum bq_link_mode mode, uint32_t rate, uint32_t burst)
{
	struct bq_sessions_config cfg;
	char err[256];

	bq_sessions_config_defaults(&cfg);
	ck_assert_int_eq(bq_addr_parse(T.listen, &cfg.odin, err, sizeof(err)), 0);
	cfg.mode = mode;
	cfg.auth = T.auth;
	cfg.backoff_base_ms = 50;
	cfg.backoff_cap_ms = 400;
	cfg.retransmit_ms = 200;
	if (rate) {
		cfg.connect_rate = rate;
		cfg.connect_burst = burst;
	}
	T.reg = bq_sessions_new(T.loop, &cfg, &CBS, &T, cb_destroy, T.log, err, sizeof(err));
	ck_assert_msg(T.reg != NULL, "%s", err);
}

/* ---- waiting --------------------------------------------------------------------------- */

static struct {
	const char *user;
	enum bq_session_state st;
	size_t n;
} W;

static bool user_in_state(void *ud)
{
	struct bq_session *s = bq_sessions_get(T.reg, W.user);

	return s && bq_session_state(s) == W.st;
}

static bool wait_state(const char *user, enum bq_session_state st, int ms)
{
	W.user = user;
	W.st = st;
	return bq_test_run_until(T.loop, user_in_state, NULL, ms);
}

static bool n_in_state(void *ud)
{
	struct bq_sessions_stats st;

	bq_sessions_stats(T.reg, &st);
	return st.by_state[W.st] == W.n;
}

static bool wait_count(enum bq_session_state st, size_t n, int ms)
{
	W.st = st;
	W.n = n;
	return bq_test_run_until(T.loop, n_in_state, NULL, ms);
}

static bool have_acks(void *ud)
{
	return T.n_acks >= *(int *)ud;
}

static bool have_msgs(void *ud)
{
	return T.msgs >= *(int *)ud;
}

static bool total_is(void *ud)
{
	struct bq_sessions_stats st;

	bq_sessions_stats(T.reg, &st);
	return st.total == *(size_t *)ud;
}

static void run_for(int ms)
{
	double end = real_ms() + ms;

	while (real_ms() < end) {
		bq_loop_run_once(T.loop, 10);
	}
}

static const enum bq_link_mode MODES[2] = {BQ_LINK_DEDICATED, BQ_LINK_SHARED};

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(test_states_in_order)
{
	struct bq_session *s = NULL, *again = NULL;
	struct bq_session_info info;
	struct bq_sessions_stats st;
	static const struct trans want[4] = {
		{BQ_SESS_NEW, BQ_SESS_CONNECTING},
		{BQ_SESS_CONNECTING, BQ_SESS_ATTACHING},
		{BQ_SESS_ATTACHING, BQ_SESS_SCANNING},
		{BQ_SESS_SCANNING, BQ_SESS_READY},
	};

	start_node();
	new_registry(MODES[_i], 0, 0);
	snprintf(T.watch, sizeof(T.watch), "alice");
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", "Alice A.", &s), 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_eq(bq_sessions_get(T.reg, "alice"), s);
	/* Not ready yet: asking again is still "accepted" (202), same session. */
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", "Alice A.", &again), 0);
	ck_assert_ptr_eq(again, s);
	ck_assert(wait_state("alice", BQ_SESS_READY, 3000));
	ck_assert_int_eq(T.n_trans, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_msg(T.trans[i].from == want[i].from && T.trans[i].to == want[i].to,
			      "transition %d: %s -> %s", i, bq_session_state_name(T.trans[i].from),
			      bq_session_state_name(T.trans[i].to));
	}
	/* Ready: connect answers -EALREADY (200). */
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, &again), -EALREADY);
	ck_assert_ptr_eq(again, s);
	bq_session_info(s, &info);
	ck_assert_str_eq(info.user_id, "alice");
	ck_assert_str_eq(info.user_name, "Alice A.");
	ck_assert_int_eq(info.state, BQ_SESS_READY);
	ck_assert_str_eq(info.last_error, "");
	ck_assert_uint_gt(info.connected_since_ms, 0);
	ck_assert_uint_ge(info.connected_since_ms, info.created_ms);
	ck_assert_uint_eq(info.state_since_ms, info.connected_since_ms);
	ck_assert_uint_eq(info.reconnects, 0);
	ck_assert_int_eq(info.link_index, MODES[_i] == BQ_LINK_SHARED ? 0 : -1);
	bq_sessions_stats(T.reg, &st);
	ck_assert_uint_eq(st.total, 1);
	ck_assert_uint_eq(st.by_state[BQ_SESS_READY], 1);
	ck_assert_uint_eq(st.links, 1);
	ck_assert_uint_eq(st.links_up, 1);
	ck_assert_uint_eq(st.dials, 1);
	ck_assert_uint_eq(bq_sessions_count(T.reg), 1);
	/* The directory came from the scan: alice online, Odin as a node. */
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "alice"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "nobody"), -ENOENT);
	ck_assert_uint_ge(bq_sessions_dir_count(T.reg), 2);
	ck_assert_int_gt(T.dir_cbs, 0);
	ck_assert_str_eq(bq_sessions_odin_text(T.reg), T.listen);
}
END_TEST

static void count_fn(const struct bq_session *s, void *ud)
{
	(*(int *)ud)++;
}

START_TEST(test_disconnect_removes)
{
	size_t zero = 0;
	int seen = 0;

	start_node();
	new_registry(MODES[_i], 0, 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "bob", NULL, NULL), 0);
	ck_assert(wait_count(BQ_SESS_READY, 2, 3000));
	ck_assert_uint_eq(bq_node_stats(T.node)->users_local, 2);
	snprintf(T.watch, sizeof(T.watch), "alice");
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "alice"), 0);
	/* Gone from the map at once; the id can be connected again. */
	ck_assert_ptr_null(bq_sessions_get(T.reg, "alice"));
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "alice"), -ENOENT);
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "nobody"), -ENOENT);
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "x", 1, 0, NULL), -ENOENT);
	ck_assert(bq_test_run_until(T.loop, total_is, (size_t[]){1}, 3000));
	ck_assert_int_ge(T.n_trans, 2);
	ck_assert_int_eq(T.trans[T.n_trans - 2].from, BQ_SESS_READY);
	ck_assert_int_eq(T.trans[T.n_trans - 2].to, BQ_SESS_DISCONNECTING);
	ck_assert_int_eq(T.trans[T.n_trans - 1].from, BQ_SESS_DISCONNECTING);
	ck_assert_int_eq(T.trans[T.n_trans - 1].to, BQ_SESS_DISCONNECTED);
	bq_sessions_foreach(T.reg, count_fn, &seen);
	ck_assert_int_eq(seen, 1);
	/* The node heard the DETACH. */
	for (int i = 0; i < 100 && bq_node_stats(T.node)->users_local != 1; i++) {
		bq_loop_run_once(T.loop, 10);
	}
	ck_assert_uint_eq(bq_node_stats(T.node)->users_local, 1);
	/* The directory still answers (in dedicated mode a keeper was alice's link). */
	for (int i = 0; i < 200 && bq_sessions_dir_presence(T.reg, "alice") != BQ_PRES_OFFLINE;
	     i++) {
		bq_loop_run_once(T.loop, 10);
	}
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "alice"), BQ_PRES_OFFLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "bob"), BQ_PRES_ONLINE);
	/* Connect again: a fresh session reaches ready. */
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert(wait_state("alice", BQ_SESS_READY, 3000));
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "alice"), 0);
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "bob"), 0);
	ck_assert(bq_test_run_until(T.loop, total_is, &zero, 3000));
}
END_TEST

START_TEST(test_invalid_input)
{
	char long_id[BQ_USER_ID_MAX + 2];
	char text[BQ_TEXT_MAX + 1];
	struct bq_session *s = NULL;

	start_node();
	new_registry(BQ_LINK_DEDICATED, 0, 0);
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	ck_assert_int_eq(bq_sessions_connect(T.reg, "bad id!", "x", &s), -EINVAL);
	ck_assert_int_eq(bq_sessions_connect(T.reg, NULL, "x", &s), -EINVAL);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "", "x", &s), -EINVAL);
	ck_assert_int_eq(bq_sessions_connect(T.reg, long_id, "x", &s), -EINVAL);
	long_id[BQ_USER_ID_MAX] = '\0'; /* exactly the maximum is fine */
	ck_assert_int_eq(bq_sessions_connect(T.reg, "carol", "bad\nname", &s), -EINVAL);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "carol", "", &s), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_uint_eq(bq_sessions_count(T.reg), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, long_id, "Max", &s), 0);
	ck_assert(wait_state(long_id, BQ_SESS_READY, 3000));
	/* Sending: unknown sender, text too long (max is fine), bad destination. */
	memset(text, 'x', sizeof(text));
	ck_assert_int_eq(bq_sessions_send(T.reg, "nobody", "bob", "hi", 2, 0, NULL), -ENOENT);
	ck_assert_int_eq(bq_sessions_send(T.reg, long_id, "bob", text, BQ_TEXT_MAX + 1, 0, NULL),
			 -EMSGSIZE);
	ck_assert_int_eq(bq_sessions_send(T.reg, long_id, "bad dst!", "hi", 2, 0, NULL), -EINVAL);
	ck_assert_int_eq(bq_sessions_send(T.reg, long_id, "bob", text, BQ_TEXT_MAX, 5, NULL), 0);
	ck_assert_int_eq(bq_sessions_send(T.reg, long_id, "bob", "again", 5, 5, NULL), -EEXIST);
}
END_TEST

START_TEST(test_message_delivered)
{
	int one = 1, two = 2;
	uint64_t id = 0;
	struct bq_session_info info;
	bool accepted = false, delivered = false;

	start_node();
	new_registry(MODES[_i], 0, 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "bob", "Bob", NULL), 0);
	ck_assert(wait_count(BQ_SESS_READY, 2, 3000));
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "hello bob", 9, 0x4242, &id), 0);
	ck_assert_uint_eq(id, 0x4242);
	ck_assert(bq_test_run_until(T.loop, have_msgs, &one, 3000));
	ck_assert_str_eq(T.msg_to, "bob");
	ck_assert_str_eq(T.msg_src, "alice");
	ck_assert_str_eq(T.msg_dst, "bob");
	ck_assert_str_eq(T.msg_text, "hello bob");
	ck_assert_uint_eq(T.msg_id, 0x4242);
	ck_assert_int_eq(T.msg_broadcast, 0);
	for (int i = 0; i < 300 && !delivered; i++) {
		bq_loop_run_once(T.loop, 10);
		for (int k = 0; k < T.n_acks; k++) {
			ck_assert_uint_eq(T.acks[k].id, 0x4242);
			ck_assert_str_eq(T.acks[k].user, "alice");
			accepted |= T.acks[k].status == BQ_ACK_ACCEPTED;
			delivered |= T.acks[k].status == BQ_ACK_DELIVERED;
		}
	}
	ck_assert(accepted);
	ck_assert(delivered);
	ck_assert(bq_test_run_until(T.loop, have_acks, &two, 10) || T.n_acks >= 2);
	/* Settled: nothing outstanding; counters moved; no second copy for bob. */
	run_for(400);
	ck_assert_int_eq(T.msgs, 1);
	bq_session_info(bq_sessions_get(T.reg, "alice"), &info);
	ck_assert_uint_eq(info.sent, 1);
	ck_assert_uint_eq(info.outstanding, 0);
	bq_session_info(bq_sessions_get(T.reg, "bob"), &info);
	ck_assert_uint_eq(info.received, 1);
}
END_TEST

START_TEST(test_broadcast_accepted_only)
{
	int two = 2;

	start_node();
	new_registry(MODES[_i], 0, 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "bob", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "carol", NULL, NULL), 0);
	ck_assert(wait_count(BQ_SESS_READY, 3, 3000));
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", NULL, "all", 3, 77, NULL), 0);
	ck_assert(bq_test_run_until(T.loop, have_msgs, &two, 3000));
	run_for(500);
	/* bob and carol, not alice; no receipts, so ACCEPTED and nothing else. */
	ck_assert_int_eq(T.msgs, 2);
	ck_assert_int_eq(T.msg_broadcast, 2);
	ck_assert_str_eq(T.msg_src, "alice");
	ck_assert_str_eq(T.msg_text, "all");
	ck_assert_int_eq(T.n_acks, 1);
	ck_assert_uint_eq(T.acks[0].id, 77);
	ck_assert_int_eq(T.acks[0].status, BQ_ACK_ACCEPTED);
	{
		struct bq_session_info info;

		bq_session_info(bq_sessions_get(T.reg, "alice"), &info);
		ck_assert_uint_eq(info.outstanding, 0);
		ck_assert_uint_eq(info.sent, 1);
	}
}
END_TEST

#define MANY 1000

static void connect_many(int n)
{
	char id[32];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "user%04d", i);
		ck_assert_int_eq(bq_sessions_connect(T.reg, id, NULL, NULL), 0);
	}
}

struct link_load {
	int per_link[8];
	int dedicated;
};

static void load_fn(const struct bq_session *s, void *ud)
{
	struct link_load *ll = ud;
	struct bq_session_info info;

	bq_session_info(s, &info);
	if (info.link_index < 0) {
		ll->dedicated++;
	} else if (info.link_index < 8) {
		ll->per_link[info.link_index]++;
	}
}

START_TEST(test_many_users_ready)
{
	struct bq_sessions_stats st;
	struct link_load ll = {{0}, 0};
	double t0;

	start_node();
	new_registry(MODES[_i], 0, 0);
	t0 = real_ms();
	connect_many(MANY);
	ck_assert_msg(wait_count(BQ_SESS_READY, MANY, 8000), "not all ready");
	fprintf(stderr, "test_sessions: %d users ready in %s mode in %.0f ms\n", MANY,
		bq_link_mode_name(MODES[_i]), real_ms() - t0);
	bq_sessions_stats(T.reg, &st);
	ck_assert_uint_eq(st.total, MANY);
	ck_assert_uint_eq(st.by_state[BQ_SESS_READY], MANY);
	for (int i = 0; i < BQ_SESS_NSTATES; i++) {
		ck_assert(i == BQ_SESS_READY || st.by_state[i] == 0);
	}
	ck_assert_uint_eq(bq_node_stats(T.node)->users_local, MANY);
	bq_sessions_foreach(T.reg, load_fn, &ll);
	if (MODES[_i] == BQ_LINK_SHARED) {
		/* Least-loaded placement: the default pool of 4 carries 250 each. */
		ck_assert_uint_eq(st.links, 4);
		ck_assert_uint_eq(st.links_up, 4);
		for (int i = 0; i < 4; i++) {
			ck_assert_int_eq(ll.per_link[i], MANY / 4);
		}
	} else {
		ck_assert_uint_eq(st.links, MANY);
		ck_assert_uint_eq(st.links_up, MANY);
		ck_assert_int_eq(ll.dedicated, MANY);
	}
	/* The directory holds every user (and Odin). */
	ck_assert_uint_ge(bq_sessions_dir_count(T.reg), MANY);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "user0999"), BQ_PRES_ONLINE);
}
END_TEST

#define RESTART_USERS 1000
#define RATE 1000
#define BURST 50

struct reconn {
	int min;
};

static void reconn_fn(const struct bq_session *s, void *ud)
{
	struct reconn *r = ud;
	struct bq_session_info info;

	bq_session_info(s, &info);
	if ((int)info.reconnects < r->min) {
		r->min = (int)info.reconnects;
	}
	ck_assert_str_ne(info.last_error, "");
	ck_assert_int_lt(info.last_error_code, 0);
}

START_TEST(test_node_restart_bounded)
{
	struct bq_sessions_stats st;
	struct reconn r = {1 << 30};
	double t0;
	uint64_t dials_before;

	start_node();
	new_registry(MODES[_i], RATE, BURST);
	connect_many(RESTART_USERS);
	ck_assert(wait_count(BQ_SESS_READY, RESTART_USERS, 8000));
	bq_sessions_stats(T.reg, &st);
	dials_before = st.dials;
	ck_assert_uint_le(st.peak_connect_rate, RATE + BURST);

	/* Odin dies: every session goes to backoff. */
	bq_node_free(T.node);
	T.node = NULL;
	ck_assert(wait_count(BQ_SESS_BACKOFF, RESTART_USERS, 3000));
	run_for(200);
	/* Odin is back on the same socket: everyone is ready again, at a bounded rate. */
	start_node();
	t0 = real_ms();
	ck_assert_msg(wait_count(BQ_SESS_READY, RESTART_USERS, 8000), "not all ready again");
	bq_sessions_stats(T.reg, &st);
	fprintf(stderr,
		"test_sessions: %s mode, %d sessions ready %.0f ms after Odin "
		"restarted; peak %u dials/s (bound %d + burst %d), %llu dials in all\n",
		bq_link_mode_name(MODES[_i]), RESTART_USERS, real_ms() - t0, st.peak_connect_rate,
		RATE, BURST, (unsigned long long)st.dials);
	ck_assert_uint_le(st.peak_connect_rate, RATE + BURST);
	ck_assert_uint_gt(st.dials, dials_before);
	if (MODES[_i] == BQ_LINK_DEDICATED) {
		ck_assert_uint_ge(st.dials, dials_before + RESTART_USERS);
		/* The gate really was the limit: a thousand links took about a second. */
		ck_assert_uint_ge(st.peak_connect_rate, RATE / 2);
	}
	bq_sessions_foreach(T.reg, reconn_fn, &r);
	ck_assert_int_ge(r.min, 1);
}
END_TEST

/* Dedicated: two links keep the directory; when both go, a third takes over. */
START_TEST(test_directory_moves)
{
	start_node();
	new_registry(BQ_LINK_DEDICATED, 0, 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "bob", NULL, NULL), 0);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "carol", NULL, NULL), 0);
	ck_assert(wait_count(BQ_SESS_READY, 3, 3000));
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "carol"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "alice"), 0);
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "bob"), 0);
	for (int i = 0; i < 300 && bq_sessions_dir_presence(T.reg, "bob") != BQ_PRES_OFFLINE; i++) {
		bq_loop_run_once(T.loop, 10);
	}
	/* carol's link now keeps the copy: a fresh scan filled it. */
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "carol"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "bob"), BQ_PRES_OFFLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "alice"), BQ_PRES_OFFLINE);
	ck_assert_int_eq(bq_session_state(bq_sessions_get(T.reg, "carol")), BQ_SESS_READY);
}
END_TEST

/* A link that cannot even start (no Bluetooth here) fails the session with the reason. */
START_TEST(test_start_failure_reported)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	char err[256];

	bq_sessions_config_defaults(&cfg);
	ck_assert_int_eq(
		bq_addr_parse("bt-rfcomm://D8:3A:DD:03:1E:77/1", &cfg.odin, err, sizeof(err)), 0);
	cfg.backoff_base_ms = 20;
	cfg.backoff_cap_ms = 50;
	T.reg = bq_sessions_new(T.loop, &cfg, &CBS, &T, cb_destroy, T.log, err, sizeof(err));
	ck_assert_ptr_nonnull(T.reg);
	snprintf(T.watch, sizeof(T.watch), "alice");
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, &s), 0);
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_FAILED);
	bq_session_info(s, &info);
	ck_assert_int_lt(info.last_error_code, 0);
	ck_assert_msg(strstr(info.last_error, "Bluetooth") != NULL, "%s", info.last_error);
	ck_assert_int_eq(T.n_trans, 1);
	ck_assert_int_eq(T.trans[0].to, BQ_SESS_FAILED);
	/* Retried quietly (no transition while it keeps failing), still reported. */
	run_for(200);
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_FAILED);
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "x", 1, 0, NULL), 0);
	ck_assert_int_eq(bq_sessions_disconnect(T.reg, "alice"), 0);
}
END_TEST

/*
 * Memory per idle session, shared mode, 10,000 users on 2 links. The node runs in a
 * child process so that only the manager side is counted (mallinfo2 of this process).
 */
#define MEM_USERS 10000

START_TEST(test_memory_per_session)
{
	pid_t pid;
	struct mallinfo2 before, after;
	struct bq_sessions_config cfg;
	char err[256];
	double per;

	if (UNDER_ASAN) {
		return; /* ASan's allocator is not what mallinfo2 reports on */
	}
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct bq_loop *loop = bq_loop_new(NULL, NULL);

		T.loop = loop;
		start_node();
		bq_loop_run(loop);
		_exit(0);
	}
	bq_sessions_config_defaults(&cfg);
	ck_assert_int_eq(bq_addr_parse(T.listen, &cfg.odin, err, sizeof(err)), 0);
	cfg.mode = BQ_LINK_SHARED;
	cfg.shared_links = 2;
	cfg.auth = T.auth;
	cfg.backoff_base_ms = 20;
	cfg.backoff_cap_ms = 100;
	malloc_trim(0);
	before = mallinfo2();
	T.reg = bq_sessions_new(T.loop, &cfg, &CBS, &T, cb_destroy, T.log, err, sizeof(err));
	ck_assert_ptr_nonnull(T.reg);
	connect_many(MEM_USERS);
	ck_assert_msg(wait_count(BQ_SESS_READY, MEM_USERS, 9000), "not all ready");
	run_for(100);
	after = mallinfo2();
	per = ((double)after.uordblks - (double)before.uordblks) / MEM_USERS;
	fprintf(stderr,
		"test_sessions: shared mode, 2 links, %d idle sessions: %.0f bytes "
		"per session (heap in use %.1f MiB)\n",
		MEM_USERS, per, (double)(after.uordblks - before.uordblks) / (1024.0 * 1024.0));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert_double_le(per, 4096.0);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "user9999"), BQ_PRES_ONLINE);
	bq_sessions_free(T.reg);
	T.reg = NULL;
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sessions");
	TCase *tc = tcase_create("core");
	TCase *big = tcase_create("big");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_loop_test(tc, test_states_in_order, 0, 2);
	tcase_add_loop_test(tc, test_disconnect_removes, 0, 2);
	tcase_add_test(tc, test_invalid_input);
	tcase_add_loop_test(tc, test_message_delivered, 0, 2);
	tcase_add_loop_test(tc, test_broadcast_accepted_only, 0, 2);
	tcase_add_test(tc, test_directory_moves);
	tcase_add_test(tc, test_start_failure_reported);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(big, setup, teardown);
	tcase_set_timeout(big, 20);
	tcase_add_loop_test(big, test_many_users_ready, 0, 2);
	tcase_add_loop_test(big, test_node_restart_bounded, 0, 2);
	tcase_add_test(big, test_memory_per_session);
	suite_add_tcase(s, big);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
