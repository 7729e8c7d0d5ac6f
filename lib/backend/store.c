/* SPDX-License-Identifier: MIT */
#include "backend/store.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <sodium.h>

#include "core/alloc.h"
#include "store/db.h"

#define MOD "bstore"

/* A blocked query blocks the backend's loop: wait little for another writer. */
#define BUSY_MS 200
/* Random user ids collide with probability ~n^2/2^65; a retry is only for form. */
#define ID_TRIES 4

/*
 * Version 1. Portable SQL only (ARCHITECTURE.md §11): TEXT/INTEGER/BIGINT, explicit
 * keys, ids made by the program, upserts spelled ON CONFLICT (SQLite >= 3.24 and
 * PostgreSQL >= 9.5 share the syntax). Why each index: docs/internals/backend-store.md.
 */
static const char schema_v1[] =
	"CREATE TABLE meta ("
	"key TEXT NOT NULL PRIMARY KEY, "
	"value TEXT NOT NULL);"
	"INSERT INTO meta (key, value) VALUES ('change_seq', '0');"
	"CREATE TABLE users ("
	"id TEXT NOT NULL PRIMARY KEY, "
	"username TEXT NOT NULL, "
	"username_key TEXT NOT NULL UNIQUE, "
	"pass_hash TEXT NOT NULL, "
	"is_admin INTEGER NOT NULL, "
	"created_ms BIGINT NOT NULL, "
	"deleted_ms BIGINT, "
	"change_seq BIGINT NOT NULL UNIQUE);"
	"CREATE TABLE sessions ("
	"token_hash TEXT NOT NULL PRIMARY KEY, "
	"user_id TEXT NOT NULL REFERENCES users (id), "
	"created_ms BIGINT NOT NULL, "
	"expires_ms BIGINT NOT NULL, "
	"last_seen_ms BIGINT NOT NULL);"
	"CREATE INDEX sessions_user ON sessions (user_id);"
	"CREATE INDEX sessions_expires ON sessions (expires_ms);"
	"CREATE TABLE pending_connects ("
	"user_id TEXT NOT NULL PRIMARY KEY REFERENCES users (id), "
	"user_name TEXT NOT NULL, "
	"attempts INTEGER NOT NULL, "
	"next_try_ms BIGINT NOT NULL, "
	"last_error TEXT);"
	"CREATE INDEX pending_due ON pending_connects (next_try_ms, user_id);"
	"CREATE TABLE messages ("
	"id TEXT NOT NULL PRIMARY KEY, "
	"conv TEXT NOT NULL, "
	"from_id TEXT NOT NULL, "
	"to_id TEXT NOT NULL, "
	"text TEXT NOT NULL, "
	"state TEXT NOT NULL, "
	"reason TEXT, "
	"created_ms BIGINT NOT NULL, "
	"updated_ms BIGINT NOT NULL);"
	"CREATE INDEX messages_conv ON messages (conv, created_ms, id);"
	"CREATE TABLE seen_events ("
	"id TEXT NOT NULL PRIMARY KEY, "
	"at_ms BIGINT NOT NULL);"
	"CREATE INDEX seen_events_at ON seen_events (at_ms);";

static const struct bq_db_migration migrations[] = {
	{1, schema_v1},
};

#define USER_COLS "id, username, pass_hash, is_admin, created_ms, change_seq"
#define MSG_COLS "id, conv, from_id, to_id, text, state, reason, created_ms, updated_ms"

enum stmt {
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_SEQ_NEXT,
	S_USER_ANY,
	S_USER_NAME_TAKEN,
	S_USER_INSERT,
	S_USER_BY_NAME,
	S_USER_BY_ID,
	S_USER_DELETE,
	S_USER_COUNT,
	S_USERS_SINCE,
	S_SESSION_ADD,
	S_SESSION_LOOKUP,
	S_SESSION_TOUCH,
	S_SESSION_REMOVE,
	S_SESSION_PURGE,
	S_SESSION_LAST_SEEN,
	S_SESSION_DEL_USER,
	S_PENDING_UPSERT,
	S_PENDING_DUE,
	S_PENDING_RESCHEDULE,
	S_PENDING_REMOVE,
	S_PENDING_COUNT,
	S_MSG_INSERT,
	S_MSG_SET_STATE,
	S_MSG_EXISTS,
	S_MSG_REKEY,
	S_MSG_GET,
	S_MSG_PAGE_FIRST,
	S_MSG_PAGE_BEFORE,
	S_EVENT_SEEN,
	S_EVENT_PRUNE,
	S_META_GET,
	S_META_SET,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_SAVEPOINT] = "SAVEPOINT bq_call",
	[S_RELEASE] = "RELEASE SAVEPOINT bq_call",
	[S_ROLLBACK_TO] = "ROLLBACK TO SAVEPOINT bq_call",
	[S_SEQ_NEXT] = "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
		       "WHERE key = 'change_seq' RETURNING CAST(value AS BIGINT)",
	[S_USER_ANY] = "SELECT id FROM users LIMIT 1",
	[S_USER_NAME_TAKEN] = "SELECT id FROM users WHERE username_key = ?",
	[S_USER_INSERT] = "INSERT INTO users (id, username, username_key, pass_hash, is_admin, "
			  "created_ms, deleted_ms, change_seq) VALUES (?, ?, ?, ?, ?, ?, NULL, ?) "
			  "ON CONFLICT DO NOTHING",
	[S_USER_BY_NAME] = "SELECT " USER_COLS " FROM users "
			   "WHERE username_key = ? AND deleted_ms IS NULL",
	[S_USER_BY_ID] = "SELECT " USER_COLS " FROM users WHERE id = ? AND deleted_ms IS NULL",
	[S_USER_DELETE] = "UPDATE users SET deleted_ms = ?, change_seq = ? "
			  "WHERE id = ? AND deleted_ms IS NULL",
	[S_USER_COUNT] = "SELECT COUNT(*) FROM users WHERE deleted_ms IS NULL",
	[S_USERS_SINCE] = "SELECT id, username, deleted_ms, change_seq FROM users "
			  "WHERE change_seq > ? ORDER BY change_seq LIMIT ?",
	[S_SESSION_ADD] = "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms, "
			  "last_seen_ms) SELECT ?, id, ?, ?, ? FROM users "
			  "WHERE id = ? AND deleted_ms IS NULL",
	[S_SESSION_LOOKUP] = "SELECT s.expires_ms, s.last_seen_ms, u.id, u.username, "
			     "u.pass_hash, u.is_admin, u.created_ms, u.change_seq "
			     "FROM sessions s JOIN users u ON u.id = s.user_id "
			     "WHERE s.token_hash = ? AND u.deleted_ms IS NULL",
	[S_SESSION_TOUCH] = "UPDATE sessions SET last_seen_ms = ? WHERE token_hash = ?",
	[S_SESSION_REMOVE] = "DELETE FROM sessions WHERE token_hash = ?",
	[S_SESSION_PURGE] = "DELETE FROM sessions WHERE expires_ms <= ?",
	[S_SESSION_LAST_SEEN] = "SELECT last_seen_ms FROM sessions WHERE token_hash = ?",
	[S_SESSION_DEL_USER] = "DELETE FROM sessions WHERE user_id = ?",
	[S_PENDING_UPSERT] = "INSERT INTO pending_connects (user_id, user_name, attempts, "
			     "next_try_ms, last_error) SELECT id, ?, 0, ?, NULL FROM users "
			     "WHERE id = ? AND deleted_ms IS NULL "
			     "ON CONFLICT (user_id) DO UPDATE SET user_name = excluded.user_name, "
			     "attempts = 0, next_try_ms = excluded.next_try_ms, last_error = NULL",
	[S_PENDING_DUE] = "SELECT user_id, user_name, attempts, next_try_ms, last_error "
			  "FROM pending_connects WHERE next_try_ms <= ? "
			  "ORDER BY next_try_ms, user_id LIMIT ?",
	[S_PENDING_RESCHEDULE] = "UPDATE pending_connects SET attempts = ?, next_try_ms = ?, "
				 "last_error = ? WHERE user_id = ?",
	[S_PENDING_REMOVE] = "DELETE FROM pending_connects WHERE user_id = ?",
	[S_PENDING_COUNT] = "SELECT COUNT(*) FROM pending_connects",
	[S_MSG_INSERT] = "INSERT INTO messages (" MSG_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
			 "ON CONFLICT (id) DO NOTHING",
	/* Spelled as <> terms: SQLite 3.40 builds a temporary B-tree per run for NOT IN. */
	[S_MSG_SET_STATE] = "UPDATE messages SET state = ?, reason = ?, updated_ms = ? "
			    "WHERE id = ? AND state <> 'delivered' AND state <> 'failed' "
			    "AND state <> 'broadcast' AND state <> 'received'",
	[S_MSG_EXISTS] = "SELECT id FROM messages WHERE id = ?",
	[S_MSG_REKEY] = "UPDATE messages SET id = ? WHERE id = ?",
	[S_MSG_GET] = "SELECT " MSG_COLS " FROM messages WHERE id = ?",
	[S_MSG_PAGE_FIRST] = "SELECT " MSG_COLS " FROM messages WHERE conv = ? "
			     "ORDER BY created_ms DESC, id DESC LIMIT ?",
	/* created_ms <= ? is implied by the OR; it is there so the index range starts at
	 * the cursor instead of scanning the whole conversation from the newest. */
	[S_MSG_PAGE_BEFORE] = "SELECT " MSG_COLS " FROM messages WHERE conv = ? "
			      "AND created_ms <= ? AND (created_ms < ? OR id < ?) "
			      "ORDER BY created_ms DESC, id DESC LIMIT ?",
	[S_EVENT_SEEN] = "INSERT INTO seen_events (id, at_ms) VALUES (?, ?) "
			 "ON CONFLICT (id) DO NOTHING",
	[S_EVENT_PRUNE] = "DELETE FROM seen_events WHERE at_ms < ?",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?",
	[S_META_SET] = "INSERT INTO meta (key, value) VALUES (?, ?) "
		       "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
};

struct bq_bstore {
	struct bq_db *db;
	sqlite3 *h;
	struct bq_log *log;
	bool batch;
	sqlite3_stmt *st[S_COUNT];
};

static const char *const states[] = {"queued", "sent", BQ_BSTORE_TERMINAL_STATES};
static const char *const terminal[] = {BQ_BSTORE_TERMINAL_STATES};

/* ---- helpers ------------------------------------------------------------------- */

static int fail(struct bq_bstore *bs, int rc, const char *what)
{
	int err = bq_db_errno(bs->h, rc);
	char qmsg[256];

	bq_err(bs->log, MOD, "msg=\"%s failed\" sqlite=%d err=%d detail=%s", what, rc, err,
	       bq_log_quote(sqlite3_errmsg(bs->h), qmsg, sizeof(qmsg)));
	return err;
}

static void reset(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/*
 * Bind in order from a format: 's' text (NULL binds NULL), 't' text with a size_t
 * length, 'i' int64_t. Values are not copied: they live until the step.
 */
static int binds(sqlite3_stmt *st, const char *fmt, ...)
{
	va_list ap;
	int err = 0;
	int idx = 1;

	va_start(ap, fmt);
	for (const char *f = fmt; *f && err == 0; f++, idx++) {
		const char *s;
		size_t len;

		switch (*f) {
		case 's':
			s = va_arg(ap, const char *);
			if (s) {
				err = bq_db_bind_text(st, idx, s, strlen(s));
			} else {
				err = sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EINVAL;
			}
			break;
		case 't':
			s = va_arg(ap, const char *);
			len = va_arg(ap, size_t);
			err = bq_db_bind_text(st, idx, s, len);
			break;
		case 'i':
			err = bq_db_bind_i64(st, idx, va_arg(ap, int64_t));
			break;
		default:
			err = -EINVAL;
		}
	}
	va_end(ap);
	if (err < 0) {
		reset(st);
	}
	return err;
}

/* Step a row query: 1 with a row (caller resets), 0 at the end (reset), < 0 (reset). */
static int next_row(struct bq_bstore *bs, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		return 1;
	}
	reset(st);
	if (rc == SQLITE_DONE) {
		return 0;
	}
	return fail(bs, rc, "query");
}

/* Step a write; the number of rows it changed (>= 0) or -errno. */
static int run(struct bq_bstore *bs, sqlite3_stmt *st)
{
	int err = bq_db_step_done(bs->db, st);

	return err < 0 ? err : sqlite3_changes(bs->h);
}

static const char *col_text(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? (const char *)t : "";
}

static void col_copy(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
	const char *t = col_text(st, col);
	size_t n = strnlen(t, cap - 1);

	memcpy(dst, t, n);
	dst[n] = '\0';
}

static bool len_ok(const char *s, size_t max)
{
	return s && *s && strnlen(s, max + 1) <= max;
}

/* Length of s cut to max bytes without splitting a UTF-8 sequence. */
static size_t cut_len(const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1);

	if (len <= max) {
		return len;
	}
	len = max;
	while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80) {
		len--;
	}
	return len;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; s && i < n; i++) {
		if (strcmp(s, list[i]) == 0) {
			return true;
		}
	}
	return false;
}

bool bq_bstore_state_valid(const char *state)
{
	return in_list(state, states, sizeof(states) / sizeof(states[0]));
}

bool bq_bstore_state_terminal(const char *state)
{
	return in_list(state, terminal, sizeof(terminal) / sizeof(terminal[0]));
}

void bq_bstore_new_id(char out[BQ_BSTORE_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[BQ_BSTORE_ID_LEN / 2];

	randombytes_buf(b, sizeof(b));
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 0x0f];
	}
	out[BQ_BSTORE_ID_LEN] = '\0';
}

/* ---- transactions -------------------------------------------------------------- */

/*
 * A call with several statements runs in its own transaction, or inside a batch in a
 * savepoint, so a failing call is undone whole and the batch can go on (PostgreSQL
 * would otherwise refuse every later statement of the batch).
 */
static int tx_begin(struct bq_bstore *bs)
{
	if (bs->batch) {
		return bq_db_step_done(bs->db, bs->st[S_SAVEPOINT]);
	}
	return bq_db_begin(bs->db);
}

static int tx_end(struct bq_bstore *bs, int err)
{
	int e;

	if (bs->batch) {
		if (err < 0) {
			bq_db_step_done(bs->db, bs->st[S_ROLLBACK_TO]);
			bq_db_step_done(bs->db, bs->st[S_RELEASE]);
			return err;
		}
		e = bq_db_step_done(bs->db, bs->st[S_RELEASE]);
		if (e < 0) {
			bq_db_step_done(bs->db, bs->st[S_ROLLBACK_TO]);
			bq_db_step_done(bs->db, bs->st[S_RELEASE]);
		}
		return e;
	}
	if (err < 0) {
		bq_db_rollback(bs->db);
		return err;
	}
	e = bq_db_commit(bs->db);
	if (e < 0) {
		bq_db_rollback(bs->db);
	}
	return e;
}

int bq_bstore_begin(struct bq_bstore *bs)
{
	int err;

	if (bs->batch) {
		return -EALREADY;
	}
	err = bq_db_begin(bs->db);
	if (err == 0) {
		bs->batch = true;
	}
	return err;
}

int bq_bstore_commit(struct bq_bstore *bs)
{
	int err;

	if (!bs->batch) {
		return -EINVAL;
	}
	bs->batch = false;
	err = bq_db_commit(bs->db);
	if (err < 0) {
		bq_db_rollback(bs->db);
	}
	return err;
}

int bq_bstore_rollback(struct bq_bstore *bs)
{
	if (!bs->batch) {
		return -EINVAL;
	}
	bs->batch = false;
	bq_db_rollback(bs->db);
	return 0;
}

/* ---- open / close -------------------------------------------------------------- */

int bq_bstore_open(const char *path, struct bq_log *log, struct bq_bstore **out)
{
	struct bq_bstore *bs;
	int err;

	*out = NULL;
	if (sodium_init() < 0) {
		return -EIO;
	}
	bs = bq_calloc(1, sizeof(*bs));
	if (!bs) {
		return -ENOMEM;
	}
	bs->log = log;
	err = bq_db_open(path, 0, BUSY_MS, log, &bs->db);
	if (err < 0) {
		goto err;
	}
	bs->h = bq_db_handle(bs->db);
	err = bq_db_migrate(bs->db, migrations, sizeof(migrations) / sizeof(migrations[0]));
	if (err < 0) {
		goto err;
	}
	for (int i = 0; i < S_COUNT; i++) {
		err = bq_db_prepare(bs->db, stmt_sql[i], &bs->st[i]);
		if (err < 0) {
			goto err;
		}
	}
	*out = bs;
	return 0;
err:
	bq_bstore_close(bs);
	return err;
}

void bq_bstore_close(struct bq_bstore *bs)
{
	if (!bs) {
		return;
	}
	if (bs->db) {
		if (bs->batch) {
			bq_warn(bs->log, MOD, "msg=\"closed inside a batch: rolled back\"");
			bq_db_rollback(bs->db);
		}
		/* bq_db_close finalizes the statements. */
		bq_db_close(bs->db);
	}
	bq_free(bs);
}

/* ---- users --------------------------------------------------------------------- */

/*
 * Take the next change_seq (inside the caller's transaction). One UPDATE ... RETURNING
 * rather than read-then-write: on PostgreSQL two writers could otherwise both read the
 * same value; the row lock the UPDATE takes serializes them until commit.
 */
static int seq_next(struct bq_bstore *bs, int64_t *out)
{
	sqlite3_stmt *st = bs->st[S_SEQ_NEXT];
	int64_t v;
	int r;

	r = next_row(bs, st);
	if (r <= 0) {
		return r < 0 ? r : -EIO;
	}
	v = sqlite3_column_int64(st, 0);
	reset(st);
	if (v <= 0) {
		bq_err(bs->log, MOD, "msg=\"bad change_seq in meta\"");
		return -EBADMSG;
	}
	*out = v;
	return 0;
}

static void name_key(const char *name, char *out, size_t cap)
{
	size_t i;

	/* ASCII only: other bytes are kept, so "É" and "é" are different names. */
	for (i = 0; name[i] && i + 1 < cap; i++) {
		char c = name[i];

		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[i] = '\0';
}

static void read_user(sqlite3_stmt *st, int col, struct bq_buser *u)
{
	col_copy(st, col, u->id, sizeof(u->id));
	col_copy(st, col + 1, u->username, sizeof(u->username));
	col_copy(st, col + 2, u->pass_hash, sizeof(u->pass_hash));
	u->is_admin = sqlite3_column_int64(st, col + 3) != 0;
	u->created_ms = sqlite3_column_int64(st, col + 4);
	u->change_seq = sqlite3_column_int64(st, col + 5);
}

/* 1 when st (bound to one key) finds a row, 0 when not, or -errno. */
static int exists(struct bq_bstore *bs, sqlite3_stmt *st)
{
	int r = next_row(bs, st);

	if (r == 1) {
		reset(st);
	}
	return r;
}

int bq_bstore_user_create(struct bq_bstore *bs, const char *username, const char *pass_hash,
			  unsigned flags, int64_t now_ms, struct bq_buser *out, bool *first)
{
	char key[BQ_BSTORE_NAME_MAX + 1];
	struct bq_buser u = {0};
	bool is_first = false;
	int64_t seq = 0;
	int err;
	int r;

	if (!len_ok(username, BQ_BSTORE_NAME_MAX) || !len_ok(pass_hash, BQ_BSTORE_HASH_MAX)) {
		return (username && pass_hash && *username && *pass_hash) ? -EMSGSIZE : -EINVAL;
	}
	name_key(username, key, sizeof(key));
	err = tx_begin(bs);
	if (err < 0) {
		return err;
	}
	/* Deleted users count: "first" means the first account this database ever had. */
	r = exists(bs, bs->st[S_USER_ANY]);
	if (r < 0) {
		err = r;
		goto out;
	}
	is_first = r == 0;
	err = binds(bs->st[S_USER_NAME_TAKEN], "s", key);
	if (err == 0) {
		r = exists(bs, bs->st[S_USER_NAME_TAKEN]);
		err = r < 0 ? r : r == 1 ? -EEXIST : 0;
	}
	if (err < 0) {
		goto out;
	}
	err = seq_next(bs, &seq);
	if (err < 0) {
		goto out;
	}
	u.is_admin = (flags & BQ_BSTORE_ADMIN) || ((flags & BQ_BSTORE_ADMIN_IF_FIRST) && is_first);
	u.created_ms = now_ms;
	u.change_seq = seq;
	snprintf(u.username, sizeof(u.username), "%s", username);
	snprintf(u.pass_hash, sizeof(u.pass_hash), "%s", pass_hash);
	err = -EIO;
	for (int i = 0; i < ID_TRIES && err == -EIO; i++) {
		bq_bstore_new_id(u.id);
		err = binds(bs->st[S_USER_INSERT], "ssssiii", u.id, username, key, pass_hash,
			    (int64_t)u.is_admin, now_ms, seq);
		if (err == 0) {
			r = run(bs, bs->st[S_USER_INSERT]);
			/* The name is known free, so nothing inserted means the id was taken. */
			err = r < 0 ? r : r == 0 ? -EIO : 0;
		}
	}
out:
	err = tx_end(bs, err);
	if (err == 0) {
		if (out) {
			*out = u;
		}
		if (first) {
			*first = is_first;
		}
		bq_info(bs->log, MOD, "msg=\"user created\" user_id=%s admin=%d first=%d", u.id,
			u.is_admin, is_first);
	}
	return err;
}

static int user_get(struct bq_bstore *bs, enum stmt which, const char *k, struct bq_buser *out)
{
	sqlite3_stmt *st = bs->st[which];
	int r;

	r = binds(st, "s", k);
	if (r < 0) {
		return r;
	}
	r = next_row(bs, st);
	if (r <= 0) {
		return r < 0 ? r : -ENOENT;
	}
	if (out) {
		read_user(st, 0, out);
	}
	reset(st);
	return 0;
}

int bq_bstore_user_get_by_name(struct bq_bstore *bs, const char *username, struct bq_buser *out)
{
	char key[BQ_BSTORE_NAME_MAX + 1];

	if (!len_ok(username, BQ_BSTORE_NAME_MAX)) {
		return -ENOENT; /* no such name could have been stored */
	}
	name_key(username, key, sizeof(key));
	return user_get(bs, S_USER_BY_NAME, key, out);
}

int bq_bstore_user_get_by_id(struct bq_bstore *bs, const char *id, struct bq_buser *out)
{
	if (!len_ok(id, BQ_BSTORE_ID_LEN)) {
		return -ENOENT;
	}
	return user_get(bs, S_USER_BY_ID, id, out);
}

int bq_bstore_user_delete(struct bq_bstore *bs, const char *id, int64_t now_ms)
{
	int64_t seq = 0;
	int err;
	int r;

	if (!len_ok(id, BQ_BSTORE_ID_LEN)) {
		return -ENOENT;
	}
	err = tx_begin(bs);
	if (err < 0) {
		return err;
	}
	err = seq_next(bs, &seq);
	if (err == 0) {
		err = binds(bs->st[S_USER_DELETE], "iis", now_ms, seq, id);
	}
	if (err == 0) {
		r = run(bs, bs->st[S_USER_DELETE]);
		err = r < 0 ? r : r == 0 ? -ENOENT : 0;
	}
	/* A deleted account can neither log in nor be connected again. */
	if (err == 0) {
		err = binds(bs->st[S_SESSION_DEL_USER], "s", id);
		r = err == 0 ? run(bs, bs->st[S_SESSION_DEL_USER]) : err;
		err = r < 0 ? r : 0;
	}
	if (err == 0) {
		err = binds(bs->st[S_PENDING_REMOVE], "s", id);
		r = err == 0 ? run(bs, bs->st[S_PENDING_REMOVE]) : err;
		err = r < 0 ? r : 0;
	}
	err = tx_end(bs, err);
	if (err == 0) {
		bq_info(bs->log, MOD, "msg=\"user deleted\" user_id=%s change_seq=%lld", id,
			(long long)seq);
	}
	return err;
}

static int count_query(struct bq_bstore *bs, enum stmt which, int64_t *out)
{
	sqlite3_stmt *st = bs->st[which];
	int r = next_row(bs, st);

	if (r <= 0) {
		return r < 0 ? r : -EIO;
	}
	*out = sqlite3_column_int64(st, 0);
	reset(st);
	return 0;
}

int bq_bstore_user_count(struct bq_bstore *bs, int64_t *out)
{
	return count_query(bs, S_USER_COUNT, out);
}

int bq_bstore_users_since(struct bq_bstore *bs, int64_t cursor, size_t limit, bq_buser_change_cb fn,
			  void *user_data, int64_t *next_cursor, bool *more)
{
	sqlite3_stmt *st = bs->st[S_USERS_SINCE];
	struct bq_buser_change c;
	size_t n = 0;
	int err;
	int r;

	*next_cursor = cursor;
	*more = false;
	if (limit == 0 || limit > BQ_BSTORE_PAGE_MAX || cursor < 0 || !fn) {
		return -EINVAL;
	}
	/* One row past the page tells whether there is more without a second query. */
	err = binds(st, "ii", cursor, (int64_t)limit + 1);
	if (err < 0) {
		return err;
	}
	while ((r = next_row(bs, st)) == 1) {
		if (n == limit) {
			*more = true;
			reset(st);
			break;
		}
		c.id = col_text(st, 0);
		c.username = col_text(st, 1);
		c.deleted = sqlite3_column_type(st, 2) != SQLITE_NULL;
		c.change_seq = sqlite3_column_int64(st, 3);
		err = fn(user_data, &c);
		if (err != 0) {
			reset(st);
			return err;
		}
		*next_cursor = c.change_seq;
		n++;
	}
	return r < 0 ? r : 0;
}

/* ---- sessions ------------------------------------------------------------------ */

int bq_bstore_session_add(struct bq_bstore *bs, const char *token_hash, const char *user_id,
			  int64_t now_ms, int64_t expires_ms)
{
	int r;

	if (!len_ok(token_hash, BQ_BSTORE_TOKEN_MAX) || !user_id) {
		return -EINVAL;
	}
	r = binds(bs->st[S_SESSION_ADD], "siiis", token_hash, now_ms, expires_ms, now_ms, user_id);
	if (r == 0) {
		r = run(bs, bs->st[S_SESSION_ADD]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_session_lookup(struct bq_bstore *bs, const char *token_hash, int64_t now_ms,
			     struct bq_buser *out)
{
	sqlite3_stmt *st = bs->st[S_SESSION_LOOKUP];
	int64_t expires;
	int64_t seen;
	int r;

	if (!len_ok(token_hash, BQ_BSTORE_TOKEN_MAX)) {
		return -ENOENT;
	}
	r = binds(st, "s", token_hash);
	if (r < 0) {
		return r;
	}
	r = next_row(bs, st);
	if (r <= 0) {
		return r < 0 ? r : -ENOENT;
	}
	expires = sqlite3_column_int64(st, 0);
	seen = sqlite3_column_int64(st, 1);
	if (out) {
		read_user(st, 2, out);
	}
	reset(st);
	if (expires <= now_ms) {
		return -ENOENT;
	}
	if (now_ms - seen >= BQ_BSTORE_SEEN_EVERY_MS) {
		r = binds(bs->st[S_SESSION_TOUCH], "is", now_ms, token_hash);
		if (r == 0) {
			r = run(bs, bs->st[S_SESSION_TOUCH]);
		}
		/* Only bookkeeping: the session itself is valid. */
		if (r < 0) {
			bq_warn(bs->log, MOD, "msg=\"last_seen not written\" err=%d", r);
		}
	}
	return 0;
}

int bq_bstore_session_remove(struct bq_bstore *bs, const char *token_hash)
{
	int r;

	if (!token_hash) {
		return -EINVAL;
	}
	r = binds(bs->st[S_SESSION_REMOVE], "s", token_hash);
	if (r == 0) {
		r = run(bs, bs->st[S_SESSION_REMOVE]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_session_purge_expired(struct bq_bstore *bs, int64_t now_ms)
{
	int r = binds(bs->st[S_SESSION_PURGE], "i", now_ms);

	return r == 0 ? run(bs, bs->st[S_SESSION_PURGE]) : r;
}

int bq_bstore_session_last_seen(struct bq_bstore *bs, const char *token_hash, int64_t *out)
{
	sqlite3_stmt *st = bs->st[S_SESSION_LAST_SEEN];
	int r;

	if (!token_hash) {
		return -EINVAL;
	}
	r = binds(st, "s", token_hash);
	if (r == 0) {
		r = next_row(bs, st);
	}
	if (r <= 0) {
		return r < 0 ? r : -ENOENT;
	}
	*out = sqlite3_column_int64(st, 0);
	reset(st);
	return 0;
}

/* ---- pending connects ---------------------------------------------------------- */

int bq_bstore_pending_upsert(struct bq_bstore *bs, const char *user_id, const char *user_name,
			     int64_t next_try_ms)
{
	int r;

	if (!user_id || !len_ok(user_name, BQ_BSTORE_NAME_MAX)) {
		return -EINVAL;
	}
	r = binds(bs->st[S_PENDING_UPSERT], "sis", user_name, next_try_ms, user_id);
	if (r == 0) {
		r = run(bs, bs->st[S_PENDING_UPSERT]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_pending_due(struct bq_bstore *bs, int64_t now_ms, size_t limit, bq_bpending_cb fn,
			  void *user_data)
{
	sqlite3_stmt *st = bs->st[S_PENDING_DUE];
	struct bq_bpending *rows = NULL;
	size_t n = 0;
	size_t cap = 0;
	int err;
	int r;

	if (limit == 0 || limit > BQ_BSTORE_PAGE_MAX || !fn) {
		return -EINVAL;
	}
	err = binds(st, "ii", now_ms, (int64_t)limit);
	if (err < 0) {
		return err;
	}
	/* Copied out first: the callback's reschedule would move rows under an open scan. */
	while ((r = next_row(bs, st)) == 1) {
		struct bq_bpending *p;

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;

			p = bq_realloc(rows, ncap * sizeof(*rows));
			if (!p) {
				reset(st);
				r = -ENOMEM;
				break;
			}
			rows = p;
			cap = ncap;
		}
		p = &rows[n++];
		col_copy(st, 0, p->user_id, sizeof(p->user_id));
		col_copy(st, 1, p->user_name, sizeof(p->user_name));
		p->attempts = sqlite3_column_int(st, 2);
		p->next_try_ms = sqlite3_column_int64(st, 3);
		col_copy(st, 4, p->last_error, sizeof(p->last_error));
	}
	err = r;
	for (size_t i = 0; err == 0 && i < n; i++) {
		err = fn(user_data, &rows[i]);
	}
	bq_free(rows);
	return err;
}

int bq_bstore_pending_reschedule(struct bq_bstore *bs, const char *user_id, int attempts,
				 int64_t next_try_ms, const char *last_error)
{
	sqlite3_stmt *st = bs->st[S_PENDING_RESCHEDULE];
	int r;

	if (!user_id || attempts < 0) {
		return -EINVAL;
	}
	if (last_error) {
		r = binds(st, "iits", (int64_t)attempts, next_try_ms, last_error,
			  cut_len(last_error, BQ_BSTORE_REASON_MAX), user_id);
	} else {
		r = binds(st, "iiss", (int64_t)attempts, next_try_ms, NULL, user_id);
	}
	if (r == 0) {
		r = run(bs, st);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_pending_remove(struct bq_bstore *bs, const char *user_id)
{
	int r;

	if (!user_id) {
		return -EINVAL;
	}
	r = binds(bs->st[S_PENDING_REMOVE], "s", user_id);
	if (r == 0) {
		r = run(bs, bs->st[S_PENDING_REMOVE]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_pending_count(struct bq_bstore *bs, int64_t *out)
{
	return count_query(bs, S_PENDING_COUNT, out);
}

/* ---- messages ------------------------------------------------------------------ */

/* Append id to out at *pos with ':' and '%' escaped; false when it does not fit. */
static bool conv_append(char *out, size_t cap, size_t *pos, const char *id)
{
	for (const char *p = id; *p; p++) {
		const char *rep = *p == ':' ? "%3A" : *p == '%' ? "%25" : NULL;
		size_t n = rep ? 3 : 1;

		if (*pos + n >= cap) {
			return false;
		}
		memcpy(out + *pos, rep ? rep : p, n);
		*pos += n;
	}
	out[*pos] = '\0';
	return true;
}

int bq_bstore_conv_key(const char *a, const char *b, char *out, size_t cap)
{
	size_t pos = 0;

	if (!out || cap == 0) {
		return -EINVAL;
	}
	out[0] = '\0';
	if (!len_ok(a, BQ_BSTORE_PEER_MAX) || !len_ok(b, BQ_BSTORE_PEER_MAX)) {
		return -EINVAL;
	}
	if (strcmp(b, "broadcast") == 0) {
		return snprintf(out, cap, "broadcast") < (int)cap ? 0 : -ENOSPC;
	}
	if (strcmp(a, b) > 0) {
		const char *t = a;

		a = b;
		b = t;
	}
	if (!conv_append(out, cap, &pos, a) || pos + 1 >= cap) {
		out[0] = '\0';
		return -ENOSPC;
	}
	out[pos++] = ':';
	out[pos] = '\0';
	if (!conv_append(out, cap, &pos, b)) {
		out[0] = '\0';
		return -ENOSPC;
	}
	return 0;
}

int bq_bstore_msg_insert(struct bq_bstore *bs, const struct bq_bmsg *m)
{
	sqlite3_stmt *st = bs->st[S_MSG_INSERT];
	int r;

	if (!m || !len_ok(m->id, BQ_BSTORE_MSGID_MAX) || !len_ok(m->conv, BQ_BSTORE_CONV_MAX) ||
	    !len_ok(m->from_id, BQ_BSTORE_PEER_MAX) || !len_ok(m->to_id, BQ_BSTORE_PEER_MAX) ||
	    !bq_bstore_state_valid(m->state) || (!m->text && m->text_len)) {
		return -EINVAL;
	}
	if (m->text_len > BQ_BSTORE_TEXT_MAX) {
		return -EMSGSIZE;
	}
	if (m->text_len && memchr(m->text, '\0', m->text_len)) {
		return -EINVAL;
	}
	r = binds(st, "ssssts", m->id, m->conv, m->from_id, m->to_id, m->text ? m->text : "",
		  m->text_len, m->state);
	if (r == 0) {
		if (m->reason) {
			r = bq_db_bind_text(st, 7, m->reason,
					    cut_len(m->reason, BQ_BSTORE_REASON_MAX));
		}
		r = r == 0 ? bq_db_bind_i64(st, 8, m->created_ms) : r;
		r = r == 0 ? bq_db_bind_i64(st, 9, m->created_ms) : r;
		if (r < 0) {
			reset(st);
		}
	}
	if (r == 0) {
		r = run(bs, st);
	}
	/* ON CONFLICT DO NOTHING: a repeat is not an error inside a batch (PostgreSQL aborts
	 * the transaction on one), only reported. */
	return r < 0 ? r : r == 0 ? -EEXIST : 0;
}

int bq_bstore_msg_set_state(struct bq_bstore *bs, const char *id, const char *state,
			    const char *reason, int64_t at_ms, bool *changed)
{
	sqlite3_stmt *st = bs->st[S_MSG_SET_STATE];
	int r;

	if (changed) {
		*changed = false;
	}
	if (!id || !bq_bstore_state_valid(state)) {
		return -EINVAL;
	}
	if (reason) {
		r = binds(st, "stis", state, reason, cut_len(reason, BQ_BSTORE_REASON_MAX), at_ms,
			  id);
	} else {
		r = binds(st, "ssis", state, NULL, at_ms, id);
	}
	if (r == 0) {
		r = run(bs, st);
	}
	if (r < 0) {
		return r;
	}
	if (r > 0) {
		if (changed) {
			*changed = true;
		}
		return 0;
	}
	r = binds(bs->st[S_MSG_EXISTS], "s", id);
	if (r == 0) {
		r = exists(bs, bs->st[S_MSG_EXISTS]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

int bq_bstore_msg_rekey(struct bq_bstore *bs, const char *old_id, const char *new_id)
{
	int r;

	if (!old_id || !len_ok(new_id, BQ_BSTORE_MSGID_MAX)) {
		return -EINVAL;
	}
	r = binds(bs->st[S_MSG_REKEY], "ss", new_id, old_id);
	if (r == 0) {
		r = run(bs, bs->st[S_MSG_REKEY]);
	}
	return r < 0 ? r : r == 0 ? -ENOENT : 0;
}

static void read_msg(sqlite3_stmt *st, struct bq_bmsg *m)
{
	m->id = col_text(st, 0);
	m->conv = col_text(st, 1);
	m->from_id = col_text(st, 2);
	m->to_id = col_text(st, 3);
	m->text = col_text(st, 4);
	m->text_len = (size_t)sqlite3_column_bytes(st, 4);
	m->state = col_text(st, 5);
	m->reason = sqlite3_column_type(st, 6) == SQLITE_NULL ? NULL : col_text(st, 6);
	m->created_ms = sqlite3_column_int64(st, 7);
	m->updated_ms = sqlite3_column_int64(st, 8);
}

/* Report every row of a bound statement to fn; resets st. */
static int walk_msgs(struct bq_bstore *bs, sqlite3_stmt *st, bq_bmsg_cb fn, void *user_data,
		     bool *any)
{
	struct bq_bmsg m;
	int r;

	while ((r = next_row(bs, st)) == 1) {
		read_msg(st, &m);
		*any = true;
		r = fn(user_data, &m);
		if (r != 0) {
			reset(st);
			return r;
		}
	}
	return r;
}

int bq_bstore_msg_get(struct bq_bstore *bs, const char *id, bq_bmsg_cb fn, void *user_data)
{
	bool any = false;
	int r;

	if (!id || !fn) {
		return -EINVAL;
	}
	r = binds(bs->st[S_MSG_GET], "s", id);
	if (r == 0) {
		r = walk_msgs(bs, bs->st[S_MSG_GET], fn, user_data, &any);
	}
	return r != 0 ? r : any ? 0 : -ENOENT;
}

int bq_bstore_msg_page(struct bq_bstore *bs, const char *conv, int64_t before_ms,
		       const char *before_id, size_t limit, bq_bmsg_cb fn, void *user_data)
{
	sqlite3_stmt *st;
	bool any = false;
	int r;

	if (!conv || !fn || limit == 0 || limit > BQ_BSTORE_PAGE_MAX) {
		return -EINVAL;
	}
	if (before_id) {
		st = bs->st[S_MSG_PAGE_BEFORE];
		r = binds(st, "siisi", conv, before_ms, before_ms, before_id, (int64_t)limit);
	} else {
		st = bs->st[S_MSG_PAGE_FIRST];
		r = binds(st, "si", conv, (int64_t)limit);
	}
	return r == 0 ? walk_msgs(bs, st, fn, user_data, &any) : r;
}

/* ---- events -------------------------------------------------------------------- */

int bq_bstore_event_seen(struct bq_bstore *bs, const char *id, int64_t at_ms)
{
	int r;

	if (!len_ok(id, BQ_BSTORE_EVENT_MAX)) {
		return -EINVAL;
	}
	r = binds(bs->st[S_EVENT_SEEN], "si", id, at_ms);
	if (r == 0) {
		r = run(bs, bs->st[S_EVENT_SEEN]);
	}
	return r < 0 ? r : r == 0 ? -EEXIST : 0;
}

int bq_bstore_event_prune(struct bq_bstore *bs, int64_t older_than_ms)
{
	int r = binds(bs->st[S_EVENT_PRUNE], "i", older_than_ms);

	return r == 0 ? run(bs, bs->st[S_EVENT_PRUNE]) : r;
}

/* ---- meta ---------------------------------------------------------------------- */

int bq_bstore_meta_get(struct bq_bstore *bs, const char *key, char *out, size_t cap)
{
	sqlite3_stmt *st = bs->st[S_META_GET];
	size_t len;
	int r;

	if (!len_ok(key, BQ_BSTORE_KEY_MAX) || !out || cap == 0) {
		return -EINVAL;
	}
	r = binds(st, "s", key);
	if (r == 0) {
		r = next_row(bs, st);
	}
	if (r <= 0) {
		return r < 0 ? r : -ENOENT;
	}
	len = (size_t)sqlite3_column_bytes(st, 0);
	if (len >= cap) {
		reset(st);
		return -ENOSPC;
	}
	memcpy(out, col_text(st, 0), len);
	out[len] = '\0';
	reset(st);
	return 0;
}

int bq_bstore_meta_set(struct bq_bstore *bs, const char *key, const char *value)
{
	int r;

	if (!len_ok(key, BQ_BSTORE_KEY_MAX) || !value) {
		return -EINVAL;
	}
	/* The poll cursor only moves with the users it describes. */
	if (strcmp(key, "change_seq") == 0) {
		return -EINVAL;
	}
	if (strnlen(value, BQ_BSTORE_VALUE_MAX + 1) > BQ_BSTORE_VALUE_MAX) {
		return -EMSGSIZE;
	}
	r = binds(bs->st[S_META_SET], "ss", key, value);
	if (r == 0) {
		r = run(bs, bs->st[S_META_SET]);
	}
	return r < 0 ? r : 0;
}
