/* SPDX-License-Identifier: MIT */
/*
 * backend store: the web backend's database (accounts, login sessions, pending
 * registrations to push to the manager, message history, applied manager events).
 *
 * Synchronous: every call runs on the backend's loop thread and is a handful of
 * index lookups (see docs/internals/backend-store.md). Each call is its own
 * transaction; bq_bstore_begin() ... bq_bstore_commit() groups calls (the manager
 * posts up to 100 events per request: one fsync for all of them). Inside a batch
 * every call runs in a savepoint, so a call that fails leaves nothing behind and the
 * batch can go on.
 *
 * Errors are negative errno values: -ENOENT (no such row), -EEXIST (a unique key is
 * taken), -EINVAL (bad argument), -EMSGSIZE (a value over its limit), -ENOMEM,
 * -EBUSY, -ENOSPC, -EIO...
 *
 * Strings handed to callbacks are borrowed: valid only during the call. Callbacks of
 * users_since, msg_page and msg_get run while a statement is open and must not call
 * into the store; pending_due's callback may (rows are copied first).
 *
 * The SQL is portable (PostgreSQL may replace SQLite, ARCHITECTURE.md §11).
 */
#ifndef BQ_BACKEND_STORE_H
#define BQ_BACKEND_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

struct bq_bstore;

enum {
	BQ_BSTORE_ID_LEN = 16,	    /* user ids: 16 lowercase hex digits */
	BQ_BSTORE_NAME_MAX = 64,    /* usernames, bytes */
	BQ_BSTORE_HASH_MAX = 255,   /* password hash (encoded string), bytes */
	BQ_BSTORE_TOKEN_MAX = 128,  /* session token hash (caller's encoding), bytes */
	BQ_BSTORE_PEER_MAX = 64,    /* message endpoints: web or mesh user ids, bytes */
	BQ_BSTORE_MSGID_MAX = 64,   /* message ids, bytes */
	BQ_BSTORE_EVENT_MAX = 128,  /* manager event ids, bytes */
	BQ_BSTORE_TEXT_MAX = 65536, /* message text, bytes */
	BQ_BSTORE_REASON_MAX = 255, /* longer reasons and errors are cut (UTF-8 safe) */
	BQ_BSTORE_KEY_MAX = 64,	    /* meta keys */
	BQ_BSTORE_VALUE_MAX = 1024, /* meta values */
	BQ_BSTORE_PAGE_MAX = 1000,  /* limit of one users_since, msg_page or pending_due */
	/* "broadcast" or two escaped peers joined by ':' (see bq_bstore_conv_key) */
	BQ_BSTORE_CONV_MAX = 2 * 3 * BQ_BSTORE_PEER_MAX + 1,
};

/* Seconds between two writes of a session's last_seen_ms. */
#define BQ_BSTORE_SEEN_EVERY_MS 60000

/* ---- open ---------------------------------------------------------------------- */

/*
 * Open (creating parent directories and the file) and bring the schema to version 1.
 * path is copied, log borrowed (must outlive the store; NULL: silent). 0 and *out, or
 * the error of bq_db_open / bq_db_migrate (-EPROTO: the database is newer).
 */
int bq_bstore_open(const char *path, struct bq_log *log, struct bq_bstore **out);
/* Rolls back an open batch, then closes. NULL ok. */
void bq_bstore_close(struct bq_bstore *bs);

/* A batch of calls in one transaction. begin inside a batch is -EALREADY;
 * commit/rollback outside one -EINVAL. A failed commit is rolled back. */
int bq_bstore_begin(struct bq_bstore *bs);
int bq_bstore_commit(struct bq_bstore *bs);
int bq_bstore_rollback(struct bq_bstore *bs);

/* Fill out[17] with a fresh random 64-bit id as 16 lowercase hex digits and a NUL. */
void bq_bstore_new_id(char out[BQ_BSTORE_ID_LEN + 1]);

/* ---- users --------------------------------------------------------------------- */

struct bq_buser {
	char id[BQ_BSTORE_ID_LEN + 1];
	char username[BQ_BSTORE_NAME_MAX + 1]; /* as registered */
	char pass_hash[BQ_BSTORE_HASH_MAX + 1];
	bool is_admin;
	int64_t created_ms;
	int64_t change_seq;
};

enum {
	BQ_BSTORE_ADMIN = 1u << 0,	    /* make this user an admin */
	BQ_BSTORE_ADMIN_IF_FIRST = 1u << 1, /* ... or if no user was ever created before */
};

/*
 * Create a user with a fresh random id. username: 1..64 bytes, unique ignoring ASCII
 * case (deleted users keep their name: it is never given to someone else);
 * pass_hash 1..255 bytes. flags: BQ_BSTORE_ADMIN when the caller's configured admin
 * name matches; BQ_BSTORE_ADMIN_IF_FIRST when no admin name is configured, so the first
 * user ever becomes the admin. *first (NULL ok) tells whether this was the first user
 * ever. out (NULL ok) gets the new row. 0, -EEXIST (name taken), -EINVAL, -EMSGSIZE.
 */
int bq_bstore_user_create(struct bq_bstore *bs, const char *username, const char *pass_hash,
			  unsigned flags, int64_t now_ms, struct bq_buser *out, bool *first);
/* Live users only: a deleted user is -ENOENT. name ignores ASCII case. */
int bq_bstore_user_get_by_name(struct bq_bstore *bs, const char *username, struct bq_buser *out);
int bq_bstore_user_get_by_id(struct bq_bstore *bs, const char *id, struct bq_buser *out);
/*
 * Soft delete: sets deleted_ms, moves the user to a new change_seq (so the manager's
 * poll reports it deleted) and removes its sessions and pending connect, in one
 * transaction. 0, -ENOENT (unknown or already deleted).
 */
int bq_bstore_user_delete(struct bq_bstore *bs, const char *id, int64_t now_ms);
/* Live (not deleted) users. */
int bq_bstore_user_count(struct bq_bstore *bs, int64_t *out);

/* One user for the manager's poll; strings borrowed for the call. */
struct bq_buser_change {
	const char *id;
	const char *username;
	bool deleted;
	int64_t change_seq;
};

/* Return 0 to go on; anything else stops the walk and is returned. */
typedef int (*bq_buser_change_cb)(void *user_data, const struct bq_buser_change *c);

/*
 * Users whose change_seq > cursor, in change_seq order, at most limit (1..1000).
 * *next_cursor gets the change_seq of the last user reported (cursor itself when
 * none), *more whether users remain after it. Every create and delete takes a new
 * change_seq, so a user appears again when deleted. 0, -EINVAL, or fn's value (then
 * *next_cursor is the last user fn accepted).
 */
int bq_bstore_users_since(struct bq_bstore *bs, int64_t cursor, size_t limit, bq_buser_change_cb fn,
			  void *user_data, int64_t *next_cursor, bool *more);

/* ---- sessions ------------------------------------------------------------------ */

/* token_hash: the caller's hash of the token (never the token), 1..128 bytes.
 * 0, -ENOENT (no such live user), -EEXIST (hash already stored). */
int bq_bstore_session_add(struct bq_bstore *bs, const char *token_hash, const char *user_id,
			  int64_t now_ms, int64_t expires_ms);
/*
 * The session's user, or -ENOENT when unknown, expired (expires_ms <= now_ms) or its
 * user deleted. Writes last_seen_ms only when it is BQ_BSTORE_SEEN_EVERY_MS old, so a
 * busy browser does not turn every request into a write. out NULL ok.
 */
int bq_bstore_session_lookup(struct bq_bstore *bs, const char *token_hash, int64_t now_ms,
			     struct bq_buser *out);
/* 0 or -ENOENT. */
int bq_bstore_session_remove(struct bq_bstore *bs, const char *token_hash);
/* Deletes sessions with expires_ms <= now_ms; returns how many (>= 0) or -errno. */
int bq_bstore_session_purge_expired(struct bq_bstore *bs, int64_t now_ms);
/* last_seen_ms of a session (for tests and /api/me). 0 or -ENOENT. */
int bq_bstore_session_last_seen(struct bq_bstore *bs, const char *token_hash, int64_t *out);

/* ---- pending connects (POST /api/connect to the manager, kept until it works) -- */

struct bq_bpending {
	char user_id[BQ_BSTORE_ID_LEN + 1];
	char user_name[BQ_BSTORE_NAME_MAX + 1];
	int attempts;
	int64_t next_try_ms;
	char last_error[BQ_BSTORE_REASON_MAX + 1]; /* "" when none */
};

/* The row is a copy the callback may keep; it may call into the store. */
typedef int (*bq_bpending_cb)(void *user_data, const struct bq_bpending *p);

/* Insert, or restart an existing one (attempts 0, no error). 0, -ENOENT (no live user). */
int bq_bstore_pending_upsert(struct bq_bstore *bs, const char *user_id, const char *user_name,
			     int64_t next_try_ms);
/*
 * Call fn for up to limit (1..1000) connects with next_try_ms <= now_ms, earliest
 * first (ties by user id). Rows are read first, then reported, so fn may reschedule
 * or remove. 0, -ENOMEM, or fn's non-zero value (later rows are not reported).
 */
int bq_bstore_pending_due(struct bq_bstore *bs, int64_t now_ms, size_t limit, bq_bpending_cb fn,
			  void *user_data);
/* last_error NULL ok (cut at 255 bytes). 0 or -ENOENT. */
int bq_bstore_pending_reschedule(struct bq_bstore *bs, const char *user_id, int attempts,
				 int64_t next_try_ms, const char *last_error);
int bq_bstore_pending_remove(struct bq_bstore *bs, const char *user_id);
int bq_bstore_pending_count(struct bq_bstore *bs, int64_t *out);

/* ---- messages ------------------------------------------------------------------ */

/*
 * States. Terminal ones never change again (a late "sent" cannot undo "delivered"):
 *   queued, sent                          in flight (may move between them)
 *   delivered, failed, broadcast          final answers for outbound messages
 *   received                              an inbound message (nothing follows)
 */
#define BQ_BSTORE_TERMINAL_STATES "delivered", "failed", "broadcast", "received"
bool bq_bstore_state_valid(const char *state);
bool bq_bstore_state_terminal(const char *state);

/*
 * Conversation key: "broadcast" when b is "broadcast", otherwise the two peer ids
 * sorted (byte order) and joined by ':' ("alice:bob"). Mesh ids may hold ':', so each
 * id is escaped first (':' as "%3A", '%' as "%25"): ids without those characters give
 * the plain form, and no two pairs share a key. out must hold BQ_BSTORE_CONV_MAX + 1.
 * 0, -EINVAL (empty or over BQ_BSTORE_PEER_MAX).
 */
int bq_bstore_conv_key(const char *a, const char *b, char *out, size_t cap);

struct bq_bmsg {
	const char *id;	  /* 1..64 bytes */
	const char *conv; /* 1..BQ_BSTORE_CONV_MAX bytes */
	const char *from_id;
	const char *to_id; /* "broadcast" for a broadcast */
	const char *text;  /* text_len bytes, no NUL (PostgreSQL TEXT cannot hold one) */
	size_t text_len;
	const char *state;  /* one of the states above */
	const char *reason; /* NULL: none */
	int64_t created_ms;
	int64_t updated_ms; /* reported; insert sets it to created_ms */
};

/*
 * Store a message once: an id already stored is -EEXIST and the stored row is left as
 * it was (an inbound message delivered twice). 0, -EEXIST, -EINVAL, -EMSGSIZE.
 */
int bq_bstore_msg_insert(struct bq_bstore *bs, const struct bq_bmsg *m);
/*
 * Move a message to state (reason NULL ok, cut at 255 bytes). A terminal message is
 * left alone: 0 with *changed false. *changed NULL ok. 0, -ENOENT, -EINVAL.
 */
int bq_bstore_msg_set_state(struct bq_bstore *bs, const char *id, const char *state,
			    const char *reason, int64_t at_ms, bool *changed);
/*
 * Give a message its final id: the backend stores a message it sends under an id of its
 * own (bq_bstore_new_id) before the manager answers with the mesh id. 0, -ENOENT,
 * -EEXIST (new_id already stored).
 */
int bq_bstore_msg_rekey(struct bq_bstore *bs, const char *old_id, const char *new_id);

typedef int (*bq_bmsg_cb)(void *user_data, const struct bq_bmsg *m);

/* fn once with the message. 0, -ENOENT, or fn's value. */
int bq_bstore_msg_get(struct bq_bstore *bs, const char *id, bq_bmsg_cb fn, void *user_data);
/*
 * Messages of conv, newest first ((created_ms, id) descending), strictly before the
 * cursor (before_ms, before_id): the last message of the previous page. before_id NULL
 * starts from the newest. At most limit (1..1000). 0, -EINVAL, or fn's value.
 */
int bq_bstore_msg_page(struct bq_bstore *bs, const char *conv, int64_t before_ms,
		       const char *before_id, size_t limit, bq_bmsg_cb fn, void *user_data);

/* ---- manager events (idempotency) ----------------------------------------------- */

/* Record that event id was applied: 0 the first time, -EEXIST afterwards. */
int bq_bstore_event_seen(struct bq_bstore *bs, const char *id, int64_t at_ms);
/* Forget events recorded before older_than_ms; returns how many (>= 0) or -errno. */
int bq_bstore_event_prune(struct bq_bstore *bs, int64_t older_than_ms);

/* ---- meta ---------------------------------------------------------------------- */

/*
 * Small settings (e.g. the service token's hash). Keys 1..64 bytes, values up to 1024.
 * The store's own key "change_seq" cannot be set. get: 0, -ENOENT, -ENOSPC (cap too
 * small; cap includes the NUL).
 */
int bq_bstore_meta_get(struct bq_bstore *bs, const char *key, char *out, size_t cap);
int bq_bstore_meta_set(struct bq_bstore *bs, const char *key, const char *value);

#endif
