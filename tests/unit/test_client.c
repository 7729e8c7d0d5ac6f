/* SPDX-License-Identifier: MIT */
/*
 * The MeshClient engine against a fake node written here: a UNIX listener that speaks
 * raw frames (no link layer), records every frame the client sends and answers the way
 * the test asks (reject, close mid-scan, ignore heartbeats, delay receipts).
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "loop/loop.h"
#include "mesh/client.h"
#include "mesh/node.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"
#include "transport/conn.h"

static const uint8_t ODIN[6] = { 0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77 };
static const uint8_t NODE2[6] = { 0x02, 0, 0, 0, 0, 0x02 };

struct rec {
	uint8_t type, flags, attempt;
	uint64_t msg_id;
	char src[BQ_USER_ID_MAX + 1];
	char dst[BQ_USER_ID_MAX + 1];
	uint8_t payload[BQ_TEXT_MAX];
	uint16_t plen;
};

struct fake_node {
	struct bq_loop *loop;
	struct bq_listener *lis;
	struct bq_conn *conn;
	uint8_t in[65536];
	size_t in_len;
	int accepts;
	int closes;
	struct rec frames[512];
	int nframes;
	/* behaviour */
	bool reject_attach;
	bool close_mid_scan_once;
	bool deaf_once;        /* first connection: answer the handshake, then nothing at all */
	bool deaf;             /* current connection ignores everything */
	int ack_from_attempt;  /* answer MSG only from this attempt on */
	bool deliver;          /* follow ACCEPTED with DELIVERED (unicast) */
	bool no_accept_ack;    /* never answer MSG */
	bool mute_scan;        /* never answer SCAN */
	bool mute_all;         /* every connection ignores everything */
	bool scan_flags;       /* HELLO advertises BQ_CAP_SCAN_FLAGS; SUMMARY is answered */
};

static struct fake_node fn;
static char sock_path[300];
static char dir_path[256];

/* What the client reported. */
static struct {
	enum bq_mclient_state link_states[64];
	int n_link;
	enum bq_muser_state user_states[64];
	int n_user;
	char reason[256];
	int dir_cb;
	int msgs;
	char last_text[128];
	uint64_t last_msg_id;
	int repeats;
	struct {
		uint64_t id;
		uint8_t status;
	} acks[64];
	int n_acks;
} seen;

static void send_frame(struct bq_frame *f)
{
	uint8_t buf[BQ_FRAME_MAX];
	int n;
	struct iovec iov;
	ssize_t w;

	if (!fn.conn) {
		return;
	}
	f->version = BQ_PROTO_VERSION;
	memcpy(f->origin, ODIN, 6);
	n = bq_frame_encode(f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	iov.iov_base = buf;
	iov.iov_len = (size_t)n;
	w = bq_conn_writev(fn.conn, &iov, 1);
	ck_assert_int_eq(w, n);
}

static void node_ack(uint64_t acked, uint8_t status, const char *src, const char *dst,
		     const char *reason)
{
	uint8_t p[300];
	struct bq_ack a = { .acked_id = acked, .status = status, .reason = reason,
			    .reason_len = (uint8_t)(reason ? strlen(reason) : 0) };
	struct bq_frame f = { .type = BQ_T_ACK, .msg_id = (uint64_t)random() + 1 };
	int n = bq_ack_encode(&a, p, sizeof(p));

	ck_assert_int_gt(n, 0);
	f.src = src;
	f.src_len = (uint8_t)(src ? strlen(src) : 0);
	f.dst = dst;
	f.dst_len = (uint8_t)(dst ? strlen(dst) : 0);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	send_frame(&f);
}

static void add_user(struct bq_dirw *w, const char *id, const char *name, uint32_t version)
{
	struct bq_dir_entry e = { .kind = BQ_DIR_USER, .id = id, .id_len = (uint8_t)strlen(id),
				  .presence = BQ_PRES_ONLINE, .name = name,
				  .name_len = (uint8_t)strlen(name), .version = version };

	memcpy(e.home, NODE2, 6);
	ck_assert_int_eq(bq_dirw_add(w, &e), 0);
}

static void send_dir(struct bq_dirw *w, uint8_t *buf, bool more, uint64_t cursor)
{
	struct bq_frame f = { .type = BQ_T_DIRECTORY, .flags = more ? BQ_FF_MORE : 0,
			      .msg_id = (uint64_t)random() + 1 };

	f.payload = buf;
	f.payload_len = (uint16_t)bq_dirw_finish(w, cursor);
	send_frame(&f);
}

static void answer_scan(void)
{
	uint8_t buf[2048];
	struct bq_dirw w;
	struct bq_dir_entry node = { .kind = BQ_DIR_NODE, .name = "Odin", .name_len = 4,
				     .version = 3, .n_neigh = 1, .neigh = NODE2 };

	ck_assert_int_eq(bq_dirw_init_directory(&w, buf, sizeof(buf), 0, BQ_DIRF_SNAPSHOT), 0);
	add_user(&w, "alice", "Alice", 10);
	add_user(&w, "bob", "Bob", 11);
	send_dir(&w, buf, true, 2);
	if (fn.close_mid_scan_once) {
		fn.close_mid_scan_once = false;
		bq_conn_close(fn.conn);
		fn.conn = NULL;
		fn.closes++;
		return;
	}
	ck_assert_int_eq(bq_dirw_init_directory(&w, buf, sizeof(buf), 0, BQ_DIRF_SNAPSHOT), 0);
	memcpy(node.node, ODIN, 6);
	ck_assert_int_eq(bq_dirw_add(&w, &node), 0);
	send_dir(&w, buf, false, 3);
}

/* SUMMARY: one DIRECTORY, no entries, "in sync as of cursor 3". */
static void answer_summary(void)
{
	uint8_t buf[64];
	struct bq_dirw w;

	ck_assert_int_eq(bq_dirw_init_directory(&w, buf, sizeof(buf), 0, BQ_DIRF_SNAPSHOT), 0);
	send_dir(&w, buf, false, 3);
}

static void handle(const struct bq_frame *f)
{
	struct rec *r;

	if (fn.nframes < (int)(sizeof(fn.frames) / sizeof(fn.frames[0]))) {
		r = &fn.frames[fn.nframes++];
		memset(r, 0, sizeof(*r));
		r->type = f->type;
		r->flags = f->flags;
		r->attempt = f->attempt;
		r->msg_id = f->msg_id;
		memcpy(r->src, f->src, f->src_len);
		memcpy(r->dst, f->dst, f->dst_len);
		r->plen = f->payload_len < sizeof(r->payload) ? f->payload_len : sizeof(r->payload);
		memcpy(r->payload, f->payload, r->plen);
	}
	if (fn.deaf) {
		return;
	}
	switch (f->type) {
	case BQ_T_HELLO: {
		uint8_t p[64];
		struct bq_hello h = { .role = BQ_ROLE_NODE, .caps = BQ_CAP_RELAY, .name = "Odin",
				      .name_len = 4 };

		if (fn.scan_flags) {
			h.caps |= BQ_CAP_SCAN_FLAGS;
		}
		struct bq_frame a = { .type = BQ_T_HELLO, .msg_id = 1 };
		int n = bq_hello_encode(&h, p, sizeof(p));

		ck_assert_int_gt(n, 0);
		a.payload = p;
		a.payload_len = (uint16_t)n;
		send_frame(&a);
		break;
	}
	case BQ_T_ATTACH: {
		char src[BQ_USER_ID_MAX + 1] = "";

		memcpy(src, f->src, f->src_len);
		if (fn.reject_attach) {
			node_ack(f->msg_id, BQ_ACK_REJECTED, NULL, src, "user id in use");
		} else {
			node_ack(f->msg_id, BQ_ACK_OK, NULL, src, NULL);
		}
		break;
	}
	case BQ_T_SCAN: {
		struct bq_scan sc;

		if (fn.mute_scan) {
			break;
		}
		ck_assert_int_eq(bq_scan_decode(f, &sc), 0);
		if (sc.flags & BQ_SCAN_SUMMARY) {
			ck_assert(fn.scan_flags); /* never sent to a node without the capability */
			answer_summary();
		} else {
			answer_scan();
		}
		if (fn.deaf_once) {
			fn.deaf_once = false;
			fn.deaf = true;
		}
		break;
	}
	case BQ_T_MSG: {
		char src[BQ_USER_ID_MAX + 1] = "", dst[BQ_USER_ID_MAX + 1] = "";

		memcpy(src, f->src, f->src_len);
		memcpy(dst, f->dst, f->dst_len);
		if (fn.no_accept_ack || f->attempt < fn.ack_from_attempt) {
			break;
		}
		node_ack(f->msg_id, BQ_ACK_ACCEPTED, NULL, src, NULL);
		if (fn.deliver && !(f->flags & BQ_FF_BROADCAST)) {
			node_ack(f->msg_id, BQ_ACK_DELIVERED, dst, src, NULL);
		}
		break;
	}
	case BQ_T_PING: {
		struct bq_frame p = *f;

		p.type = BQ_T_PONG;
		p.flags = 0;
		send_frame(&p);
		break;
	}
	default:
		break;
	}
}

static void node_conn_cb(struct bq_conn *c, unsigned events, void *ud)
{
	if (events & BQ_CONN_ERROR) {
		bq_conn_close(c);
		fn.conn = NULL;
		return;
	}
	if (!(events & BQ_CONN_READABLE)) {
		return;
	}
	for (;;) {
		ssize_t n = bq_conn_read(c, fn.in + fn.in_len, sizeof(fn.in) - fn.in_len);
		size_t off = 0;

		if (n == -EAGAIN) {
			return;
		}
		if (n <= 0) {
			bq_conn_close(c);
			fn.conn = NULL;
			return;
		}
		fn.in_len += (size_t)n;
		while (off < fn.in_len) {
			struct bq_frame f;
			int k = bq_frame_decode(fn.in + off, fn.in_len - off, &f);

			ck_assert_int_ge(k, 0);
			if (k == 0) {
				break;
			}
			handle(&f);
			off += (size_t)k;
			if (fn.conn != c) {
				return; /* closed while handling */
			}
		}
		memmove(fn.in, fn.in + off, fn.in_len - off);
		fn.in_len -= off;
	}
}

static void node_accept_cb(struct bq_listener *l, struct bq_conn *c, void *ud)
{
	if (fn.conn) {
		bq_conn_close(fn.conn);
	}
	fn.conn = c;
	fn.in_len = 0;
	fn.deaf = fn.mute_all;
	fn.accepts++;
	bq_conn_set_cb(c, node_conn_cb, NULL);
}

static void setup(void)
{
	struct bq_addr a;
	char err[256];
	const char *d = bq_test_tmpdir();

	ck_assert_ptr_nonnull(d);
	snprintf(dir_path, sizeof(dir_path), "%s", d);
	snprintf(sock_path, sizeof(sock_path), "unix:%s/node.sock", dir_path);
	memset(&fn, 0, sizeof(fn));
	memset(&seen, 0, sizeof(seen));
	/* No stray address map can redirect the test. */
	setenv("BLUEQ_ADDR_MAP", "/nonexistent/blueq-test-map", 1);
	fn.loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(fn.loop);
	ck_assert_int_eq(bq_addr_parse(sock_path, &a, err, sizeof(err)), 0);
	ck_assert_msg(bq_listener_new(fn.loop, &a, node_accept_cb, NULL, &fn.lis, err,
				      sizeof(err)) == 0, "%s", err);
	srandom(42);
}

static void teardown(void)
{
	if (fn.conn) {
		bq_conn_close(fn.conn);
	}
	bq_listener_free(fn.lis);
	bq_loop_free(fn.loop);
	rmdir(dir_path);
}

/* ---- client side ------------------------------------------------------------------ */

static void cb_link(struct bq_mclient *c, enum bq_mclient_state st, int err, const char *reason,
		    void *ud)
{
	if (seen.n_link < 64) {
		seen.link_states[seen.n_link++] = st;
	}
}

static void cb_user(struct bq_muser *u, enum bq_muser_state st, const char *reason, void *ud)
{
	if (seen.n_user < 64) {
		seen.user_states[seen.n_user++] = st;
	}
	snprintf(seen.reason, sizeof(seen.reason), "%s", reason);
}

static void cb_dir(struct bq_mclient *c, const struct bq_dir_entry *e, void *ud)
{
	seen.dir_cb++;
}

static void cb_msg(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	seen.msgs++;
	seen.last_msg_id = f->msg_id;
	snprintf(seen.last_text, sizeof(seen.last_text), "%.*s", (int)f->payload_len,
		 (const char *)f->payload);
}

static void cb_ack(struct bq_muser *u, uint64_t id, uint8_t status, const char *reason,
		   void *ud)
{
	if (seen.n_acks < 64) {
		seen.acks[seen.n_acks].id = id;
		seen.acks[seen.n_acks].status = status;
		seen.n_acks++;
	}
}

static void cb_repeat(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	seen.repeats++;
}

static const struct bq_mclient_cbs cbs = {
	.link_state = cb_link,
	.user_state = cb_user,
	.directory = cb_dir,
	.message = cb_msg,
	.message_repeat = cb_repeat,
	.ack = cb_ack,
};

static struct bq_mclient *new_client(struct bq_mclient_config *cfg)
{
	char err[256];
	struct bq_mclient *c;

	ck_assert_int_eq(bq_addr_parse(sock_path, &cfg->node, err, sizeof(err)), 0);
	cfg->name = "test-client";
	c = bq_mclient_new(fn.loop, cfg, &cbs, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_msg(bq_mclient_start(c, err, sizeof(err)) == 0, "%s", err);
	return c;
}

static struct bq_muser *wait_user;
static enum bq_muser_state wait_state;

static bool user_in_state(void *ud)
{
	return bq_muser_state(wait_user) == wait_state;
}

static bool wait_for_user(struct bq_muser *u, enum bq_muser_state st, int ms)
{
	wait_user = u;
	wait_state = st;
	return bq_test_run_until(fn.loop, user_in_state, NULL, ms);
}

static int count_frames(uint8_t type)
{
	int n = 0;

	for (int i = 0; i < fn.nframes; i++) {
		n += fn.frames[i].type == type;
	}
	return n;
}

static const struct rec *nth_frame(uint8_t type, int nth)
{
	for (int i = 0; i < fn.nframes; i++) {
		if (fn.frames[i].type == type && nth-- == 0) {
			return &fn.frames[i];
		}
	}
	return NULL;
}

static void run_for(int ms)
{
	for (int i = 0; i < ms / 10; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
}

static void dir_count_fn(const struct bq_dir_entry *e, void *ud)
{
	int *n = ud;

	n[e->kind == BQ_DIR_USER ? 0 : 1]++;
}

static void free_client(struct bq_mclient *c)
{
	bq_mclient_stop(c);
	for (int i = 0; i < 100 && bq_mclient_busy(c); i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	bq_mclient_free(c);
	/* Deferred frees of detached users run here. */
	bq_loop_run_once(fn.loop, 0);
}

/* ---- tests ------------------------------------------------------------------------ */

START_TEST(test_handshake_ready)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	const struct rec *r;
	int counts[2] = { 0, 0 };

	bq_mclient_config_defaults(&cfg);
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert_ptr_nonnull(u);
	ck_assert_ptr_null(bq_mclient_attach(c, "carol", "Again", NULL)); /* duplicate id */
	ck_assert_ptr_null(bq_mclient_attach(c, "bad id!", "x", NULL));
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(bq_mclient_state(c), BQ_MC_UP);
	/* Frames in order: HELLO (client role), ATTACH carol, SCAN from 0. */
	ck_assert_int_ge(fn.nframes, 3);
	ck_assert_int_eq(fn.frames[0].type, BQ_T_HELLO);
	{
		struct bq_frame hf = { .type = BQ_T_HELLO, .payload = fn.frames[0].payload,
				       .payload_len = fn.frames[0].plen };
		struct bq_hello h;

		ck_assert_int_eq(bq_hello_decode(&hf, &h), 0);
		ck_assert_int_eq(h.role, BQ_ROLE_CLIENT);
		ck_assert_int_eq(h.name_len, 11);
		ck_assert_mem_eq(h.name, "test-client", 11);
	}
	ck_assert_int_eq(fn.frames[1].type, BQ_T_ATTACH);
	ck_assert_str_eq(fn.frames[1].src, "carol");
	ck_assert_int_eq(fn.frames[2].type, BQ_T_SCAN);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	/* States: CONNECTING, HELLO, UP; user SCANNING then READY. */
	ck_assert_int_eq(seen.n_link, 3);
	ck_assert_int_eq(seen.link_states[0], BQ_MC_CONNECTING);
	ck_assert_int_eq(seen.link_states[1], BQ_MC_HELLO);
	ck_assert_int_eq(seen.link_states[2], BQ_MC_UP);
	ck_assert_int_eq(seen.n_user, 2);
	ck_assert_int_eq(seen.user_states[0], BQ_MU_SCANNING);
	ck_assert_int_eq(seen.user_states[1], BQ_MU_READY);
	/* Directory: two users and one node, each reported once. */
	ck_assert_int_eq(seen.dir_cb, 3);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 3);
	bq_mclient_dir_foreach(c, dir_count_fn, counts);
	ck_assert_int_eq(counts[0], 2);
	ck_assert_int_eq(counts[1], 1);
	ck_assert_int_eq(bq_mclient_dir_presence(c, "alice"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_mclient_dir_presence(c, "nobody"), -ENOENT);

	/* A second user on a synced link: ATTACH, no second SCAN, READY at once. */
	u = bq_mclient_attach(c, "dave", NULL, NULL);
	ck_assert_ptr_nonnull(u);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	r = nth_frame(BQ_T_ATTACH, 1);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->src, "dave");
	/* Detach sends DETACH. */
	bq_muser_detach(u);
	run_for(50);
	r = nth_frame(BQ_T_DETACH, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->src, "dave");
	free_client(c);
}
END_TEST

/* no_directory: the callback sees every record, the client keeps none. */
START_TEST(test_no_directory_copy)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	bq_mclient_config_defaults(&cfg);
	cfg.no_directory = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(seen.dir_cb, 3);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 0);
	ck_assert_int_eq(bq_mclient_dir_presence(c, "alice"), -ENOENT);
	/* This node does not advertise BQ_CAP_SCAN_FLAGS: a plain 10-byte SCAN(0). */
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 0)->plen, 10);
	free_client(c);
}
END_TEST

START_TEST(test_attach_rejected)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	uint64_t id;

	fn.reject_attach = true;
	bq_mclient_config_defaults(&cfg);
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert_int_eq(bq_muser_send(u, "bob", "queued", 6, 0, &id), 0);
	ck_assert(wait_for_user(u, BQ_MU_REJECTED, 3000));
	ck_assert_str_eq(seen.reason, "user id in use");
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 0);
	/* The queued message fails with the reason; nothing is sent. */
	ck_assert_int_eq(seen.n_acks, 1);
	ck_assert_uint_eq(seen.acks[0].id, id);
	ck_assert_int_eq(seen.acks[0].status, BQ_ACK_REJECTED);
	ck_assert_int_eq(count_frames(BQ_T_MSG), 0);
	ck_assert_int_eq(bq_muser_send(u, "bob", "x", 1, 0, NULL), -ENOTCONN);
	ck_assert_int_eq(bq_mclient_state(c), BQ_MC_UP);
	free_client(c);
}
END_TEST

START_TEST(test_close_mid_scan_reconnects)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	bool saw_backoff = false;

	fn.close_mid_scan_once = true;
	bq_mclient_config_defaults(&cfg);
	cfg.backoff_base_ms = 20;
	cfg.backoff_cap_ms = 100;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(fn.accepts, 2);
	ck_assert_uint_eq(bq_mclient_reconnects(c), 1);
	for (int i = 0; i < seen.n_link; i++) {
		saw_backoff |= seen.link_states[i] == BQ_MC_BACKOFF;
	}
	ck_assert(saw_backoff);
	/* The user went ATTACHING -> SCANNING (mid-scan), back to ATTACHING? It never left
	 * SCANNING for READY on the first link; after the drop it is ATTACHING again. */
	ck_assert_int_eq(seen.user_states[0], BQ_MU_SCANNING);
	ck_assert_int_eq(seen.user_states[1], BQ_MU_ATTACHING);
	ck_assert_int_eq(seen.user_states[seen.n_user - 1], BQ_MU_READY);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 2);
	ck_assert_int_eq(count_frames(BQ_T_ATTACH), 2);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 3);
	ck_assert_str_ne(bq_mclient_last_error(c), "x");
	free_client(c);
}
END_TEST

static bool acks_at_least_2(void *ud)
{
	return seen.n_acks >= 2;
}

START_TEST(test_retransmit_until_delivered)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	uint64_t id = 0;

	fn.ack_from_attempt = 2;
	fn.deliver = true;
	bq_mclient_config_defaults(&cfg);
	cfg.retransmit_ms = 40;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(bq_muser_send(u, "bob", "hello bob", 9, 0, &id), 0);
	ck_assert_uint_ne(id, 0);
	ck_assert_int_eq(bq_muser_send(u, "bob", "same id", 7, id, NULL), -EEXIST);
	ck_assert_int_eq(bq_muser_send(u, "bad id!", "x", 1, 0, NULL), -EINVAL);
	ck_assert_uint_eq(bq_muser_outstanding(u), 1);
	ck_assert(bq_test_run_until(fn.loop, acks_at_least_2, NULL, 3000));
	/* Attempts 0, 1, 2 went out with the same id; then ACCEPTED, DELIVERED. */
	ck_assert_int_eq(count_frames(BQ_T_MSG), 3);
	for (int i = 0; i < 3; i++) {
		const struct rec *r = nth_frame(BQ_T_MSG, i);

		ck_assert_uint_eq(r->msg_id, id);
		ck_assert_int_eq(r->attempt, i);
		ck_assert_str_eq(r->src, "carol");
		ck_assert_str_eq(r->dst, "bob");
		ck_assert_int_eq(r->plen, 9);
		ck_assert_mem_eq(r->payload, "hello bob", 9);
	}
	ck_assert_int_eq(seen.n_acks, 2);
	ck_assert_int_eq(seen.acks[0].status, BQ_ACK_ACCEPTED);
	ck_assert_int_eq(seen.acks[1].status, BQ_ACK_DELIVERED);
	ck_assert_uint_eq(seen.acks[1].id, id);
	ck_assert_uint_eq(bq_muser_outstanding(u), 0);
	/* No more retransmissions after DELIVERED. */
	run_for(200);
	ck_assert_int_eq(count_frames(BQ_T_MSG), 3);
	free_client(c);
}
END_TEST

static bool acks_at_least_1(void *ud)
{
	return seen.n_acks >= 1;
}

START_TEST(test_expire_and_queue_while_down)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	uint64_t id = 0;

	fn.no_accept_ack = true;
	bq_mclient_config_defaults(&cfg);
	cfg.retransmit_ms = 30;
	cfg.msg_expire_ms = 300;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	/* Queued before the link is up: goes out once READY. */
	ck_assert_int_eq(bq_muser_send(u, "bob", "early", 5, 0, &id), 0);
	ck_assert_int_eq(count_frames(BQ_T_MSG), 0);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert(bq_test_run_until(fn.loop, acks_at_least_1, NULL, 3000));
	ck_assert_int_eq(seen.acks[0].status, BQ_ACK_EXPIRED);
	ck_assert_uint_eq(seen.acks[0].id, id);
	ck_assert_int_ge(count_frames(BQ_T_MSG), 2);
	ck_assert_uint_eq(nth_frame(BQ_T_MSG, 0)->msg_id, id);
	ck_assert_uint_eq(bq_muser_outstanding(u), 0);
	free_client(c);
}
END_TEST

static bool two_acks_out(void *ud)
{
	return count_frames(BQ_T_ACK) >= 2;
}

START_TEST(test_duplicate_inbound)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	struct bq_frame f = { .type = BQ_T_MSG, .msg_id = 0x1122334455667788ULL, .src = "alice",
			      .src_len = 5, .dst = "carol", .dst_len = 5,
			      .payload = (const uint8_t *)"hi carol", .payload_len = 8 };
	struct bq_ack a;
	struct bq_frame af = { 0 };
	const struct rec *r;

	bq_mclient_config_defaults(&cfg);
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	send_frame(&f);
	f.attempt = 1; /* the sender's retransmission */
	send_frame(&f);
	ck_assert(bq_test_run_until(fn.loop, two_acks_out, NULL, 3000));
	ck_assert_int_eq(seen.msgs, 1);
	ck_assert_str_eq(seen.last_text, "hi carol");
	ck_assert_uint_eq(seen.last_msg_id, 0x1122334455667788ULL);
	for (int i = 0; i < 2; i++) {
		r = nth_frame(BQ_T_ACK, i);
		ck_assert_str_eq(r->src, "carol");
		ck_assert_str_eq(r->dst, "alice");
		af.type = BQ_T_ACK;
		af.payload = r->payload;
		af.payload_len = r->plen;
		ck_assert_int_eq(bq_ack_decode(&af, &a), 0);
		ck_assert_uint_eq(a.acked_id, 0x1122334455667788ULL);
		ck_assert_int_eq(a.status, BQ_ACK_DELIVERED);
	}
	/* Receipts are distinct frames, so relays do not drop the second. */
	ck_assert_uint_ne(nth_frame(BQ_T_ACK, 0)->msg_id, nth_frame(BQ_T_ACK, 1)->msg_id);

	/* A broadcast from someone else is reported but not acknowledged. */
	f.msg_id = 99;
	f.flags = BQ_FF_BROADCAST;
	f.dst = NULL;
	f.dst_len = 0;
	f.attempt = 0;
	send_frame(&f);
	run_for(100);
	ck_assert_int_eq(seen.msgs, 2);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 2);
	/* For a user not attached here: dropped, no receipt. */
	f.msg_id = 100;
	f.flags = 0;
	f.dst = "nobody";
	f.dst_len = 6;
	send_frame(&f);
	run_for(100);
	ck_assert_int_eq(seen.msgs, 2);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 2);
	free_client(c);
}
END_TEST

static bool one_ack_out(void *ud)
{
	return count_frames(BQ_T_ACK) >= 1;
}

/*
 * hold_receipts: no DELIVERED until the owner confirms; a repeat goes to message_repeat
 * (not message) and gets no receipt by itself; each confirm sends one receipt.
 */
START_TEST(test_hold_receipts)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	struct bq_frame f = { .type = BQ_T_MSG, .msg_id = 0x0102030405060708ULL, .src = "alice",
			      .src_len = 5, .dst = "carol", .dst_len = 5,
			      .payload = (const uint8_t *)"keep it", .payload_len = 7 };
	struct bq_ack a;
	struct bq_frame af = { .type = BQ_T_ACK };
	const struct rec *r;

	bq_mclient_config_defaults(&cfg);
	cfg.hold_receipts = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	send_frame(&f);
	run_for(100);
	ck_assert_int_eq(seen.msgs, 1);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 0);
	f.attempt = 1;
	send_frame(&f);
	run_for(100);
	ck_assert_int_eq(seen.msgs, 1);
	ck_assert_int_eq(seen.repeats, 1);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 0);

	ck_assert_int_eq(bq_muser_confirm(u, "alice", f.msg_id), 0);
	ck_assert(bq_test_run_until(fn.loop, one_ack_out, NULL, 3000));
	r = nth_frame(BQ_T_ACK, 0);
	ck_assert_str_eq(r->src, "carol");
	ck_assert_str_eq(r->dst, "alice");
	af.payload = r->payload;
	af.payload_len = r->plen;
	ck_assert_int_eq(bq_ack_decode(&af, &a), 0);
	ck_assert_uint_eq(a.acked_id, 0x0102030405060708ULL);
	ck_assert_int_eq(a.status, BQ_ACK_DELIVERED);
	ck_assert_int_eq(bq_muser_confirm(u, "not valid!", f.msg_id), -EINVAL);

	/* A broadcast never has a receipt, held or not, and is never a "repeat". */
	f.msg_id = 77;
	f.flags = BQ_FF_BROADCAST;
	f.dst = NULL;
	f.dst_len = 0;
	send_frame(&f);
	send_frame(&f);
	run_for(100);
	ck_assert_int_eq(seen.msgs, 2);
	ck_assert_int_eq(seen.repeats, 1);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 1);
	free_client(c);
}
END_TEST

static bool two_ready(void *ud)
{
	struct bq_muser **u = ud;

	return bq_muser_state(u[0]) == BQ_MU_READY && bq_muser_state(u[1]) == BQ_MU_READY;
}

/* Shared link: two users, one SCAN; a broadcast reaches every user but its sender. */
START_TEST(test_shared_link)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u[2];
	struct bq_frame f = { .type = BQ_T_MSG, .flags = BQ_FF_BROADCAST, .msg_id = 7,
			      .src = "carol", .src_len = 5,
			      .payload = (const uint8_t *)"all", .payload_len = 3 };

	bq_mclient_config_defaults(&cfg);
	c = new_client(&cfg);
	u[0] = bq_mclient_attach(c, "carol", "Carol", NULL);
	u[1] = bq_mclient_attach(c, "dave", "Dave", NULL);
	ck_assert(bq_test_run_until(fn.loop, two_ready, u, 3000));
	ck_assert_int_eq(count_frames(BQ_T_ATTACH), 2);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	send_frame(&f); /* from carol: dave only */
	f.msg_id = 8;
	f.src = "alice"; /* from elsewhere: both */
	send_frame(&f);
	f.msg_id = 9;
	f.flags = 0;
	f.dst = "dave";
	f.dst_len = 4;
	send_frame(&f); /* direct to dave */
	run_for(150);
	ck_assert_int_eq(seen.msgs, 4);
	ck_assert_int_eq(count_frames(BQ_T_ACK), 1);
	ck_assert_str_eq(nth_frame(BQ_T_ACK, 0)->src, "dave");
	free_client(c);
	run_for(50);
	/* stop sent DETACH for both users */
	ck_assert_int_eq(count_frames(BQ_T_DETACH), 2);
}
END_TEST

START_TEST(test_broadcast_accepted_only)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	uint64_t id = 0;
	const struct rec *r;

	fn.deliver = true;
	bq_mclient_config_defaults(&cfg);
	cfg.retransmit_ms = 30;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(bq_muser_send(u, NULL, "hello all", 9, 0, &id), 0);
	ck_assert(bq_test_run_until(fn.loop, acks_at_least_1, NULL, 3000));
	run_for(200);
	ck_assert_int_eq(seen.n_acks, 1);
	ck_assert_int_eq(seen.acks[0].status, BQ_ACK_ACCEPTED);
	ck_assert_uint_eq(seen.acks[0].id, id);
	ck_assert_int_eq(count_frames(BQ_T_MSG), 1);
	r = nth_frame(BQ_T_MSG, 0);
	ck_assert(r->flags & BQ_FF_BROADCAST);
	ck_assert_str_eq(r->dst, "");
	ck_assert_uint_eq(bq_muser_outstanding(u), 0);
	free_client(c);
}
END_TEST

START_TEST(test_heartbeat_loss_reconnects)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	fn.deaf_once = true;
	bq_mclient_config_defaults(&cfg);
	cfg.ping_interval_ms = 40;
	cfg.dead_after_ms = 150;
	cfg.backoff_base_ms = 20;
	cfg.backoff_cap_ms = 50;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(fn.accepts, 1);
	/* The node goes silent: the client pings, hears nothing, declares the link dead. */
	ck_assert(wait_for_user(u, BQ_MU_ATTACHING, 3000));
	ck_assert_int_ge(count_frames(BQ_T_PING), 1);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(fn.accepts, 2);
	ck_assert_uint_eq(bq_mclient_reconnects(c), 1);
	/* Healthy now: pings are answered and the link stays up. */
	run_for(400);
	ck_assert_int_eq(bq_muser_state(u), BQ_MU_READY);
	ck_assert_int_eq(fn.accepts, 2);
	free_client(c);
}
END_TEST

static bool in_backoff(void *ud)
{
	return bq_mclient_state(ud) == BQ_MC_BACKOFF;
}

/* A node that never says HELLO, or never answers SCAN: timeouts, then BACKOFF. */
START_TEST(test_handshake_timeouts)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	fn.mute_all = true;
	bq_mclient_config_defaults(&cfg);
	cfg.hello_timeout_ms = 100;
	cfg.backoff_base_ms = 5000;
	c = new_client(&cfg);
	ck_assert(bq_test_run_until(fn.loop, in_backoff, c, 3000));
	ck_assert_ptr_nonnull(strstr(bq_mclient_last_error(c), "no HELLO from"));
	free_client(c);

	fn.mute_all = false;
	fn.mute_scan = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_SCANNING, 3000));
	ck_assert(bq_test_run_until(fn.loop, in_backoff, c, 3000));
	ck_assert_ptr_nonnull(strstr(bq_mclient_last_error(c), "did not answer SCAN"));
	ck_assert_int_eq(bq_muser_state(u), BQ_MU_ATTACHING);
	free_client(c);
}
END_TEST

START_TEST(test_unreachable)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	char err[256];

	bq_mclient_config_defaults(&cfg);
	cfg.backoff_base_ms = 1000;
	ck_assert_int_eq(bq_addr_parse("unix:/nonexistent/blueq.sock", &cfg.node, err,
				       sizeof(err)), 0);
	c = bq_mclient_new(fn.loop, &cfg, &cbs, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(bq_mclient_start(c, err, sizeof(err)), 0);
	run_for(100);
	ck_assert_int_eq(bq_mclient_state(c), BQ_MC_BACKOFF);
	ck_assert_ptr_nonnull(strstr(bq_mclient_last_error(c), "/nonexistent/blueq.sock"));
	free_client(c);

	/* No Bluetooth here: the start fails at once with the transport's words. */
	ck_assert_int_eq(bq_addr_parse("D8:3A:DD:03:1E:77", &cfg.node, err, sizeof(err)), 0);
	c = bq_mclient_new(fn.loop, &cfg, &cbs, NULL, NULL);
	ck_assert_ptr_nonnull(c);
	if (bq_mclient_start(c, err, sizeof(err)) < 0) {
		ck_assert_ptr_nonnull(strstr(err, "Bluetooth"));
	}
	free_client(c);
}
END_TEST

/* Every allocation in new/attach/send/free may fail: no crash, no leak (ASan checks). */
START_TEST(test_alloc_failures)
{
	struct bq_mclient_config cfg;
	char err[128];
	bool completed = false;

	bq_mclient_config_defaults(&cfg);
	ck_assert_int_eq(bq_addr_parse(sock_path, &cfg.node, err, sizeof(err)), 0);
	for (unsigned long n = 1; n < 200 && !completed; n++) {
		struct bq_mclient *c;
		struct bq_muser *u = NULL;
		int rc = -1;

		bq_alloc_fail_nth(n);
		c = bq_mclient_new(fn.loop, &cfg, &cbs, NULL, NULL);
		if (c) {
			u = bq_mclient_attach(c, "carol", "Carol", NULL);
		}
		if (u) {
			rc = bq_muser_send(u, "bob", "hi", 2, 0, NULL);
			ck_assert(rc == 0 || rc == -ENOMEM);
		}
		bq_alloc_fail_nth(0);
		completed = c && u && rc == 0;
		bq_mclient_free(c);
		bq_loop_run_once(fn.loop, 0);
	}
	ck_assert(completed);
}
END_TEST

/* ---- the connect gate and keep_directory (added for the client manager) ------------ */

static int gate_asks;
static uint32_t gate_wait_ms;

static uint32_t test_gate(void *ud)
{
	int *tag = ud;

	ck_assert_int_eq(*tag, 7);
	gate_asks++;
	return gate_wait_ms;
}

static bool node_accepted(void *ud)
{
	return fn.accepts >= *(int *)ud;
}

START_TEST(test_connect_gate)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;
	int tag = 7, want = 1;
	uint64_t t0;

	gate_asks = 0;
	gate_wait_ms = 200;
	bq_mclient_config_defaults(&cfg);
	cfg.connect_gate = test_gate;
	cfg.connect_gate_ud = &tag;
	cfg.backoff_base_ms = 10;
	cfg.backoff_cap_ms = 20;
	t0 = bq_loop_now_ms(fn.loop);
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	/* Asked once; the dial waits for the reservation, silently (still IDLE). */
	ck_assert_int_eq(gate_asks, 1);
	ck_assert_int_eq(bq_mclient_state(c), BQ_MC_IDLE);
	ck_assert_int_eq(seen.n_link, 0);
	bq_loop_run_once(fn.loop, 50);
	ck_assert_int_eq(fn.accepts, 0);
	ck_assert(bq_test_run_until(fn.loop, node_accepted, &want, 2000));
	ck_assert_uint_ge(bq_loop_now_ms(fn.loop) - t0, 195);
	ck_assert_int_eq(gate_asks, 1); /* not asked again when the wait ends */
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(seen.link_states[0], BQ_MC_CONNECTING);

	/* A reconnect asks again; BACKOFF holds through the wait. */
	gate_wait_ms = 150;
	bq_conn_close(fn.conn);
	fn.conn = NULL;
	want = 2;
	ck_assert(bq_test_run_until(fn.loop, node_accepted, &want, 3000));
	ck_assert_int_eq(gate_asks, 2);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_uint_eq(bq_mclient_reconnects(c), 1);
	for (int i = 0; i < seen.n_link; i++) {
		ck_assert_int_ne(seen.link_states[i], BQ_MC_IDLE);
	}

	/* Stopped while waiting at the gate: no dial happens afterwards. */
	gate_wait_ms = 100;
	bq_conn_close(fn.conn);
	fn.conn = NULL;
	for (int i = 0; i < 40 && gate_asks < 3; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	ck_assert_int_eq(gate_asks, 3);
	bq_mclient_stop(c);
	for (int i = 0; i < 20; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	ck_assert_int_eq(fn.accepts, 2);
	free_client(c);
}
END_TEST

START_TEST(test_keep_directory_later)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	bq_mclient_config_defaults(&cfg);
	cfg.no_directory = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert(!bq_mclient_keeps_directory(c));
	ck_assert_uint_eq(bq_mclient_dir_count(c), 0);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	bq_mclient_keep_directory(c);
	ck_assert(bq_mclient_keeps_directory(c));
	for (int i = 0; i < 100 && bq_mclient_dir_count(c) < 3; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	/* A second SCAN from 0 filled the copy; the user stayed READY throughout. */
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 2);
	ck_assert_str_eq(nth_frame(BQ_T_SCAN, 1)->src, "carol");
	ck_assert_uint_eq(bq_mclient_dir_count(c), 3);
	ck_assert_int_eq(bq_mclient_dir_presence(c, "bob"), BQ_PRES_ONLINE);
	ck_assert_int_eq(bq_muser_state(u), BQ_MU_READY);
	ck_assert_int_eq(bq_mclient_state(c), BQ_MC_UP);
	free_client(c);
}
END_TEST

/* Against a node with BQ_CAP_SCAN_FLAGS, a link without a copy asks ONESHOT | SUMMARY. */
START_TEST(test_no_directory_summary_scan)
{
	static const uint8_t want[11] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3 };
	static const uint8_t plain[10] = { 0 };
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	fn.scan_flags = true;
	bq_mclient_config_defaults(&cfg);
	cfg.no_directory = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	/* The user states do not change: SCANNING, then READY on the empty answer. */
	ck_assert_int_eq(seen.n_user, 2);
	ck_assert_int_eq(seen.user_states[0], BQ_MU_SCANNING);
	ck_assert_int_eq(seen.user_states[1], BQ_MU_READY);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 0)->plen, 11);
	ck_assert_mem_eq(nth_frame(BQ_T_SCAN, 0)->payload, want, 11);
	ck_assert_int_eq(seen.dir_cb, 0);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 0);
	/* A second user on the synced link: READY at once, no second SCAN. */
	u = bq_mclient_attach(c, "dave", NULL, NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);

	/* Promotion: a plain SCAN(0), which subscribes and brings the whole snapshot. */
	bq_mclient_keep_directory(c);
	for (int i = 0; i < 100 && bq_mclient_dir_count(c) < 3; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 2);
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 1)->plen, 10);
	ck_assert_mem_eq(nth_frame(BQ_T_SCAN, 1)->payload, plain, 10);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 3);
	ck_assert_int_eq(seen.dir_cb, 3);

	/* A reconnect of a link that now keeps the copy scans plainly too. */
	bq_conn_close(fn.conn);
	fn.conn = NULL;
	for (int i = 0; i < 300 && count_frames(BQ_T_SCAN) < 3; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 3);
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 2)->plen, 10);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	free_client(c);
}
END_TEST

/* Promoted while the SUMMARY scan is still unanswered: a plain SCAN(0) follows it. */
START_TEST(test_keep_directory_during_summary)
{
	struct bq_mclient_config cfg;
	struct bq_mclient *c;
	struct bq_muser *u;

	fn.scan_flags = true;
	fn.mute_scan = true;
	bq_mclient_config_defaults(&cfg);
	cfg.no_directory = true;
	c = new_client(&cfg);
	u = bq_mclient_attach(c, "carol", "Carol", NULL);
	ck_assert(wait_for_user(u, BQ_MU_SCANNING, 3000));
	run_for(50);
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 1);
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 0)->plen, 11);
	bq_mclient_keep_directory(c);
	fn.mute_scan = false;
	answer_summary();
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	for (int i = 0; i < 100 && bq_mclient_dir_count(c) < 3; i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	ck_assert_int_eq(count_frames(BQ_T_SCAN), 2);
	ck_assert_uint_eq(nth_frame(BQ_T_SCAN, 1)->plen, 10);
	ck_assert_uint_eq(bq_mclient_dir_count(c), 3);
	free_client(c);
}
END_TEST

/* ---- against the real node engine -------------------------------------------------- */

static const uint8_t KEY[BQ_KEY_LEN] = { 7, 7, 7 };

struct counted {
	int dir_cb;
};

static void cb_dir_counted(struct bq_mclient *c, const struct bq_dir_entry *e, void *ud)
{
	struct counted *k = ud;

	k->dir_cb++;
}

static struct bq_mclient *client_at(const char *addr, bool no_directory, struct counted *k)
{
	struct bq_mclient_config cfg;
	struct bq_mclient_cbs cb = { .directory = cb_dir_counted };
	struct bq_mclient *c;
	char err[256];

	bq_mclient_config_defaults(&cfg);
	ck_assert_int_eq(bq_addr_parse(addr, &cfg.node, err, sizeof(err)), 0);
	cfg.name = "test-client";
	cfg.no_directory = no_directory;
	c = bq_mclient_new(fn.loop, &cfg, &cb, k, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert_msg(bq_mclient_start(c, err, sizeof(err)) == 0, "%s", err);
	return c;
}

static bool presence_online(void *ud)
{
	const struct bq_mclient *c = ((void **)ud)[0];
	const char *id = ((void **)ud)[1];

	return bq_mclient_dir_presence(c, id) == BQ_PRES_ONLINE;
}

static bool wait_online(struct bq_mclient *c, const char *id, int ms)
{
	void *arg[2] = { c, (void *)id };

	return bq_test_run_until(fn.loop, presence_online, arg, ms);
}

static bool node_stats_has(struct bq_node *n, const char *needle)
{
	char *doc = bq_node_status_json(n, "stats");
	bool yes = doc && strstr(doc, needle) != NULL;

	bq_free(doc);
	return yes;
}

/*
 * The whole point, end to end: a link without a copy gets its users READY through one
 * empty DIRECTORY and hears of no later change; promoted, it fills the copy and follows.
 */
START_TEST(test_summary_with_real_node)
{
	struct bq_auth *auth = bq_auth_new(KEY);
	struct bq_node_config ncfg;
	struct bq_node *node;
	char addr[320], *lv[1] = { addr }, err[256];
	struct bq_strlist ll = { .v = lv, .n = 1 };
	struct counted kk = { 0 }, kn = { 0 };
	struct bq_mclient *keeper, *bare;
	struct bq_muser *u;

	ck_assert_ptr_nonnull(auth);
	snprintf(addr, sizeof(addr), "unix:%s/odin.sock", dir_path);
	bq_node_config_defaults(&ncfg);
	ncfg.listen = &ll;
	ncfg.auth = auth;
	node = bq_node_new(fn.loop, &ncfg, NULL, err, sizeof(err));
	ck_assert_msg(node != NULL, "%s", err);
	ck_assert_msg(bq_node_start(node, err, sizeof(err)) == 0, "%s", err);

	keeper = client_at(addr, false, &kk);
	ck_assert(wait_for_user(bq_mclient_attach(keeper, "kate", NULL, NULL), BQ_MU_READY, 3000));
	bare = client_at(addr, true, &kn);
	u = bq_mclient_attach(bare, "carol", NULL, NULL);
	ck_assert(wait_for_user(u, BQ_MU_READY, 3000));
	ck_assert(node_stats_has(node, "\"scans_summary\":1,"));
	ck_assert_int_eq(kn.dir_cb, 0);
	ck_assert_uint_eq(bq_mclient_dir_count(bare), 0);

	/* A change: the keeper hears of it, the bare link does not. */
	ck_assert_ptr_nonnull(bq_mclient_attach(keeper, "dave", NULL, NULL));
	ck_assert(wait_online(keeper, "dave", 3000));
	run_for(100);
	ck_assert_int_eq(kn.dir_cb, 0);
	ck_assert_int_eq(bq_muser_state(u), BQ_MU_READY);

	/* Promoted: the copy fills (kate, carol, dave, Odin), later changes arrive. */
	bq_mclient_keep_directory(bare);
	ck_assert(wait_online(bare, "dave", 3000));
	ck_assert_uint_eq(bq_mclient_dir_count(bare), 4);
	ck_assert_ptr_nonnull(bq_mclient_attach(keeper, "erin", NULL, NULL));
	ck_assert(wait_online(bare, "erin", 3000));
	ck_assert(node_stats_has(node, "\"scans_summary\":1,"));

	bq_mclient_stop(keeper);
	bq_mclient_stop(bare);
	for (int i = 0; i < 100 && (bq_mclient_busy(keeper) || bq_mclient_busy(bare)); i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	bq_mclient_free(keeper);
	bq_mclient_free(bare);
	bq_node_stop(node);
	for (int i = 0; i < 200 && bq_node_busy(node); i++) {
		bq_loop_run_once(fn.loop, 10);
	}
	bq_node_free(node);
	bq_loop_run_once(fn.loop, 0);
	bq_auth_free(auth);
	unlink(addr + strlen("unix:"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client");
	TCase *tc = tcase_create("engine");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_handshake_ready);
	tcase_add_test(tc, test_no_directory_copy);
	tcase_add_test(tc, test_attach_rejected);
	tcase_add_test(tc, test_close_mid_scan_reconnects);
	tcase_add_test(tc, test_retransmit_until_delivered);
	tcase_add_test(tc, test_expire_and_queue_while_down);
	tcase_add_test(tc, test_duplicate_inbound);
	tcase_add_test(tc, test_hold_receipts);
	tcase_add_test(tc, test_shared_link);
	tcase_add_test(tc, test_broadcast_accepted_only);
	tcase_add_test(tc, test_heartbeat_loss_reconnects);
	tcase_add_test(tc, test_handshake_timeouts);
	tcase_add_test(tc, test_unreachable);
	tcase_add_test(tc, test_alloc_failures);
	tcase_add_test(tc, test_connect_gate);
	tcase_add_test(tc, test_keep_directory_later);
	tcase_add_test(tc, test_no_directory_summary_scan);
	tcase_add_test(tc, test_keep_directory_during_summary);
	tcase_add_test(tc, test_summary_with_real_node);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
