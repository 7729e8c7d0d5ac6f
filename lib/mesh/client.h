/* SPDX-License-Identifier: MIT */
/*
 * client: the mesh client engine (a "MeshClient"): one link to a node, carrying one
 * user (dedicated mode) or many (shared mode). Used by blueq-cli, the simulator's
 * bots, and the client manager.
 *
 * Link states: IDLE -> CONNECTING -> HELLO -> UP; on failure BACKOFF (decorrelated
 * jitter) -> CONNECTING again; STOPPED after bq_mclient_stop.
 * User states: ATTACHING (ATTACH sent) -> SCANNING (SCAN sent, directory arriving)
 * -> READY; back to ATTACHING automatically after every reconnect; DETACHED at the end.
 *
 * Messages: bq_muser_send queues a MSG with a random (or caller-given) 64-bit id and
 * retransmits it (attempt + 1) until an end-to-end ACK (DELIVERED or a failure
 * status) arrives or it expires; ACCEPTED / STORED acks are reported but retries go
 * on until DELIVERED (the doubling schedule continues; STORED jumps to the slowest
 * pace). Inbound MSGs are de-duplicated by (source user, msg_id) and acknowledged
 * DELIVERED after the message callback ran (a duplicate is acknowledged again but not
 * reported twice).
 * The client keeps a copy of the directory (users and nodes), kept current by the
 * node's DIRECTORY pushes after the initial scan.
 */
#ifndef BQ_MESH_CLIENT_H
#define BQ_MESH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "transport/addr.h"

struct bq_mclient;
struct bq_muser;

enum bq_mclient_state {
	BQ_MC_IDLE,
	BQ_MC_CONNECTING,
	BQ_MC_HELLO,
	BQ_MC_UP,
	BQ_MC_BACKOFF,
	BQ_MC_STOPPED,
};

enum bq_muser_state {
	BQ_MU_ATTACHING,
	BQ_MU_SCANNING,
	BQ_MU_READY,
	BQ_MU_DETACHED,
	BQ_MU_REJECTED, /* the node refused the attach (reason given) */
};

struct bq_mclient_config {
	struct bq_addr node;          /* where to connect */
	const char *name;             /* client name sent in HELLO; copied */
	const struct bq_auth *auth;   /* optional network key; borrowed */
	uint32_t connect_timeout_ms;  /* default 10000 */
	uint32_t hello_timeout_ms;    /* HELLO + attach + scan, default 5000 */
	uint32_t ping_interval_ms;    /* default 5000 */
	uint32_t dead_after_ms;       /* default 15000 */
	uint32_t backoff_base_ms;     /* default 100 */
	uint32_t backoff_cap_ms;      /* default 30000 */
	uint32_t retransmit_ms;       /* first retry, default 1000, doubles to 30000 */
	uint32_t msg_expire_ms;       /* give up and report EXPIRED, default 600000 */
	uint32_t max_outstanding;     /* unacked messages per user, default 1024 */
	/*
	 * Added by the client engine (zero = default): inbound duplicate suppression keys
	 * kept per client (default 4096; raise it for shared links with many users), and
	 * no_directory: do not keep a directory copy (saves memory when thousands of
	 * dedicated links each scan). When the node advertises BQ_CAP_SCAN_FLAGS such a
	 * link scans with ONESHOT | SUMMARY: the node answers with one empty DIRECTORY and
	 * pushes no later changes, so the directory callback sees no records at all.
	 * Against an older node it sends a plain SCAN(0) and the callback sees every
	 * record (snapshot and pushes) while no copy is kept.
	 */
	size_t dedupe_capacity;
	bool no_directory;
	/*
	 * Added for the client manager: connect_gate (NULL: dial at once) is asked once
	 * before every dial, the first and each reconnect, and returns how many
	 * milliseconds to wait before dialing. The answer is a reservation (a token-bucket
	 * slot): the client dials when the wait ends without asking again, so thousands of
	 * clients behind one gate reconnect at a bounded rate after the node restarts.
	 * While it waits the link state does not change (IDLE at start, BACKOFF after a
	 * failure). connect_gate_ud is borrowed.
	 */
	uint32_t (*connect_gate)(void *connect_gate_ud);
	void *connect_gate_ud;
	/*
	 * hold_receipts: the DELIVERED receipt of a direct message is not sent when the
	 * message arrives but when the owner calls bq_muser_confirm, once the message is
	 * safe where it is going (the client manager: stored by the web backend). Until
	 * then the sender keeps retransmitting, and each repeat goes to message_repeat (the
	 * first copy alone to message), so a receipt that was lost is sent again.
	 */
	bool hold_receipts;
};

struct bq_mclient_cbs {
	void (*link_state)(struct bq_mclient *c, enum bq_mclient_state st, int err,
			   const char *reason, void *ud);
	void (*user_state)(struct bq_muser *u, enum bq_muser_state st, const char *reason,
			   void *ud);
	/* A directory record was added or changed (kind user or node). */
	void (*directory)(struct bq_mclient *c, const struct bq_dir_entry *e, void *ud);
	/* An inbound MSG for u (first copy only). */
	void (*message)(struct bq_muser *u, const struct bq_frame *f, void *ud);
	/* With hold_receipts: a later copy of a direct message already given to message. */
	void (*message_repeat)(struct bq_muser *u, const struct bq_frame *f, void *ud);
	/* Progress of a message u sent: ACCEPTED, STORED, DELIVERED or a failure. */
	void (*ack)(struct bq_muser *u, uint64_t msg_id, uint8_t status, const char *reason,
		    void *ud);
};

void bq_mclient_config_defaults(struct bq_mclient_config *cfg);

/* cfg, cbs copied; loop, log borrowed. NULL on -ENOMEM. */
struct bq_mclient *bq_mclient_new(struct bq_loop *loop, const struct bq_mclient_config *cfg,
				  const struct bq_mclient_cbs *cbs, void *ud, struct bq_log *log);
/* Start connecting (and reconnecting) in the background. 0 or a negative errno (err). */
int bq_mclient_start(struct bq_mclient *c, char *err, size_t errlen);
/* Stop: detach users, close the link, no more reconnects. */
void bq_mclient_stop(struct bq_mclient *c);
/* Free everything; no callback runs. Never call it from inside one of c's callbacks. */
void bq_mclient_free(struct bq_mclient *c);

enum bq_mclient_state bq_mclient_state(const struct bq_mclient *c);
const char *bq_mclient_state_name(enum bq_mclient_state st);
/* Last failure as a line ("connection refused by unix:/x"), "" if none. */
const char *bq_mclient_last_error(const struct bq_mclient *c);
uint32_t bq_mclient_reconnects(const struct bq_mclient *c);
uint32_t bq_mclient_rtt_us(const struct bq_mclient *c);
/* The address actually dialled (after the address map), as text. Owned by c. */
const char *bq_mclient_node_text(const struct bq_mclient *c);
/*
 * True while a connection or link still exists (e.g. after bq_mclient_stop, until the
 * DETACH frames are flushed and the link closed). Run the loop until false, then free.
 */
bool bq_mclient_busy(const struct bq_mclient *c);

/*
 * Add a user to this link. Attached now if the link is up, else when it comes up.
 * ids are copied. NULL on -ENOMEM or an invalid id/name (see bq_user_id_valid).
 */
struct bq_muser *bq_mclient_attach(struct bq_mclient *c, const char *user_id, const char *name,
				   void *user_ud);
/*
 * Send DETACH (if up) and free the user (its memory goes after the current loop round,
 * so this is safe from inside any callback). Outstanding messages are dropped without
 * an ack callback.
 */
void bq_muser_detach(struct bq_muser *u);

enum bq_muser_state bq_muser_state(const struct bq_muser *u);
const char *bq_muser_state_name(enum bq_muser_state st);
const char *bq_muser_id(const struct bq_muser *u);
/*
 * With hold_receipts: send the DELIVERED receipt for message msg_id that src sent to u.
 * 0; -ENOTCONN when the link is down (the sender's next repeat asks again); -EINVAL.
 */
int bq_muser_confirm(struct bq_muser *u, const char *src, uint64_t msg_id);
void *bq_muser_data(const struct bq_muser *u);
struct bq_mclient *bq_muser_client(const struct bq_muser *u);
/* Messages sent by u and not yet settled (counts against max_outstanding). */
uint32_t bq_muser_outstanding(const struct bq_muser *u);

/*
 * Send text to dst (a user id) or to everyone (dst NULL: broadcast, no receipts: the
 * ack callback reports ACCEPTED only). msg_id 0 picks a random id; *id_out gets it.
 * 0, -EINVAL (bad dst), -EMSGSIZE (text over BQ_TEXT_MAX), -ENOBUFS (too many
 * outstanding), -EEXIST (msg_id already outstanding on this client), -ENOTCONN (user
 * rejected or detached), -ENOMEM. Queued while the user is not READY; sent on READY.
 * Statuses reach cbs.ack once each; DELIVERED and the failures are final.
 */
int bq_muser_send(struct bq_muser *u, const char *dst, const void *text, size_t len,
		  uint64_t msg_id, uint64_t *id_out);

/* Directory copy. */
size_t bq_mclient_dir_count(const struct bq_mclient *c);
/* Presence (enum bq_presence) of user_id in the directory copy, or -ENOENT. */
int bq_mclient_dir_presence(const struct bq_mclient *c, const char *user_id);
/* Calls fn for every user record (kind BQ_DIR_USER), then every node (BQ_DIR_NODE). */
void bq_mclient_dir_foreach(const struct bq_mclient *c,
			    void (*fn)(const struct bq_dir_entry *e, void *ud), void *ud);
/*
 * Start keeping a directory copy on a client created with no_directory (the manager
 * moves the copy to another link when the link that kept it goes away). If the
 * directory was already scanned on this link, a fresh plain SCAN(0) (no flags: the node
 * sends the full snapshot and subscribes the link to later changes) fills the copy; the
 * directory callback reports only records that change the (empty) copy, i.e. all.
 */
void bq_mclient_keep_directory(struct bq_mclient *c);
/* True when c keeps a directory copy. */
bool bq_mclient_keeps_directory(const struct bq_mclient *c);

#endif
