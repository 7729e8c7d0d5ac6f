/* SPDX-License-Identifier: MIT */
/*
 * The node engine. Design notes: docs/internals/node.md; behaviour: docs/architecture.md
 * ("Node behaviour"). Vocabulary used below:
 *   nlink    one link (accepted or dialed) with what the node knows about its peer
 *   route_frame  the one decision procedure for MSG and ACK frames (local delivery,
 *            store, forward along a route, hold for a route, or flood)
 *   in / out the bytes of a frame as received (delivered to local clients) and as
 *            sent onward (ttl - 1, hops + 1, re-signed); out is NULL when the TTL is
 *            exhausted
 */
#include "mesh/node.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/alloc.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "mesh/directory.h"
#include "mesh/link.h"
#include "mesh/store.h"
#include "proto/dedupe.h"
#include "transport/addr.h"
#include "transport/addrmap.h"
#include "transport/conn.h"

#define MOD "node"

/* Directory bounds: a mesh of a few thousand nodes and a quarter million users. */
#define NODE_MAX_USERS 262144
#define NODE_MAX_NODES 4096
/* Users one (shared-mode) client link may carry. */
#define LINK_MAX_USERS 20000
/* Links that have not said HELLO yet, and how long they may stay silent. */
#define PENDING_MAX 1024
#define HELLO_TIMEOUT_MS 10000
/*
 * Output queue per link. A SCAN answer for a big directory is queued whole, so the
 * bound is generous; it is a limit, not an allocation.
 */
#define NODE_LINK_OUT_MAX (16u << 20)
/* Every held frame (mailboxes and route-hold queues) together. */
#define NODE_HELD_BYTES_MAX ((size_t)256 << 20)
/* Payload room in a frame whatever its ids, with a tag. */
#define NODE_PAYLOAD_MAX BQ_PAYLOAD_SAFE_MAX
#define NODE_NEIGH_MAX 255
#define REANNOUNCE_MIN_MS 50
#define REANNOUNCE_SPREAD_MS 450
#define REANNOUNCE_RATE_MS 1000
#define SWEEP_MAX_MS 1000
#define SWEEP_MIN_MS 50
#define ACK_REASON_MAX 200

enum nrole { ROLE_NONE, ROLE_NODE, ROLE_CLIENT };

struct dialer;

struct nlink {
	struct bq_node *n;
	struct bq_link *link;
	struct nlink *prev, *next;
	enum nrole role;
	struct dialer *dialer; /* set for links this node dialed */
	uint8_t peer[BQ_NODE_ADDR_LEN];
	char peer_name[BQ_NAME_MAX + 1];
	uint64_t created_ms;
	bool subscribed;
	bool up;                /* a node link past HELLO (counted in n_peers) */
	struct bq_duser *users; /* attached here (client links) */
	uint32_t n_users;
	unsigned id;
};

struct dialer {
	struct bq_node *n;
	char *text;
	struct bq_addr addr;
	struct bq_backoff bo;
	struct bq_timer *timer;
	struct nlink *nl;
	bool warned; /* the failure is logged once per outage, not per retry */
};

struct bq_node {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_node_config cfg;
	char *name;
	char **listen;
	size_t n_listen;
	uint8_t addr[BQ_NODE_ADDR_LEN];
	char mac[BQ_BDADDR_STRLEN];
	const struct bq_auth *auth;

	struct bq_listener **listeners;
	size_t n_listeners;
	struct dialer *dialers;
	size_t n_dialers;

	struct nlink *links;
	uint32_t n_pending, n_clients, n_peers, n_subscribed, n_local;
	unsigned next_link_id;

	struct bq_dir *dir;
	struct bq_dnode *self;
	struct bq_dedupe *dedupe;
	size_t held_bytes;

	struct bq_timer *announce_timer, *reannounce_timer, *sweep_timer;
	uint64_t last_reannounce_ms;
	uint32_t ann_seq;
	uint64_t boot_id;
	uint64_t push_cursor, ann_cursor;
	bool neigh_dirty;     /* send a delta announce: the neighbour list changed */
	bool want_full;       /* send a full announce with REANNOUNCE this round */
	bool hook_added;
	bool started, stopping;
	uint64_t start_ms;
	uint64_t nofile_limit;
	uint64_t scans_summary; /* SCANs answered with SUMMARY (ctl "stats" only) */

	struct bq_node_stats stats;     /* the node's own counters */
	struct bq_link_stats closed_ls; /* link counters of links already gone */
	struct bq_node_stats view;      /* what bq_node_stats hands out */
};

static void route_frame(struct bq_node *n, const struct bq_frame *f, const uint8_t *in,
			size_t in_len, const uint8_t *out, size_t out_len, struct nlink *from,
			struct nlink *client);
static void dial(struct dialer *d);

/* ---- small helpers ----------------------------------------------------------------- */

static uint64_t now_ms(const struct bq_node *n)
{
	return bq_loop_now_ms(n->loop);
}

static bool addr_is_self(const struct bq_node *n, const uint8_t a[BQ_NODE_ADDR_LEN])
{
	return memcmp(a, n->addr, BQ_NODE_ADDR_LEN) == 0;
}

static bool user_is_local(const struct bq_node *n, const struct bq_duser *u)
{
	return addr_is_self(n, u->home);
}

static const char *fmt_mac(const uint8_t a[BQ_NODE_ADDR_LEN], char *buf)
{
	return bq_bdaddr_format(a, buf);
}

/* A printable copy of wire text (ids, names) for log lines. */
static const char *fmt_text(const char *s, size_t len, char *buf, size_t cap)
{
	char raw[BQ_NAME_MAX * 4 + 1];

	snprintf(raw, sizeof(raw), "%.*s", (int)len, s ? s : "");
	return bq_log_quote(raw, buf, cap);
}

static uint32_t jitter(uint32_t base_ms, uint32_t spread_ms)
{
	return base_ms + (spread_ms ? randombytes_uniform(spread_ms + 1) : 0);
}

static bool seen(struct bq_node *n, const uint8_t origin[BQ_NODE_ADDR_LEN], uint64_t id,
		 uint32_t extra)
{
	return bq_dedupe_check_insert(n->dedupe, bq_dedupe_key(origin, id, extra), now_ms(n)) == 1;
}

/*
 * Duplicate suppression key of a MSG or ACK: (origin, msg_id, attempt) as the protocol
 * says, with the source user folded in so that two users who happen to pick the same
 * id at one node are never taken for one message.
 */
static bool seen_frame(struct bq_node *n, const struct bq_frame *f)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < f->src_len; i++) {
		h = (h ^ (uint8_t)f->src[i]) * 16777619u;
	}
	return seen(n, f->origin, f->msg_id, (uint32_t)f->attempt | (h << 8));
}

static void frame_init(struct bq_node *n, struct bq_frame *f, uint8_t type, uint64_t msg_id)
{
	memset(f, 0, sizeof(*f));
	f->version = BQ_PROTO_VERSION;
	f->type = type;
	f->ttl = n->cfg.ttl;
	f->msg_id = msg_id;
	memcpy(f->origin, n->addr, BQ_NODE_ADDR_LEN);
	f->timestamp_ms = bq_wall_ms();
}

/* Encode with a tag, signed once with the network key; every link can carry the result. */
static int frame_seal(struct bq_node *n, struct bq_frame *f, uint8_t *buf, size_t cap)
{
	int len;

	f->flags |= BQ_FF_AUTH;
	len = bq_frame_encode(f, buf, cap);
	if (len < 0) {
		return len;
	}
	bq_auth_sign(n->auth, buf, (size_t)len);
	return len;
}

/* Identity of a message inside one mailbox: (source user, msg_id). */
static uint64_t store_tag(const struct bq_frame *f)
{
	uint8_t h[BQ_NODE_ADDR_LEN] = { 0 };

	for (size_t i = 0; i < f->src_len; i++) {
		uint8_t *b = &h[i % BQ_NODE_ADDR_LEN];

		*b = (uint8_t)(*b * 31u + (uint8_t)f->src[i]);
	}
	return bq_dedupe_key(h, f->msg_id, f->type);
}

/* ---- links: bookkeeping -------------------------------------------------------------- */

static void link_user_add(struct nlink *nl, struct bq_duser *u)
{
	u->link = nl;
	u->lprev = NULL;
	u->lnext = nl->users;
	if (nl->users) {
		nl->users->lprev = u;
	}
	nl->users = u;
	nl->n_users++;
	nl->n->n_local++;
}

static void link_user_remove(struct nlink *nl, struct bq_duser *u)
{
	if (u->lprev) {
		u->lprev->lnext = u->lnext;
	} else {
		nl->users = u->lnext;
	}
	if (u->lnext) {
		u->lnext->lprev = u->lprev;
	}
	u->lprev = u->lnext = NULL;
	u->link = NULL;
	nl->n_users--;
	nl->n->n_local--;
}

/* A change to one of this node's own users: new version, confirmed now. */
static void local_user_set(struct bq_node *n, struct bq_duser *u, uint8_t presence)
{
	u->presence = presence;
	u->derived = false;
	memcpy(u->home, n->addr, BQ_NODE_ADDR_LEN);
	u->version = bq_dir_stamp(u->version, bq_wall_ms());
	u->confirmed_ms = now_ms(n);
	bq_dir_touch(n->dir, &u->ch);
}

static void user_detach(struct bq_node *n, struct bq_duser *u, const char *why)
{
	char id[BQ_USER_ID_MAX * 4 + 3];

	link_user_remove(u->link, u);
	local_user_set(n, u, BQ_PRES_OFFLINE);
	bq_info(n->log, MOD, "msg=\"user detached\" user_id=%s reason=\"%s\"",
		fmt_text(u->id, u->id_len, id, sizeof(id)), why);
}

/* Close a link for a protocol violation (ERROR first so the peer learns why). */
static void link_violation(struct nlink *nl, uint16_t code, const char *text)
{
	bq_warn(nl->n->log, MOD, "link=%s msg=\"closing link\" reason=\"%s\"",
		bq_link_name(nl->link), text);
	bq_link_send_error(nl->link, code, text);
	bq_link_close(nl->link, true, -EPROTO, text);
}

static void link_send_raw(struct bq_node *n, struct nlink *nl, const uint8_t *buf, size_t len)
{
	if (bq_link_send_raw(nl->link, buf, len) < 0) {
		bq_debug(n->log, MOD, "link=%s msg=\"frame not queued\" pending=%zu",
			 bq_link_name(nl->link), bq_link_pending(nl->link));
	}
}

/* Recompute this node's neighbour list (unique peers with a link up). */
static size_t own_neighbours(struct bq_node *n, uint8_t *out)
{
	size_t count = 0;

	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		bool dup = false;

		if (nl->role != ROLE_NODE || !bq_link_open(nl->link)) {
			continue;
		}
		for (size_t i = 0; i < count && !dup; i++) {
			dup = memcmp(out + i * BQ_NODE_ADDR_LEN, nl->peer, BQ_NODE_ADDR_LEN) == 0;
		}
		if (!dup && count < NODE_NEIGH_MAX) {
			memcpy(out + count * BQ_NODE_ADDR_LEN, nl->peer, BQ_NODE_ADDR_LEN);
			count++;
		}
	}
	return count;
}

static void neighbours_changed(struct bq_node *n)
{
	uint8_t neigh[NODE_NEIGH_MAX * BQ_NODE_ADDR_LEN];
	size_t count = own_neighbours(n, neigh);

	if (bq_dir_node_set_neigh(n->self, neigh, (uint8_t)count) > 0) {
		bq_dir_touch(n->dir, &n->self->ch);
		n->neigh_dirty = true;
	}
}

/* ---- direct answers to a client -------------------------------------------------------- */

static void ack_direct(struct bq_node *n, struct nlink *nl, const char *dst, size_t dst_len,
		       uint64_t acked_id, uint8_t status, const char *reason)
{
	uint8_t payload[ACK_REASON_MAX + 16];
	struct bq_ack a = {
		.acked_id = acked_id,
		.status = status,
		.reason = reason,
		.reason_len = (uint8_t)strnlen(reason, ACK_REASON_MAX),
	};
	struct bq_frame f;
	int len = bq_ack_encode(&a, payload, sizeof(payload));

	if (len < 0) {
		return;
	}
	frame_init(n, &f, BQ_T_ACK, bq_link_new_msg_id());
	f.ttl = 0;
	if (dst_len && dst_len <= BQ_USER_ID_MAX) {
		f.dst = dst;
		f.dst_len = (uint8_t)dst_len;
	}
	f.payload = payload;
	f.payload_len = (uint16_t)len;
	bq_link_send(nl->link, &f);
}

/*
 * A node-generated ACK about a message from user dst (STORED, EXPIRED, REJECTED):
 * routed back like any unicast, with an empty source and a fresh id.
 */
static void ack_route(struct bq_node *n, const char *dst, size_t dst_len, uint64_t acked_id,
		      uint8_t status, const char *reason)
{
	uint8_t payload[ACK_REASON_MAX + 16];
	uint8_t buf[BQ_FRAME_HEADER_MIN + BQ_USER_ID_MAX + sizeof(payload) + BQ_TAG_LEN];
	struct bq_ack a = {
		.acked_id = acked_id,
		.status = status,
		.reason = reason,
		.reason_len = (uint8_t)strnlen(reason, ACK_REASON_MAX),
	};
	struct bq_frame f;
	int plen = bq_ack_encode(&a, payload, sizeof(payload));
	int len;

	if (plen < 0 || dst_len == 0 || dst_len > BQ_USER_ID_MAX) {
		return;
	}
	frame_init(n, &f, BQ_T_ACK, bq_link_new_msg_id());
	f.dst = dst;
	f.dst_len = (uint8_t)dst_len;
	f.payload = payload;
	f.payload_len = (uint16_t)plen;
	len = frame_seal(n, &f, buf, sizeof(buf));
	if (len < 0) {
		return;
	}
	seen_frame(n, &f);
	route_frame(n, &f, buf, (size_t)len, buf, (size_t)len, NULL, NULL);
}

/* ---- delivery, store, hold, flood ------------------------------------------------------ */

static void flood(struct bq_node *n, const uint8_t *out, size_t len, struct nlink *from)
{
	bool any = false;

	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		if (nl == from || nl->role != ROLE_NODE || !bq_link_open(nl->link)) {
			continue;
		}
		link_send_raw(n, nl, out, len);
		any = true;
	}
	if (any) {
		n->stats.flooded++;
	}
}

static bool is_sender(const struct bq_duser *u, const struct bq_frame *f)
{
	return f->src_len == u->id_len && memcmp(f->src, u->id, u->id_len) == 0;
}

/* One copy per client link that carries a user other than the sender. */
static void deliver_broadcast(struct bq_node *n, const struct bq_frame *f, const uint8_t *in,
			      size_t len)
{
	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		if (nl->role != ROLE_CLIENT || nl->n_users == 0 || !bq_link_open(nl->link)) {
			continue;
		}
		if (nl->n_users == 1 && is_sender(nl->users, f)) {
			continue;
		}
		link_send_raw(n, nl, in, len);
		n->stats.delivered_local++;
	}
}

static void store_for(struct bq_node *n, struct bq_duser *u, const struct bq_frame *f,
		      const uint8_t *in, size_t len)
{
	bool is_msg = f->type == BQ_T_MSG;
	uint64_t tag = store_tag(f);

	if (bq_fifo_has_tag(&u->store, tag)) {
		/* A retransmission of a message already held: confirm again, keep one copy. */
		if (is_msg) {
			ack_route(n, f->src, f->src_len, f->msg_id, BQ_ACK_STORED,
				  "held for an offline user");
		}
		return;
	}
	if (u->store.count >= n->cfg.store_max_per_user ||
	    n->held_bytes + len > NODE_HELD_BYTES_MAX) {
		n->stats.store_dropped++;
		if (is_msg) {
			ack_route(n, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				  "mailbox full");
		}
		return;
	}
	if (bq_fifo_push(&u->store, in, len, now_ms(n), tag) < 0) {
		n->stats.store_dropped++;
		if (is_msg) {
			ack_route(n, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				  "out of memory at the home node");
		}
		return;
	}
	n->held_bytes += len;
	n->stats.stored++;
	if (is_msg) {
		ack_route(n, f->src, f->src_len, f->msg_id, BQ_ACK_STORED,
			  "held for an offline user");
	}
}

static void deliver_or_store(struct bq_node *n, struct bq_duser *u, const struct bq_frame *f,
			     const uint8_t *in, size_t len)
{
	struct nlink *nl = u->link;

	if (nl && bq_link_open(nl->link)) {
		link_send_raw(n, nl, in, len);
		n->stats.delivered_local++;
		if (f->type == BQ_T_ACK) {
			n->stats.acks_routed++;
		}
		return;
	}
	store_for(n, u, f, in, len);
}

static void hold_for(struct bq_node *n, struct bq_dnode *dn, const struct bq_frame *f,
		     const uint8_t *out, size_t len)
{
	if (dn->hold.count >= n->cfg.route_hold_max || n->held_bytes + len > NODE_HELD_BYTES_MAX ||
	    bq_fifo_push(&dn->hold, out, len, now_ms(n), 0) < 0) {
		n->stats.store_dropped++;
		if (f->type == BQ_T_MSG && !(f->flags & BQ_FF_BROADCAST)) {
			ack_route(n, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				  "no route to the destination and its queue is full");
		}
		return;
	}
	n->held_bytes += len;
	n->stats.route_held++;
}

/*
 * The routing decision for MSG and ACK frames (see the file comment for in/out).
 * from: the node link it came on (NULL when originated here); client: the client
 * link of a local sender (answers such as UNKNOWN_USER go straight back there).
 */
static void route_frame(struct bq_node *n, const struct bq_frame *f, const uint8_t *in,
			size_t in_len, const uint8_t *out, size_t out_len, struct nlink *from,
			struct nlink *client)
{
	struct bq_duser *u;
	struct bq_dnode *dn;
	bool is_ack = f->type == BQ_T_ACK;

	if (f->flags & BQ_FF_BROADCAST) {
		if (is_ack) {
			return;
		}
		deliver_broadcast(n, f, in, in_len);
		if (out) {
			flood(n, out, out_len, from);
		} else if (from) {
			n->stats.ttl_expired++;
		}
		return;
	}
	u = bq_dir_user(n->dir, f->dst, f->dst_len);
	if (u && user_is_local(n, u)) {
		deliver_or_store(n, u, f, in, in_len);
		return;
	}
	if (!u && client) {
		if (!is_ack) {
			char reason[BQ_USER_ID_MAX + 24];

			snprintf(reason, sizeof(reason), "unknown user '%.*s'", (int)f->dst_len,
				 f->dst);
			n->stats.unknown_user++;
			ack_direct(n, client, f->src, f->src_len, f->msg_id, BQ_ACK_UNKNOWN_USER,
				   reason);
		}
		return;
	}
	if (!out) {
		n->stats.ttl_expired++;
		return;
	}
	if (is_ack) {
		n->stats.acks_routed++;
	}
	dn = u ? bq_dir_node(n->dir, u->home) : NULL;
	if (!dn) {
		/* Home unknown: flooding is the fallback; duplicate suppression bounds it. */
		flood(n, out, out_len, from);
		return;
	}
	if (dn->route) {
		struct nlink *via = dn->route;

		if (via != from && bq_link_open(via->link)) {
			link_send_raw(n, via, out, out_len);
			if (from) {
				n->stats.relayed++;
			}
			return;
		}
		if (via == from) {
			/* The route points back where it came from: views disagree for a moment. */
			flood(n, out, out_len, from);
			return;
		}
	}
	hold_for(n, dn, f, out, out_len);
}

/* A route to dn exists again: send (re-route) everything held for it. */
static void flush_hold(struct bq_node *n, struct bq_dnode *dn)
{
	struct bq_fifo q;
	struct bq_fifo_item *it;
	char mac[BQ_BDADDR_STRLEN];

	if (dn->hold.count == 0) {
		return;
	}
	bq_info(n->log, MOD, "msg=\"route appeared, flushing held frames\" node=%s count=%u",
		fmt_mac(dn->addr, mac), dn->hold.count);
	bq_fifo_take(&dn->hold, &q);
	while ((it = bq_fifo_pop(&q))) {
		struct bq_frame f;

		n->held_bytes -= it->len;
		if (bq_frame_decode(it->data, it->len, &f) == (int)it->len) {
			n->stats.route_flushed++;
			route_frame(n, &f, it->data, it->len, it->data, it->len, NULL, NULL);
		}
		bq_free(it);
	}
}

/* ---- routes and the topology ----------------------------------------------------------- */

static void set_route(struct bq_node *n, struct bq_dnode *dn, struct nlink *nl, uint8_t hops,
		      uint32_t seq)
{
	dn->route = nl;
	dn->hops = hops;
	dn->route_seq = seq;
	dn->route_ms = now_ms(n);
	flush_hold(n, dn);
}

/*
 * Learn from one copy of an announce (duplicates included: they tell us about other
 * paths). Fewer hops win; the route's own link refreshes it; a route not confirmed for
 * two announce periods gives way to any other.
 */
static void learn_route(struct bq_node *n, struct bq_dnode *dn, struct nlink *nl, uint8_t dist,
			uint32_t seq)
{
	uint64_t now = now_ms(n);
	uint64_t stale = 2ull * n->cfg.announce_interval_ms;

	if (dn == n->self) {
		return;
	}
	if (dn->route == nl) {
		if (seq != dn->route_seq || dist < dn->hops) {
			dn->hops = dist;
			dn->route_seq = seq;
		}
		dn->route_ms = now;
		return;
	}
	if (!dn->route || dist < dn->hops || now - dn->route_ms > stale) {
		set_route(n, dn, nl, dist, seq);
	}
}

static void drop_routes_via(struct bq_node *n, struct nlink *nl)
{
	size_t pos = 0;
	struct bq_dnode *dn;

	while ((dn = bq_dir_next_node(n->dir, &pos))) {
		if (dn->route == nl) {
			dn->route = NULL;
			dn->hops = 0;
		}
	}
}

static void node_down(struct bq_node *n, struct bq_dnode *dn)
{
	size_t pos = 0;
	struct bq_duser *u;
	char mac[BQ_BDADDR_STRLEN];
	unsigned users = 0;

	dn->up = false;
	dn->route = NULL;
	bq_dir_touch(n->dir, &dn->ch);
	while ((u = bq_dir_next_user(n->dir, &pos))) {
		if (memcmp(u->home, dn->addr, BQ_NODE_ADDR_LEN) == 0 &&
		    u->presence == BQ_PRES_ONLINE) {
			u->presence = BQ_PRES_OFFLINE;
			u->derived = true;
			bq_dir_touch(n->dir, &u->ch);
			users++;
		}
	}
	bq_info(n->log, MOD, "msg=\"node expired\" node=%s users_offline=%u",
		fmt_mac(dn->addr, mac), users);
}

static struct bq_dnode *node_get_or_add(struct bq_node *n, const uint8_t addr[BQ_NODE_ADDR_LEN],
					bool *created)
{
	struct bq_dnode *dn = bq_dir_node(n->dir, addr);
	int err = 0;

	*created = false;
	if (dn) {
		return dn;
	}
	dn = bq_dir_node_add(n->dir, addr, &err);
	if (!dn) {
		bq_warn(n->log, MOD, "msg=\"node record not added\" err=%d", err);
		return NULL;
	}
	*created = true;
	return dn;
}

/* ---- the directory: other nodes' views ------------------------------------------------- */

/* Re-send a mailbox after its user moved to another home node. */
static void forward_store(struct bq_node *n, struct bq_duser *u)
{
	struct bq_fifo q;
	struct bq_fifo_item *it;

	bq_fifo_take(&u->store, &q);
	while ((it = bq_fifo_pop(&q))) {
		struct bq_frame f;

		n->held_bytes -= it->len;
		if (bq_frame_decode(it->data, it->len, &f) == (int)it->len) {
			route_frame(n, &f, it->data, it->len, it->data, it->len, NULL, NULL);
		}
		bq_free(it);
	}
}

static void remote_user(struct bq_node *n, const struct bq_dir_entry *e,
			const uint8_t home[BQ_NODE_ADDR_LEN])
{
	struct bq_duser *u;
	bool was_local;
	int r;

	if (e->kind != BQ_DIR_USER || e->presence > BQ_PRES_GONE) {
		return;
	}
	u = bq_dir_user(n->dir, e->id, e->id_len);
	was_local = u && user_is_local(n, u);
	if (addr_is_self(n, home)) {
		/*
		 * Another node's view of one of our own users: we are the authority. A view at
		 * or above our version (we restarted and forgot) is overtaken by a fresh stamp.
		 */
		int err = 0;

		if (!u) {
			u = bq_dir_user_add(n->dir, e->id, e->id_len, &err);
			if (!u) {
				return;
			}
			bq_dir_set_name(u->name, &u->name_len, e->name, e->name_len);
			u->version = e->version;
			local_user_set(n, u, BQ_PRES_OFFLINE);
		} else if (e->version > u->version ||
			   (e->version == u->version && e->presence != u->presence)) {
			u->version = e->version;
			local_user_set(n, u, u->link ? BQ_PRES_ONLINE : BQ_PRES_OFFLINE);
		}
		return;
	}
	if (was_local && e->version <= u->version) {
		return;
	}
	if (was_local && u->link) {
		/* Attached elsewhere later than here: the newer attachment wins. */
		link_user_remove(u->link, u);
	}
	r = bq_dir_apply_user(n->dir, e, home, now_ms(n), &u);
	if (r < 0 && r != -EINVAL) {
		bq_debug(n->log, MOD, "msg=\"user record not added\" err=%d", r);
	}
	if (r > 0 && was_local && u && !user_is_local(n, u) && u->store.count) {
		forward_store(n, u);
	}
}

static void remote_node_entry(struct bq_node *n, const struct bq_dir_entry *e)
{
	struct bq_dnode *dn;
	bool created, changed;
	uint64_t now = now_ms(n);
	uint64_t age = (uint64_t)e->age_s * 1000;
	uint64_t confirmed = now > age ? now - age : 0;

	if (addr_is_self(n, e->node)) {
		return;
	}
	dn = node_get_or_add(n, e->node, &created);
	if (!dn) {
		return;
	}
	if (!created && confirmed <= dn->heard_ms) {
		return;
	}
	changed = created;
	if (bq_dir_set_name(dn->name, &dn->name_len, e->name, e->name_len)) {
		changed = true;
	}
	if (bq_dir_node_set_neigh(dn, e->neigh, e->n_neigh) > 0) {
		changed = true;
	}
	dn->heard_ms = confirmed;
	if (!dn->up && now - confirmed < n->cfg.expiry_ms) {
		dn->up = true;
		changed = true;
	}
	if (changed) {
		bq_dir_touch(n->dir, &dn->ch);
	}
}

/* ---- announces --------------------------------------------------------------------- */

struct ann_out {
	struct bq_node *n;
	uint8_t aflags;
	bool open;
	unsigned frames;
	uint32_t seq;
	struct bq_dirw w;
	uint8_t payload[NODE_PAYLOAD_MAX];
};

static void ann_open(struct ann_out *o)
{
	struct bq_node *n = o->n;
	struct bq_announce hdr = {
		.seq = ++n->ann_seq,
		.aflags = o->aflags,
		.name = n->name,
		.name_len = (uint8_t)strlen(n->name),
		.n_neigh = n->self->n_neigh,
		.neigh = n->self->neigh,
	};

	o->seq = hdr.seq;
	o->open = bq_dirw_init_announce(&o->w, o->payload, sizeof(o->payload), &hdr) == 0;
}

static void ann_emit(struct ann_out *o)
{
	struct bq_node *n = o->n;
	uint8_t buf[BQ_FRAME_MAX];
	struct bq_frame f;
	size_t plen = bq_dirw_finish(&o->w, 0);
	int len;

	o->open = false;
	o->frames++;
	/* The boot id in the upper half keeps a restarted node's ids apart from old ones. */
	frame_init(n, &f, BQ_T_ANNOUNCE, (n->boot_id << 32) | o->seq);
	f.flags = BQ_FF_BROADCAST;
	f.payload = o->payload;
	f.payload_len = (uint16_t)plen;
	len = frame_seal(n, &f, buf, sizeof(buf));
	if (len < 0) {
		bq_warn(n->log, MOD, "msg=\"announce not encoded\" err=%d", len);
		return;
	}
	n->self->seq = o->seq;
	seen(n, n->addr, f.msg_id, 0);
	n->stats.announces_sent++;
	flood(n, buf, (size_t)len, NULL);
}

static void ann_add(struct ann_out *o, const struct bq_duser *u)
{
	struct bq_dir_entry e;

	if (!o->open) {
		ann_open(o);
	}
	bq_dir_user_entry(u, now_ms(o->n), &e);
	e.age_s = 0;
	if (bq_dirw_add(&o->w, &e) == -ENOSPC) {
		ann_emit(o);
		ann_open(o);
		bq_dirw_add(&o->w, &e);
	}
}

static void ann_close(struct ann_out *o)
{
	if (!o->open && o->frames == 0) {
		ann_open(o);
	}
	if (o->open) {
		ann_emit(o);
	}
}

static struct ann_out *ann_new(struct bq_node *n, uint8_t aflags)
{
	struct ann_out *o = bq_malloc(sizeof(*o));

	if (o) {
		o->n = n;
		o->aflags = aflags;
		o->open = false;
		o->frames = 0;
	}
	return o;
}

static void announce_full(struct bq_node *n, uint8_t extra_flags)
{
	struct ann_out *o;
	size_t pos = 0;
	struct bq_duser *u;

	if (n->n_peers == 0) {
		return;
	}
	o = ann_new(n, BQ_ANNF_FULL | extra_flags);
	if (!o) {
		return;
	}
	while ((u = bq_dir_next_user(n->dir, &pos))) {
		if (user_is_local(n, u)) {
			ann_add(o, u);
		}
	}
	ann_close(o);
	bq_free(o);
}

/* Local users changed since the last delta, and/or our neighbours changed. */
static void announce_delta(struct bq_node *n)
{
	struct ann_out *o;
	bool any = n->neigh_dirty;

	n->neigh_dirty = false;
	if (n->n_peers == 0) {
		n->ann_cursor = bq_dir_cursor(n->dir);
		return;
	}
	o = ann_new(n, 0);
	if (!o) {
		return;
	}
	for (struct bq_dchg *c = bq_dir_changes_after(n->dir, n->ann_cursor); c; c = c->next) {
		if (c->kind == BQ_DIR_USER && user_is_local(n, bq_dchg_user(c))) {
			ann_add(o, bq_dchg_user(c));
			any = true;
		}
	}
	n->ann_cursor = bq_dir_cursor(n->dir);
	if (any) {
		ann_close(o);
	}
	bq_free(o);
}

static void reannounce_cb(struct bq_timer *t, void *ud)
{
	struct bq_node *n = ud;

	n->last_reannounce_ms = now_ms(n);
	announce_full(n, 0);
}

/* Someone asked (REANNOUNCE): announce within 50-500 ms, at most once a second. */
static void schedule_reannounce(struct bq_node *n)
{
	uint64_t now = now_ms(n);
	uint64_t delay = jitter(REANNOUNCE_MIN_MS, REANNOUNCE_SPREAD_MS);
	uint64_t earliest = n->last_reannounce_ms ? n->last_reannounce_ms + REANNOUNCE_RATE_MS : 0;

	if (bq_timer_active(n->reannounce_timer)) {
		return;
	}
	if (now + delay < earliest) {
		delay = earliest - now;
	}
	bq_timer_start(n->reannounce_timer, delay);
}

static void announce_timer_cb(struct bq_timer *t, void *ud)
{
	struct bq_node *n = ud;
	uint32_t base = n->cfg.announce_interval_ms;

	announce_full(n, 0);
	/* ±25 % so that nodes started together do not announce in lockstep. */
	bq_timer_start(t, jitter(base - base / 4, base / 2));
}

static void on_announce(struct bq_node *n, struct nlink *nl, const struct bq_frame *f,
			const uint8_t *raw, size_t len)
{
	struct bq_announce a;
	struct bq_dnode *dn;
	struct bq_dir_iter it;
	struct bq_dir_entry e;
	bool created, changed;
	int r;

	if (bq_announce_decode(f, &a) < 0) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "malformed ANNOUNCE payload");
		return;
	}
	if (addr_is_self(n, f->origin)) {
		n->stats.duplicates_dropped++;
		return;
	}
	dn = node_get_or_add(n, f->origin, &created);
	if (!dn) {
		return;
	}
	learn_route(n, dn, nl, (uint8_t)(f->hops < 254 ? f->hops + 1 : 255), a.seq);
	if (seen(n, f->origin, f->msg_id, 0)) {
		n->stats.duplicates_dropped++;
		return;
	}
	n->stats.announces_received++;
	changed = created;
	if (bq_dir_set_name(dn->name, &dn->name_len, a.name, a.name_len)) {
		changed = true;
	}
	if (bq_dir_node_set_neigh(dn, a.neigh, a.n_neigh) > 0) {
		changed = true;
	}
	if (!dn->up) {
		dn->up = true;
		changed = true;
	}
	dn->seq = a.seq;
	dn->heard_ms = now_ms(n);
	if (changed) {
		bq_dir_touch(n->dir, &dn->ch);
	}
	bq_dir_iter_init(&it, a.users, a.users_len, a.n_users);
	while ((r = bq_dir_iter_next(&it, &e)) == 1) {
		remote_user(n, &e, f->origin);
	}
	if (r < 0) {
		n->stats.malformed++;
	}
	if (a.aflags & BQ_ANNF_REANNOUNCE) {
		schedule_reannounce(n);
	}
	if (f->ttl == 0) {
		n->stats.ttl_expired++;
		return;
	}
	{
		uint8_t out[BQ_FRAME_MAX];

		memcpy(out, raw, len);
		bq_frame_patch_hops(out, (uint8_t)(f->ttl - 1), (uint8_t)(f->hops + 1));
		bq_auth_sign(n->auth, out, len);
		flood(n, out, len, nl);
	}
}

/* ---- SCAN answers and directory pushes ------------------------------------------------ */

struct dir_out {
	struct bq_node *n;
	struct nlink *to; /* NULL: every subscribed client */
	uint64_t msg_id;
	const char *dst;  /* the user who asked (SCAN answers), or NULL */
	uint8_t dst_len;
	uint16_t per_frame; /* entries per frame, 0 = as many as fit */
	uint8_t dflags;
	uint64_t last_chg;
	unsigned frames;
	struct bq_dirw w;
	uint8_t payload[NODE_PAYLOAD_MAX];
};

static void dir_out_begin(struct dir_out *o)
{
	bq_dirw_init_directory(&o->w, o->payload, sizeof(o->payload), o->last_chg, o->dflags);
}

static void dir_out_emit(struct dir_out *o, bool more, uint64_t next_cursor)
{
	struct bq_node *n = o->n;
	uint8_t buf[BQ_FRAME_MAX];
	struct bq_frame f;
	size_t plen = bq_dirw_finish(&o->w, next_cursor);
	int len;

	frame_init(n, &f, BQ_T_DIRECTORY, o->msg_id);
	f.ttl = 0;
	f.flags = more ? BQ_FF_MORE : 0;
	f.dst = o->dst;
	f.dst_len = o->dst_len;
	f.payload = o->payload;
	f.payload_len = (uint16_t)plen;
	len = frame_seal(n, &f, buf, sizeof(buf));
	o->frames++;
	if (len < 0) {
		return;
	}
	if (o->to) {
		link_send_raw(n, o->to, buf, (size_t)len);
		return;
	}
	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		if (nl->subscribed && bq_link_open(nl->link)) {
			link_send_raw(n, nl, buf, (size_t)len);
		}
	}
}

static void dir_out_add(struct dir_out *o, struct bq_dchg *c)
{
	struct bq_dir_entry e;
	uint64_t now = now_ms(o->n);

	if (c->kind == BQ_DIR_USER) {
		bq_dir_user_entry(bq_dchg_user(c), now, &e);
	} else {
		bq_dir_node_entry(bq_dchg_node(c), now, &e);
	}
	if ((o->per_frame && o->w.count >= o->per_frame) || bq_dirw_add(&o->w, &e) == -ENOSPC) {
		dir_out_emit(o, true, o->last_chg);
		dir_out_begin(o);
		bq_dirw_add(&o->w, &e);
	}
	o->last_chg = c->chg;
}

/*
 * Every record changed after cursor, oldest change first, chunked into DIRECTORY frames
 * with MORE on all but the last (at most per_frame entries each when not 0). The last
 * frame's next_cursor is the newest change number: the asker's next SCAN starts there.
 */
static void dir_send(struct bq_node *n, struct nlink *to, const struct bq_frame *req,
		     uint64_t cursor, uint16_t per_frame)
{
	struct dir_out *o = bq_malloc(sizeof(*o));

	if (!o) {
		return;
	}
	o->n = n;
	o->to = to;
	o->msg_id = req ? req->msg_id : bq_link_new_msg_id();
	o->dst = req && req->src_len ? req->src : NULL;
	o->dst_len = req ? req->src_len : 0;
	o->per_frame = per_frame;
	o->dflags = req && cursor == 0 ? BQ_DIRF_SNAPSHOT : 0;
	o->last_chg = cursor;
	o->frames = 0;
	dir_out_begin(o);
	for (struct bq_dchg *c = bq_dir_changes_after(n->dir, cursor); c; c = c->next) {
		dir_out_add(o, c);
	}
	dir_out_emit(o, false, bq_dir_cursor(n->dir));
	bq_free(o);
}

/* A SCAN with SUMMARY: one DIRECTORY, no entries, next_cursor = the newest change number. */
static void dir_send_summary(struct bq_node *n, struct nlink *to, const struct bq_frame *req,
			     uint64_t cursor)
{
	struct dir_out *o = bq_malloc(sizeof(*o));

	if (!o) {
		return;
	}
	o->n = n;
	o->to = to;
	o->msg_id = req->msg_id;
	o->dst = req->src_len ? req->src : NULL;
	o->dst_len = req->src_len;
	o->per_frame = 0;
	o->dflags = cursor == 0 ? BQ_DIRF_SNAPSHOT : 0;
	o->last_chg = cursor;
	o->frames = 0;
	dir_out_begin(o);
	dir_out_emit(o, false, bq_dir_cursor(n->dir));
	bq_free(o);
}

static void on_scan(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_scan s;

	if (bq_scan_decode(f, &s) < 0) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "malformed SCAN payload");
		return;
	}
	n->stats.scans_served++;
	if (s.flags & BQ_SCAN_SUMMARY) {
		/*
		 * "In sync as of this cursor": a link that keeps no directory copy costs one
		 * small frame instead of a snapshot of every record.
		 */
		n->scans_summary++;
		dir_send_summary(n, nl, f, s.cursor);
	} else {
		dir_send(n, nl, f, s.cursor, s.max_entries);
	}
	/* ONESHOT never ends a subscription; a later SCAN without it starts one. */
	if (nl->role == ROLE_CLIENT && !nl->subscribed && !(s.flags & BQ_SCAN_ONESHOT)) {
		nl->subscribed = true;
		n->n_subscribed++;
	}
}

static void on_directory(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_directory d;
	struct bq_dir_iter it;
	struct bq_dir_entry e;
	int r;

	if (bq_directory_decode(f, &d) < 0) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "malformed DIRECTORY payload");
		return;
	}
	bq_dir_iter_init(&it, d.entries, d.entries_len, d.count);
	while ((r = bq_dir_iter_next(&it, &e)) == 1) {
		if (e.kind == BQ_DIR_USER) {
			remote_user(n, &e, e.home);
		} else if (e.kind == BQ_DIR_NODE) {
			remote_node_entry(n, &e);
		}
	}
	if (r < 0) {
		n->stats.malformed++;
	}
}

/* ---- HELLO and the meeting of neighbours ----------------------------------------------- */

static void send_hello(struct bq_node *n, struct nlink *nl)
{
	uint8_t payload[BQ_NAME_MAX + 16];
	struct bq_hello h = {
		.role = BQ_ROLE_NODE,
		.caps = BQ_CAP_RELAY | BQ_CAP_STORE | BQ_CAP_SCAN_FLAGS,
		.name = n->name,
		.name_len = (uint8_t)strlen(n->name),
	};
	struct bq_frame f;
	int len = bq_hello_encode(&h, payload, sizeof(payload));

	if (len < 0) {
		return;
	}
	frame_init(n, &f, BQ_T_HELLO, bq_link_new_msg_id());
	f.ttl = 0;
	f.payload = payload;
	f.payload_len = (uint16_t)len;
	bq_link_send(nl->link, &f);
}

static void send_scan(struct bq_node *n, struct nlink *nl)
{
	uint8_t payload[16];
	struct bq_scan s = { .cursor = 0, .max_entries = 0 };
	struct bq_frame f;
	int len = bq_scan_encode(&s, payload, sizeof(payload));

	if (len < 0) {
		return;
	}
	frame_init(n, &f, BQ_T_SCAN, bq_link_new_msg_id());
	f.ttl = 0;
	f.payload = payload;
	f.payload_len = (uint16_t)len;
	bq_link_send(nl->link, &f);
}

/* Both sides: a one-hop route, SCAN(0) for the whole directory, an ANNOUNCE(REANNOUNCE). */
static void peer_up(struct bq_node *n, struct nlink *nl)
{
	struct bq_dnode *dn;
	bool created;
	char mac[BQ_BDADDR_STRLEN];

	n->n_peers++;
	nl->up = true;
	if (nl->dialer) {
		bq_backoff_reset(&nl->dialer->bo);
		nl->dialer->warned = false;
	}
	bq_info(n->log, MOD, "msg=\"neighbour up\" peer=%s name=\"%s\" link=%s",
		fmt_mac(nl->peer, mac), nl->peer_name, bq_link_name(nl->link));
	dn = node_get_or_add(n, nl->peer, &created);
	if (dn) {
		bool changed = created || !dn->up;

		if (bq_dir_set_name(dn->name, &dn->name_len, nl->peer_name,
				    strlen(nl->peer_name))) {
			changed = true;
		}
		dn->up = true;
		dn->heard_ms = now_ms(n);
		if (changed) {
			bq_dir_touch(n->dir, &dn->ch);
		}
		if (dn->route != nl && (!dn->route || dn->hops > 1)) {
			set_route(n, dn, nl, 1, 0);
		}
	}
	send_scan(n, nl);
	neighbours_changed(n);
	n->want_full = true;
}

static void peer_down(struct bq_node *n, struct nlink *nl)
{
	char mac[BQ_BDADDR_STRLEN];

	n->n_peers--;
	nl->up = false;
	bq_info(n->log, MOD, "msg=\"neighbour down\" peer=%s link=%s", fmt_mac(nl->peer, mac),
		bq_link_name(nl->link));
	drop_routes_via(n, nl);
	neighbours_changed(n);
}

static void on_hello(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_hello h;
	char text[160];

	if (f->type != BQ_T_HELLO) {
		n->stats.malformed++;
		snprintf(text, sizeof(text), "expected HELLO first, got %s",
			 bq_frame_type_name(f->type));
		link_violation(nl, BQ_ERR_MALFORMED, text);
		return;
	}
	if (bq_hello_decode(f, &h) < 0) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "malformed HELLO payload");
		return;
	}
	n->n_pending--;
	snprintf(nl->peer_name, sizeof(nl->peer_name), "%.*s", (int)h.name_len,
		 h.name ? h.name : "");
	if (h.role == BQ_ROLE_NODE) {
		static const uint8_t zero[BQ_NODE_ADDR_LEN];

		nl->role = ROLE_NODE;
		if (!(f->flags & BQ_FF_AUTH)) {
			/* The link verified any tag present; a node without one lacks the key. */
			n->stats.auth_failures++;
			link_violation(nl, BQ_ERR_AUTH,
				       "node HELLO must be signed with the network key");
			return;
		}
		if (addr_is_self(n, f->origin) || memcmp(f->origin, zero, sizeof(zero)) == 0) {
			bool self = addr_is_self(n, f->origin);

			link_violation(nl, BQ_ERR_MALFORMED,
				       self ? "link to itself (same node address)"
					    : "node HELLO without an address");
			return;
		}
		memcpy(nl->peer, f->origin, BQ_NODE_ADDR_LEN);
		bq_link_set_require_auth(nl->link, true);
		if (!nl->dialer) {
			send_hello(n, nl);
		}
		peer_up(n, nl);
		return;
	}
	if (h.role != BQ_ROLE_CLIENT || nl->dialer) {
		nl->role = ROLE_CLIENT;
		n->n_clients++;
		link_violation(nl, BQ_ERR_MALFORMED,
			       nl->dialer ? "dialed a neighbour but a client answered"
					  : "unknown HELLO role");
		return;
	}
	nl->role = ROLE_CLIENT;
	n->n_clients++;
	if (n->cfg.require_client_auth && !(f->flags & BQ_FF_AUTH)) {
		n->stats.auth_failures++;
		link_violation(nl, BQ_ERR_AUTH, "this node requires clients to sign frames");
		return;
	}
	if (n->n_clients > n->cfg.max_clients) {
		snprintf(text, sizeof(text), "too many clients (limit %u)", n->cfg.max_clients);
		link_violation(nl, BQ_ERR_LIMIT, text);
		return;
	}
	if (n->cfg.require_client_auth) {
		bq_link_set_require_auth(nl->link, true);
	}
	send_hello(n, nl);
	bq_debug(n->log, MOD, "msg=\"client up\" link=%s name=\"%s\"", bq_link_name(nl->link),
		 nl->peer_name);
}

/* ---- frames from clients --------------------------------------------------------------- */

static struct bq_duser *attached_sender(struct nlink *nl, const struct bq_frame *f)
{
	struct bq_duser *u;

	if (f->src_len == 0) {
		return NULL;
	}
	u = bq_dir_user(nl->n->dir, f->src, f->src_len);
	return u && u->link == nl ? u : NULL;
}

static void not_attached(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	char text[BQ_USER_ID_MAX + 48];

	snprintf(text, sizeof(text), "user '%.*s' is not attached on this link", (int)f->src_len,
		 f->src ? f->src : "");
	bq_link_send_error(nl->link, BQ_ERR_NOT_ATTACHED, text);
}

static void on_attach(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_attach a;
	struct bq_duser *u;
	struct bq_fifo_item *it;
	char id[BQ_USER_ID_MAX * 4 + 3];
	int err = 0;

	if (bq_attach_decode(f, &a) < 0) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "malformed ATTACH payload");
		return;
	}
	if (f->src_len == 0) {
		ack_direct(n, nl, NULL, 0, f->msg_id, BQ_ACK_REJECTED, "ATTACH without a user id");
		return;
	}
	u = bq_dir_user(n->dir, f->src, f->src_len);
	if ((!u || u->link != nl) && nl->n_users >= LINK_MAX_USERS) {
		ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
			   "too many users on this link");
		return;
	}
	if (!u) {
		u = bq_dir_user_add(n->dir, f->src, f->src_len, &err);
		if (!u) {
			ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				   err == -ENOSPC ? "directory full" : "cannot add user");
			return;
		}
	}
	if (u->link && u->link != nl) {
		/* The same user again on a new link (a client reconnecting): the new one wins. */
		link_user_remove(u->link, u);
	}
	if (!u->link) {
		link_user_add(nl, u);
	}
	bq_dir_set_name(u->name, &u->name_len, a.name, a.name_len);
	local_user_set(n, u, BQ_PRES_ONLINE);
	bq_info(n->log, MOD, "msg=\"user attached\" user_id=%s link=%s held=%u",
		fmt_text(u->id, u->id_len, id, sizeof(id)), bq_link_name(nl->link), u->store.count);
	ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_OK, "");
	while ((it = bq_fifo_pop(&u->store))) {
		n->held_bytes -= it->len;
		link_send_raw(n, nl, it->data, it->len);
		n->stats.store_delivered++;
		bq_free(it);
	}
}

static void on_detach(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_duser *u = attached_sender(nl, f);

	if (!u) {
		not_attached(n, nl, f);
		return;
	}
	user_detach(n, u, "DETACH");
	ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_OK, "");
}

/* MSG or ACK from a local client: re-issued with this node as origin, then routed. */
static void on_client_unicast(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	uint8_t buf[BQ_FRAME_MAX];
	struct bq_frame g = *f;
	bool is_msg = f->type == BQ_T_MSG;
	int len;

	if (!attached_sender(nl, f)) {
		if (is_msg) {
			ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				   "not attached");
		} else {
			not_attached(n, nl, f);
		}
		return;
	}
	if (is_msg && f->payload_len > BQ_TEXT_MAX) {
		ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_TOO_LARGE,
			   "message over 4096 bytes");
		return;
	}
	if (!(f->flags & BQ_FF_BROADCAST) && f->dst_len == 0) {
		if (is_msg) {
			ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_REJECTED,
				   "no destination");
		}
		return;
	}
	if (!is_msg) {
		struct bq_ack a;

		if (bq_ack_decode(f, &a) < 0) {
			n->stats.malformed++;
			link_violation(nl, BQ_ERR_MALFORMED, "malformed ACK payload");
			return;
		}
	}
	memcpy(g.origin, n->addr, BQ_NODE_ADDR_LEN);
	if (seen_frame(n, &g)) {
		n->stats.duplicates_dropped++;
		if (is_msg) {
			ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_ACCEPTED, "sent");
		}
		return;
	}
	g.ttl = n->cfg.ttl;
	g.hops = 0;
	g.flags = (uint8_t)(f->flags & BQ_FF_BROADCAST);
	g.tag = NULL;
	len = frame_seal(n, &g, buf, sizeof(buf));
	if (len < 0) {
		if (is_msg) {
			ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_TOO_LARGE,
				   "frame too large");
		}
		return;
	}
	if (is_msg) {
		ack_direct(n, nl, f->src, f->src_len, f->msg_id, BQ_ACK_ACCEPTED, "sent");
	}
	route_frame(n, &g, buf, (size_t)len, buf, (size_t)len, NULL, nl);
}

static void on_client_frame(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	char text[96];

	switch (f->type) {
	case BQ_T_ATTACH:
		on_attach(n, nl, f);
		break;
	case BQ_T_DETACH:
		on_detach(n, nl, f);
		break;
	case BQ_T_SCAN:
		on_scan(n, nl, f);
		break;
	case BQ_T_MSG:
	case BQ_T_ACK:
		on_client_unicast(n, nl, f);
		break;
	case BQ_T_ERROR:
		bq_debug(n->log, MOD, "link=%s msg=\"ERROR from client\"", bq_link_name(nl->link));
		break;
	default:
		n->stats.malformed++;
		snprintf(text, sizeof(text), "%s is not allowed from a client",
			 bq_frame_type_name(f->type));
		link_violation(nl, BQ_ERR_MALFORMED, text);
		break;
	}
}

/* ---- frames from neighbour nodes ------------------------------------------------------- */

static void on_node_unicast(struct bq_node *n, struct nlink *nl, const struct bq_frame *f,
			    const uint8_t *raw, size_t len)
{
	uint8_t out[BQ_FRAME_MAX];
	bool fwd = f->ttl > 0;

	if (!(f->flags & BQ_FF_BROADCAST) && f->dst_len == 0) {
		n->stats.malformed++;
		return;
	}
	if (seen_frame(n, f)) {
		n->stats.duplicates_dropped++;
		return;
	}
	if (fwd) {
		memcpy(out, raw, len);
		bq_frame_patch_hops(out, (uint8_t)(f->ttl - 1),
				    (uint8_t)(f->hops < 255 ? f->hops + 1 : 255));
		bq_auth_sign(n->auth, out, len);
	}
	route_frame(n, f, raw, len, fwd ? out : NULL, len, nl, NULL);
}

static void on_error_frame(struct bq_node *n, struct nlink *nl, const struct bq_frame *f)
{
	struct bq_error e;
	char text[300];

	if (bq_error_decode(f, &e) < 0) {
		return;
	}
	bq_warn(n->log, MOD, "link=%s msg=\"ERROR from neighbour\" code=%u text=%s",
		bq_link_name(nl->link), e.code, fmt_text(e.text, e.text_len, text, sizeof(text)));
}

static void on_node_frame(struct bq_node *n, struct nlink *nl, const struct bq_frame *f,
			  const uint8_t *raw, size_t len)
{
	char text[96];

	switch (f->type) {
	case BQ_T_MSG:
	case BQ_T_ACK:
		on_node_unicast(n, nl, f, raw, len);
		break;
	case BQ_T_ANNOUNCE:
		on_announce(n, nl, f, raw, len);
		break;
	case BQ_T_SCAN:
		on_scan(n, nl, f);
		break;
	case BQ_T_DIRECTORY:
		on_directory(n, nl, f);
		break;
	case BQ_T_ERROR:
		on_error_frame(n, nl, f);
		break;
	default:
		n->stats.malformed++;
		snprintf(text, sizeof(text), "%s is not allowed between nodes",
			 bq_frame_type_name(f->type));
		link_violation(nl, BQ_ERR_MALFORMED, text);
		break;
	}
}

static void on_link_frame(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
			  size_t raw_len, void *ud)
{
	struct nlink *nl = ud;
	struct bq_node *n = nl->n;

	if (n->stopping) {
		return;
	}
	if (nl->role == ROLE_NONE) {
		on_hello(n, nl, f);
		return;
	}
	if (f->type == BQ_T_HELLO) {
		n->stats.malformed++;
		link_violation(nl, BQ_ERR_MALFORMED, "second HELLO on a link");
		return;
	}
	if (nl->role == ROLE_CLIENT) {
		on_client_frame(n, nl, f);
	} else {
		on_node_frame(n, nl, f, raw, raw_len);
	}
}

/* ---- link lifecycle -------------------------------------------------------------------- */

static void add_link_stats(struct bq_link_stats *acc, const struct bq_link_stats *s)
{
	acc->frames_in += s->frames_in;
	acc->frames_out += s->frames_out;
	acc->bytes_in += s->bytes_in;
	acc->bytes_out += s->bytes_out;
	acc->auth_failures += s->auth_failures;
	acc->unknown_types += s->unknown_types;
	acc->malformed += s->malformed;
	acc->oversize += s->oversize;
	acc->version_mismatch += s->version_mismatch;
	acc->out_dropped += s->out_dropped;
}

static void nlink_free(struct bq_node *n, struct nlink *nl)
{
	if (nl->prev) {
		nl->prev->next = nl->next;
	} else {
		n->links = nl->next;
	}
	if (nl->next) {
		nl->next->prev = nl->prev;
	}
	bq_link_free(nl->link);
	bq_free(nl);
}

static void on_link_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	struct nlink *nl = ud;
	struct bq_node *n = nl->n;
	struct dialer *d = nl->dialer;

	if (err == -EPROTO || err == -EBADMSG || err == -EPROTONOSUPPORT || err == -EMSGSIZE) {
		n->stats.bad_links_closed++;
	}
	add_link_stats(&n->closed_ls, bq_link_stats(l));
	switch (nl->role) {
	case ROLE_NONE:
		n->n_pending--;
		break;
	case ROLE_CLIENT:
		n->n_clients--;
		if (nl->subscribed) {
			n->n_subscribed--;
		}
		while (nl->users) {
			user_detach(n, nl->users, "link closed");
		}
		bq_debug(n->log, MOD, "link=%s msg=\"client closed\" reason=\"%s\"",
			 bq_link_name(l), reason ? reason : "");
		break;
	case ROLE_NODE:
		if (nl->up) {
			peer_down(n, nl);
		}
		break;
	}
	if (d) {
		uint32_t delay;

		d->nl = NULL;
		if (!n->stopping) {
			delay = bq_backoff_next(&d->bo);
			if (!d->warned) {
				bq_warn(n->log, MOD,
					"msg=\"neighbour link lost\" neighbour=%s reason=\"%s\" "
					"retry_ms=%u", d->text, reason ? reason : "", delay);
				d->warned = true;
			}
			bq_timer_start(d->timer, delay);
		}
	}
	nlink_free(n, nl);
}

static struct nlink *nlink_new(struct bq_node *n, struct bq_conn *conn, struct dialer *d)
{
	struct nlink *nl = bq_calloc(1, sizeof(*nl));
	char name[BQ_ADDR_STRLEN + 16];
	struct bq_link_config lc = {
		.name = name,
		.max_out_bytes = NODE_LINK_OUT_MAX,
		.auth = n->auth,
		/* A dialed peer is a node by definition; accepted peers say what they are. */
		.require_auth = d != NULL,
		.ping_interval_ms = n->cfg.ping_interval_ms,
		.dead_after_ms = n->cfg.dead_after_ms,
	};

	if (!nl) {
		bq_conn_close(conn);
		return NULL;
	}
	nl->id = ++n->next_link_id;
	if (d) {
		snprintf(name, sizeof(name), "peer-%u(%s)", nl->id, d->text);
	} else {
		snprintf(name, sizeof(name), "in-%u", nl->id);
	}
	nl->link = bq_link_new(n->loop, conn, &lc, n->log);
	if (!nl->link) {
		bq_free(nl);
		return NULL;
	}
	nl->n = n;
	nl->dialer = d;
	nl->created_ms = now_ms(n);
	bq_link_set_data(nl->link, nl);
	bq_link_set_handlers(nl->link, on_link_frame, on_link_close, nl);
	nl->next = n->links;
	if (n->links) {
		n->links->prev = nl;
	}
	n->links = nl;
	n->n_pending++;
	return nl;
}

static void on_accept(struct bq_listener *ls, struct bq_conn *c, void *ud)
{
	struct bq_node *n = ud;

	if (n->stopping || n->n_pending >= PENDING_MAX) {
		bq_warn(n->log, MOD, "msg=\"connection refused\" peer=%s reason=\"%s\"",
			bq_conn_peer(c), n->stopping ? "stopping" : "too many links before HELLO");
		bq_conn_close(c);
		return;
	}
	if (!nlink_new(n, c, NULL)) {
		bq_warn(n->log, MOD, "msg=\"connection dropped: out of memory\"");
	}
}

/* ---- dialing neighbours ---------------------------------------------------------------- */

static void dial_timer_cb(struct bq_timer *t, void *ud)
{
	dial(ud);
}

static void dial(struct dialer *d)
{
	struct bq_node *n = d->n;
	struct bq_addr target;
	struct bq_conn *conn = NULL;
	char err[300] = "";
	int rc;

	if (n->stopping || d->nl) {
		return;
	}
	rc = bq_addrmap_resolve(&d->addr, &target, err, sizeof(err));
	if (rc < 0) {
		bq_warn(n->log, MOD, "msg=\"address map ignored\" err=\"%s\"", err);
	}
	rc = bq_conn_connect(n->loop, &target, NULL, NULL, &conn, err, sizeof(err));
	if (rc < 0) {
		uint32_t delay = bq_backoff_next(&d->bo);

		if (!d->warned) {
			bq_warn(n->log, MOD,
				"msg=\"cannot dial neighbour\" neighbour=%s err=\"%s\" retry_ms=%u",
				d->text, err, delay);
			d->warned = true;
		}
		bq_timer_start(d->timer, delay);
		return;
	}
	/* The link queues HELLO until the connection completes (or reports the failure). */
	d->nl = nlink_new(n, conn, d);
	if (!d->nl) {
		bq_timer_start(d->timer, bq_backoff_next(&d->bo));
		return;
	}
	send_hello(n, d->nl);
}

/* ---- periodic work --------------------------------------------------------------------- */

static void expire_fifo(struct bq_node *n, struct bq_fifo *q, uint64_t now)
{
	while (q->head && now - q->head->at_ms >= n->cfg.store_max_age_ms) {
		struct bq_fifo_item *it = bq_fifo_pop(q);
		struct bq_frame f;

		n->held_bytes -= it->len;
		n->stats.store_expired++;
		if (bq_frame_decode(it->data, it->len, &f) == (int)it->len && f.type == BQ_T_MSG &&
		    !(f.flags & BQ_FF_BROADCAST) && f.src_len) {
			char src[BQ_USER_ID_MAX];
			uint8_t src_len = f.src_len;
			uint64_t id = f.msg_id;

			memcpy(src, f.src, src_len);
			bq_free(it);
			ack_route(n, src, src_len, id, BQ_ACK_EXPIRED,
				  "not delivered before the store limit");
			continue;
		}
		bq_free(it);
	}
}

/* Expiry is checked at a quarter of the shortest limit, at most once a second. */
static uint32_t sweep_period(const struct bq_node *n)
{
	uint32_t p = SWEEP_MAX_MS;
	uint32_t lim = n->cfg.store_max_age_ms < n->cfg.expiry_ms ? n->cfg.store_max_age_ms
								  : n->cfg.expiry_ms;

	if (lim / 4 < p) {
		p = lim / 4;
	}
	return p < SWEEP_MIN_MS ? SWEEP_MIN_MS : p;
}

static void sweep_cb(struct bq_timer *t, void *ud)
{
	struct bq_node *n = ud;
	uint64_t now = now_ms(n);
	size_t pos = 0;
	struct bq_dnode *dn;
	struct bq_duser *u;

	n->self->heard_ms = now;
	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		if (nl->role == ROLE_NONE && now - nl->created_ms > HELLO_TIMEOUT_MS &&
		    bq_link_open(nl->link)) {
			link_violation(nl, BQ_ERR_MALFORMED, "no HELLO within 10 s");
		} else if (nl->role == ROLE_NODE && bq_link_open(nl->link)) {
			/* A live neighbour link is proof of life even between announces. */
			struct bq_dnode *p = bq_dir_node(n->dir, nl->peer);

			if (p) {
				p->heard_ms = now;
			}
		}
	}
	while ((dn = bq_dir_next_node(n->dir, &pos))) {
		if (dn != n->self && dn->up && now - dn->heard_ms > n->cfg.expiry_ms) {
			node_down(n, dn);
		}
		if (dn->hold.count) {
			expire_fifo(n, &dn->hold, now);
		}
	}
	if (n->held_bytes) {
		pos = 0;
		while ((u = bq_dir_next_user(n->dir, &pos))) {
			if (u->store.count) {
				expire_fifo(n, &u->store, now);
			}
		}
	}
	bq_timer_start(t, sweep_period(n));
}

/* Once per loop round: delta announce, directory pushes, coalesced full announce. */
static void before_sleep(struct bq_loop *loop, void *ud)
{
	struct bq_node *n = ud;
	uint64_t cur = bq_dir_cursor(n->dir);

	if (!n->started || n->stopping) {
		return;
	}
	if (n->want_full) {
		n->want_full = false;
		n->neigh_dirty = false;
		announce_full(n, BQ_ANNF_REANNOUNCE);
		n->ann_cursor = cur;
	}
	if (cur > n->ann_cursor || n->neigh_dirty) {
		announce_delta(n);
	}
	if (cur > n->push_cursor) {
		if (n->n_subscribed) {
			dir_send(n, NULL, NULL, n->push_cursor, 0);
		}
		n->push_cursor = cur;
	}
}

/* ---- public API ------------------------------------------------------------------------ */

void bq_node_config_defaults(struct bq_node_config *cfg)
{
	static const uint8_t odin[BQ_NODE_ADDR_LEN] = { 0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77 };

	memset(cfg, 0, sizeof(*cfg));
	memcpy(cfg->addr, odin, sizeof(odin));
	cfg->name = "Odin";
	cfg->ttl = BQ_DEFAULT_TTL;
	cfg->announce_interval_ms = 10000;
	cfg->expiry_ms = 35000;
	cfg->store_max_per_user = 256;
	cfg->store_max_age_ms = 3600 * 1000;
	cfg->route_hold_max = 1024;
	cfg->dedupe_capacity = 131072;
	cfg->dedupe_ttl_ms = 120000;
	cfg->ping_interval_ms = 2000;
	cfg->dead_after_ms = 6000;
	cfg->backoff_base_ms = 100;
	cfg->backoff_cap_ms = 5000;
	cfg->max_clients = 20000;
}

static int copy_list(const struct bq_strlist *l, char ***out, size_t *n_out)
{
	size_t n = l ? l->n : 0;

	*n_out = 0;
	*out = bq_calloc(n ? n : 1, sizeof(char *));
	if (!*out) {
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		(*out)[i] = bq_strdup(l->v[i]);
		if (!(*out)[i]) {
			return -ENOMEM;
		}
		(*n_out)++;
	}
	return 0;
}

struct bq_node *bq_node_new(struct bq_loop *loop, const struct bq_node_config *cfg,
			    struct bq_log *log, char *err, size_t errlen)
{
	struct bq_node *n;
	char **neigh = NULL;
	size_t n_neigh = 0;
	int e = 0;

	if (!cfg->auth) {
		snprintf(err, errlen, "a network key is required");
		return NULL;
	}
	if (cfg->name && !bq_name_valid(cfg->name, strlen(cfg->name))) {
		snprintf(err, errlen, "invalid node name '%s' (1..64 bytes, no control characters)",
			 cfg->name);
		return NULL;
	}
	if (cfg->announce_interval_ms < 4 || cfg->expiry_ms == 0 || cfg->store_max_age_ms == 0 ||
	    cfg->ttl == 0) {
		snprintf(err, errlen, "announce interval, expiry, store age and ttl must be > 0");
		return NULL;
	}
	n = bq_calloc(1, sizeof(*n));
	if (!n) {
		goto nomem;
	}
	n->loop = loop;
	n->log = log;
	n->cfg = *cfg;
	n->auth = cfg->auth;
	memcpy(n->addr, cfg->addr, BQ_NODE_ADDR_LEN);
	bq_bdaddr_format(n->addr, n->mac);
	n->name = bq_strdup(cfg->name && cfg->name[0] ? cfg->name : n->mac);
	n->cfg.name = n->name;
	n->cfg.listen = NULL;
	n->cfg.neighbours = NULL;
	if (!n->name || copy_list(cfg->listen, &n->listen, &n->n_listen) < 0 ||
	    copy_list(cfg->neighbours, &neigh, &n_neigh) < 0) {
		goto nomem_free;
	}
	n->dialers = bq_calloc(n_neigh ? n_neigh : 1, sizeof(*n->dialers));
	if (!n->dialers) {
		goto nomem_free;
	}
	for (size_t i = 0; i < n_neigh; i++) {
		struct dialer *d = &n->dialers[i];

		d->n = n;
		d->text = neigh[i];
		neigh[i] = NULL;
		n->n_dialers++;
		if (bq_addr_parse(d->text, &d->addr, err, errlen) < 0) {
			goto fail;
		}
		bq_backoff_init(&d->bo, cfg->backoff_base_ms, cfg->backoff_cap_ms, 0);
		d->timer = bq_timer_new(loop, dial_timer_cb, d);
		if (!d->timer) {
			goto nomem_free;
		}
	}
	for (size_t i = 0; i < n->n_listen; i++) {
		struct bq_addr a;

		if (bq_addr_parse(n->listen[i], &a, err, errlen) < 0) {
			goto fail;
		}
	}
	n->dir = bq_dir_new(n->addr, NODE_MAX_USERS, NODE_MAX_NODES);
	n->dedupe = bq_dedupe_new(cfg->dedupe_capacity ? cfg->dedupe_capacity : 131072,
				  cfg->dedupe_ttl_ms ? cfg->dedupe_ttl_ms : 120000);
	n->announce_timer = bq_timer_new(loop, announce_timer_cb, n);
	n->reannounce_timer = bq_timer_new(loop, reannounce_cb, n);
	n->sweep_timer = bq_timer_new(loop, sweep_cb, n);
	if (!n->dir || !n->dedupe || !n->announce_timer || !n->reannounce_timer ||
	    !n->sweep_timer) {
		goto nomem_free;
	}
	n->self = bq_dir_node_add(n->dir, n->addr, &e);
	if (!n->self) {
		goto nomem_free;
	}
	bq_dir_set_name(n->self->name, &n->self->name_len, n->name, strlen(n->name));
	n->self->up = true;
	n->self->heard_ms = now_ms(n);
	bq_dir_touch(n->dir, &n->self->ch);
	randombytes_buf(&n->boot_id, sizeof(n->boot_id));
	n->boot_id &= 0xffffffffu;
	if (bq_loop_before_sleep(loop, before_sleep, n) < 0) {
		goto nomem_free;
	}
	n->hook_added = true;
	bq_free(neigh);
	return n;

nomem_free:
	snprintf(err, errlen, "out of memory");
fail:
	if (neigh) {
		for (size_t i = 0; i < n_neigh; i++) {
			bq_free(neigh[i]);
		}
		bq_free(neigh);
	}
	bq_node_free(n);
	return NULL;
nomem:
	snprintf(err, errlen, "out of memory");
	return NULL;
}

int bq_node_start(struct bq_node *n, char *err, size_t errlen)
{
	uint32_t base = n->cfg.announce_interval_ms;
	int rc;

	if (n->started) {
		return 0;
	}
	n->listeners = bq_calloc(n->n_listen ? n->n_listen : 1, sizeof(*n->listeners));
	if (!n->listeners) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n->n_listen; i++) {
		struct bq_addr a;
		char text[BQ_ADDR_STRLEN];

		rc = bq_addr_parse(n->listen[i], &a, err, errlen);
		if (rc < 0) {
			return rc;
		}
		rc = bq_listener_new(n->loop, &a, on_accept, n, &n->listeners[i], err, errlen);
		if (rc < 0) {
			return rc;
		}
		n->n_listeners++;
		/* With port 0 the kernel picks: say which, or nobody can dial it. */
		if (a.kind == BQ_ADDR_TCP) {
			a.port = (uint16_t)bq_listener_port(n->listeners[i]);
		}
		bq_addr_format(&a, text, sizeof(text));
		bq_info(n->log, "node", "msg=\"listening\" on=%s", text);
	}
	n->started = true;
	n->start_ms = now_ms(n);
	for (size_t i = 0; i < n->n_dialers; i++) {
		dial(&n->dialers[i]);
	}
	bq_timer_start(n->announce_timer, jitter(base - base / 4, base / 2));
	bq_timer_start(n->sweep_timer, sweep_period(n));
	return 0;
}

int bq_node_accept_conn(struct bq_node *n, struct bq_conn *c)
{
	if (!nlink_new(n, c, NULL)) {
		return -ENOMEM;
	}
	return 0;
}

void bq_node_stop(struct bq_node *n)
{
	struct bq_duser *u;
	size_t pos = 0;

	if (!n || n->stopping) {
		return;
	}
	/* Our users leave with us: say so while the links still carry frames. */
	while ((u = bq_dir_next_user(n->dir, &pos))) {
		if (u->link) {
			link_user_remove(u->link, u);
			local_user_set(n, u, BQ_PRES_OFFLINE);
		}
	}
	if (n->started) {
		announce_delta(n);
	}
	n->stopping = true;
	for (size_t i = 0; i < n->n_listeners; i++) {
		bq_listener_free(n->listeners[i]);
	}
	n->n_listeners = 0;
	for (size_t i = 0; i < n->n_dialers; i++) {
		bq_timer_stop(n->dialers[i].timer);
	}
	bq_timer_stop(n->announce_timer);
	bq_timer_stop(n->reannounce_timer);
	bq_timer_stop(n->sweep_timer);
	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		bq_link_close(nl->link, true, 0, "node shutting down");
	}
}

bool bq_node_busy(const struct bq_node *n)
{
	return n->links != NULL;
}

void bq_node_free(struct bq_node *n)
{
	if (!n) {
		return;
	}
	if (n->hook_added) {
		bq_loop_before_sleep_remove(n->loop, before_sleep, n);
	}
	while (n->links) {
		struct nlink *nl = n->links;

		/* No callbacks from here on: users are simply forgotten with the directory. */
		for (struct bq_duser *u = nl->users; u; u = u->lnext) {
			u->link = NULL;
		}
		nlink_free(n, nl);
	}
	for (size_t i = 0; i < n->n_listeners; i++) {
		bq_listener_free(n->listeners[i]);
	}
	bq_free(n->listeners);
	for (size_t i = 0; i < n->n_dialers; i++) {
		bq_timer_free(n->dialers[i].timer);
		bq_free(n->dialers[i].text);
	}
	bq_free(n->dialers);
	for (size_t i = 0; i < n->n_listen; i++) {
		bq_free(n->listen[i]);
	}
	bq_free(n->listen);
	bq_timer_free(n->announce_timer);
	bq_timer_free(n->reannounce_timer);
	bq_timer_free(n->sweep_timer);
	bq_dir_free(n->dir);
	bq_dedupe_free(n->dedupe);
	bq_free(n->name);
	bq_free(n);
}

void bq_node_set_nofile_limit(struct bq_node *n, uint64_t limit)
{
	n->nofile_limit = limit;
}

const uint8_t *bq_node_addr(const struct bq_node *n)
{
	return n->addr;
}

const struct bq_node_stats *bq_node_stats(const struct bq_node *n)
{
	/* The view is a cache inside n; refreshing it does not change the node's state. */
	struct bq_node *m = (struct bq_node *)n;
	struct bq_node_stats *v = &m->view;
	struct bq_link_stats ls = n->closed_ls;
	size_t pos = 0;
	struct bq_dnode *dn;

	*v = n->stats;
	for (const struct nlink *nl = n->links; nl; nl = nl->next) {
		add_link_stats(&ls, bq_link_stats(nl->link));
	}
	v->frames_in += ls.frames_in;
	v->frames_out += ls.frames_out;
	v->auth_failures += ls.auth_failures;
	v->unknown_types += ls.unknown_types;
	v->malformed += ls.malformed + ls.oversize + ls.version_mismatch;
	v->out_dropped += ls.out_dropped;
	v->peers_up = n->n_peers;
	v->clients = n->n_clients;
	v->users_local = n->n_local;
	v->users_total = (uint32_t)bq_dir_user_count(n->dir);
	v->nodes_known = 0;
	while ((dn = bq_dir_next_node(n->dir, &pos))) {
		if (dn != n->self && dn->up) {
			v->nodes_known++;
		}
	}
	return v;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static json_t *json_mac(const uint8_t a[BQ_NODE_ADDR_LEN])
{
	char mac[BQ_BDADDR_STRLEN];

	return json_string(bq_bdaddr_format(a, mac));
}

static json_t *json_text(const char *s, size_t len)
{
	json_t *j = json_stringn(s, len);

	/* Wire text is validated UTF-8-agnostic bytes; never let one bad name void the answer. */
	return j ? j : json_string("?");
}

static const char *presence_name(uint8_t p)
{
	switch (p) {
	case BQ_PRES_ONLINE:
		return "online";
	case BQ_PRES_GONE:
		return "gone";
	default:
		return "offline";
	}
}

/* clang-format off */
#define NODE_COUNTERS(X)                                                                        \
	X(frames_in) X(frames_out) X(relayed) X(flooded) X(delivered_local)                      \
	X(duplicates_dropped) X(ttl_expired) X(auth_failures) X(unknown_types) X(malformed)       \
	X(bad_links_closed) X(out_dropped) X(stored) X(store_delivered) X(store_expired)          \
	X(store_dropped) X(route_held) X(route_flushed) X(announces_sent)                         \
	X(announces_received) X(scans_served) X(acks_routed) X(unknown_user) X(peers_up)          \
	X(clients) X(users_local) X(users_total) X(nodes_known)
/* clang-format on */

static json_t *json_stats(struct bq_node *n)
{
	const struct bq_node_stats *s = bq_node_stats(n);
	json_t *o = json_object();

	if (!o) {
		return NULL;
	}
	json_object_set_new(o, "addr", json_string(n->mac));
	json_object_set_new(o, "name", json_text(n->name, strlen(n->name)));
	json_object_set_new(o, "uptime_ms",
			    json_integer((json_int_t)(n->started ? now_ms(n) - n->start_ms : 0)));
#define X(field) json_object_set_new(o, #field, json_integer((json_int_t)s->field));
	NODE_COUNTERS(X)
#undef X
	json_object_set_new(o, "scans_summary", json_integer((json_int_t)n->scans_summary));
	json_object_set_new(o, "held_bytes", json_integer((json_int_t)n->held_bytes));
	json_object_set_new(o, "dedupe_size", json_integer((json_int_t)bq_dedupe_size(n->dedupe)));
	if (n->nofile_limit) {
		json_object_set_new(o, "nofile_limit", json_integer((json_int_t)n->nofile_limit));
	}
	return o;
}

static json_t *json_users(struct bq_node *n)
{
	json_t *o = json_object(), *arr = json_array();
	size_t pos = 0;
	struct bq_duser *u;

	if (!o || !arr) {
		json_decref(o);
		json_decref(arr);
		return NULL;
	}
	json_object_set_new(o, "users", arr);
	while ((u = bq_dir_next_user(n->dir, &pos))) {
		json_t *e = json_object();

		if (!e) {
			continue;
		}
		json_object_set_new(e, "id", json_text(u->id, u->id_len));
		json_object_set_new(e, "name", json_text(u->name, u->name_len));
		json_object_set_new(e, "home", json_mac(u->home));
		json_object_set_new(e, "presence", json_string(presence_name(u->presence)));
		json_object_set_new(e, "version", json_integer(u->version));
		json_object_set_new(e, "local", json_boolean(u->link != NULL));
		json_array_append_new(arr, e);
	}
	return o;
}

static json_t *json_topology(struct bq_node *n)
{
	json_t *o = json_object(), *nodes = json_array(), *links = json_array();
	size_t pos = 0;
	struct bq_dnode *dn;

	if (!o || !nodes || !links) {
		json_decref(o);
		json_decref(nodes);
		json_decref(links);
		return NULL;
	}
	json_object_set_new(o, "self", json_string(n->mac));
	json_object_set_new(o, "nodes", nodes);
	json_object_set_new(o, "links", links);
	while ((dn = bq_dir_next_node(n->dir, &pos))) {
		json_t *e = json_object(), *ne = json_array();
		struct nlink *via = dn->route;

		if (!e || !ne) {
			json_decref(e);
			json_decref(ne);
			continue;
		}
		json_object_set_new(e, "addr", json_mac(dn->addr));
		json_object_set_new(e, "name", json_text(dn->name, dn->name_len));
		for (size_t i = 0; i < dn->n_neigh; i++) {
			json_array_append_new(ne, json_mac(dn->neigh + i * BQ_NODE_ADDR_LEN));
		}
		json_object_set_new(e, "neighbours", ne);
		if (dn == n->self) {
			json_object_set_new(e, "hops", json_integer(0));
		} else {
			json_object_set_new(e, "hops", via ? json_integer(dn->hops) : json_null());
		}
		json_object_set_new(e, "via", via ? json_mac(via->peer) : json_null());
		json_object_set_new(e, "up", json_boolean(dn->up));
		json_object_set_new(e, "held", json_integer(dn->hold.count));
		json_array_append_new(nodes, e);
	}
	for (struct nlink *nl = n->links; nl; nl = nl->next) {
		json_t *e;

		if (nl->role != ROLE_NODE) {
			continue;
		}
		e = json_object();
		if (!e) {
			continue;
		}
		json_object_set_new(e, "peer", json_mac(nl->peer));
		json_object_set_new(e, "name", json_text(nl->peer_name, strlen(nl->peer_name)));
		json_object_set_new(e, "up", json_boolean(bq_link_open(nl->link)));
		json_object_set_new(e, "dialed", json_boolean(nl->dialer != NULL));
		json_object_set_new(e, "rtt_us", json_integer(bq_link_stats(nl->link)->rtt_us));
		json_array_append_new(links, e);
	}
	return o;
}

char *bq_node_status_json(struct bq_node *n, const char *what)
{
	json_t *doc;
	char *s, *copy;

	if (strcmp(what, "stats") == 0) {
		doc = json_stats(n);
	} else if (strcmp(what, "users") == 0) {
		doc = json_users(n);
	} else if (strcmp(what, "topology") == 0) {
		doc = json_topology(n);
	} else {
		char text[BQ_NAME_MAX * 2];
		size_t i;

		/* The command is peer text: keep it short and printable in the answer. */
		for (i = 0; what[i] && i < BQ_NAME_MAX; i++) {
			unsigned char c = (unsigned char)what[i];

			text[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
		}
		text[i] = '\0';
		doc = json_object();
		if (doc) {
			char msg[sizeof(text) + 32];

			snprintf(msg, sizeof(msg), "unknown command '%s'", text);
			json_object_set_new(doc, "error", json_string(msg));
		}
	}
	if (!doc) {
		return NULL;
	}
	s = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	if (!s) {
		return NULL;
	}
	/* jansson allocates with malloc; callers free with bq_free, so hand over a copy. */
	copy = bq_strdup(s);
	free(s);
	return copy;
}
