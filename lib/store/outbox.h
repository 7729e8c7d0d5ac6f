/* SPDX-License-Identifier: MIT */
/*
 * outbox: the manager's durable outbox. A message answered with 202 is committed to
 * SQLite (WAL) before the answer, survives kill -9, and keeps its 64-bit id across
 * restarts so the destination's dedupe makes every resend harmless.
 *
 * Group commit without blocking the loop: bq_outbox_accept and bq_outbox_set_state
 * only queue an operation in memory. One writer thread takes everything queued, runs
 * it in ONE transaction (one fsync for the whole batch) and posts the batch back with a
 * bq_async; the accept callbacks then run on the loop thread, in the order the accepts
 * were made. Only then may the manager answer 202. State updates travel through the
 * same queue, so they are applied in order after the insert they refer to.
 *
 * Threading: every function here is for the loop thread only. The writer thread owns
 * the write connection; the loop thread owns a separate read-only connection for
 * bq_outbox_get and bq_outbox_pending (WAL readers never wait for the writer).
 *
 * States: accepted -> queued -> sent (Odin took it) -> delivered (end-to-end ACK),
 * or failed with a reason at any point. A broadcast has no per-recipient receipts: when
 * Odin takes it, it ends in the terminal state "broadcast", shown to people as
 * "sent to mesh". delivered, failed and broadcast are terminal: later updates of a
 * message in a terminal state are ignored.
 */
#ifndef BQ_STORE_OUTBOX_H
#define BQ_STORE_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"

struct bq_outbox;

enum bq_outbox_state {
	BQ_OUTBOX_ACCEPTED = 0,
	BQ_OUTBOX_QUEUED,
	BQ_OUTBOX_SENT,
	BQ_OUTBOX_DELIVERED,
	BQ_OUTBOX_FAILED,
	BQ_OUTBOX_BROADCAST,
};

#define BQ_OUTBOX_BROADCAST_DEST "broadcast"
#define BQ_OUTBOX_DEFAULT_MAX_OPS 100000u
#define BQ_OUTBOX_MAX_BODY 65536u /* bytes of message text */
#define BQ_OUTBOX_MAX_NAME 255u	  /* bytes of a user id or destination */
#define BQ_OUTBOX_MAX_REASON 255u /* longer reasons are cut */
#define BQ_OUTBOX_ID_LEN 16	  /* hex digits; buffers need BQ_OUTBOX_ID_LEN + 1 */

struct bq_outbox_opts {
	/*
	 * Operations waiting for the writer. accept answers -EAGAIN at max_ops;
	 * set_state only at twice that, so updates for messages already in flight still
	 * fit while new ones are refused. 0 = BQ_OUTBOX_DEFAULT_MAX_OPS.
	 */
	size_t max_ops;
	/* synchronous=NORMAL: survives kill -9 but not power loss (see store.md). */
	bool sync_normal;
};

/* Stable names ("accepted" ... "broadcast"), used in the database and the API. */
const char *bq_outbox_state_name(enum bq_outbox_state s);
/* Text for people: the name, except "sent to mesh" for broadcast. */
const char *bq_outbox_state_label(enum bq_outbox_state s);
/* 0 or -EINVAL. */
int bq_outbox_state_parse(const char *s, enum bq_outbox_state *out);
bool bq_outbox_state_terminal(enum bq_outbox_state s);

/* Message ids as text: 16 lowercase hex digits (out holds BQ_OUTBOX_ID_LEN + 1). */
void bq_outbox_id_format(uint64_t id, char *out);
/* Exactly 16 hex digits, either case. 0 or -EINVAL (also for the all-zero id). */
int bq_outbox_id_parse(const char *s, uint64_t *out);

/*
 * Open (creating it, its directories and its schema as needed) the outbox at path and
 * start the writer thread. path is copied; loop and log are borrowed and must outlive
 * the outbox. opts may be NULL. 0 and *out set, or a negative errno (bq_db_open's
 * errors, -EPROTO for a schema newer than this program, or pthread_create's).
 */
int bq_outbox_open(const char *path, struct bq_loop *loop, struct bq_log *log,
		   const struct bq_outbox_opts *opts, struct bq_outbox **out);
/*
 * Commit everything queued, stop the writer thread, run every outstanding accept
 * callback (with the commit's result), then free. NULL ok. Must not be called from an
 * outbox callback (defer it with bq_loop_defer).
 */
void bq_outbox_close(struct bq_outbox *ob);

/* A new message. Every pointer is borrowed for the call only (accept copies). */
struct bq_outbox_new {
	uint64_t id;		 /* 0: a random id (libsodium) */
	const char *user_id;	 /* sender, 1..BQ_OUTBOX_MAX_NAME bytes */
	const char *destination; /* a user id or BQ_OUTBOX_BROADCAST_DEST */
	const void *body;	 /* message text, body_len bytes (may hold any byte) */
	size_t body_len;	 /* 0..BQ_OUTBOX_MAX_BODY */
};

/*
 * err is 0 when the message is committed (durable), -EEXIST when the id was already
 * in the outbox (the existing row is unchanged), another negative errno when the
 * commit failed, -ECANCELED if the writer could not run at all. id is the message's
 * id (the generated one when the caller passed 0).
 */
typedef void (*bq_outbox_accept_cb)(struct bq_outbox *ob, int err, uint64_t id, void *user_data);

/*
 * Queue a message in state accepted. On success cb runs exactly once, later, on the
 * loop thread (never from inside this call), and *id_out (may be NULL) is set now.
 * Fails without calling cb: -EINVAL (bad names), -EMSGSIZE (body too long),
 * -EAGAIN (queue full: answer 503), -ESHUTDOWN (closing), -ENOMEM.
 */
int bq_outbox_accept(struct bq_outbox *ob, const struct bq_outbox_new *msg, bq_outbox_accept_cb cb,
		     void *user_data, uint64_t *id_out);

/*
 * Queue a state change with an optional reason (copied; NULL for none; cut at
 * BQ_OUTBOX_MAX_REASON). Applied in order after everything queued before it; a change
 * of a message in a terminal state, or of an unknown id, is ignored. Moving to sent
 * or broadcast counts one attempt. 0, -EINVAL (accepted is not a target state),
 * -EAGAIN, -ESHUTDOWN, -ENOMEM. Nothing calls back; commit errors are logged.
 */
int bq_outbox_set_state(struct bq_outbox *ob, uint64_t id, enum bq_outbox_state state,
			const char *reason);

struct bq_outbox_event {
	enum bq_outbox_state state;
	char *reason; /* owned by the message; NULL when none */
	uint64_t at_ms;
};

/* A committed message as read back. Every pointer is owned by the struct. */
struct bq_outbox_msg {
	uint64_t id;
	char *user_id;
	char *destination;
	char *body; /* body_len bytes plus a NUL */
	size_t body_len;
	enum bq_outbox_state state;
	char *reason;	     /* NULL when none */
	uint64_t created_ms; /* wall clock, taken when accept/set_state was called */
	uint64_t updated_ms;
	uint32_t attempts;
	struct bq_outbox_event *events; /* oldest first; NULL in bq_outbox_pending */
	size_t n_events;
};

/*
 * Read one committed message with its history (read-only connection, loop thread; a
 * point lookup). 0 and *out (free with bq_outbox_msg_free), -ENOENT, or a negative
 * errno. Operations still queued for the writer are not visible yet.
 */
int bq_outbox_get(struct bq_outbox *ob, uint64_t id, struct bq_outbox_msg **out);
void bq_outbox_msg_free(struct bq_outbox_msg *m);

/*
 * Called once per message; m and its strings are borrowed for the call only (events
 * are not loaded). Return 0 to go on, anything else to stop the walk.
 */
typedef int (*bq_outbox_pending_cb)(void *user_data, const struct bq_outbox_msg *m);

/*
 * At startup: every committed message not in a terminal state (accepted, queued and
 * sent: only delivered is end to end), oldest first, so the manager re-sends them with
 * the same ids. fn may call bq_outbox_set_state. Returns the number of messages
 * visited or a negative errno.
 */
long bq_outbox_pending(struct bq_outbox *ob, bq_outbox_pending_cb fn, void *user_data);

struct bq_outbox_stats {
	size_t queued;	     /* operations waiting for the writer now */
	uint64_t accepted;   /* accepts committed */
	uint64_t updates;    /* state changes committed (including ignored ones) */
	uint64_t commits;    /* transactions */
	uint64_t failed_ops; /* operations whose commit failed */
	uint64_t rejected;   /* accept/set_state calls refused with -EAGAIN */
	size_t max_batch;    /* largest batch in one transaction */
};

void bq_outbox_get_stats(struct bq_outbox *ob, struct bq_outbox_stats *out);

#endif
