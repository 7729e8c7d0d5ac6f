/* SPDX-License-Identifier: MIT */
/*
 * link: a framed, authenticated, heartbeated connection between two blueq peers
 * (node-node or client-node), on top of any struct bq_conn. It owns:
 *   - the bounded input buffer and incremental decoding (bq_frame_decode);
 *   - protocol-level error handling, identical for every engine:
 *       length over BQ_FRAME_MAX  -> close ("frame length N over limit")
 *       version mismatch          -> ERROR code 1 naming both versions, then close
 *       malformed frame           -> ERROR code 3, then close
 *       unknown type              -> ERROR code 2, counted, link stays up
 *       bad or missing tag        -> frame dropped and counted (when auth is required)
 *     every case is counted in struct bq_link_stats;
 *   - the bounded output queue, coalesced: frames sent during one loop round leave
 *     in as few syscalls as possible (flushed from a deferred call);
 *   - heartbeat: PING after ping_interval of silence, close with -ETIMEDOUT when
 *     nothing arrives for dead_after; PINGs are answered with PONG here and never
 *     reach the engine; PONGs update the round-trip time.
 * Engines see whole, verified frames and one close notification.
 */
#ifndef BQ_MESH_LINK_H
#define BQ_MESH_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "transport/conn.h"

struct bq_link;

struct bq_link_config {
	const char *name;          /* for logs ("peer D8:3A:..", "client 7"); copied */
	size_t max_out_bytes;      /* output queue limit; 0 = 4 * BQ_FRAME_MAX */
	const struct bq_auth *auth; /* borrowed; NULL = frames go out unsigned */
	bool require_auth;         /* drop inbound frames without a valid tag */
	uint32_t ping_interval_ms; /* 0 = no heartbeat */
	uint32_t dead_after_ms;    /* 0 = never declared dead */
};

struct bq_link_stats {
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t auth_failures, unknown_types, malformed, oversize, version_mismatch;
	uint64_t out_dropped; /* sends refused because the output queue was full */
	uint32_t rtt_us;      /* last PING round trip, 0 if none yet */
};

/*
 * raw/raw_len: the frame's exact bytes (for relaying without re-encoding); valid only
 * during the callback, like f's pointers.
 */
typedef void (*bq_link_frame_cb)(struct bq_link *l, const struct bq_frame *f,
				 const uint8_t *raw, size_t raw_len, void *user_data);
/* The link is closed (err < 0 says why, reason is one line); free it from here or later. */
typedef void (*bq_link_close_cb)(struct bq_link *l, int err, const char *reason,
				 void *user_data);

/* Takes ownership of conn (also on failure). NULL on -ENOMEM. */
struct bq_link *bq_link_new(struct bq_loop *loop, struct bq_conn *conn,
			    const struct bq_link_config *cfg, struct bq_log *log);
void bq_link_set_handlers(struct bq_link *l, bq_link_frame_cb on_frame,
			  bq_link_close_cb on_close, void *user_data);

/*
 * Queue one frame: encode, sign when the link has a key (sets BQ_FF_AUTH), and flush at
 * the end of the loop round. 0, -ENOBUFS (queue full, counted), -EINVAL (bad frame) or
 * -ENOTCONN (closing).
 */
int bq_link_send(struct bq_link *l, const struct bq_frame *f);
/* Queue an already encoded (and, if needed, signed) frame as is. */
int bq_link_send_raw(struct bq_link *l, const uint8_t *frame, size_t len);
/* Send an ERROR frame (code, text). */
int bq_link_send_error(struct bq_link *l, uint16_t code, const char *text);

/*
 * Inbound tag checking. With a key, a frame that carries a tag is always verified
 * (a bad tag drops it and counts an auth failure). With require_auth on, a frame
 * without a tag is dropped too. Nodes turn this on once a peer says it is a node.
 */
void bq_link_set_require_auth(struct bq_link *l, bool on);

/* Bytes waiting in the output queue. */
size_t bq_link_pending(const struct bq_link *l);
/*
 * Close. With flush, queued frames are written first (bounded by a 1 s timer).
 * on_close runs exactly once, later from the loop (never inside this call); after it
 * the owner calls bq_link_free.
 */
void bq_link_close(struct bq_link *l, bool flush, int err, const char *reason);
/* Free (closes silently if still open; no callback runs after this). */
void bq_link_free(struct bq_link *l);

bool bq_link_open(const struct bq_link *l);
const char *bq_link_name(const struct bq_link *l);
const char *bq_link_peer(const struct bq_link *l);
const struct bq_link_stats *bq_link_stats(const struct bq_link *l);
/* Owner's tag for the link (e.g. a node's peer record). */
void bq_link_set_data(struct bq_link *l, void *data);
void *bq_link_data(const struct bq_link *l);

/* A fresh random 64-bit message id (libsodium randombytes). */
uint64_t bq_link_new_msg_id(void);

#endif
