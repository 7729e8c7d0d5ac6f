/* SPDX-License-Identifier: MIT */
/*
 * client: the MeshClient engine. Design notes: docs/internals/client.md.
 *
 * One link to one node; any number of users on it. Everything a user owns (its outbox
 * of unacknowledged messages) survives reconnects; the link and the handshake state do
 * not. Users and messages that are dropped while a callback may still hold them are
 * freed from a deferred call, never in the middle of a stack that points at them.
 */
#include "mesh/client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/backoff.h"
#include "core/map.h"
#include "mesh/link.h"
#include "proto/dedupe.h"
#include "transport/addrmap.h"
#include "transport/conn.h"

static const char *const MOD = "client";

#define CLIENT_OUT_MAX (1024 * 1024)   /* link output queue: a burst of max_outstanding MSGs */
#define RETRANSMIT_CAP_MS 30000
#define DEDUPE_TTL_MS (3600ull * 1000) /* duplicates arrive within seconds; an hour is ample */
#define DEDUPE_DEFAULT 4096

/* Both kinds of things a msg_id can name in the pending map start with this tag. */
enum pend_kind { PEND_ATTACH = 1, PEND_MSG = 2 };

struct out_msg {
	uint8_t kind; /* PEND_MSG; first */
	bool broadcast;
	bool sent;
	uint8_t attempt;
	uint8_t dst_len;
	uint16_t text_len;
	uint16_t reported; /* bit per ack status already passed to cbs.ack */
	uint32_t interval_ms;
	uint64_t id;
	uint64_t expire_at_ms;
	struct bq_muser *u;
	struct out_msg *prev, *next;
	struct bq_timer *timer;
	char dst[BQ_USER_ID_MAX];
	uint8_t text[];
};

struct bq_muser {
	uint8_t kind; /* PEND_ATTACH; first */
	bool attach_sent;
	bool dead;
	enum bq_muser_state state;
	struct bq_mclient *c;
	struct bq_muser *prev, *next;
	char *id;
	char *name;
	void *ud;
	uint64_t attach_id;
	struct out_msg *out_head, *out_tail;
	uint32_t n_out;
};

enum scan_state { SCAN_NONE, SCAN_RUNNING, SCAN_DONE };

struct dir_rec {
	uint8_t kind;
	uint8_t presence;
	uint8_t id_len, name_len, n_neigh;
	uint8_t home[BQ_NODE_ADDR_LEN];
	uint8_t node[BQ_NODE_ADDR_LEN];
	uint32_t version;
	uint32_t age_s;
	uint32_t gen; /* the scan that last confirmed it (mark and sweep) */
	uint8_t *neigh;
	char id[BQ_USER_ID_MAX];
	char name[BQ_NAME_MAX];
};

struct bq_mclient {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_mclient_config cfg;
	char *name;
	struct bq_mclient_cbs cbs;
	void *ud;

	enum bq_mclient_state state;
	char last_error[256];
	char node_text[BQ_ADDR_STRLEN];
	uint32_t reconnects;
	bool started;
	bool gate_wait; /* IDLE with the timer armed: the connect gate's reservation */
	bool rescan; /* keep_directory during a scan: scan again when it ends */

	struct bq_conn *conn; /* while CONNECTING */
	struct bq_link *link; /* from HELLO on */
	struct bq_timer *timer; /* connect, hello, attach/scan progress, or backoff */
	struct bq_backoff backoff;
	enum scan_state scan;
	uint64_t scan_id;
	uint32_t gen;
	uint32_t node_caps; /* BQ_CAP_* from the node's HELLO on this link */
	uint8_t node_addr[BQ_NODE_ADDR_LEN];

	struct bq_map *users;   /* id -> struct bq_muser */
	struct bq_muser *u_head, *u_tail;
	size_t n_users;
	struct bq_map *pending; /* 8-byte msg_id -> struct bq_muser (attach) or out_msg */
	struct bq_map *dir_users;
	struct bq_map *dir_nodes;
	struct bq_dedupe *dedupe; /* created on the first inbound message */
};

static void client_fail(struct bq_mclient *c, int err, const char *reason);
static void flush_outbox(struct bq_muser *u);
static void msg_timer_cb(struct bq_timer *t, void *ud);

/* ---- small helpers ----------------------------------------------------------------- */

void bq_mclient_config_defaults(struct bq_mclient_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->connect_timeout_ms = 10000;
	cfg->hello_timeout_ms = 5000;
	cfg->ping_interval_ms = 5000;
	cfg->dead_after_ms = 15000;
	cfg->backoff_base_ms = 100;
	cfg->backoff_cap_ms = 30000;
	cfg->retransmit_ms = 1000;
	cfg->msg_expire_ms = 600000;
	cfg->max_outstanding = 1024;
	cfg->dedupe_capacity = DEDUPE_DEFAULT;
}

const char *bq_mclient_state_name(enum bq_mclient_state st)
{
	switch (st) {
	case BQ_MC_IDLE:
		return "idle";
	case BQ_MC_CONNECTING:
		return "connecting";
	case BQ_MC_HELLO:
		return "hello";
	case BQ_MC_UP:
		return "up";
	case BQ_MC_BACKOFF:
		return "backoff";
	case BQ_MC_STOPPED:
		return "stopped";
	}
	return "?";
}

const char *bq_muser_state_name(enum bq_muser_state st)
{
	switch (st) {
	case BQ_MU_ATTACHING:
		return "attaching";
	case BQ_MU_SCANNING:
		return "scanning";
	case BQ_MU_READY:
		return "ready";
	case BQ_MU_DETACHED:
		return "detached";
	case BQ_MU_REJECTED:
		return "rejected";
	}
	return "?";
}

static void id_key(uint64_t id, char key[8])
{
	for (int i = 0; i < 8; i++) {
		key[i] = (char)(id >> (56 - 8 * i));
	}
}

static void *pending_get(struct bq_mclient *c, uint64_t id)
{
	char k[8];

	id_key(id, k);
	return bq_map_get(c->pending, k, 8);
}

static int pending_set(struct bq_mclient *c, uint64_t id, void *v)
{
	char k[8];

	id_key(id, k);
	return bq_map_set(c->pending, k, 8, v);
}

static void pending_del(struct bq_mclient *c, uint64_t id)
{
	char k[8];

	id_key(id, k);
	bq_map_remove(c->pending, k, 8);
}

static bool link_up(const struct bq_mclient *c)
{
	return c->state == BQ_MC_UP && c->link && bq_link_open(c->link);
}

static bool user_attached(const struct bq_muser *u)
{
	return !u->dead && (u->state == BQ_MU_SCANNING || u->state == BQ_MU_READY);
}

static void set_link_state(struct bq_mclient *c, enum bq_mclient_state st, int err,
			   const char *reason)
{
	c->state = st;
	bq_debug(c->log, MOD, "client=%s msg=\"link state\" state=%s err=%d", c->name,
		 bq_mclient_state_name(st), err);
	if (c->cbs.link_state) {
		c->cbs.link_state(c, st, err, reason ? reason : "", c->ud);
	}
}

static void set_user_state(struct bq_muser *u, enum bq_muser_state st, const char *reason)
{
	if (u->state == st) {
		return;
	}
	u->state = st;
	bq_debug(u->c->log, MOD, "client=%s user_id=%s msg=\"user state\" state=%s", u->c->name,
		 u->id, bq_muser_state_name(st));
	if (u->c->cbs.user_state) {
		u->c->cbs.user_state(u, st, reason ? reason : "", u->c->ud);
	}
}

/*
 * Snapshot of the user list, for walks whose callbacks may attach or detach users.
 * Detached users are freed only from a deferred call, so the pointers stay valid for
 * the whole walk; check u->dead before using one.
 */
static struct bq_muser **users_snapshot(struct bq_mclient *c, size_t *n)
{
	struct bq_muser **v;
	size_t i = 0;

	*n = 0;
	if (c->n_users == 0) {
		return NULL;
	}
	v = bq_malloc(c->n_users * sizeof(*v));
	if (!v) {
		return NULL;
	}
	for (struct bq_muser *u = c->u_head; u && i < c->n_users; u = u->next) {
		v[i++] = u;
	}
	*n = i;
	return v;
}

static int send_frame(struct bq_mclient *c, uint8_t type, uint8_t flags, uint64_t msg_id,
		      uint8_t attempt, const char *src, const char *dst, size_t dst_len,
		      const void *payload, size_t payload_len)
{
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = type,
		.flags = flags,
		.ttl = BQ_DEFAULT_TTL,
		.attempt = attempt,
		.msg_id = msg_id,
		.timestamp_ms = bq_wall_ms(),
		.src = src,
		.src_len = (uint8_t)(src ? strlen(src) : 0),
		.dst = dst,
		.dst_len = (uint8_t)dst_len,
		.payload = payload,
		.payload_len = (uint16_t)payload_len,
	};
	int rc;

	if (!c->link) {
		return -ENOTCONN;
	}
	rc = bq_link_send(c->link, &f);
	if (rc < 0 && rc != -ENOTCONN) {
		bq_warn(c->log, MOD, "client=%s msg=\"send failed\" type=%s err=%d", c->name,
			bq_frame_type_name(type), rc);
	}
	return rc;
}

/* ---- handshake timer --------------------------------------------------------------- */

static bool handshake_pending(const struct bq_mclient *c)
{
	if (c->scan == SCAN_RUNNING) {
		return true;
	}
	for (const struct bq_muser *u = c->u_head; u; u = u->next) {
		if (u->state == BQ_MU_ATTACHING && u->attach_sent) {
			return true;
		}
	}
	return false;
}

/* While UP: the timer runs while an ATTACH or SCAN is unanswered; progress restarts it. */
static void handshake_progress(struct bq_mclient *c, bool restart)
{
	if (c->state != BQ_MC_UP) {
		return;
	}
	if (!handshake_pending(c)) {
		bq_timer_stop(c->timer);
	} else if (restart || !bq_timer_active(c->timer)) {
		bq_timer_start(c->timer, c->cfg.hello_timeout_ms);
	}
}

/* ---- users: attach, scan, ready ---------------------------------------------------- */

static void send_attach(struct bq_muser *u)
{
	struct bq_mclient *c = u->c;
	uint8_t payload[BQ_NAME_MAX + 8];
	struct bq_attach a = { .name = u->name, .name_len = (uint8_t)strlen(u->name) };
	int n = bq_attach_encode(&a, payload, sizeof(payload));

	if (n < 0) {
		return;
	}
	if (u->attach_sent) {
		pending_del(c, u->attach_id);
	}
	do {
		u->attach_id = bq_link_new_msg_id();
	} while (pending_get(c, u->attach_id));
	if (pending_set(c, u->attach_id, u) < 0) {
		client_fail(c, -ENOMEM, "out of memory");
		return;
	}
	u->attach_sent = true;
	send_frame(c, BQ_T_ATTACH, 0, u->attach_id, 0, u->id, NULL, 0, payload, (size_t)n);
}

/*
 * SCAN from 0. A link that keeps no copy asks only "in sync as of which cursor"
 * (SUMMARY) and stays unsubscribed (ONESHOT): the node sends one small frame instead of
 * every record now and every change later. A node without the flags (no
 * BQ_CAP_SCAN_FLAGS) would close the link on them: it gets the plain SCAN(0).
 */
static void send_scan(struct bq_mclient *c, struct bq_muser *u)
{
	uint8_t payload[16];
	struct bq_scan s = { .cursor = 0, .max_entries = 0 };
	int n;

	if (c->cfg.no_directory && (c->node_caps & BQ_CAP_SCAN_FLAGS)) {
		s.flags = BQ_SCAN_ONESHOT | BQ_SCAN_SUMMARY;
	}
	n = bq_scan_encode(&s, payload, sizeof(payload));

	if (n < 0) {
		return;
	}
	c->scan = SCAN_RUNNING;
	c->gen++;
	c->scan_id = bq_link_new_msg_id();
	send_frame(c, BQ_T_SCAN, 0, c->scan_id, 0, u->id, NULL, 0, payload, (size_t)n);
}

static void user_ready(struct bq_muser *u)
{
	set_user_state(u, BQ_MU_READY, NULL);
	if (!u->dead && u->state == BQ_MU_READY && link_up(u->c)) {
		flush_outbox(u);
	}
}

/* Every user waiting for ATTACH on a fresh link gets one now. */
static void attach_all(struct bq_mclient *c)
{
	for (struct bq_muser *u = c->u_head; u; u = u->next) {
		if (u->state == BQ_MU_ATTACHING && !u->attach_sent && link_up(c)) {
			send_attach(u);
		}
	}
	handshake_progress(c, true);
}

/* ---- outgoing messages ------------------------------------------------------------- */

static void msg_unlink_free(struct out_msg *m)
{
	struct bq_muser *u = m->u;

	pending_del(u->c, m->id);
	if (m->prev) {
		m->prev->next = m->next;
	} else {
		u->out_head = m->next;
	}
	if (m->next) {
		m->next->prev = m->prev;
	} else {
		u->out_tail = m->prev;
	}
	u->n_out--;
	bq_timer_free(m->timer);
	bq_free(m);
}

static void arm_msg_timer(struct out_msg *m, uint64_t now_ms, uint64_t delay_ms)
{
	uint64_t left = m->expire_at_ms > now_ms ? m->expire_at_ms - now_ms : 0;

	bq_timer_start(m->timer, delay_ms < left ? delay_ms : left);
}

static void send_msg(struct out_msg *m)
{
	struct bq_muser *u = m->u;

	if (m->sent && m->attempt < UINT8_MAX) {
		m->attempt++;
	}
	m->sent = true;
	send_frame(u->c, BQ_T_MSG, m->broadcast ? BQ_FF_BROADCAST : 0, m->id, m->attempt, u->id,
		   m->broadcast ? NULL : m->dst, m->broadcast ? 0 : m->dst_len, m->text,
		   m->text_len);
}

static void flush_outbox(struct bq_muser *u)
{
	uint64_t now = bq_loop_now_ms(u->c->loop);

	for (struct out_msg *m = u->out_head; m; m = m->next) {
		send_msg(m);
		arm_msg_timer(m, now, m->interval_ms);
	}
}

/* Report status for m (once per status) and drop it when final. */
static void msg_report(struct out_msg *m, uint8_t status, const char *reason, bool final)
{
	struct bq_muser *u = m->u;
	struct bq_mclient *c = u->c;
	uint64_t id = m->id;
	uint16_t bit = status < 16 ? (uint16_t)(1u << status) : 0;
	bool report = !(m->reported & bit);

	m->reported |= bit;
	if (final) {
		msg_unlink_free(m);
	}
	if (report && c->cbs.ack) {
		c->cbs.ack(u, id, status, reason ? reason : "", c->ud);
	}
}

static void msg_timer_cb(struct bq_timer *t, void *ud)
{
	struct out_msg *m = ud;
	struct bq_muser *u = m->u;
	uint64_t now = bq_loop_now_ms(u->c->loop);

	if (now >= m->expire_at_ms) {
		bq_info(u->c->log, MOD, "client=%s user_id=%s msg_id=%016" PRIx64
			" msg=\"message expired unacknowledged\" attempts=%u", u->c->name, u->id,
			m->id, m->attempt + 1u);
		msg_report(m, BQ_ACK_EXPIRED, "no receipt before the message expired", true);
		return;
	}
	if (u->state == BQ_MU_READY && link_up(u->c)) {
		send_msg(m);
		m->interval_ms = m->interval_ms * 2 > RETRANSMIT_CAP_MS ? RETRANSMIT_CAP_MS
									: m->interval_ms * 2;
		arm_msg_timer(m, now, m->interval_ms);
		return;
	}
	/* Not attached: the outbox goes out when the user is READY again. */
	arm_msg_timer(m, now, UINT64_MAX);
}

static void msg_acked(struct out_msg *m, uint8_t status, const char *reason)
{
	struct bq_mclient *c = m->u->c;
	uint64_t now = bq_loop_now_ms(c->loop);

	switch (status) {
	case BQ_ACK_DELIVERED:
	case BQ_ACK_UNKNOWN_USER:
	case BQ_ACK_EXPIRED:
	case BQ_ACK_REJECTED:
	case BQ_ACK_TOO_LARGE:
		msg_report(m, status, reason, true);
		break;
	case BQ_ACK_ACCEPTED:
		if (m->broadcast) {
			/* No receipts for broadcasts: "sent to mesh" is all there will be. */
			msg_report(m, status, reason, true);
			break;
		}
		/*
		 * The first node has it, but it can still be lost further on (a relay dies,
		 * a frame is dropped): keep the doubling schedule going until DELIVERED.
		 */
		msg_report(m, status, reason, false);
		break;
	case BQ_ACK_STORED:
		/* Held at the home node until the user attaches; retries only guard against
		 * that node dying, so the slowest pace will do. */
		m->interval_ms = RETRANSMIT_CAP_MS;
		arm_msg_timer(m, now, m->interval_ms);
		msg_report(m, status, reason, false);
		break;
	default:
		bq_debug(c->log, MOD,
			 "client=%s msg_id=%016" PRIx64 " msg=\"ignored ack\" status=%u", c->name,
			 m->id, status);
		break;
	}
}

/* A rejected user's outbox cannot go anywhere. */
static void fail_outbox(struct bq_muser *u, const char *reason)
{
	while (u->out_head && !u->dead) {
		msg_report(u->out_head, BQ_ACK_REJECTED, reason, true);
	}
}

int bq_muser_send(struct bq_muser *u, const char *dst, const void *text, size_t len,
		  uint64_t msg_id, uint64_t *id_out)
{
	struct bq_mclient *c = u->c;
	size_t dst_len = dst ? strlen(dst) : 0;
	uint64_t now;
	struct out_msg *m;

	if (u->dead || u->state == BQ_MU_DETACHED || u->state == BQ_MU_REJECTED) {
		return -ENOTCONN;
	}
	if (dst && (dst_len > BQ_USER_ID_MAX || !bq_user_id_valid(dst, dst_len))) {
		return -EINVAL;
	}
	if (len > BQ_TEXT_MAX) {
		return -EMSGSIZE;
	}
	if (u->n_out >= c->cfg.max_outstanding) {
		return -ENOBUFS;
	}
	if (msg_id == 0) {
		do {
			msg_id = bq_link_new_msg_id();
		} while (pending_get(c, msg_id));
	} else if (pending_get(c, msg_id)) {
		return -EEXIST;
	}
	m = bq_calloc(1, sizeof(*m) + len);
	if (!m) {
		return -ENOMEM;
	}
	m->kind = PEND_MSG;
	m->u = u;
	m->id = msg_id;
	m->broadcast = dst == NULL;
	m->dst_len = (uint8_t)dst_len;
	if (dst_len) {
		memcpy(m->dst, dst, dst_len);
	}
	m->text_len = (uint16_t)len;
	if (len) {
		memcpy(m->text, text, len);
	}
	m->interval_ms = c->cfg.retransmit_ms ? c->cfg.retransmit_ms : 1000;
	now = bq_loop_now_ms(c->loop);
	m->expire_at_ms = now + c->cfg.msg_expire_ms;
	m->timer = bq_timer_new(c->loop, msg_timer_cb, m);
	if (!m->timer || pending_set(c, msg_id, m) < 0) {
		bq_timer_free(m->timer);
		bq_free(m);
		return -ENOMEM;
	}
	m->prev = u->out_tail;
	if (u->out_tail) {
		u->out_tail->next = m;
	} else {
		u->out_head = m;
	}
	u->out_tail = m;
	u->n_out++;
	if (id_out) {
		*id_out = msg_id;
	}
	if (u->state == BQ_MU_READY && link_up(c)) {
		send_msg(m);
		arm_msg_timer(m, now, m->interval_ms);
	} else {
		arm_msg_timer(m, now, UINT64_MAX);
	}
	return 0;
}

/* ---- directory copy ---------------------------------------------------------------- */

static void rec_free(struct dir_rec *r)
{
	if (r) {
		bq_free(r->neigh);
		bq_free(r);
	}
}

static bool rec_same(const struct dir_rec *r, const struct bq_dir_entry *e)
{
	if (r->version != e->version || r->presence != e->presence ||
	    r->name_len != e->name_len || memcmp(r->name, e->name, e->name_len) != 0) {
		return false;
	}
	if (e->kind == BQ_DIR_USER) {
		return memcmp(r->home, e->home, BQ_NODE_ADDR_LEN) == 0;
	}
	return r->n_neigh == e->n_neigh &&
	       (e->n_neigh == 0 || memcmp(r->neigh, e->neigh, (size_t)e->n_neigh * 6) == 0);
}

/* Upsert one record. Returns true when it changed (the callback should hear of it). */
static bool dir_upsert(struct bq_mclient *c, const struct bq_dir_entry *e)
{
	struct bq_map *m;
	char key[BQ_BDADDR_STRLEN];
	const char *k;
	size_t klen;
	struct dir_rec *r;
	uint8_t *neigh = NULL;

	if (e->kind == BQ_DIR_USER) {
		if (e->id_len == 0 || e->id_len > BQ_USER_ID_MAX) {
			return false;
		}
		m = c->dir_users;
		k = e->id;
		klen = e->id_len;
	} else if (e->kind == BQ_DIR_NODE) {
		m = c->dir_nodes;
		k = bq_bdaddr_format(e->node, key);
		klen = strlen(key);
	} else {
		return false;
	}
	if (e->name_len > BQ_NAME_MAX) {
		return false;
	}
	r = bq_map_get(m, k, klen);
	if (r) {
		r->gen = c->gen;
		r->age_s = e->age_s;
		/* Records are versioned at their home; an older version is stale news. */
		if (e->version < r->version || rec_same(r, e)) {
			return false;
		}
	} else {
		r = bq_calloc(1, sizeof(*r));
		if (!r) {
			return false;
		}
		if (bq_map_set(m, k, klen, r) < 0) {
			bq_free(r);
			return false;
		}
		r->kind = e->kind;
		r->gen = c->gen;
		r->age_s = e->age_s;
	}
	if (e->kind == BQ_DIR_NODE && e->n_neigh) {
		neigh = bq_malloc((size_t)e->n_neigh * 6);
		if (!neigh) {
			return false;
		}
		memcpy(neigh, e->neigh, (size_t)e->n_neigh * 6);
	}
	if (e->kind == BQ_DIR_USER) {
		memcpy(r->id, e->id, e->id_len);
		r->id_len = e->id_len;
		memcpy(r->home, e->home, BQ_NODE_ADDR_LEN);
	} else {
		memcpy(r->node, e->node, BQ_NODE_ADDR_LEN);
		bq_free(r->neigh);
		r->neigh = neigh;
		r->n_neigh = e->n_neigh;
	}
	memcpy(r->name, e->name, e->name_len);
	r->name_len = e->name_len;
	r->presence = e->presence;
	r->version = e->version;
	return true;
}

/* After a full snapshot: forget what the node no longer lists. */
static void dir_sweep(struct bq_mclient *c, struct bq_map *m)
{
	for (;;) {
		size_t pos = 0, klen;
		const char *k;
		struct dir_rec *r;
		bool removed = false;

		while ((r = bq_map_next(m, &pos, &k, &klen))) {
			if (r->gen != c->gen) {
				bq_map_remove(m, k, klen);
				rec_free(r);
				removed = true;
				break; /* the map changed: walk again */
			}
		}
		if (!removed) {
			return;
		}
	}
}

static void rec_to_entry(const struct dir_rec *r, struct bq_dir_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = r->kind;
	e->id = r->id;
	e->id_len = r->id_len;
	memcpy(e->home, r->home, BQ_NODE_ADDR_LEN);
	e->presence = r->presence;
	e->name = r->name;
	e->name_len = r->name_len;
	e->version = r->version;
	e->age_s = r->age_s;
	memcpy(e->node, r->node, BQ_NODE_ADDR_LEN);
	e->n_neigh = r->n_neigh;
	e->neigh = r->neigh;
}

size_t bq_mclient_dir_count(const struct bq_mclient *c)
{
	return bq_map_size(c->dir_users) + bq_map_size(c->dir_nodes);
}

int bq_mclient_dir_presence(const struct bq_mclient *c, const char *user_id)
{
	const struct dir_rec *r = bq_map_get(c->dir_users, user_id, strlen(user_id));

	return r ? r->presence : -ENOENT;
}

void bq_mclient_dir_foreach(const struct bq_mclient *c,
			    void (*fn)(const struct bq_dir_entry *e, void *ud), void *ud)
{
	const struct bq_map *maps[2] = { c->dir_users, c->dir_nodes };

	for (int i = 0; i < 2; i++) {
		size_t pos = 0, klen;
		const char *k;
		struct dir_rec *r;

		while ((r = bq_map_next(maps[i], &pos, &k, &klen))) {
			struct bq_dir_entry e;

			rec_to_entry(r, &e);
			fn(&e, ud);
		}
	}
}

static struct bq_muser *first_attached(struct bq_mclient *c)
{
	for (struct bq_muser *u = c->u_head; u; u = u->next) {
		if (user_attached(u)) {
			return u;
		}
	}
	return NULL;
}

static void scan_done(struct bq_mclient *c)
{
	struct bq_muser **v;
	size_t n;

	c->scan = SCAN_DONE;
	if (!c->cfg.no_directory) {
		dir_sweep(c, c->dir_users);
		dir_sweep(c, c->dir_nodes);
	}
	bq_debug(c->log, MOD, "client=%s msg=\"directory synced\" users=%zu nodes=%zu", c->name,
		 bq_map_size(c->dir_users), bq_map_size(c->dir_nodes));
	v = users_snapshot(c, &n);
	for (size_t i = 0; i < n && c->state == BQ_MC_UP; i++) {
		if (!v[i]->dead && v[i]->state == BQ_MU_SCANNING) {
			user_ready(v[i]);
		}
	}
	bq_free(v);
	if (c->rescan && c->state == BQ_MC_UP) {
		struct bq_muser *u = first_attached(c);

		c->rescan = false;
		if (u) {
			send_scan(c, u);
		} else {
			c->scan = SCAN_NONE;
		}
	}
	handshake_progress(c, false);
}

static void on_directory(struct bq_mclient *c, const struct bq_frame *f)
{
	struct bq_directory d;
	struct bq_dir_iter it;
	struct bq_dir_entry e;
	int r;

	if (bq_directory_decode(f, &d) < 0) {
		bq_warn(c->log, MOD, "client=%s msg=\"malformed DIRECTORY ignored\"", c->name);
		return;
	}
	bq_dir_iter_init(&it, d.entries, d.entries_len, d.count);
	while ((r = bq_dir_iter_next(&it, &e)) == 1) {
		bool changed = c->cfg.no_directory ? true : dir_upsert(c, &e);

		if (changed && c->cbs.directory) {
			c->cbs.directory(c, &e, c->ud);
			if (c->state != BQ_MC_UP) {
				return;
			}
		}
	}
	if (r < 0) {
		bq_warn(c->log, MOD, "client=%s msg=\"malformed DIRECTORY entry\"", c->name);
	}
	if (c->scan == SCAN_RUNNING) {
		if (f->flags & BQ_FF_MORE) {
			handshake_progress(c, true);
		} else {
			scan_done(c);
		}
	}
}

/* ---- inbound frames ---------------------------------------------------------------- */

static void on_ack(struct bq_mclient *c, const struct bq_frame *f)
{
	struct bq_ack a;
	char reason[BQ_NAME_MAX * 4 + 1];
	uint8_t *kind;

	if (bq_ack_decode(f, &a) < 0) {
		bq_warn(c->log, MOD, "client=%s msg=\"malformed ACK ignored\"", c->name);
		return;
	}
	snprintf(reason, sizeof(reason), "%.*s", (int)a.reason_len, a.reason ? a.reason : "");
	kind = pending_get(c, a.acked_id);
	if (!kind) {
		/* Late receipts for messages already settled (retransmissions) land here. */
		return;
	}
	if (*kind == PEND_MSG) {
		struct out_msg *m = (struct out_msg *)kind;

		if (f->dst_len && (f->dst_len != strlen(m->u->id) ||
				   memcmp(f->dst, m->u->id, f->dst_len) != 0)) {
			return; /* not addressed to the sender of that id */
		}
		msg_acked(m, a.status, reason);
		return;
	}
	/* The answer to an ATTACH. */
	{
		struct bq_muser *u = (struct bq_muser *)kind;

		pending_del(c, u->attach_id);
		u->attach_sent = false;
		if (u->state != BQ_MU_ATTACHING) {
			return;
		}
		if (a.status != BQ_ACK_OK) {
			bq_warn(c->log, MOD,
				"client=%s user_id=%s msg=\"attach refused\" status=%s "
				"reason=\"%s\"",
				c->name, u->id, bq_ack_status_name(a.status), reason);
			set_user_state(u, BQ_MU_REJECTED, reason[0] ? reason :
				       bq_ack_status_name(a.status));
			fail_outbox(u, reason[0] ? reason : "attach refused");
		} else if (c->scan == SCAN_DONE) {
			user_ready(u);
		} else {
			if (c->scan == SCAN_NONE) {
				send_scan(c, u);
			}
			set_user_state(u, BQ_MU_SCANNING, NULL);
		}
		handshake_progress(c, true);
	}
}

static uint64_t dedupe_key(const struct bq_frame *f, const char *rcpt)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	uint8_t origin[BQ_NODE_ADDR_LEN];

	/* (source user, receiving user) folded into the "origin" the dedupe key wants. */
	for (size_t i = 0; i < f->src_len; i++) {
		h = (h ^ (uint8_t)f->src[i]) * 0x100000001b3ULL;
	}
	h = (h ^ 0xff) * 0x100000001b3ULL;
	for (const char *p = rcpt; *p; p++) {
		h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
	}
	for (int i = 0; i < BQ_NODE_ADDR_LEN; i++) {
		origin[i] = (uint8_t)(h >> (8 * i));
	}
	return bq_dedupe_key(origin, f->msg_id, (uint32_t)(h >> 48));
}

/* true for the first copy (report it); false for a duplicate. */
static bool first_copy(struct bq_mclient *c, const struct bq_frame *f, const char *rcpt)
{
	if (!c->dedupe) {
		size_t cap = c->cfg.dedupe_capacity ? c->cfg.dedupe_capacity : DEDUPE_DEFAULT;

		c->dedupe = bq_dedupe_new(cap, DEDUPE_TTL_MS);
		if (!c->dedupe) {
			bq_warn(c->log, MOD,
				"client=%s msg=\"no memory for duplicate suppression\"", c->name);
			return true;
		}
	}
	return bq_dedupe_check_insert(c->dedupe, dedupe_key(f, rcpt),
				      bq_loop_now_ms(c->loop)) == 0;
}

static void deliver(struct bq_mclient *c, struct bq_muser *u, const struct bq_frame *f)
{
	if (first_copy(c, f, u->id)) {
		if (c->cbs.message) {
			c->cbs.message(u, f, c->ud);
		}
	} else if (c->cfg.hold_receipts && c->cbs.message_repeat &&
		   !(f->flags & BQ_FF_BROADCAST)) {
		/* The owner confirms; a repeat means our receipt is late or was lost. */
		c->cbs.message_repeat(u, f, c->ud);
	} else {
		bq_debug(c->log, MOD, "client=%s user_id=%s msg_id=%016" PRIx64
			 " msg=\"duplicate dropped\"", c->name, u->id, f->msg_id);
	}
}

static int send_delivered(struct bq_mclient *c, const char *rcpt, const char *src,
			  size_t src_len, uint64_t msg_id)
{
	uint8_t payload[32];
	struct bq_ack a = { .acked_id = msg_id, .status = BQ_ACK_DELIVERED };
	int n = bq_ack_encode(&a, payload, sizeof(payload));

	if (n < 0) {
		return n;
	}
	if (!link_up(c)) {
		return -ENOTCONN;
	}
	/* A fresh frame id per receipt: relays must not take a repeated receipt for a loop. */
	return send_frame(c, BQ_T_ACK, 0, bq_link_new_msg_id(), 0, rcpt, src, src_len, payload,
			  (size_t)n);
}

int bq_muser_confirm(struct bq_muser *u, const char *src, uint64_t msg_id)
{
	size_t len = src ? strlen(src) : 0;

	if (!u || u->dead || !len || !bq_user_id_valid(src, len)) {
		return -EINVAL;
	}
	return send_delivered(u->c, u->id, src, len, msg_id);
}

static void on_msg(struct bq_mclient *c, const struct bq_frame *f)
{
	if (f->flags & BQ_FF_BROADCAST) {
		struct bq_muser **v;
		size_t n;

		v = users_snapshot(c, &n);
		for (size_t i = 0; i < n && c->state == BQ_MC_UP; i++) {
			struct bq_muser *u = v[i];

			if (!user_attached(u) || (f->src_len == strlen(u->id) &&
						  memcmp(f->src, u->id, f->src_len) == 0)) {
				continue;
			}
			deliver(c, u, f);
		}
		bq_free(v);
		return;
	}
	{
		struct bq_muser *u = bq_map_get(c->users, f->dst, f->dst_len);
		char rcpt[BQ_USER_ID_MAX + 1];

		if (!u || !user_attached(u) || f->src_len == 0) {
			bq_debug(c->log, MOD, "client=%s msg=\"MSG for a user not attached here\"",
				 c->name);
			return;
		}
		/* u may be detached by the callback; its id is still needed for the receipt. */
		snprintf(rcpt, sizeof(rcpt), "%s", u->id);
		deliver(c, u, f);
		if (!c->cfg.hold_receipts) {
			send_delivered(c, rcpt, f->src, f->src_len, f->msg_id);
		}
	}
}

static void on_error_frame(struct bq_mclient *c, const struct bq_frame *f, bool in_hello)
{
	struct bq_error e;
	char text[300];

	if (bq_error_decode(f, &e) < 0) {
		snprintf(text, sizeof(text), "malformed ERROR from node");
	} else {
		snprintf(text, sizeof(text), "%.*s", (int)(e.text_len > 256 ? 256 : e.text_len),
			 e.text ? e.text : "");
	}
	if (in_hello) {
		client_fail(c, -EPROTO, text[0] ? text : "node refused HELLO");
		return;
	}
	bq_warn(c->log, MOD, "client=%s msg=\"ERROR from node\" code=%u text=\"%s\"", c->name,
		bq_error_decode(f, &e) == 0 ? e.code : 0, text);
}

static void on_hello(struct bq_mclient *c, const struct bq_frame *f)
{
	struct bq_hello h;

	if (bq_hello_decode(f, &h) < 0) {
		client_fail(c, -EPROTO, "malformed HELLO from node");
		return;
	}
	if (h.role != BQ_ROLE_NODE) {
		client_fail(c, -EPROTO, "peer is not a blueq node (HELLO role is not node)");
		return;
	}
	memcpy(c->node_addr, f->origin, BQ_NODE_ADDR_LEN);
	c->node_caps = h.caps;
	bq_timer_stop(c->timer);
	bq_backoff_reset(&c->backoff);
	c->scan = SCAN_NONE;
	c->last_error[0] = '\0';
	{
		char name[BQ_NAME_MAX + 1], mac[BQ_BDADDR_STRLEN];

		snprintf(name, sizeof(name), "%.*s", (int)h.name_len, h.name ? h.name : "");
		bq_info(c->log, MOD, "client=%s msg=\"link up\" node=%s node_name=\"%s\"", c->name,
			bq_bdaddr_format(c->node_addr, mac), name);
	}
	set_link_state(c, BQ_MC_UP, 0, NULL);
	if (c->state == BQ_MC_UP) {
		attach_all(c);
	}
}

static void on_link_frame(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
			  size_t raw_len, void *ud)
{
	struct bq_mclient *c = ud;

	if (c->state == BQ_MC_HELLO) {
		if (f->type == BQ_T_HELLO) {
			on_hello(c, f);
		} else if (f->type == BQ_T_ERROR) {
			on_error_frame(c, f, true);
		} else {
			char text[96];

			snprintf(text, sizeof(text), "node sent %s before HELLO",
				 bq_frame_type_name(f->type));
			client_fail(c, -EPROTO, text);
		}
		return;
	}
	if (c->state != BQ_MC_UP) {
		return;
	}
	switch (f->type) {
	case BQ_T_ACK:
		on_ack(c, f);
		break;
	case BQ_T_MSG:
		on_msg(c, f);
		break;
	case BQ_T_DIRECTORY:
		on_directory(c, f);
		break;
	case BQ_T_ERROR:
		on_error_frame(c, f, false);
		break;
	default:
		/* HELLO again, ANNOUNCE, or frames meant for nodes: nothing for a client. */
		bq_debug(c->log, MOD, "client=%s msg=\"frame ignored\" type=%s", c->name,
			 bq_frame_type_name(f->type));
		break;
	}
}

/* ---- link lifecycle ---------------------------------------------------------------- */

static void free_user_mem(void *ud)
{
	struct bq_muser *u = ud;

	bq_free(u->id);
	bq_free(u->name);
	bq_free(u);
}

static void drop_outbox(struct bq_muser *u)
{
	while (u->out_head) {
		msg_unlink_free(u->out_head);
	}
}

static void teardown_link(struct bq_mclient *c)
{
	if (c->conn) {
		bq_conn_close(c->conn);
		c->conn = NULL;
	}
	if (c->link) {
		bq_link_free(c->link);
		c->link = NULL;
	}
	c->scan = SCAN_NONE;
}

static void client_fail(struct bq_mclient *c, int err, const char *reason)
{
	struct bq_muser **v;
	size_t n;
	uint32_t delay;

	if (c->state == BQ_MC_STOPPED || c->state == BQ_MC_BACKOFF) {
		return;
	}
	snprintf(c->last_error, sizeof(c->last_error), "%s", reason ? reason : "link failed");
	teardown_link(c);
	delay = bq_backoff_next(&c->backoff);
	bq_info(c->log, MOD, "client=%s msg=\"link down\" err=%d reason=\"%s\" retry_ms=%u",
		c->name, err, c->last_error, delay);
	for (struct bq_muser *u = c->u_head; u; u = u->next) {
		if (u->attach_sent) {
			pending_del(c, u->attach_id);
			u->attach_sent = false;
		}
	}
	bq_timer_start(c->timer, delay);
	set_link_state(c, BQ_MC_BACKOFF, err, c->last_error);
	v = users_snapshot(c, &n);
	for (size_t i = 0; i < n && c->state == BQ_MC_BACKOFF; i++) {
		if (!v[i]->dead && (v[i]->state == BQ_MU_SCANNING || v[i]->state == BQ_MU_READY)) {
			set_user_state(v[i], BQ_MU_ATTACHING, c->last_error);
		}
	}
	bq_free(v);
}

static void on_link_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	struct bq_mclient *c = ud;
	char why[256];

	/* reason lives in the link: copy it before the link goes. */
	snprintf(why, sizeof(why), "%s", reason ? reason : "link closed");
	bq_link_free(l);
	if (c->link != l) {
		return;
	}
	c->link = NULL;
	if (c->state == BQ_MC_STOPPED) {
		return;
	}
	client_fail(c, err ? err : -ECONNRESET, why);
}

static void send_hello(struct bq_mclient *c)
{
	uint8_t payload[BQ_NAME_MAX + 16];
	struct bq_hello h = {
		.role = BQ_ROLE_CLIENT,
		.caps = 0,
		.name = c->name,
		.name_len = (uint8_t)strlen(c->name),
	};
	int n = bq_hello_encode(&h, payload, sizeof(payload));

	if (n < 0) {
		client_fail(c, n, "cannot encode HELLO");
		return;
	}
	send_frame(c, BQ_T_HELLO, 0, bq_link_new_msg_id(), 0, NULL, NULL, 0, payload, (size_t)n);
}

static void on_conn(struct bq_conn *conn, unsigned events, void *ud)
{
	struct bq_mclient *c = ud;
	struct bq_link_config lc = {
		.name = c->node_text,
		.max_out_bytes = CLIENT_OUT_MAX,
		.auth = c->cfg.auth,
		.ping_interval_ms = c->cfg.ping_interval_ms,
		.dead_after_ms = c->cfg.dead_after_ms,
	};

	if (events & BQ_CONN_ERROR) {
		char text[300];
		int err = bq_conn_error(conn);

		snprintf(text, sizeof(text), "%s", bq_conn_error_text(conn));
		bq_conn_close(conn);
		c->conn = NULL;
		client_fail(c, err ? err : -EIO, text);
		return;
	}
	if (!(events & BQ_CONN_CONNECTED)) {
		return;
	}
	c->conn = NULL;
	c->link = bq_link_new(c->loop, conn, &lc, c->log);
	if (!c->link) {
		client_fail(c, -ENOMEM, "out of memory");
		return;
	}
	bq_link_set_handlers(c->link, on_link_frame, on_link_close, c);
	bq_timer_start(c->timer, c->cfg.hello_timeout_ms);
	set_link_state(c, BQ_MC_HELLO, 0, NULL);
	if (c->state == BQ_MC_HELLO) {
		send_hello(c);
	}
}

/* One connect attempt. 0, or a negative errno for a failure that happened at once. */
static int client_connect(struct bq_mclient *c, char *err, size_t errlen)
{
	struct bq_addr target;
	char merr[256] = "";
	int rc;

	rc = bq_addrmap_resolve(&c->cfg.node, &target, merr, sizeof(merr));
	if (rc < 0) {
		bq_warn(c->log, MOD, "client=%s msg=\"address map ignored\" err=\"%s\"", c->name,
			merr);
	}
	bq_addr_format(&target, c->node_text, sizeof(c->node_text));
	rc = bq_conn_connect(c->loop, &target, on_conn, c, &c->conn, err, errlen);
	if (rc < 0) {
		c->conn = NULL;
		return rc;
	}
	bq_timer_start(c->timer, c->cfg.connect_timeout_ms);
	set_link_state(c, BQ_MC_CONNECTING, 0, NULL);
	return 0;
}

/* Dial now, or when the connect gate's reservation comes due (state stays as it is). */
static int dial_gated(struct bq_mclient *c, char *err, size_t errlen)
{
	uint32_t wait = c->cfg.connect_gate ? c->cfg.connect_gate(c->cfg.connect_gate_ud) : 0;

	if (wait > 0) {
		c->gate_wait = true;
		bq_timer_start(c->timer, wait);
		return 0;
	}
	c->gate_wait = false;
	return client_connect(c, err, errlen);
}

static void timer_cb(struct bq_timer *t, void *ud)
{
	struct bq_mclient *c = ud;
	char text[BQ_ADDR_STRLEN + 100];
	int rc;

	switch (c->state) {
	case BQ_MC_CONNECTING:
		snprintf(text, sizeof(text), "connect to %s timed out after %u ms", c->node_text,
			 c->cfg.connect_timeout_ms);
		client_fail(c, -ETIMEDOUT, text);
		break;
	case BQ_MC_HELLO:
		snprintf(text, sizeof(text), "no HELLO from %s within %u ms", c->node_text,
			 c->cfg.hello_timeout_ms);
		client_fail(c, -ETIMEDOUT, text);
		break;
	case BQ_MC_UP:
		snprintf(text, sizeof(text), "%s did not answer %s within %u ms", c->node_text,
			 c->scan == SCAN_RUNNING ? "SCAN" : "ATTACH", c->cfg.hello_timeout_ms);
		client_fail(c, -ETIMEDOUT, text);
		break;
	case BQ_MC_BACKOFF:
		c->reconnects++;
		c->state = BQ_MC_IDLE;
		rc = dial_gated(c, text, sizeof(text));
		if (rc < 0) {
			client_fail(c, rc, text);
		}
		break;
	case BQ_MC_IDLE:
		if (c->gate_wait) {
			c->gate_wait = false;
			rc = client_connect(c, text, sizeof(text));
			if (rc < 0) {
				client_fail(c, rc, text);
			}
		}
		break;
	case BQ_MC_STOPPED:
		break;
	}
}

/* ---- public API -------------------------------------------------------------------- */

struct bq_mclient *bq_mclient_new(struct bq_loop *loop, const struct bq_mclient_config *cfg,
				  const struct bq_mclient_cbs *cbs, void *ud, struct bq_log *log)
{
	struct bq_mclient *c = bq_calloc(1, sizeof(*c));
	const char *name = cfg->name && cfg->name[0] ? cfg->name : "blueq-client";

	if (!c) {
		return NULL;
	}
	c->loop = loop;
	c->log = log;
	c->cfg = *cfg;
	c->cfg.name = NULL;
	if (!c->cfg.max_outstanding) {
		c->cfg.max_outstanding = 1024;
	}
	if (!c->cfg.hello_timeout_ms) {
		c->cfg.hello_timeout_ms = 5000;
	}
	if (!c->cfg.connect_timeout_ms) {
		c->cfg.connect_timeout_ms = 10000;
	}
	if (!c->cfg.msg_expire_ms) {
		c->cfg.msg_expire_ms = 600000;
	}
	if (cbs) {
		c->cbs = *cbs;
	}
	c->ud = ud;
	c->state = BQ_MC_IDLE;
	bq_backoff_init(&c->backoff, cfg->backoff_base_ms ? cfg->backoff_base_ms : 100,
			cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 30000, 0);
	c->name = bq_strndup(name, BQ_NAME_MAX);
	c->timer = bq_timer_new(loop, timer_cb, c);
	c->users = bq_map_new();
	c->pending = bq_map_new();
	c->dir_users = bq_map_new();
	c->dir_nodes = bq_map_new();
	bq_addr_format(&c->cfg.node, c->node_text, sizeof(c->node_text));
	if (!c->name || !c->timer || !c->users || !c->pending || !c->dir_users || !c->dir_nodes) {
		bq_mclient_free(c);
		return NULL;
	}
	return c;
}

int bq_mclient_start(struct bq_mclient *c, char *err, size_t errlen)
{
	int rc;

	if (c->started) {
		return c->state == BQ_MC_STOPPED ? -ESHUTDOWN : 0;
	}
	if (!bq_name_valid(c->name, strlen(c->name))) {
		snprintf(err, errlen, "invalid client name '%s'", c->name);
		return -EINVAL;
	}
	rc = dial_gated(c, err, errlen);
	if (rc < 0) {
		snprintf(c->last_error, sizeof(c->last_error), "%s", err);
		return rc;
	}
	c->started = true;
	return 0;
}

void bq_mclient_stop(struct bq_mclient *c)
{
	struct bq_muser **v;
	size_t n;
	bool up = link_up(c);

	if (c->state == BQ_MC_STOPPED) {
		return;
	}
	c->started = true;
	for (struct bq_muser *u = c->u_head; u; u = u->next) {
		if (up && (user_attached(u) || (u->state == BQ_MU_ATTACHING && u->attach_sent))) {
			send_frame(c, BQ_T_DETACH, 0, bq_link_new_msg_id(), 0, u->id, NULL, 0, NULL,
				   0);
		}
		if (u->attach_sent) {
			pending_del(c, u->attach_id);
			u->attach_sent = false;
		}
		drop_outbox(u);
	}
	bq_timer_stop(c->timer);
	c->gate_wait = false;
	if (c->conn) {
		bq_conn_close(c->conn);
		c->conn = NULL;
	}
	if (c->link) {
		/* The DETACHes leave first; on_link_close frees the link. */
		bq_link_close(c->link, true, 0, "client stopped");
	}
	c->state = BQ_MC_STOPPED;
	v = users_snapshot(c, &n);
	for (size_t i = 0; i < n; i++) {
		if (!v[i]->dead) {
			set_user_state(v[i], BQ_MU_DETACHED, "client stopped");
		}
	}
	bq_free(v);
	set_link_state(c, BQ_MC_STOPPED, 0, "client stopped");
}

bool bq_mclient_busy(const struct bq_mclient *c)
{
	return c->conn != NULL || c->link != NULL;
}

void bq_mclient_free(struct bq_mclient *c)
{
	struct bq_muser *u, *next;

	if (!c) {
		return;
	}
	if (c->conn) {
		bq_conn_close(c->conn);
	}
	bq_link_free(c->link);
	for (u = c->u_head; u; u = next) {
		next = u->next;
		drop_outbox(u);
		free_user_mem(u);
	}
	for (int i = 0; i < 2; i++) {
		struct bq_map *m = i ? c->dir_nodes : c->dir_users;
		size_t pos = 0, klen;
		const char *k;
		struct dir_rec *r;

		if (!m) {
			continue;
		}
		while ((r = bq_map_next(m, &pos, &k, &klen))) {
			rec_free(r);
		}
		bq_map_free(m);
	}
	bq_map_free(c->users);
	bq_map_free(c->pending);
	bq_dedupe_free(c->dedupe);
	bq_timer_free(c->timer);
	bq_free(c->name);
	bq_free(c);
}

enum bq_mclient_state bq_mclient_state(const struct bq_mclient *c)
{
	return c->state;
}

const char *bq_mclient_last_error(const struct bq_mclient *c)
{
	return c->last_error;
}

uint32_t bq_mclient_reconnects(const struct bq_mclient *c)
{
	return c->reconnects;
}

uint32_t bq_mclient_rtt_us(const struct bq_mclient *c)
{
	return c->link ? bq_link_stats(c->link)->rtt_us : 0;
}

const char *bq_mclient_node_text(const struct bq_mclient *c)
{
	return c->node_text;
}

void bq_mclient_keep_directory(struct bq_mclient *c)
{
	struct bq_muser *u;

	if (!c->cfg.no_directory) {
		return;
	}
	c->cfg.no_directory = false;
	if (c->scan == SCAN_RUNNING) {
		/* Entries already passed by were not kept: scan again once this one ends. */
		c->rescan = true;
		return;
	}
	if (c->scan == SCAN_NONE || !link_up(c)) {
		return; /* the next attach (or the next link) scans from 0 anyway */
	}
	u = first_attached(c);
	if (!u) {
		c->scan = SCAN_NONE; /* nobody to scan for: the next attach does it */
		return;
	}
	send_scan(c, u);
	handshake_progress(c, true);
}

bool bq_mclient_keeps_directory(const struct bq_mclient *c)
{
	return !c->cfg.no_directory;
}

struct bq_muser *bq_mclient_attach(struct bq_mclient *c, const char *user_id, const char *name,
				   void *user_ud)
{
	size_t idlen = user_id ? strlen(user_id) : 0;
	struct bq_muser *u;

	if (!user_id || idlen > BQ_USER_ID_MAX || !bq_user_id_valid(user_id, idlen)) {
		return NULL;
	}
	if (!name) {
		name = user_id;
	}
	if (strlen(name) > BQ_NAME_MAX || !bq_name_valid(name, strlen(name))) {
		return NULL;
	}
	if (bq_map_get(c->users, user_id, idlen)) {
		return NULL;
	}
	u = bq_calloc(1, sizeof(*u));
	if (!u) {
		return NULL;
	}
	u->kind = PEND_ATTACH;
	u->c = c;
	u->ud = user_ud;
	u->state = BQ_MU_ATTACHING;
	u->id = bq_strdup(user_id);
	u->name = bq_strdup(name);
	if (!u->id || !u->name || bq_map_set(c->users, user_id, idlen, u) < 0) {
		free_user_mem(u);
		return NULL;
	}
	u->prev = c->u_tail;
	if (c->u_tail) {
		c->u_tail->next = u;
	} else {
		c->u_head = u;
	}
	c->u_tail = u;
	c->n_users++;
	if (link_up(c)) {
		send_attach(u);
		handshake_progress(c, false);
	}
	return u;
}

void bq_muser_detach(struct bq_muser *u)
{
	struct bq_mclient *c;

	if (!u || u->dead) {
		return;
	}
	c = u->c;
	if (link_up(c) && (user_attached(u) || (u->state == BQ_MU_ATTACHING && u->attach_sent))) {
		send_frame(c, BQ_T_DETACH, 0, bq_link_new_msg_id(), 0, u->id, NULL, 0, NULL, 0);
	}
	if (u->attach_sent) {
		pending_del(c, u->attach_id);
		u->attach_sent = false;
	}
	drop_outbox(u);
	bq_map_remove(c->users, u->id, strlen(u->id));
	if (u->prev) {
		u->prev->next = u->next;
	} else {
		c->u_head = u->next;
	}
	if (u->next) {
		u->next->prev = u->prev;
	} else {
		c->u_tail = u->prev;
	}
	c->n_users--;
	/*
	 * Keep next: a walk over a snapshot may be standing on u. The memory goes after this
	 * dispatch round; if even that cannot be queued, leaking one user beats a crash.
	 */
	u->dead = true;
	u->state = BQ_MU_DETACHED;
	if (bq_loop_defer(c->loop, free_user_mem, u) < 0) {
		bq_warn(c->log, MOD,
			"client=%s user_id=%s msg=\"leaked detached user (no memory)\"", c->name,
			u->id);
	}
	handshake_progress(c, false);
}

enum bq_muser_state bq_muser_state(const struct bq_muser *u)
{
	return u->state;
}

const char *bq_muser_id(const struct bq_muser *u)
{
	return u->id;
}

void *bq_muser_data(const struct bq_muser *u)
{
	return u->ud;
}

struct bq_mclient *bq_muser_client(const struct bq_muser *u)
{
	return u->c;
}

uint32_t bq_muser_outstanding(const struct bq_muser *u)
{
	return u->n_out;
}
