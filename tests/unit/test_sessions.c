/* SPDX-License-Identifier: MIT */
/*
 * The session registry against a real node engine in the same process (same loop),
 * listening on unix:TMPDIR/odin.sock with a fixed network key, in both link modes.
 * Real time with short intervals; every wait is bounded.
 *
 * The "fake" tcase runs the state machine on a fake clock against a scripted Odin
 * (raw frames on the same UNIX socket; the engine cannot dial the in-memory pair):
 * timeouts, backoff, heartbeat loss, refusal and a link cut mid-scan, with every
 * transition and its reason recorded at the fake time it happened.
 */
#include <check.h>
#include <errno.h>
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "manager/sessions.h"
#include "mesh/node.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"
#include "transport/addr.h"
#include "transport/conn.h"

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

#define MAX_TRANS 256
#define REASON_LEN 160

struct trans {
	enum bq_session_state from, to;
	int err;
	uint64_t at_ms; /* loop clock (the fake one in the "fake" tcase) */
	char reason[REASON_LEN];
};

static struct {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_auth *auth;
	struct bq_fake_clock fc;
	bool fake; /* the loop runs on fc */
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
		struct trans *t = &T.trans[T.n_trans];

		/* One session's story has no gaps (a new session of the same id starts at new). */
		if (T.n_trans > 0 && from != BQ_SESS_NEW) {
			ck_assert_msg(T.trans[T.n_trans - 1].to == from, "%s -> %s after -> %s",
				      bq_session_state_name(from), bq_session_state_name(to),
				      bq_session_state_name(T.trans[T.n_trans - 1].to));
		}
		t->from = from;
		t->to = to;
		t->err = err;
		t->at_ms = bq_loop_now_ms(T.loop);
		snprintf(t->reason, sizeof(t->reason), "%s", reason);
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

/* ---- a scripted Odin (raw frames, no key) for the fake-clock tests ------------------------ */

#define FO_CONNS 8
#define FO_DIR_USERS 25 /* users in Odin's snapshot, 10 per DIRECTORY frame */
#define FO_PER_FRAME 10

static const uint8_t ODIN_MAC[6] = {0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77};
static const uint8_t NEIGH_MAC[6] = {0x02, 0, 0, 0, 0, 0x02};

struct fo_conn {
	struct bq_conn *conn;
	bool deaf; /* reads and drops everything: a peer that stopped answering */
	size_t in_len;
	uint8_t in[2 * BQ_FRAME_MAX];
};

static struct {
	struct bq_listener *lis;
	struct fo_conn c[FO_CONNS];
	int accepts, closes, hellos, attaches, scans, pings;
	bool mute;	    /* answer nothing at all, not even HELLO */
	bool reject;	    /* answer ATTACH with REJECTED */
	int close_mid_scan; /* cut this many SCAN answers after their first part */
} O;

static void fo_close(struct fo_conn *fc)
{
	if (fc->conn) {
		bq_conn_close(fc->conn);
		fc->conn = NULL;
		O.closes++;
	}
}

static void fo_send(struct fo_conn *fc, struct bq_frame *f)
{
	uint8_t buf[BQ_FRAME_MAX];
	struct iovec iov;
	int n;

	f->version = BQ_PROTO_VERSION;
	memcpy(f->origin, ODIN_MAC, 6);
	n = bq_frame_encode(f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	ck_assert_int_eq(bq_conn_writev(fc->conn, &iov, 1), n);
}

static void fo_ack(struct fo_conn *fc, uint64_t acked, uint8_t status, const char *dst,
		   const char *reason)
{
	uint8_t p[300];
	struct bq_ack a = {.acked_id = acked,
			   .status = status,
			   .reason = reason,
			   .reason_len = (uint8_t)(reason ? strlen(reason) : 0)};
	struct bq_frame f = {.type = BQ_T_ACK, .msg_id = (uint64_t)random() + 1};
	int n = bq_ack_encode(&a, p, sizeof(p));

	ck_assert_int_gt(n, 0);
	f.dst = dst;
	f.dst_len = (uint8_t)strlen(dst);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	fo_send(fc, &f);
}

static void fo_dir_user(struct bq_dirw *w, const char *id)
{
	struct bq_dir_entry e = {.kind = BQ_DIR_USER,
				 .id = id,
				 .id_len = (uint8_t)strlen(id),
				 .presence = BQ_PRES_ONLINE,
				 .name = id,
				 .name_len = (uint8_t)strlen(id),
				 .version = 1};

	memcpy(e.home, ODIN_MAC, 6);
	ck_assert_int_eq(bq_dirw_add(w, &e), 0);
}

/*
 * The snapshot: FO_DIR_USERS users in frames of FO_PER_FRAME (BQ_FF_MORE on all but the
 * last), then Odin itself. A cut answer carries an extra user "ghost" in its only part,
 * so a complete scan later must also forget what the cut one left behind.
 */
static void fo_answer_scan(struct fo_conn *fc)
{
	uint8_t buf[4096];
	struct bq_dirw w;
	char id[16];
	bool cut = O.close_mid_scan > 0;

	O.scans++;
	for (int first = 0; first < FO_DIR_USERS; first += FO_PER_FRAME) {
		bool last = first + FO_PER_FRAME >= FO_DIR_USERS;
		struct bq_frame f = {.type = BQ_T_DIRECTORY,
				     .flags = last ? 0 : BQ_FF_MORE,
				     .msg_id = (uint64_t)random() + 1};

		ck_assert_int_eq(bq_dirw_init_directory(&w, buf, sizeof(buf), 0, BQ_DIRF_SNAPSHOT),
				 0);
		for (int i = first; i < FO_DIR_USERS && i < first + FO_PER_FRAME; i++) {
			snprintf(id, sizeof(id), "dir%02d", i);
			fo_dir_user(&w, id);
		}
		if (cut) {
			fo_dir_user(&w, "ghost");
		}
		if (last) {
			struct bq_dir_entry node = {.kind = BQ_DIR_NODE,
						    .name = "Odin",
						    .name_len = 4,
						    .version = 1,
						    .n_neigh = 1,
						    .neigh = NEIGH_MAC};

			memcpy(node.node, ODIN_MAC, 6);
			ck_assert_int_eq(bq_dirw_add(&w, &node), 0);
		}
		f.payload = buf;
		f.payload_len = (uint16_t)bq_dirw_finish(&w, last ? 0 : (uint64_t)first + 1);
		fo_send(fc, &f);
		if (cut) {
			O.close_mid_scan--;
			fo_close(fc);
			return;
		}
	}
}

static void fo_handle(struct fo_conn *fc, const struct bq_frame *f)
{
	char src[BQ_USER_ID_MAX + 1] = "";

	memcpy(src, f->src, f->src_len);
	O.pings += f->type == BQ_T_PING;
	if (O.mute || fc->deaf) {
		return;
	}
	switch (f->type) {
	case BQ_T_HELLO: {
		uint8_t p[64];
		struct bq_hello h = {
			.role = BQ_ROLE_NODE, .caps = BQ_CAP_RELAY, .name = "Odin", .name_len = 4};
		struct bq_frame a = {.type = BQ_T_HELLO, .msg_id = 1};
		int n = bq_hello_encode(&h, p, sizeof(p));

		ck_assert_int_gt(n, 0);
		O.hellos++;
		a.payload = p;
		a.payload_len = (uint16_t)n;
		fo_send(fc, &a);
		break;
	}
	case BQ_T_ATTACH:
		O.attaches++;
		if (O.reject) {
			fo_ack(fc, f->msg_id, BQ_ACK_REJECTED, src, "user id in use");
		} else {
			fo_ack(fc, f->msg_id, BQ_ACK_OK, src, NULL);
		}
		break;
	case BQ_T_SCAN:
		fo_answer_scan(fc);
		break;
	case BQ_T_PING: {
		struct bq_frame p = *f;

		p.type = BQ_T_PONG;
		p.flags = 0;
		fo_send(fc, &p);
		break;
	}
	default:
		break;
	}
}

static void fo_conn_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct fo_conn *fc = ud;

	if (events & BQ_CONN_ERROR) {
		fo_close(fc);
		return;
	}
	if (!(events & BQ_CONN_READABLE)) {
		return;
	}
	for (;;) {
		ssize_t n;
		size_t off = 0;

		ck_assert_uint_lt(fc->in_len, sizeof(fc->in));
		n = bq_conn_read(c, fc->in + fc->in_len, sizeof(fc->in) - fc->in_len);
		if (n == -EAGAIN) {
			return;
		}
		if (n <= 0) {
			fo_close(fc);
			return;
		}
		fc->in_len += (size_t)n;
		while (off < fc->in_len) {
			struct bq_frame f;
			int k = bq_frame_decode(fc->in + off, fc->in_len - off, &f);

			ck_assert_int_ge(k, 0);
			if (k == 0) {
				break;
			}
			fo_handle(fc, &f);
			off += (size_t)k;
			if (fc->conn != c) {
				return; /* closed while answering */
			}
		}
		memmove(fc->in, fc->in + off, fc->in_len - off);
		fc->in_len -= off;
	}
}

static void fo_accept_cb(struct bq_listener *l, struct bq_conn *c, void *ud)
{
	for (int i = 0; i < FO_CONNS; i++) {
		struct fo_conn *fc = &O.c[i];

		if (!fc->conn) {
			fc->conn = c;
			fc->in_len = 0;
			fc->deaf = false;
			O.accepts++;
			bq_conn_set_cb(c, fo_conn_cb, fc);
			return;
		}
	}
	ck_abort_msg("scripted Odin: more than %d connections", FO_CONNS);
}

static void fo_start(void)
{
	struct bq_addr a;
	char err[256];

	ck_assert_ptr_null(O.lis);
	ck_assert_int_eq(bq_addr_parse(T.listen, &a, err, sizeof(err)), 0);
	ck_assert_msg(bq_listener_new(T.loop, &a, fo_accept_cb, NULL, &O.lis, err, sizeof(err)) ==
			      0,
		      "%s", err);
}

/* Odin goes away: every connection closed, the socket file removed. */
static void fo_stop(void)
{
	for (int i = 0; i < FO_CONNS; i++) {
		fo_close(&O.c[i]);
	}
	bq_listener_free(O.lis);
	O.lis = NULL;
}

/* Every open connection stops answering (a new one answers again). */
static void fo_go_deaf(void)
{
	for (int i = 0; i < FO_CONNS; i++) {
		O.c[i].deaf = O.c[i].conn != NULL;
	}
}

static int fo_open_conns(void)
{
	int n = 0;

	for (int i = 0; i < FO_CONNS; i++) {
		n += O.c[i].conn != NULL;
	}
	return n;
}

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

static void setup_with(bool fake)
{
	memset(&T, 0, sizeof(T));
	memset(&O, 0, sizeof(O));
	setenv("BLUEQ_ADDR_MAP", "/nonexistent/blueq-test-map", 1);
	T.fake = fake;
	/* A round number of ms far from 0, so "0 = never" timestamps cannot be confused. */
	bq_fake_clock_init(&T.fc, 1000000ull * 1000);
	T.loop = bq_loop_new(fake ? &T.fc.clock : NULL, NULL);
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

static void setup(void)
{
	setup_with(false);
}

static void setup_fake(void)
{
	setup_with(true);
	srandom(7);
}

/* One loop round after ms: real time, or fake time moved on by ms (then no wait). */
static void step(int ms)
{
	if (T.fake) {
		bq_fake_clock_advance(&T.fc, (uint64_t)ms * 1000);
		bq_loop_run_once(T.loop, 0);
	} else {
		bq_loop_run_once(T.loop, ms);
	}
}

static void teardown(void)
{
	if (T.reg) {
		bq_sessions_stop(T.reg);
		for (int i = 0; i < 200 && bq_sessions_busy(T.reg); i++) {
			step(10);
		}
		bq_sessions_free(T.reg);
		ck_assert_int_eq(T.destroyed, 1);
	}
	fo_stop();
	bq_node_free(T.node);
	bq_loop_free(T.loop);
	bq_auth_free(T.auth);
	bq_log_free(T.log);
	unlink(T.listen + strlen("unix:"));
	rmdir(T.dir);
}

static void registry_from(const struct bq_sessions_config *cfg)
{
	char err[256];

	T.reg = bq_sessions_new(T.loop, cfg, &CBS, &T, cb_destroy, T.log, err, sizeof(err));
	ck_assert_msg(T.reg != NULL, "%s", err);
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
	registry_from(&cfg);
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
		{.from = BQ_SESS_NEW, .to = BQ_SESS_CONNECTING},
		{.from = BQ_SESS_CONNECTING, .to = BQ_SESS_ATTACHING},
		{.from = BQ_SESS_ATTACHING, .to = BQ_SESS_SCANNING},
		{.from = BQ_SESS_SCANNING, .to = BQ_SESS_READY},
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

/* ---- the state machine on a fake clock, against the scripted Odin ------------------------ */

/* Rounds without moving time until nothing is left to do (UNIX I/O needs no real wait). */
static void pump(void)
{
	int idle = 0;

	for (int i = 0; i < 500 && idle < 3; i++) {
		idle = bq_loop_run_once(T.loop, 0) > 0 ? 0 : idle + 1;
	}
}

/*
 * Move fake time forward, timer by timer (so everything happens at its exact due time),
 * until done(ud) or max_ms have passed. done may be NULL: just advance max_ms.
 */
static bool fake_run_until(bool (*done)(void *ud), void *ud, uint64_t max_ms)
{
	uint64_t end = bq_loop_now_ms(T.loop) + max_ms;

	ck_assert(T.fake);
	pump();
	for (;;) {
		uint64_t now = bq_loop_now_ms(T.loop), stride;
		int64_t next;

		if (done && done(ud)) {
			return true;
		}
		if (now >= end) {
			return false;
		}
		next = bq_loop_next_timer_ms(T.loop);
		/* A timer still due after a pump re-arms itself at 0: let a millisecond pass. */
		stride = next <= 0 ? 1 : (uint64_t)next;
		if (stride > end - now) {
			stride = end - now;
		}
		bq_fake_clock_advance(&T.fc, stride * 1000);
		pump();
	}
}

static void fake_advance(uint64_t ms)
{
	fake_run_until(NULL, NULL, ms);
}

static bool fake_wait_state(const char *user, enum bq_session_state st, uint64_t max_ms)
{
	W.user = user;
	W.st = st;
	return fake_run_until(user_in_state, NULL, max_ms);
}

static bool trans_at_least(void *ud)
{
	return T.n_trans >= *(int *)ud;
}

/* Run until the watched user has made n more transitions. */
static bool fake_wait_trans(int n, uint64_t max_ms)
{
	int want = T.n_trans + n;

	return fake_run_until(trans_at_least, &want, max_ms);
}

static void watch(const char *user)
{
	snprintf(T.watch, sizeof(T.watch), "%s", user);
}

/* The watched user's states from transition i on, as "a>b>c" (static buffer). */
static const char *path_from(int i)
{
	static char buf[2048];
	size_t off;

	if (i >= T.n_trans) {
		return "";
	}
	off = (size_t)snprintf(buf, sizeof(buf), "%s", bq_session_state_name(T.trans[i].from));
	for (; i < T.n_trans && off < sizeof(buf); i++) {
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, ">%s",
					bq_session_state_name(T.trans[i].to));
	}
	return buf;
}

/*
 * The path from transition i is want, where "scanning>" may be missing before the final
 * "ready" (docs/manager.md: a link whose directory is synced answers ATTACH with READY).
 */
static void assert_path_to_ready(int i, const char *want)
{
	const char *got = path_from(i);
	const char *tail = strstr(want, "scanning>ready");
	char alt[512];

	ck_assert_ptr_nonnull(tail);
	snprintf(alt, sizeof(alt), "%.*sready", (int)(tail - want), want);
	ck_assert_msg(strcmp(got, want) == 0 || strcmp(got, alt) == 0, "path %s, wanted %s", got,
		      want);
}

/* Index of the first transition at or after i that goes to st, or -1. */
static int next_to(int i, enum bq_session_state st)
{
	for (; i < T.n_trans; i++) {
		if (T.trans[i].to == st) {
			return i;
		}
	}
	return -1;
}

/* The scripted Odin at T.listen; no key, no connect gate (connect_rate 0), defaults else. */
static void fake_config(enum bq_link_mode mode, struct bq_sessions_config *cfg)
{
	char err[256];

	bq_sessions_config_defaults(cfg);
	ck_assert_int_eq(bq_addr_parse(T.listen, &cfg->odin, err, sizeof(err)), 0);
	cfg->mode = mode;
	cfg->connect_rate = 0;
	/* The figures the assertions below are written against (the documented defaults). */
	ck_assert_uint_eq(cfg->backoff_base_ms, 100);
	ck_assert_uint_eq(cfg->backoff_cap_ms, 30000);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 5000);
	ck_assert_uint_eq(cfg->connect_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->ping_interval_ms, 5000);
	ck_assert_uint_eq(cfg->dead_after_ms, 15000);
}

static struct bq_session *fake_connect(const char *user)
{
	struct bq_session *s = NULL;

	watch(user);
	ck_assert_int_eq(bq_sessions_connect(T.reg, user, NULL, &s), 0);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Transition i went from -> to with a timeout's errno and a reason containing needle. */
static void assert_trans(int i, enum bq_session_state from, enum bq_session_state to, int err,
			 const char *needle)
{
	ck_assert_int_ge(i, 0);
	ck_assert_int_lt(i, T.n_trans);
	ck_assert_msg(T.trans[i].from == from && T.trans[i].to == to,
		      "transition %d is %s -> %s, wanted %s -> %s (path %s)", i,
		      bq_session_state_name(T.trans[i].from), bq_session_state_name(T.trans[i].to),
		      bq_session_state_name(from), bq_session_state_name(to), path_from(0));
	if (err) {
		ck_assert_int_eq(T.trans[i].err, err);
	}
	if (needle) {
		ck_assert_msg(strstr(T.trans[i].reason, needle) != NULL,
			      "transition %d reason '%s' lacks '%s'", i, T.trans[i].reason, needle);
	}
}

/* Odin accepts the connection and never says HELLO: timeout, backoff, dial again, recover. */
START_TEST(test_fake_hello_timeout)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	uint64_t t0, delay;
	char want[64];

	O.mute = true;
	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice");
	pump();
	t0 = bq_loop_now_ms(T.loop);
	ck_assert_int_eq(O.accepts, 1);
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_CONNECTING);
	/* One millisecond short of the HELLO timeout nothing has happened yet. */
	fake_advance(cfg.handshake_timeout_ms - 1);
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_CONNECTING);
	ck_assert_str_eq(path_from(0), "new>connecting");
	fake_advance(1);
	ck_assert_str_eq(path_from(0), "new>connecting>backoff");
	snprintf(want, sizeof(want), "within %u ms", cfg.handshake_timeout_ms);
	assert_trans(1, BQ_SESS_CONNECTING, BQ_SESS_BACKOFF, -ETIMEDOUT, "no HELLO from");
	assert_trans(1, BQ_SESS_CONNECTING, BQ_SESS_BACKOFF, -ETIMEDOUT, want);
	ck_assert_uint_eq(T.trans[1].at_ms - t0, cfg.handshake_timeout_ms);
	bq_session_info(s, &info);
	ck_assert_int_eq(info.state, BQ_SESS_BACKOFF);
	ck_assert_str_eq(info.last_error, T.trans[1].reason);
	ck_assert_int_eq(info.last_error_code, -ETIMEDOUT);
	ck_assert_uint_eq(info.reconnects, 0);
	ck_assert_uint_eq(info.connected_since_ms, 0);
	ck_assert_int_eq(fo_open_conns(), 0); /* the client hung up */

	/* The first backoff step is base..3*base; then it dials again (and Odin accepts). */
	ck_assert(fake_wait_trans(1, cfg.backoff_cap_ms));
	assert_trans(2, BQ_SESS_BACKOFF, BQ_SESS_CONNECTING, 0, NULL);
	delay = T.trans[2].at_ms - T.trans[1].at_ms;
	ck_assert_uint_ge(delay, cfg.backoff_base_ms);
	ck_assert_uint_le(delay, 3 * cfg.backoff_base_ms);
	ck_assert_int_eq(O.accepts, 2);
	bq_session_info(s, &info);
	ck_assert_uint_eq(info.reconnects, 1);
	/* While it tries again, the last error stays readable. */
	ck_assert_int_eq(info.last_error_code, -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(info.last_error, "no HELLO from"));
	/* Still mute: the second attempt times out the same way, at the same fake pace. */
	ck_assert(fake_wait_trans(1, cfg.handshake_timeout_ms));
	assert_trans(3, BQ_SESS_CONNECTING, BQ_SESS_BACKOFF, -ETIMEDOUT, "no HELLO from");
	ck_assert_uint_eq(T.trans[3].at_ms - T.trans[2].at_ms, cfg.handshake_timeout_ms);

	/* Odin speaks again: the next dial gets all the way to ready. */
	O.mute = false;
	ck_assert(fake_wait_state("alice", BQ_SESS_READY, cfg.backoff_cap_ms));
	assert_path_to_ready(0, "new>connecting>backoff>connecting>backoff>connecting>"
				"attaching>scanning>ready");
	bq_session_info(s, &info);
	ck_assert_uint_eq(info.reconnects, 2);
	ck_assert_uint_gt(info.connected_since_ms, 0);
}
END_TEST

/*
 * A TCP listener whose accept queue is already full (backlog 0 and one connection nobody
 * accepts): the kernel drops further SYNs, so a dial to it never completes.
 */
static int full_tcp_listener(int *filler, uint16_t *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 0), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(*filler, 0);
	ck_assert_int_eq(connect(*filler, (struct sockaddr *)&sa, sizeof(sa)), 0);
	usleep(10000); /* let loopback finish the filler's handshake into the queue */
	*port = ntohs(sa.sin_port);
	return fd;
}

/* The dial itself never completes: connect timeout, backoff, dial again. */
START_TEST(test_fake_connect_timeout)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	char addr[64], err[256], want[128];
	int filler, lfd;
	uint16_t port;
	uint64_t t0, delay;

	lfd = full_tcp_listener(&filler, &port);
	fake_config(MODES[_i], &cfg);
	snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%u", port);
	ck_assert_int_eq(bq_addr_parse(addr, &cfg.odin, err, sizeof(err)), 0);
	registry_from(&cfg);
	s = fake_connect("alice");
	pump();
	t0 = bq_loop_now_ms(T.loop);
	fake_advance(cfg.connect_timeout_ms - 1);
	ck_assert_msg(bq_session_state(s) == BQ_SESS_CONNECTING, "path %s", path_from(0));
	fake_advance(1);
	ck_assert_str_eq(path_from(0), "new>connecting>backoff");
	snprintf(want, sizeof(want), "connect to %s timed out after %u ms", addr,
		 cfg.connect_timeout_ms);
	assert_trans(1, BQ_SESS_CONNECTING, BQ_SESS_BACKOFF, -ETIMEDOUT, want);
	ck_assert_uint_eq(T.trans[1].at_ms - t0, cfg.connect_timeout_ms);
	bq_session_info(s, &info);
	ck_assert_str_eq(info.last_error, want);
	ck_assert_int_eq(info.last_error_code, -ETIMEDOUT);
	ck_assert(fake_wait_trans(1, cfg.backoff_cap_ms));
	assert_trans(2, BQ_SESS_BACKOFF, BQ_SESS_CONNECTING, 0, NULL);
	delay = T.trans[2].at_ms - T.trans[1].at_ms;
	ck_assert_uint_ge(delay, cfg.backoff_base_ms);
	ck_assert_uint_le(delay, 3 * cfg.backoff_base_ms);
	bq_session_info(s, &info);
	ck_assert_uint_eq(info.reconnects, 1);
	/* The second dial hangs the same way. */
	ck_assert(fake_wait_trans(1, cfg.connect_timeout_ms));
	assert_trans(3, BQ_SESS_CONNECTING, BQ_SESS_BACKOFF, -ETIMEDOUT, want);
	close(filler);
	close(lfd);
}
END_TEST

/* Delays between entering backoff and dialing again, for every backoff from index i. */
static int backoff_delays(int i, uint64_t *out, int max)
{
	int n = 0;

	for (; i + 1 < T.n_trans && n < max; i++) {
		if (T.trans[i].to == BQ_SESS_BACKOFF && T.trans[i + 1].from == BQ_SESS_BACKOFF &&
		    T.trans[i + 1].to == BQ_SESS_CONNECTING) {
			out[n++] = T.trans[i + 1].at_ms - T.trans[i].at_ms;
		}
	}
	return n;
}

/*
 * Decorrelated jitter: with no Odin every dial fails at once, so the time from backoff to
 * the next connecting is the backoff step itself. Steps stay in [base, cap], vary, grow,
 * and start again near base after one successful ready.
 */
START_TEST(test_fake_backoff_jitter_reset)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	uint64_t d[64], after;
	int n = 0, mark;
	bool varied = false, grew = false;

	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice"); /* nobody listens at T.listen yet */
	pump();
	ck_assert_str_eq(path_from(0), "new>connecting>backoff");
	ck_assert_int_lt(T.trans[1].err, 0);
	ck_assert_str_ne(T.trans[1].reason, "");
	/* Until a step has clearly grown past the first range (bounded: 40 failures). */
	while (n < 40 && !(grew && n >= 6)) {
		ck_assert(fake_wait_trans(2, cfg.backoff_cap_ms + 1));
		n = backoff_delays(0, d, 64);
		grew |= d[n - 1] > 3 * cfg.backoff_base_ms;
	}
	for (int i = 0; i < n; i++) {
		ck_assert_uint_ge(d[i], cfg.backoff_base_ms);
		ck_assert_uint_le(d[i], cfg.backoff_cap_ms);
		varied |= d[i] != d[0];
	}
	/* A failed dial goes straight back to backoff, at the same fake instant. */
	for (int i = 1; i < T.n_trans; i++) {
		if (T.trans[i].from == BQ_SESS_CONNECTING) {
			ck_assert_int_eq(T.trans[i].to, BQ_SESS_BACKOFF);
			ck_assert_uint_eq(T.trans[i].at_ms, T.trans[i - 1].at_ms);
		}
	}
	ck_assert_msg(varied, "%d backoff steps, all %llu ms", n, (unsigned long long)d[0]);
	ck_assert_msg(grew, "no step above %u ms in %d", 3 * cfg.backoff_base_ms, n);
	bq_session_info(s, &info);
	ck_assert_uint_eq(info.reconnects, (uint32_t)n);

	/* Odin appears: ready at the next dial. Then it vanishes again. */
	fo_start();
	ck_assert(fake_wait_state("alice", BQ_SESS_READY, cfg.backoff_cap_ms + 1));
	fo_stop();
	mark = T.n_trans;
	ck_assert(fake_wait_trans(2, cfg.backoff_cap_ms + 1));
	ck_assert_int_eq(T.trans[mark].from, BQ_SESS_READY);
	ck_assert_int_eq(T.trans[mark].to, BQ_SESS_BACKOFF);
	ck_assert_int_eq(backoff_delays(mark, &after, 1), 1);
	/* Reset on success: the first step after ready is drawn from [base, 3 * base] again. */
	ck_assert_uint_ge(after, cfg.backoff_base_ms);
	ck_assert_uint_le(after, 3 * cfg.backoff_base_ms);
}
END_TEST

/* Odin stops answering a ready link: dead after dead_after_ms, back when Odin is. */
START_TEST(test_fake_heartbeat_lost)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	int n, pings, b;
	uint64_t quiet_since, dead_in;

	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice");
	ck_assert(fake_wait_state("alice", BQ_SESS_READY, 1000));
	/* Healthy and idle: PINGs are answered, the link stays up for a long quiet time. */
	n = T.n_trans;
	fake_advance(3 * cfg.dead_after_ms);
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_READY);
	ck_assert_int_eq(T.n_trans, n);
	ck_assert_int_ge(O.pings, 3 * (int)(cfg.dead_after_ms / cfg.ping_interval_ms) - 1);
	/* Let the last PONG be just now, so the dead line is exactly known. */
	pings = O.pings;
	while (O.pings == pings) {
		fake_advance(1);
	}
	quiet_since = bq_loop_now_ms(T.loop);
	fo_go_deaf();
	pings = O.pings;
	ck_assert(fake_wait_state("alice", BQ_SESS_BACKOFF,
				  cfg.dead_after_ms + cfg.ping_interval_ms));
	b = next_to(n, BQ_SESS_BACKOFF);
	assert_trans(b, BQ_SESS_READY, BQ_SESS_BACKOFF, -ETIMEDOUT, "no frame from");
	dead_in = T.trans[b].at_ms - quiet_since;
	ck_assert_uint_ge(dead_in, cfg.dead_after_ms);
	ck_assert_uint_le(dead_in, cfg.dead_after_ms + cfg.ping_interval_ms);
	ck_assert_int_gt(O.pings, pings); /* it kept asking before giving up */
	bq_session_info(s, &info);
	ck_assert_str_eq(info.last_error, T.trans[b].reason);
	ck_assert_int_eq(info.last_error_code, -ETIMEDOUT);
	ck_assert_uint_eq(info.connected_since_ms, 0);
	ck_assert_uint_eq(info.reconnects, 0);
	/* Odin answers new connections: ready again after one reconnect. */
	ck_assert(fake_wait_state("alice", BQ_SESS_READY, cfg.backoff_cap_ms));
	assert_path_to_ready(b, "ready>backoff>connecting>attaching>scanning>ready");
	bq_session_info(s, &info);
	ck_assert_uint_eq(info.reconnects, 1);
	ck_assert_uint_gt(info.connected_since_ms, 0);
	ck_assert_int_eq(O.accepts, 2);
	ck_assert_int_eq(fo_open_conns(), 1); /* the dead link was closed by the client */
	/* And it stays up this time. */
	n = T.n_trans;
	fake_advance(2 * cfg.dead_after_ms);
	ck_assert_int_eq(T.n_trans, n);
}
END_TEST

/* Odin refuses the attach: failed with the reason; retried by timer and by the user. */
START_TEST(test_fake_attach_refused)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	int n;
	uint64_t delay;

	O.reject = true;
	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice");
	ck_assert(fake_wait_state("alice", BQ_SESS_FAILED, 1000));
	ck_assert_str_eq(path_from(0), "new>connecting>attaching>failed");
	assert_trans(2, BQ_SESS_ATTACHING, BQ_SESS_FAILED, -EACCES, "user id in use");
	bq_session_info(s, &info);
	ck_assert_str_eq(info.last_error, "user id in use");
	ck_assert_int_eq(info.last_error_code, -EACCES);
	ck_assert_uint_eq(info.connected_since_ms, 0);
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "hi", 2, 0, NULL), -ENOTCONN);
	/* The registry's retry timer attaches again after a backoff step; refused again. */
	ck_assert(fake_wait_trans(2, cfg.backoff_cap_ms));
	ck_assert_str_eq(path_from(2), "attaching>failed>attaching>failed");
	assert_trans(3, BQ_SESS_FAILED, BQ_SESS_ATTACHING, 0, "attach retried");
	assert_trans(4, BQ_SESS_ATTACHING, BQ_SESS_FAILED, -EACCES, "user id in use");
	delay = T.trans[3].at_ms - T.trans[2].at_ms;
	ck_assert_uint_ge(delay, cfg.backoff_base_ms);
	ck_assert_uint_le(delay, 3 * cfg.backoff_base_ms);
	ck_assert_int_eq(O.attaches, 2);
	ck_assert_int_eq(O.accepts, 1); /* the link itself stayed up */
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "hi", 2, 0, NULL), -ENOTCONN);

	/* Odin would now accept; the user asks again: retried at once, not at the next step. */
	O.reject = false;
	n = T.n_trans;
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	ck_assert_int_ne(bq_session_state(s), BQ_SESS_FAILED);
	assert_trans(n, BQ_SESS_FAILED, BQ_SESS_ATTACHING, 0, NULL);
	ck_assert_msg(fake_wait_state("alice", BQ_SESS_READY, 0), "path %s", path_from(0));
	ck_assert_uint_eq(T.trans[T.n_trans - 1].at_ms, T.trans[n].at_ms); /* no time passed */
	ck_assert_int_eq(bq_sessions_send(T.reg, "alice", "bob", "hi", 2, 0, NULL), 0);
	/* Nothing left to retry: the old retry timer changes nothing. */
	n = T.n_trans;
	fake_advance(2 * cfg.backoff_cap_ms);
	ck_assert_int_eq(T.n_trans, n);
	ck_assert_int_eq(O.attaches, 3);
}
END_TEST

/*
 * Odin closes the link while the DIRECTORY snapshot is on its way: backoff, then a new
 * link scans from 0 and the directory served is complete (and without what only the
 * cut answer listed).
 */
START_TEST(test_fake_close_mid_scan)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	int b;

	O.close_mid_scan = 1;
	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice");
	ck_assert(fake_wait_state("alice", BQ_SESS_READY, cfg.backoff_cap_ms));
	ck_assert_str_eq(path_from(0), "new>connecting>attaching>scanning>backoff>connecting>"
				       "attaching>scanning>ready");
	b = next_to(0, BQ_SESS_BACKOFF);
	ck_assert_int_lt(T.trans[b].err, 0);
	ck_assert_str_ne(T.trans[b].reason, "");
	bq_session_info(s, &info);
	ck_assert_str_eq(info.last_error, T.trans[b].reason);
	ck_assert_int_eq(info.last_error_code, T.trans[b].err);
	ck_assert_uint_eq(info.reconnects, 1);
	ck_assert_int_eq(O.accepts, 2);
	ck_assert_int_eq(O.scans, 2);
	ck_assert_uint_eq(bq_sessions_dir_count(T.reg), FO_DIR_USERS + 1);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "dir00"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "dir24"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_sessions_dir_presence(T.reg, "ghost"), -ENOENT);
	{
		struct bq_sessions_stats st;

		bq_sessions_stats(T.reg, &st);
		ck_assert_uint_eq(st.directory_users, FO_DIR_USERS + 1);
		ck_assert_uint_eq(st.links_up, 1);
	}
}
END_TEST

/*
 * Regression (retry_cb): failed sessions are retried with a decorrelated backoff that
 * grows from base to cap (docs/manager.md). It never grew for a refused user: retry_one()
 * re-attached and cleared the retry flag at once, so retry_cb saw n_retry == 0 and reset
 * the backoff before Odin's REJECTED came back, and the user was re-attached every
 * 100-300 ms forever, each time reported as failed -> attaching -> failed.
 */
START_TEST(test_fake_refused_retry_backs_off)
{
	struct bq_sessions_config cfg;
	uint64_t d[16];
	int n = 0;
	bool grew = false;

	O.reject = true;
	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	fake_connect("alice");
	ck_assert(fake_wait_state("alice", BQ_SESS_FAILED, 1000));
	/* Ten refusals in a row, each retry's wait measured from the refusal before it. */
	while (n < 10) {
		int f;

		ck_assert(fake_wait_trans(2, cfg.backoff_cap_ms + 1));
		f = T.n_trans - 2;
		assert_trans(f, BQ_SESS_FAILED, BQ_SESS_ATTACHING, 0, "attach retried");
		assert_trans(f + 1, BQ_SESS_ATTACHING, BQ_SESS_FAILED, -EACCES, NULL);
		d[n] = T.trans[f].at_ms - T.trans[f - 1].at_ms;
		ck_assert_uint_ge(d[n], cfg.backoff_base_ms);
		grew |= d[n] > 3 * cfg.backoff_base_ms;
		n++;
	}
	ck_assert_msg(grew, "10 retries of a refused user, each within %u ms of the refusal",
		      3 * cfg.backoff_base_ms);
}
END_TEST

/*
 * Regression (retry_one): a refused session retried while its link is down (here the user
 * asks again; the retry timer takes the same path) went failed -> backoff with reason
 * "attach retried" and err 0, which set_state stored as last_error: the link's real
 * reason (docs/manager.md: backoff shows the link's reason) was lost.
 */
START_TEST(test_fake_refused_then_link_lost)
{
	struct bq_sessions_config cfg;
	struct bq_session_info info;
	struct bq_session *s;
	int b;

	O.reject = true;
	fo_start();
	fake_config(MODES[_i], &cfg);
	registry_from(&cfg);
	s = fake_connect("alice");
	ck_assert(fake_wait_state("alice", BQ_SESS_FAILED, 1000));
	/* Odin goes away while alice is failed (she stays failed); then she asks again. */
	fo_stop();
	pump();
	ck_assert_int_eq(bq_session_state(s), BQ_SESS_FAILED);
	ck_assert_int_eq(bq_sessions_connect(T.reg, "alice", NULL, NULL), 0);
	b = next_to(0, BQ_SESS_BACKOFF);
	assert_trans(b, BQ_SESS_FAILED, BQ_SESS_BACKOFF, 0, NULL);
	bq_session_info(s, &info);
	ck_assert_msg(info.last_error_code < 0 && strcmp(info.last_error, "attach retried") != 0,
		      "backoff with last_error '%s' (%d)", info.last_error, info.last_error_code);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("sessions");
	TCase *tc = tcase_create("core");
	TCase *big = tcase_create("big");
	TCase *fake = tcase_create("fake");

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

	tcase_add_checked_fixture(fake, setup_fake, teardown);
	tcase_set_timeout(fake, 30);
	tcase_add_loop_test(fake, test_fake_hello_timeout, 0, 2);
	tcase_add_loop_test(fake, test_fake_connect_timeout, 0, 2);
	tcase_add_loop_test(fake, test_fake_backoff_jitter_reset, 0, 2);
	tcase_add_loop_test(fake, test_fake_heartbeat_lost, 0, 2);
	tcase_add_loop_test(fake, test_fake_attach_refused, 0, 2);
	tcase_add_loop_test(fake, test_fake_close_mid_scan, 0, 2);
	suite_add_tcase(s, fake);

	{
		/* Retries of refused users: regression tests of two bugs these found. */
		TCase *retry = tcase_create("refused_retry");

		tcase_add_checked_fixture(retry, setup_fake, teardown);
		tcase_set_timeout(retry, 30);
		tcase_add_loop_test(retry, test_fake_refused_retry_backs_off, 0, 2);
		tcase_add_loop_test(retry, test_fake_refused_then_link_lost, 0, 2);
		suite_add_tcase(s, retry);
	}
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
