/* SPDX-License-Identifier: MIT */
/*
 * node: the mesh node engine (what blueq-node runs; Odin is one). It accepts links
 * from clients (users attach here) and from neighbour nodes, dials its configured
 * neighbours with decorrelated-jitter reconnects, and:
 *   - keeps the directory of every user and node on the mesh (ATTACH/DETACH here,
 *     ANNOUNCE gossip from others, SCAN/DIRECTORY catch-up with a cursor);
 *   - relays frames with TTL and a bounded, expiring duplicate cache;
 *   - routes unicast towards the destination's home node by next hops learned from
 *     announces, flooding only when no route is known;
 *   - holds messages for offline users (bounded per user and by age; expiry sends a
 *     failed ACK) and for unreachable home nodes until a route appears;
 *   - counts everything in struct bq_node_stats.
 * Behaviour in detail: docs/architecture.md and docs/protocol.md ("Node behaviour").
 */
#ifndef BQ_MESH_NODE_H
#define BQ_MESH_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "proto/auth.h"
#include "proto/frame.h"

struct bq_node;

struct bq_node_config {
	uint8_t addr[BQ_NODE_ADDR_LEN]; /* this node's Bluetooth-style address */
	const char *name;               /* display name ("Odin"); copied */
	const struct bq_strlist *listen;     /* addresses to accept links on (any transport) */
	const struct bq_strlist *neighbours; /* addresses to dial */
	const struct bq_auth *auth;     /* network key; borrowed; required */
	bool require_client_auth;       /* clients must sign frames too */
	uint8_t ttl;                    /* default BQ_DEFAULT_TTL */
	uint32_t announce_interval_ms;  /* full re-announce period (jittered ±25 %) */
	uint32_t expiry_ms;             /* directory entries of other nodes expire after this */
	uint32_t store_max_per_user;    /* held messages per offline user */
	uint32_t store_max_age_ms;      /* held messages expire (failed ACK) after this */
	uint32_t route_hold_max;        /* frames held per unreachable destination node */
	size_t dedupe_capacity;
	uint32_t dedupe_ttl_ms;
	uint32_t ping_interval_ms, dead_after_ms;
	uint32_t backoff_base_ms, backoff_cap_ms;
	uint32_t max_clients;           /* client links accepted at once */
};

struct bq_node_stats {
	uint64_t frames_in, frames_out, relayed, flooded, delivered_local;
	uint64_t duplicates_dropped, ttl_expired, auth_failures, unknown_types, malformed;
	uint64_t bad_links_closed, out_dropped;
	uint64_t stored, store_delivered, store_expired, store_dropped;
	uint64_t route_held, route_flushed;
	uint64_t announces_sent, announces_received, scans_served;
	uint64_t acks_routed, unknown_user;
	uint32_t peers_up, clients, users_local, users_total, nodes_known;
};

/* Fill cfg with the defaults the option table also uses. */
void bq_node_config_defaults(struct bq_node_config *cfg);

/* Borrowed: loop, auth, log. NULL with err filled on failure. */
struct bq_node *bq_node_new(struct bq_loop *loop, const struct bq_node_config *cfg,
			    struct bq_log *log, char *err, size_t errlen);
/* Listen and start dialing. A listen address in use fails with a line naming it. */
int bq_node_start(struct bq_node *n, char *err, size_t errlen);
/*
 * Graceful end: local users go offline (announced to the neighbours), listeners close,
 * dialing stops and every link closes after its queue is written. Run the loop until
 * bq_node_busy() is false (bounded by the links' 1 s flush limit), then free.
 */
void bq_node_stop(struct bq_node *n);
bool bq_node_busy(const struct bq_node *n);
/* Free at once (links are dropped unflushed; call bq_node_stop first for a clean exit). */
void bq_node_free(struct bq_node *n);

/* Hand over a connection as if accepted on a listener (tests, in-memory pairs). */
struct bq_conn;
int bq_node_accept_conn(struct bq_node *n, struct bq_conn *c);
/* Reported in the "stats" document (the daemon's RLIMIT_NOFILE after raising it). */
void bq_node_set_nofile_limit(struct bq_node *n, uint64_t limit);
/* This node's address (BQ_NODE_ADDR_LEN bytes, owned by n). */
const uint8_t *bq_node_addr(const struct bq_node *n);

const struct bq_node_stats *bq_node_stats(const struct bq_node *n);
/*
 * JSON documents for the control socket and tests (caller frees with bq_free):
 * "stats" (counters), "users" (directory), "topology" (nodes and their neighbours,
 * links up). NULL on -ENOMEM.
 */
char *bq_node_status_json(struct bq_node *n, const char *what);

#endif
