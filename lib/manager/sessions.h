/* SPDX-License-Identifier: MIT */
/*
 * sessions: the client manager's session registry. One struct bq_session per user
 * (the seed's "MeshClient per user"), each with its own state machine, last error,
 * timestamps and counters, carried by the MeshClient engine (lib/mesh/client.h) over
 *   - dedicated links: one bq_mclient per user (default; what the seed did), or
 *   - shared links: a pool of N bq_mclients (default 4), each user on the least
 *     loaded one (what real radios need: a Pi holds about 7 ACL links).
 * Every dial, first or reconnect, passes one token bucket (connect_rate, connect_burst)
 * so a restarted Odin is not stormed; the busiest second seen is in the stats.
 *
 * States: new -> connecting -> attaching -> scanning -> ready; backoff when the link
 * is lost (then connecting again); failed when the node refused the user or the link
 * could not even be started (retried with backoff, reported meanwhile);
 * disconnecting -> disconnected on request, after which the session is removed.
 * Every transition is logged (user_id, from, to, reason) and reported to cbs.state.
 * Design notes: docs/manager.md.
 */
#ifndef BQ_MANAGER_SESSIONS_H
#define BQ_MANAGER_SESSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "transport/addr.h"

struct bq_sessions;
struct bq_session;

enum bq_session_state {
	BQ_SESS_NEW,
	BQ_SESS_CONNECTING,
	BQ_SESS_ATTACHING,
	BQ_SESS_SCANNING,
	BQ_SESS_READY,
	BQ_SESS_BACKOFF,
	BQ_SESS_DISCONNECTING,
	BQ_SESS_DISCONNECTED,
	BQ_SESS_FAILED,
};
#define BQ_SESS_NSTATES 9

enum bq_link_mode {
	BQ_LINK_DEDICATED = 0,
	BQ_LINK_SHARED = 1,
};

struct bq_sessions_config {
	struct bq_addr odin; /* resolved through the address map at every dial */
	enum bq_link_mode mode;
	uint32_t shared_links;	       /* pool size in shared mode, default 4, max 64 */
	const struct bq_auth *auth;    /* optional network key; borrowed */
	const char *client_name;       /* HELLO name, default "blueq-manager"; copied */
	uint32_t connect_timeout_ms;   /* default 10000 */
	uint32_t handshake_timeout_ms; /* HELLO, ATTACH and SCAN progress, default 5000 */
	uint32_t ping_interval_ms;     /* heartbeat on idle links, default 5000 */
	uint32_t dead_after_ms;	       /* default 15000 */
	uint32_t backoff_base_ms;      /* default 100 */
	uint32_t backoff_cap_ms;       /* default 30000 */
	uint32_t connect_rate;	       /* dials per second for all links together, default 2500 */
	uint32_t connect_burst;	       /* default 100 */
	uint32_t directory_links;      /* links that keep a directory copy, default 2 */
	uint32_t retransmit_ms;	       /* passed to the client engine (0: its default) */
	uint32_t msg_expire_ms;
	uint32_t max_outstanding;
	/*
	 * Hold the DELIVERED receipts of inbound direct messages until the owner calls
	 * bq_sessions_confirm (the client engine's hold_receipts): the manager confirms
	 * once the web backend has stored the message, so a receipt never claims more.
	 */
	bool hold_receipts;
};

/*
 * Owner callbacks (all optional). They may call any function here, including
 * bq_sessions_disconnect on the session being reported; never bq_sessions_free.
 * Strings and the session are valid during the call only (copy what you keep).
 */
struct bq_sessions_cbs {
	/* from != to always. err: negative errno of the cause, 0 if none. */
	void (*state)(struct bq_session *s, enum bq_session_state from, enum bq_session_state to,
		      int err, const char *reason, void *ud);
	/* Inbound text for s's user from src; dst is s's user id, or NULL for a broadcast. */
	void (*message)(struct bq_session *s, const char *src, const char *dst, uint64_t msg_id,
			const void *text, size_t len, void *ud);
	/*
	 * With hold_receipts: another copy of a direct message already given to message
	 * (its sender has no receipt yet). Not counted as received again.
	 */
	void (*message_repeat)(struct bq_session *s, const char *src, const char *dst,
			       uint64_t msg_id, const void *text, size_t len, void *ud);
	/* Progress of a message s sent: enum bq_ack_status (ACCEPTED, DELIVERED, ...). */
	void (*ack)(struct bq_session *s, uint64_t msg_id, uint8_t status, const char *reason,
		    void *ud);
	/* A directory record (user or node) was added or changed on the mesh. */
	void (*directory)(const struct bq_dir_entry *e, void *ud);
};

typedef void (*bq_sessions_destroy_fn)(void *ud);

struct bq_sessions_stats {
	size_t total;
	size_t by_state[BQ_SESS_NSTATES]; /* indexed by enum bq_session_state */
	uint32_t links, links_up;
	uint64_t dials;		     /* connect attempts made (all links) */
	uint32_t peak_connect_rate;  /* most dials seen in one second */
	uint32_t connect_rate_limit; /* the configured bound (0: none) */
	uint32_t connect_burst;
	uint64_t sent, received; /* messages, all sessions, since start */
	size_t directory_users;	 /* users + nodes in the directory copy served */
};

/* Full detail of one session, for GET /api/status and /api/clients/<id>. */
struct bq_session_info {
	const char *user_id, *user_name; /* owned by the session */
	enum bq_session_state state;
	const char *last_error; /* "" if none; owned by the session */
	int last_error_code;	/* negative errno, 0 if none */
	uint64_t created_ms, state_since_ms, connected_since_ms; /* wall clock; 0 = never */
	uint32_t reconnects;
	uint64_t sent, received;
	uint32_t outstanding; /* messages not yet settled */
	int link_index;	      /* pool index in shared mode, -1 in dedicated */
};

void bq_sessions_config_defaults(struct bq_sessions_config *cfg);
const char *bq_session_state_name(enum bq_session_state st);
const char *bq_link_mode_name(enum bq_link_mode m);
/* "dedicated" | "shared": 0 or -EINVAL. */
int bq_link_mode_parse(const char *s, enum bq_link_mode *out);

/*
 * cfg and cbs are copied; loop and log are borrowed and must outlive the registry.
 * destroy(ud) runs from bq_sessions_free (destroy may be NULL). NULL on failure (err).
 */
struct bq_sessions *bq_sessions_new(struct bq_loop *loop, const struct bq_sessions_config *cfg,
				    const struct bq_sessions_cbs *cbs, void *ud,
				    bq_sessions_destroy_fn destroy, struct bq_log *log, char *err,
				    size_t errlen);
/*
 * Graceful end: every link sends DETACH for its users and closes after flushing; no
 * state callbacks run after this. Run the loop until bq_sessions_busy() is false, then
 * free.
 */
void bq_sessions_stop(struct bq_sessions *reg);
bool bq_sessions_busy(const struct bq_sessions *reg);
/* Free everything at once (no callback runs). Never from inside a registry callback. */
void bq_sessions_free(struct bq_sessions *reg);

/*
 * Create the user's session and start connecting it, or find the existing one (a failed
 * one is retried at once rather than at its next backoff step).
 * 0 (created, or existing and not ready yet), -EALREADY (existing and ready: HTTP 200
 * rather than 202), -EINVAL (user id or name invalid: bq_user_id_valid /
 * bq_name_valid; name NULL means the id), -ENOMEM. *out (may be NULL) gets the session
 * in the first two cases; it is owned by the registry.
 */
int bq_sessions_connect(struct bq_sessions *reg, const char *user_id, const char *user_name,
			struct bq_session **out);
/*
 * Detach the user and remove the session: state disconnecting, then disconnected
 * (shared: at once; dedicated: once its link has flushed the DETACH), then it is
 * gone. 0 or -ENOENT. The id can be connected again at once (a new session).
 */
int bq_sessions_disconnect(struct bq_sessions *reg, const char *user_id);
/* NULL if unknown. Owned by the registry; valid until the session is removed. */
struct bq_session *bq_sessions_get(const struct bq_sessions *reg, const char *user_id);
/*
 * With hold_receipts: send the DELIVERED receipt of message msg_id from src to user_id.
 * 0; -ENOENT (no such session, or not attached now: the sender's next repeat brings
 * it back), -ENOTCONN, -EINVAL.
 */
int bq_sessions_confirm(struct bq_sessions *reg, const char *user_id, const char *src,
			uint64_t msg_id);
size_t bq_sessions_count(const struct bq_sessions *reg);
/* fn runs for every session, in no particular order; it must not connect or disconnect. */
void bq_sessions_foreach(const struct bq_sessions *reg,
			 void (*fn)(const struct bq_session *s, void *ud), void *ud);
/* O(number of links): per-state counts are kept up to date at every transition. */
void bq_sessions_stats(const struct bq_sessions *reg, struct bq_sessions_stats *out);
/*
 * fn(rtt) for every link that is up and has measured a PING round trip (the last one,
 * in microseconds). O(links); for /metrics.
 */
void bq_sessions_link_rtts(const struct bq_sessions *reg, void (*fn)(uint32_t rtt_us, void *ud),
			   void *ud);
/* The address last dialled, as text (after the address map). Owned by reg. */
const char *bq_sessions_odin_text(const struct bq_sessions *reg);

/*
 * Send text from user_id to dst (a user id) or to everyone (dst NULL). msg_id is the
 * caller's (the outbox's) id; 0 picks a random one, written to *id_out (may be NULL).
 * 0, -ENOENT (unknown sender), -EMSGSIZE (len > BQ_TEXT_MAX), -EINVAL (bad dst),
 * -EEXIST (msg_id outstanding), -ENOBUFS (too many outstanding), -ENOTCONN (the
 * session failed: its user was refused), -ENOMEM. Queued until the session is ready.
 * Progress reaches cbs.ack; a broadcast gets ACCEPTED only.
 */
int bq_sessions_send(struct bq_sessions *reg, const char *user_id, const char *dst,
		     const void *text, size_t len, uint64_t msg_id, uint64_t *id_out);

/*
 * The mesh directory, read from one link that keeps a copy (the first one up; see
 * docs/manager.md for which links keep one).
 */
size_t bq_sessions_dir_count(const struct bq_sessions *reg);
/* enum bq_presence of user_id, or -ENOENT. */
int bq_sessions_dir_presence(const struct bq_sessions *reg, const char *user_id);
void bq_sessions_dir_foreach(const struct bq_sessions *reg,
			     void (*fn)(const struct bq_dir_entry *e, void *ud), void *ud);

/* Session accessors. */
const char *bq_session_user_id(const struct bq_session *s);
enum bq_session_state bq_session_state(const struct bq_session *s);
void bq_session_info(const struct bq_session *s, struct bq_session_info *out);

#endif
