/* SPDX-License-Identifier: MIT */
/*
 * The node engine, in one process: two or three real engines on one loop, linked over
 * UNIX sockets in a private directory, with hand-rolled clients (raw links that send
 * frames byte for byte as a client or a neighbour node would) and short timers.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "mesh/link.h"
#include "mesh/node.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define MAX_NODES 3
#define RX_MAX 512

static const uint8_t KEY[BQ_KEY_LEN] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
					  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30,
					  31, 32 };
static const uint8_t OTHER_KEY[BQ_KEY_LEN] = { 9 };
static const uint8_t FAKE_ADDR[BQ_NODE_ADDR_LEN] = { 0x02, 0, 0, 0, 0, 0x99 };

struct rx {
	uint8_t type, flags, ttl, status;
	uint64_t msg_id, acked_id;
	uint16_t code;
	uint32_t caps;       /* HELLO */
	uint8_t dflags;      /* DIRECTORY */
	uint16_t count;      /* DIRECTORY entries */
	uint64_t next_cursor; /* DIRECTORY */
	uint8_t origin[BQ_NODE_ADDR_LEN];
	char src[BQ_USER_ID_MAX + 1], dst[BQ_USER_ID_MAX + 1];
	char text[320];
};

struct tclient {
	struct bq_link *link;
	struct rx rx[RX_MAX];
	size_t n;
	char dir[4096]; /* "id=presence " for every user entry in DIRECTORY frames */
	bool closed;
	int close_err;
};

struct env {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_auth *auth, *other;
	const char *dir;
	struct bq_node *nodes[MAX_NODES];
	char listen[MAX_NODES][128];
	char *lv[MAX_NODES][1], *nv[MAX_NODES][1];
	struct bq_strlist ll[MAX_NODES], nl[MAX_NODES];
	struct tclient *clients[8];
	size_t n_clients;
};

static struct env E;

static void node_addr(int i, uint8_t out[BQ_NODE_ADDR_LEN])
{
	static const uint8_t base[BQ_NODE_ADDR_LEN] = { 0x02, 0, 0, 0, 0, 0 };

	memcpy(out, base, BQ_NODE_ADDR_LEN);
	out[5] = (uint8_t)(i + 1);
}

static void setup(void)
{
	char dir[256];

	memset(&E, 0, sizeof(E));
	E.loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(E.loop);
	if (getenv("BQ_TEST_LOG")) {
		E.log = bq_log_new("test_node");
		bq_log_set_level(E.log, BQ_LOG_DEBUG);
	}
	E.auth = bq_auth_new(KEY);
	E.other = bq_auth_new(OTHER_KEY);
	ck_assert_ptr_nonnull(E.auth);
	ck_assert_ptr_nonnull(E.other);
	snprintf(dir, sizeof(dir), "%s", bq_test_tmpdir());
	E.dir = bq_strdup(dir);
}

static void teardown(void)
{
	for (size_t i = 0; i < E.n_clients; i++) {
		bq_link_free(E.clients[i]->link);
		bq_free(E.clients[i]);
	}
	for (int i = 0; i < MAX_NODES; i++) {
		bq_node_free(E.nodes[i]);
	}
	bq_loop_free(E.loop);
	bq_auth_free(E.auth);
	bq_auth_free(E.other);
	bq_log_free(E.log);
	for (int i = 0; i < MAX_NODES; i++) {
		if (E.listen[i][0]) {
			unlink(E.listen[i] + strlen("unix:"));
		}
	}
	rmdir(E.dir);
	bq_free((void *)E.dir);
}

typedef void (*tweak_fn)(struct bq_node_config *cfg);

/* Node i listens on DIR/n<i>.sock and dials node `neighbour` (-1: none). */
static struct bq_node *start_node(int i, int neighbour, tweak_fn tweak)
{
	struct bq_node_config cfg;
	char err[256], name[16];
	struct bq_node *n;

	bq_node_config_defaults(&cfg);
	node_addr(i, cfg.addr);
	snprintf(name, sizeof(name), "n%d", i);
	cfg.name = name;
	snprintf(E.listen[i], sizeof(E.listen[i]), "unix:%s/n%d.sock", E.dir, i);
	E.lv[i][0] = E.listen[i];
	E.ll[i].v = E.lv[i];
	E.ll[i].n = 1;
	cfg.listen = &E.ll[i];
	if (neighbour >= 0) {
		E.nv[i][0] = E.listen[neighbour];
		E.nl[i].v = E.nv[i];
		E.nl[i].n = 1;
		cfg.neighbours = &E.nl[i];
	}
	cfg.auth = E.auth;
	cfg.announce_interval_ms = 300;
	cfg.expiry_ms = 3000;
	cfg.ping_interval_ms = 500;
	cfg.dead_after_ms = 5000;
	cfg.backoff_base_ms = 20;
	cfg.backoff_cap_ms = 100;
	if (tweak) {
		tweak(&cfg);
	}
	n = bq_node_new(E.loop, &cfg, E.log, err, sizeof(err));
	ck_assert_msg(n != NULL, "bq_node_new: %s", err);
	ck_assert_msg(bq_node_start(n, err, sizeof(err)) == 0, "bq_node_start: %s", err);
	E.nodes[i] = n;
	return n;
}

static char *listen_addr(int i, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", E.listen[i]);
	return buf;
}

/* ---- the hand-rolled peer ---------------------------------------------------------- */

static void on_frame(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
		     size_t raw_len, void *ud)
{
	struct tclient *c = ud;
	struct rx *r;

	if (c->n >= RX_MAX) {
		return;
	}
	r = &c->rx[c->n++];
	memset(r, 0, sizeof(*r));
	r->type = f->type;
	r->flags = f->flags;
	r->ttl = f->ttl;
	r->msg_id = f->msg_id;
	memcpy(r->origin, f->origin, BQ_NODE_ADDR_LEN);
	snprintf(r->src, sizeof(r->src), "%.*s", (int)f->src_len, f->src ? f->src : "");
	snprintf(r->dst, sizeof(r->dst), "%.*s", (int)f->dst_len, f->dst ? f->dst : "");
	if (f->type == BQ_T_HELLO) {
		struct bq_hello h;

		ck_assert_int_eq(bq_hello_decode(f, &h), 0);
		r->caps = h.caps;
	} else if (f->type == BQ_T_ACK) {
		struct bq_ack a;

		ck_assert_int_eq(bq_ack_decode(f, &a), 0);
		r->status = a.status;
		r->acked_id = a.acked_id;
		snprintf(r->text, sizeof(r->text), "%.*s", (int)a.reason_len,
			 a.reason ? a.reason : "");
	} else if (f->type == BQ_T_ERROR) {
		struct bq_error e;

		ck_assert_int_eq(bq_error_decode(f, &e), 0);
		r->code = e.code;
		snprintf(r->text, sizeof(r->text), "%.*s", (int)e.text_len, e.text ? e.text : "");
	} else if (f->type == BQ_T_MSG) {
		snprintf(r->text, sizeof(r->text), "%.*s", (int)f->payload_len,
			 (const char *)f->payload);
	} else if (f->type == BQ_T_DIRECTORY) {
		struct bq_directory d;
		struct bq_dir_iter it;
		struct bq_dir_entry e;

		ck_assert_int_eq(bq_directory_decode(f, &d), 0);
		r->dflags = d.dflags;
		r->count = d.count;
		r->next_cursor = d.next_cursor;
		bq_dir_iter_init(&it, d.entries, d.entries_len, d.count);
		while (bq_dir_iter_next(&it, &e) == 1) {
			size_t len = strlen(c->dir);

			if (e.kind == BQ_DIR_USER && len + e.id_len + 4 < sizeof(c->dir)) {
				snprintf(c->dir + len, sizeof(c->dir) - len, "%.*s=%u ",
					 (int)e.id_len, e.id, e.presence);
			}
		}
	}
}

static void on_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	struct tclient *c = ud;

	c->closed = true;
	c->close_err = err;
}

/* A raw link to node i; signed with `auth` when not NULL (a neighbour impersonation). */
static struct tclient *connect_to(int i, const struct bq_auth *auth)
{
	struct tclient *c = bq_calloc(1, sizeof(*c));
	struct bq_link_config lc = { .name = "test", .auth = auth, .require_auth = auth != NULL };
	struct bq_addr addr;
	struct bq_conn *conn;
	char text[160], err[256];

	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(bq_addr_parse(listen_addr(i, text, sizeof(text)), &addr, err, sizeof(err)),
			 0);
	ck_assert_msg(bq_conn_connect(E.loop, &addr, NULL, NULL, &conn, err, sizeof(err)) == 0,
		      "%s", err);
	c->link = bq_link_new(E.loop, conn, &lc, NULL);
	ck_assert_ptr_nonnull(c->link);
	bq_link_set_handlers(c->link, on_frame, on_close, c);
	E.clients[E.n_clients++] = c;
	return c;
}

static struct bq_frame mkframe(uint8_t type, const char *src, const char *dst, uint64_t id)
{
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = type,
		.ttl = BQ_DEFAULT_TTL,
		.msg_id = id,
		.timestamp_ms = 1,
		.src = src,
		.src_len = (uint8_t)(src ? strlen(src) : 0),
		.dst = dst,
		.dst_len = (uint8_t)(dst ? strlen(dst) : 0),
	};

	return f;
}

static void send_hello(struct tclient *c, uint8_t role, const uint8_t *origin)
{
	uint8_t payload[64];
	struct bq_hello h = { .role = role, .name = "tester", .name_len = 6 };
	struct bq_frame f = mkframe(BQ_T_HELLO, NULL, NULL, 1);
	int n = bq_hello_encode(&h, payload, sizeof(payload));

	ck_assert_int_gt(n, 0);
	if (origin) {
		memcpy(f.origin, origin, BQ_NODE_ADDR_LEN);
	}
	f.payload = payload;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_attach(struct tclient *c, const char *user, uint64_t id)
{
	uint8_t payload[80];
	struct bq_attach a = { .name = user, .name_len = (uint8_t)strlen(user) };
	struct bq_frame f = mkframe(BQ_T_ATTACH, user, NULL, id);
	int n = bq_attach_encode(&a, payload, sizeof(payload));

	f.payload = payload;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_simple(struct tclient *c, uint8_t type, const char *user, uint64_t id)
{
	struct bq_frame f = mkframe(type, user, NULL, id);

	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_scan(struct tclient *c, const char *user)
{
	uint8_t payload[16];
	struct bq_scan s = { 0 };
	struct bq_frame f = mkframe(BQ_T_SCAN, user, NULL, 77);
	int n = bq_scan_encode(&s, payload, sizeof(payload));

	f.payload = payload;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_scan_flags(struct tclient *c, const char *user, uint8_t flags, uint64_t id)
{
	uint8_t payload[16];
	struct bq_scan s = { .flags = flags };
	struct bq_frame f = mkframe(BQ_T_SCAN, user, NULL, id);
	int n = bq_scan_encode(&s, payload, sizeof(payload));

	ck_assert_int_eq(n, flags ? 11 : 10);
	f.payload = payload;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_msg(struct tclient *c, const char *src, const char *dst, uint64_t id,
		     const char *text)
{
	struct bq_frame f = mkframe(BQ_T_MSG, src, dst, id);

	if (!dst) {
		f.flags = BQ_FF_BROADCAST;
	}
	f.payload = (const uint8_t *)text;
	f.payload_len = (uint16_t)strlen(text);
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

static void send_ack(struct tclient *c, const char *src, const char *dst, uint64_t acked,
		     uint8_t status)
{
	uint8_t payload[32];
	struct bq_ack a = { .acked_id = acked, .status = status };
	struct bq_frame f = mkframe(BQ_T_ACK, src, dst, acked ^ 0x5555);
	int n = bq_ack_encode(&a, payload, sizeof(payload));

	f.payload = payload;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
}

/* ---- waiting ----------------------------------------------------------------------- */

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_for(int ms)
{
	long long end = real_ms() + ms;

	while (real_ms() < end) {
		bq_loop_run_once(E.loop, 10);
	}
}

#define WAIT(cond, ms)                                                                   \
	({                                                                                  \
		long long end_ = real_ms() + (ms);                                          \
		while (!(cond) && real_ms() < end_) {                                       \
			bq_loop_run_once(E.loop, 10);                                       \
		}                                                                           \
		(bool)(cond);                                                               \
	})

static const struct rx *find(const struct tclient *c, uint8_t type, int status_or_code,
			     uint64_t id)
{
	for (size_t i = 0; i < c->n; i++) {
		const struct rx *r = &c->rx[i];

		if (r->type != type) {
			continue;
		}
		if (type == BQ_T_ACK && status_or_code >= 0 && r->status != status_or_code) {
			continue;
		}
		if (type == BQ_T_ERROR && status_or_code >= 0 && r->code != status_or_code) {
			continue;
		}
		if (id && (type == BQ_T_ACK ? r->acked_id : r->msg_id) != id) {
			continue;
		}
		return r;
	}
	return NULL;
}

static size_t count(const struct tclient *c, uint8_t type, uint64_t id)
{
	size_t k = 0;

	for (size_t i = 0; i < c->n; i++) {
		if (c->rx[i].type == type && (!id || c->rx[i].msg_id == id)) {
			k++;
		}
	}
	return k;
}

static bool node_has_user(int i, const char *needle)
{
	char *doc = bq_node_status_json(E.nodes[i], "users");
	bool yes = doc && strstr(doc, needle) != NULL;

	bq_free(doc);
	return yes;
}

static bool peers_up(int i, uint32_t n)
{
	return bq_node_stats(E.nodes[i])->peers_up == n;
}

/* A client with HELLO done and `user` attached (ACK OK seen). */
static struct tclient *client_with(int node, const char *user)
{
	struct tclient *c = connect_to(node, NULL);

	send_hello(c, BQ_ROLE_CLIENT, NULL);
	send_attach(c, user, 1000 + strlen(user));
	ck_assert_msg(WAIT(find(c, BQ_T_ACK, BQ_ACK_OK, 1000 + strlen(user)) != NULL, 2000),
		      "attach of %s not acknowledged", user);
	return c;
}

/* A hand-rolled neighbour: signed HELLO as a node, answered by the node's HELLO. */
static struct tclient *fake_node(int node)
{
	struct tclient *c = connect_to(node, E.auth);

	send_hello(c, BQ_ROLE_NODE, FAKE_ADDR);
	ck_assert(WAIT(find(c, BQ_T_HELLO, -1, 0) != NULL, 2000));
	return c;
}

/* ---- tests ------------------------------------------------------------------------- */

START_TEST(test_hello_client_and_node)
{
	struct tclient *c, *p;
	const struct rx *r;
	uint8_t a0[BQ_NODE_ADDR_LEN];

	start_node(0, -1, NULL);
	node_addr(0, a0);
	c = connect_to(0, NULL);
	send_hello(c, BQ_ROLE_CLIENT, NULL);
	ck_assert(WAIT(find(c, BQ_T_HELLO, -1, 0) != NULL, 2000));
	r = find(c, BQ_T_HELLO, -1, 0);
	ck_assert_mem_eq(r->origin, a0, BQ_NODE_ADDR_LEN);
	ck_assert(r->flags & BQ_FF_AUTH); /* the node signs its own frames */
	ck_assert_uint_eq(r->caps, BQ_CAP_RELAY | BQ_CAP_STORE | BQ_CAP_SCAN_FLAGS);
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->clients, 1);

	p = fake_node(0);
	ck_assert(WAIT(peers_up(0, 1), 1000));
	/* Neighbours meet: a SCAN(0) and an ANNOUNCE with REANNOUNCE follow the HELLO. */
	ck_assert(WAIT(find(p, BQ_T_SCAN, -1, 0) && find(p, BQ_T_ANNOUNCE, -1, 0), 2000));
	ck_assert(!p->closed && !c->closed);
}
END_TEST

START_TEST(test_two_nodes_meet_and_share_directory)
{
	struct tclient *alice, *watcher;
	char needle[64];

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	watcher = client_with(1, "watcher");
	send_scan(watcher, "watcher");
	ck_assert(WAIT(find(watcher, BQ_T_DIRECTORY, -1, 0) != NULL, 1000));

	alice = client_with(0, "alice");
	snprintf(needle, sizeof(needle), "\"id\":\"alice\"");
	ck_assert_msg(WAIT(node_has_user(1, needle), 2000), "node 1 never learned about alice");
	ck_assert(node_has_user(1, "\"home\":\"02:00:00:00:00:01\""));
	ck_assert(node_has_user(1, "\"presence\":\"online\""));
	/* The subscribed client at node 1 gets the change pushed. */
	ck_assert(WAIT(strstr(watcher->dir, "alice=1") != NULL, 1000));

	/* Detach: offline everywhere, pushed too. */
	send_simple(alice, BQ_T_DETACH, "alice", 55);
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_OK, 55) != NULL, 1000));
	ck_assert(WAIT(strstr(watcher->dir, "alice=0") != NULL, 2000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->users_local, 0);
	{
		char *topo = bq_node_status_json(E.nodes[1], "topology");

		ck_assert_ptr_nonnull(topo);
		ck_assert_msg(strstr(topo, "\"via\":\"02:00:00:00:00:01\"") != NULL, "%s", topo);
		bq_free(topo);
	}
}
END_TEST

START_TEST(test_unicast_and_delivered_ack)
{
	struct tclient *alice, *bob;
	const struct rx *m;

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	alice = client_with(0, "alice");
	bob = client_with(1, "bob");
	ck_assert(WAIT(node_has_user(0, "\"id\":\"bob\""), 2000));

	send_msg(alice, "alice", "bob", 0xA1, "hello bob");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_ACCEPTED, 0xA1) != NULL, 1000));
	ck_assert(WAIT(find(bob, BQ_T_MSG, -1, 0xA1) != NULL, 1000));
	m = find(bob, BQ_T_MSG, -1, 0xA1);
	ck_assert_str_eq(m->src, "alice");
	ck_assert_str_eq(m->dst, "bob");
	ck_assert_str_eq(m->text, "hello bob");

	send_ack(bob, "bob", "alice", 0xA1, BQ_ACK_DELIVERED);
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_DELIVERED, 0xA1) != NULL, 1000));
	ck_assert_str_eq(find(alice, BQ_T_ACK, BQ_ACK_DELIVERED, 0xA1)->dst, "alice");
	ck_assert_uint_ge(bq_node_stats(E.nodes[1])->acks_routed, 1);
	ck_assert_uint_ge(bq_node_stats(E.nodes[0])->acks_routed, 1);
	run_for(100);
	ck_assert_uint_eq(count(bob, BQ_T_MSG, 0xA1), 1);
}
END_TEST

START_TEST(test_broadcast)
{
	struct tclient *alice, *carol, *bob;

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	alice = client_with(0, "alice");
	carol = client_with(0, "carol");
	bob = client_with(1, "bob");
	send_msg(alice, "alice", NULL, 0xB0, "to everyone");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_ACCEPTED, 0xB0) != NULL, 1000));
	ck_assert(WAIT(find(bob, BQ_T_MSG, -1, 0xB0) && find(carol, BQ_T_MSG, -1, 0xB0), 1000));
	run_for(100);
	ck_assert_uint_eq(count(bob, BQ_T_MSG, 0xB0), 1);
	ck_assert_uint_eq(count(carol, BQ_T_MSG, 0xB0), 1);
	ck_assert_uint_eq(count(alice, BQ_T_MSG, 0xB0), 0);
}
END_TEST

START_TEST(test_unknown_user)
{
	struct tclient *alice;
	const struct rx *r;

	start_node(0, -1, NULL);
	alice = client_with(0, "alice");
	send_msg(alice, "alice", "nobody", 0xC1, "anyone?");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_UNKNOWN_USER, 0xC1) != NULL, 1000));
	r = find(alice, BQ_T_ACK, BQ_ACK_UNKNOWN_USER, 0xC1);
	ck_assert_ptr_nonnull(strstr(r->text, "nobody"));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->unknown_user, 1);
}
END_TEST

START_TEST(test_not_attached)
{
	struct tclient *c, *alice;

	start_node(0, -1, NULL);
	alice = client_with(0, "alice");
	c = connect_to(0, NULL);
	send_hello(c, BQ_ROLE_CLIENT, NULL);
	/* alice is attached, but on another link. */
	send_msg(c, "alice", "alice", 0xD1, "spoof");
	send_simple(c, BQ_T_DETACH, "alice", 0xD2);
	ck_assert(WAIT(find(c, BQ_T_ACK, BQ_ACK_REJECTED, 0xD1) != NULL, 1000));
	ck_assert_str_eq(find(c, BQ_T_ACK, BQ_ACK_REJECTED, 0xD1)->text, "not attached");
	ck_assert(WAIT(find(c, BQ_T_ERROR, BQ_ERR_NOT_ATTACHED, 0) != NULL, 1000));
	run_for(50);
	ck_assert_uint_eq(count(alice, BQ_T_MSG, 0), 0);
	ck_assert(!c->closed);
}
END_TEST

static void short_store(struct bq_node_config *cfg)
{
	cfg->store_max_age_ms = 400;
}

START_TEST(test_store_then_deliver_on_attach)
{
	struct tclient *alice, *bob, *bob2;

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	alice = client_with(0, "alice");
	bob = client_with(1, "bob");
	ck_assert(WAIT(node_has_user(0, "\"id\":\"bob\""), 2000));
	send_simple(bob, BQ_T_DETACH, "bob", 9);
	ck_assert(WAIT(node_has_user(0, "\"presence\":\"offline\""), 2000));

	send_msg(alice, "alice", "bob", 0xE1, "while you were out");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_STORED, 0xE1) != NULL, 1000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[1])->stored, 1);

	bob2 = client_with(1, "bob");
	ck_assert(WAIT(find(bob2, BQ_T_MSG, -1, 0xE1) != NULL, 1000));
	ck_assert_str_eq(find(bob2, BQ_T_MSG, -1, 0xE1)->text, "while you were out");
	ck_assert_uint_eq(bq_node_stats(E.nodes[1])->store_delivered, 1);
}
END_TEST

START_TEST(test_store_expiry)
{
	struct tclient *alice, *bob;

	start_node(0, -1, NULL);
	start_node(1, 0, short_store);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	alice = client_with(0, "alice");
	bob = client_with(1, "bob");
	ck_assert(WAIT(node_has_user(0, "\"id\":\"bob\""), 2000));
	send_simple(bob, BQ_T_DETACH, "bob", 9);
	ck_assert(WAIT(node_has_user(0, "\"presence\":\"offline\""), 2000));
	send_msg(alice, "alice", "bob", 0xF1, "too late");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_STORED, 0xF1) != NULL, 1000));
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_EXPIRED, 0xF1) != NULL, 2000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[1])->store_expired, 1);
}
END_TEST

static void tiny_mailbox(struct bq_node_config *cfg)
{
	cfg->store_max_per_user = 2;
}

START_TEST(test_mailbox_full)
{
	struct tclient *alice, *bob;

	start_node(0, -1, tiny_mailbox);
	alice = client_with(0, "alice");
	bob = client_with(0, "bob");
	send_simple(bob, BQ_T_DETACH, "bob", 9);
	ck_assert(WAIT(find(bob, BQ_T_ACK, BQ_ACK_OK, 9) != NULL, 1000));
	send_msg(alice, "alice", "bob", 0x101, "one");
	send_msg(alice, "alice", "bob", 0x102, "two");
	send_msg(alice, "alice", "bob", 0x103, "three");
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_REJECTED, 0x103) != NULL, 1000));
	ck_assert_str_eq(find(alice, BQ_T_ACK, BQ_ACK_REJECTED, 0x103)->text, "mailbox full");
	ck_assert_ptr_nonnull(find(alice, BQ_T_ACK, BQ_ACK_STORED, 0x102));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->store_dropped, 1);
}
END_TEST

/* A MSG from a neighbour, signed with the network key, for a user homed at node 0. */
static void relay_msg(struct tclient *p, const char *dst, uint64_t id, uint8_t ttl,
		      const struct bq_auth *key)
{
	uint8_t buf[512];
	struct bq_frame f = mkframe(BQ_T_MSG, "remote", dst, id);
	int n;

	memcpy(f.origin, FAKE_ADDR, BQ_NODE_ADDR_LEN);
	f.ttl = ttl;
	f.flags = BQ_FF_AUTH;
	f.payload = (const uint8_t *)"relayed";
	f.payload_len = 7;
	n = bq_frame_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	bq_auth_sign(key, buf, (size_t)n);
	ck_assert_int_eq(bq_link_send_raw(p->link, buf, (size_t)n), 0);
}

START_TEST(test_duplicate_dropped)
{
	struct tclient *bob, *p;

	start_node(0, -1, NULL);
	bob = client_with(0, "bob");
	p = fake_node(0);
	relay_msg(p, "bob", 0x201, 5, E.auth);
	relay_msg(p, "bob", 0x201, 5, E.auth);
	ck_assert(WAIT(find(bob, BQ_T_MSG, -1, 0x201) != NULL, 1000));
	run_for(100);
	ck_assert_uint_eq(count(bob, BQ_T_MSG, 0x201), 1);
	ck_assert_uint_ge(bq_node_stats(E.nodes[0])->duplicates_dropped, 1);
}
END_TEST

START_TEST(test_ttl_exhausted)
{
	struct tclient *p;
	const struct bq_node_stats *s;

	start_node(0, -1, NULL);
	p = fake_node(0);
	/* Nobody here is called "far": with TTL 0 it cannot go on, so it is dropped. */
	relay_msg(p, "far", 0x301, 0, E.auth);
	relay_msg(p, "far", 0x302, 3, E.auth);
	ck_assert(WAIT(bq_node_stats(E.nodes[0])->ttl_expired == 1, 1000));
	run_for(50);
	s = bq_node_stats(E.nodes[0]);
	ck_assert_uint_eq(s->ttl_expired, 1);
	/* The frame with TTL left is flooded back out (its home is unknown): not to its sender. */
	ck_assert_uint_eq(count(p, BQ_T_MSG, 0x302), 0);
}
END_TEST

START_TEST(test_bad_tag_dropped)
{
	struct tclient *bob, *p;

	start_node(0, -1, NULL);
	bob = client_with(0, "bob");
	p = fake_node(0);
	relay_msg(p, "bob", 0x401, 5, E.other);
	relay_msg(p, "bob", 0x402, 5, E.auth);
	ck_assert(WAIT(find(bob, BQ_T_MSG, -1, 0x402) != NULL, 1000));
	ck_assert_ptr_null(find(bob, BQ_T_MSG, -1, 0x401));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->auth_failures, 1);
	ck_assert(!p->closed);
}
END_TEST

START_TEST(test_unsigned_node_hello_refused)
{
	struct tclient *c;

	start_node(0, -1, NULL);
	c = connect_to(0, NULL);
	send_hello(c, BQ_ROLE_NODE, FAKE_ADDR);
	ck_assert(WAIT(find(c, BQ_T_ERROR, BQ_ERR_AUTH, 0) != NULL, 1000));
	ck_assert(WAIT(c->closed, 2000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->peers_up, 0);
	ck_assert_uint_ge(bq_node_stats(E.nodes[0])->auth_failures, 1);
}
END_TEST

START_TEST(test_unknown_type_keeps_link)
{
	struct tclient *c;
	struct bq_frame f = mkframe(42, NULL, NULL, 5);
	const struct rx *r;

	start_node(0, -1, NULL);
	c = client_with(0, "alice");
	ck_assert_int_eq(bq_link_send(c->link, &f), 0);
	ck_assert(WAIT(find(c, BQ_T_ERROR, BQ_ERR_UNKNOWN_TYPE, 0) != NULL, 1000));
	r = find(c, BQ_T_ERROR, BQ_ERR_UNKNOWN_TYPE, 0);
	ck_assert_ptr_nonnull(strstr(r->text, "42"));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->unknown_types, 1);
	/* Still up: the next request is answered. */
	send_msg(c, "alice", "nobody", 0x501, "x");
	ck_assert(WAIT(find(c, BQ_T_ACK, BQ_ACK_UNKNOWN_USER, 0x501) != NULL, 1000));
	ck_assert(!c->closed);
}
END_TEST

START_TEST(test_version_mismatch)
{
	struct tclient *c;
	uint8_t buf[128];
	struct bq_frame f = mkframe(BQ_T_HELLO, NULL, NULL, 1);
	int n;
	const struct rx *r;

	start_node(0, -1, NULL);
	c = connect_to(0, NULL);
	n = bq_frame_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	buf[2] = 9; /* the version byte */
	ck_assert_int_eq(bq_link_send_raw(c->link, buf, (size_t)n), 0);
	ck_assert(WAIT(find(c, BQ_T_ERROR, BQ_ERR_VERSION, 0) != NULL, 1000));
	r = find(c, BQ_T_ERROR, BQ_ERR_VERSION, 0);
	ck_assert_msg(strstr(r->text, "9") && strstr(r->text, "1"), "%s", r->text);
	ck_assert(WAIT(c->closed, 2000));
	ck_assert_uint_ge(bq_node_stats(E.nodes[0])->malformed, 1);
}
END_TEST

START_TEST(test_frame_before_hello)
{
	struct tclient *c;

	start_node(0, -1, NULL);
	c = connect_to(0, NULL);
	send_attach(c, "alice", 3);
	ck_assert(WAIT(find(c, BQ_T_ERROR, BQ_ERR_MALFORMED, 0) != NULL, 1000));
	ck_assert(WAIT(c->closed, 2000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->bad_links_closed, 1);
	ck_assert(!node_has_user(0, "alice"));
}
END_TEST

/* A neighbour announces "zed"; while it is gone, messages for zed wait for it. */
START_TEST(test_route_hold_and_flush)
{
	struct tclient *alice, *p, *p2;
	uint8_t payload[256], buf[512];
	struct bq_dirw w;
	struct bq_announce hdr = { .seq = 1, .name = "fake", .name_len = 4 };
	struct bq_dir_entry e = {
		.kind = BQ_DIR_USER, .id = "zed", .id_len = 3, .presence = BQ_PRES_ONLINE,
		.name = "Zed", .name_len = 3, .version = 5,
	};
	struct bq_frame f = mkframe(BQ_T_ANNOUNCE, NULL, NULL, 0xFA1);
	int n;

	start_node(0, -1, NULL);
	alice = client_with(0, "alice");
	p = fake_node(0);
	memcpy(e.home, FAKE_ADDR, BQ_NODE_ADDR_LEN);
	ck_assert_int_eq(bq_dirw_init_announce(&w, payload, sizeof(payload), &hdr), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &e), 0);
	f.payload = payload;
	f.payload_len = (uint16_t)bq_dirw_finish(&w, 0);
	memcpy(f.origin, FAKE_ADDR, BQ_NODE_ADDR_LEN);
	f.flags = BQ_FF_AUTH;
	n = bq_frame_encode(&f, buf, sizeof(buf));
	bq_auth_sign(E.auth, buf, (size_t)n);
	bq_link_send_raw(p->link, buf, (size_t)n);
	ck_assert(WAIT(node_has_user(0, "\"id\":\"zed\""), 1000));

	/* Routed while the neighbour is up. */
	send_msg(alice, "alice", "zed", 0x601, "direct");
	ck_assert(WAIT(find(p, BQ_T_MSG, -1, 0x601) != NULL, 1000));

	bq_link_close(p->link, false, 0, "test cut");
	ck_assert(WAIT(peers_up(0, 0), 1000));
	send_msg(alice, "alice", "zed", 0x602, "held");
	ck_assert(WAIT(bq_node_stats(E.nodes[0])->route_held == 1, 1000));

	p2 = fake_node(0);
	ck_assert(WAIT(find(p2, BQ_T_MSG, -1, 0x602) != NULL, 1000));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->route_flushed, 1);
}
END_TEST

static void few_clients(struct bq_node_config *cfg)
{
	cfg->max_clients = 1;
}

START_TEST(test_client_limit)
{
	struct tclient *a, *b;

	start_node(0, -1, few_clients);
	a = client_with(0, "alice");
	b = connect_to(0, NULL);
	send_hello(b, BQ_ROLE_CLIENT, NULL);
	ck_assert(WAIT(find(b, BQ_T_ERROR, BQ_ERR_LIMIT, 0) != NULL, 1000));
	ck_assert(WAIT(b->closed, 2000));
	ck_assert(!a->closed);
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->clients, 1);
}
END_TEST

/* Three nodes in a line: a message crosses the middle one and the receipt comes back. */
START_TEST(test_three_node_line)
{
	struct tclient *alice, *carol;
	char *stats;

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	start_node(2, 1, NULL);
	ck_assert(WAIT(peers_up(1, 2) && peers_up(2, 1), 2000));
	alice = client_with(0, "alice");
	carol = client_with(2, "carol");
	ck_assert(WAIT(node_has_user(0, "\"id\":\"carol\""), 2000));
	send_msg(alice, "alice", "carol", 0x701, "two hops");
	ck_assert(WAIT(find(carol, BQ_T_MSG, -1, 0x701) != NULL, 1000));
	send_ack(carol, "carol", "alice", 0x701, BQ_ACK_DELIVERED);
	ck_assert(WAIT(find(alice, BQ_T_ACK, BQ_ACK_DELIVERED, 0x701) != NULL, 1000));
	ck_assert_uint_ge(bq_node_stats(E.nodes[1])->relayed, 2);
	stats = bq_node_status_json(E.nodes[1], "stats");
	ck_assert_ptr_nonnull(strstr(stats, "\"relayed\":"));
	ck_assert_ptr_nonnull(strstr(stats, "\"name\":\"n1\""));
	bq_free(stats);
}
END_TEST

START_TEST(test_status_json_unknown)
{
	char *doc;

	start_node(0, -1, NULL);
	doc = bq_node_status_json(E.nodes[0], "bo\"gus\n");
	ck_assert_ptr_nonnull(doc);
	ck_assert_str_eq(doc, "{\"error\":\"unknown command 'bo\\\"gus?'\"}");
	bq_free(doc);
}
END_TEST

START_TEST(test_listen_in_use)
{
	struct bq_node_config cfg;
	struct bq_node *n;
	char err[256], addr[160];
	char *lv[1];
	struct bq_strlist l = { .v = lv, .n = 1 };

	start_node(0, -1, NULL);
	lv[0] = listen_addr(0, addr, sizeof(addr));
	bq_node_config_defaults(&cfg);
	cfg.auth = E.auth;
	cfg.listen = &l;
	n = bq_node_new(E.loop, &cfg, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(n);
	ck_assert_int_lt(bq_node_start(n, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "in use") && strstr(err, "n0.sock"), "%s", err);
	bq_node_free(n);
}
END_TEST

START_TEST(test_accept_conn_mem_pair)
{
	struct bq_node_config cfg;
	struct bq_conn *a, *b;
	struct tclient *c = bq_calloc(1, sizeof(*c));
	struct bq_link_config lc = { .name = "mem" };
	char err[256];

	bq_node_config_defaults(&cfg);
	cfg.auth = E.auth;
	E.nodes[0] = bq_node_new(E.loop, &cfg, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(E.nodes[0]);
	ck_assert_int_eq(bq_node_start(E.nodes[0], err, sizeof(err)), 0);
	ck_assert_int_eq(bq_conn_mem_pair(E.loop, 65536, &a, &b), 0);
	ck_assert_int_eq(bq_node_accept_conn(E.nodes[0], a), 0);
	c->link = bq_link_new(E.loop, b, &lc, NULL);
	bq_link_set_handlers(c->link, on_frame, on_close, c);
	E.clients[E.n_clients++] = c;
	send_hello(c, BQ_ROLE_CLIENT, NULL);
	send_attach(c, "memo", 4);
	ck_assert(WAIT(find(c, BQ_T_ACK, BQ_ACK_OK, 4) != NULL, 1000));
	ck_assert_ptr_nonnull(find(c, BQ_T_HELLO, -1, 0));
	ck_assert_uint_eq(bq_node_stats(E.nodes[0])->users_local, 1);
}
END_TEST

START_TEST(test_stop_announces_offline)
{
	struct tclient *alice;

	start_node(0, -1, NULL);
	start_node(1, 0, NULL);
	ck_assert(WAIT(peers_up(0, 1) && peers_up(1, 1), 2000));
	alice = client_with(0, "alice");
	ck_assert(WAIT(node_has_user(1, "\"presence\":\"online\""), 2000));
	bq_node_stop(E.nodes[0]);
	ck_assert(WAIT(!bq_node_busy(E.nodes[0]), 2000));
	ck_assert(WAIT(node_has_user(1, "\"presence\":\"offline\""), 1000));
	ck_assert(!node_has_user(1, "\"presence\":\"online\""));
	ck_assert(WAIT(alice->closed, 1000));
	ck_assert(WAIT(peers_up(1, 0), 1000));
}
END_TEST

START_TEST(test_scan_per_frame_limit)
{
	struct tclient *a;
	uint8_t payload[16];
	struct bq_scan sc = { .cursor = 0, .max_entries = 1 };
	struct bq_frame f = mkframe(BQ_T_SCAN, "a1", NULL, 0x5CA);
	size_t frames = 0, more = 0;

	start_node(0, -1, NULL);
	a = client_with(0, "a1");
	client_with(0, "a2");
	client_with(0, "a3");
	f.payload = payload;
	f.payload_len = (uint16_t)bq_scan_encode(&sc, payload, sizeof(payload));
	ck_assert_int_eq(bq_link_send(a->link, &f), 0);
	/* Three users and the node itself, one entry per frame, MORE on all but the last. */
	ck_assert(WAIT(count(a, BQ_T_DIRECTORY, 0x5CA) == 4, 1000));
	for (size_t i = 0; i < a->n; i++) {
		if (a->rx[i].type == BQ_T_DIRECTORY && a->rx[i].msg_id == 0x5CA) {
			frames++;
			more += (a->rx[i].flags & BQ_FF_MORE) != 0;
			ck_assert_str_eq(a->rx[i].dst, "a1");
		}
	}
	ck_assert_uint_eq(frames, 4);
	ck_assert_uint_eq(more, 3);
	ck_assert_ptr_nonnull(strstr(a->dir, "a1=1 "));
	ck_assert_ptr_nonnull(strstr(a->dir, "a3=1 "));
}
END_TEST

/* The last frame of the answer to SCAN id (no MORE), or NULL while it has not come. */
static const struct rx *scan_answer_end(const struct tclient *c, uint64_t id)
{
	for (size_t i = 0; i < c->n; i++) {
		if (c->rx[i].type == BQ_T_DIRECTORY && c->rx[i].msg_id == id &&
		    !(c->rx[i].flags & BQ_FF_MORE)) {
			return &c->rx[i];
		}
	}
	return NULL;
}

static bool stats_has(int i, const char *needle)
{
	char *doc = bq_node_status_json(E.nodes[i], "stats");
	bool yes = doc && strstr(doc, needle) != NULL;

	bq_free(doc);
	return yes;
}

/*
 * SCAN flags: ONESHOT | SUMMARY is one empty DIRECTORY "in sync as of next_cursor" and no
 * pushes; ONESHOT alone is a snapshot without pushes; a later plain SCAN(0) on the same
 * link subscribes it (how a promoted client starts keeping the directory).
 */
START_TEST(test_scan_summary_oneshot)
{
	struct tclient *a, *b, *c;
	const struct rx *sum, *full;

	start_node(0, -1, NULL);
	a = client_with(0, "a1");
	b = client_with(0, "a2");
	c = client_with(0, "a3");
	ck_assert(stats_has(0, "\"scans_summary\":0"));
	/* No change happens between these: one node, no attach in flight. */
	send_scan_flags(a, "a1", BQ_SCAN_ONESHOT | BQ_SCAN_SUMMARY, 0x5A1);
	send_scan(b, "a2");
	send_scan_flags(c, "a3", BQ_SCAN_ONESHOT, 0x5C1);
	ck_assert(WAIT(scan_answer_end(a, 0x5A1) && scan_answer_end(b, 77) &&
			       scan_answer_end(c, 0x5C1),
		       1000));
	sum = scan_answer_end(a, 0x5A1);
	full = scan_answer_end(b, 77);
	ck_assert_uint_eq(count(a, BQ_T_DIRECTORY, 0x5A1), 1);
	ck_assert_uint_eq(sum->count, 0);
	ck_assert_uint_eq(sum->dflags, BQ_DIRF_SNAPSHOT);
	ck_assert_str_eq(sum->dst, "a1");
	ck_assert_uint_gt(sum->next_cursor, 0);
	ck_assert_uint_eq(sum->next_cursor, full->next_cursor);
	ck_assert_str_eq(a->dir, "");
	/* ONESHOT alone: the whole snapshot, as for a plain SCAN(0). */
	ck_assert_uint_eq(scan_answer_end(c, 0x5C1)->next_cursor, full->next_cursor);
	ck_assert_ptr_nonnull(strstr(c->dir, "a1=1 "));
	ck_assert_ptr_nonnull(strstr(c->dir, "a2=1 "));
	ck_assert(stats_has(0, "\"scans_summary\":1"));

	/* Another user: the subscribed link hears of it, the ONESHOT ones never do. */
	client_with(0, "a4");
	ck_assert(WAIT(strstr(b->dir, "a4=1 ") != NULL, 1000));
	run_for(100);
	ck_assert_uint_eq(count(a, BQ_T_DIRECTORY, 0), 1);
	ck_assert_uint_eq(count(c, BQ_T_DIRECTORY, 0), count(c, BQ_T_DIRECTORY, 0x5C1));
	ck_assert_ptr_null(strstr(c->dir, "a4="));

	/* A plain SCAN(0) later: the full snapshot, then the changes. */
	send_scan_flags(a, "a1", 0, 0x5A2);
	ck_assert(WAIT(scan_answer_end(a, 0x5A2) != NULL, 1000));
	ck_assert_uint_eq(scan_answer_end(a, 0x5A2)->dflags, BQ_DIRF_SNAPSHOT);
	ck_assert_ptr_nonnull(strstr(a->dir, "a1=1 "));
	ck_assert_ptr_nonnull(strstr(a->dir, "a4=1 "));
	client_with(0, "a5");
	ck_assert(WAIT(strstr(a->dir, "a5=1 ") != NULL, 1000));
	ck_assert_ptr_null(strstr(c->dir, "a5="));
	ck_assert(!a->closed && !b->closed && !c->closed);
}
END_TEST

/* A SCAN payload with an unknown flag bit is malformed: ERROR 3, the link is closed. */
START_TEST(test_scan_unknown_flag_refused)
{
	struct tclient *a;
	static const uint8_t payload[11] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04 };
	struct bq_frame f = mkframe(BQ_T_SCAN, "a1", NULL, 0x5A3);

	start_node(0, -1, NULL);
	a = client_with(0, "a1");
	f.payload = payload;
	f.payload_len = sizeof(payload);
	ck_assert_int_eq(bq_link_send(a->link, &f), 0);
	ck_assert(WAIT(a->closed, 1000));
	ck_assert_ptr_nonnull(find(a, BQ_T_ERROR, BQ_ERR_MALFORMED, 0));
	ck_assert_uint_eq(count(a, BQ_T_DIRECTORY, 0), 0);
}
END_TEST

static Suite *node_suite(void)
{
	Suite *s = suite_create("node");
	TCase *tc = tcase_create("engine");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_hello_client_and_node);
	tcase_add_test(tc, test_two_nodes_meet_and_share_directory);
	tcase_add_test(tc, test_unicast_and_delivered_ack);
	tcase_add_test(tc, test_broadcast);
	tcase_add_test(tc, test_unknown_user);
	tcase_add_test(tc, test_not_attached);
	tcase_add_test(tc, test_store_then_deliver_on_attach);
	tcase_add_test(tc, test_store_expiry);
	tcase_add_test(tc, test_mailbox_full);
	tcase_add_test(tc, test_duplicate_dropped);
	tcase_add_test(tc, test_ttl_exhausted);
	tcase_add_test(tc, test_bad_tag_dropped);
	tcase_add_test(tc, test_unsigned_node_hello_refused);
	tcase_add_test(tc, test_unknown_type_keeps_link);
	tcase_add_test(tc, test_version_mismatch);
	tcase_add_test(tc, test_frame_before_hello);
	tcase_add_test(tc, test_route_hold_and_flush);
	tcase_add_test(tc, test_client_limit);
	tcase_add_test(tc, test_three_node_line);
	tcase_add_test(tc, test_status_json_unknown);
	tcase_add_test(tc, test_listen_in_use);
	tcase_add_test(tc, test_accept_conn_mem_pair);
	tcase_add_test(tc, test_stop_announces_offline);
	tcase_add_test(tc, test_scan_per_frame_limit);
	tcase_add_test(tc, test_scan_summary_oneshot);
	tcase_add_test(tc, test_scan_unknown_flag_refused);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(node_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
