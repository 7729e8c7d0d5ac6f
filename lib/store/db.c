/* SPDX-License-Identifier: MIT */
#include "store/db.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/clock.h"

#define MOD "db"

struct bq_db {
	sqlite3 *h;
	char *path;
	struct bq_log *log;
	sqlite3_stmt *begin;
	sqlite3_stmt *commit;
	sqlite3_stmt *rollback;
};

int bq_db_errno(sqlite3 *h, int rc)
{
	int sys;

	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -EBADMSG;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_TOOBIG:
		return -EMSGSIZE;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_ERROR: /* an SQL error: a bug in the statement, not an I/O failure */
	case SQLITE_MISUSE:
	case SQLITE_RANGE:
	case SQLITE_MISMATCH:
		return -EINVAL;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		sys = h ? sqlite3_system_errno(h) : 0;
		return sys > 0 ? -sys : -EIO;
	default:
		return -EIO;
	}
}

static int fail(struct bq_db *db, int rc, const char *what)
{
	int err = bq_db_errno(db->h, rc);
	char qpath[256];
	char qmsg[256];

	bq_err(db->log, MOD, "msg=\"%s failed\" path=%s sqlite=%d err=%d detail=%s", what,
	       bq_log_quote(db->path, qpath, sizeof(qpath)), rc, err,
	       bq_log_quote(db->h ? sqlite3_errmsg(db->h) : "", qmsg, sizeof(qmsg)));
	return err;
}

int bq_db_mkdir_parents(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	/* Walk each '/' after the first character; the last component is the file. */
	for (size_t i = 1; i < len; i++) {
		struct stat st;

		if (buf[i] != '/') {
			continue;
		}
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
			return -errno;
		}
		/* EEXIST may be a file in the way; say so now rather than as CANTOPEN. */
		if (stat(buf, &st) < 0) {
			return -errno;
		}
		if (!S_ISDIR(st.st_mode)) {
			return -ENOTDIR;
		}
		buf[i] = '/';
	}
	return 0;
}

int bq_db_exec(struct bq_db *db, const char *sql)
{
	int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK) {
		return fail(db, rc, "exec");
	}
	return 0;
}

int bq_db_prepare(struct bq_db *db, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);

	if (rc != SQLITE_OK) {
		*out = NULL;
		return fail(db, rc, "prepare");
	}
	return 0;
}

int bq_db_step_done(struct bq_db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int err = 0;

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		err = bq_db_errno(db->h, rc);
		/* A constraint is the caller's business (e.g. a duplicate id), not ours to log. */
		if (err != -EEXIST) {
			fail(db, rc, "step");
		}
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

int bq_db_bind_text(sqlite3_stmt *st, int idx, const char *s, size_t len)
{
	if (len > INT_MAX) {
		return -EMSGSIZE;
	}
	return sqlite3_bind_text(st, idx, s, (int)len, SQLITE_STATIC) == SQLITE_OK ? 0 : -EINVAL;
}

int bq_db_bind_i64(sqlite3_stmt *st, int idx, int64_t v)
{
	return sqlite3_bind_int64(st, idx, v) == SQLITE_OK ? 0 : -EINVAL;
}

int bq_db_begin(struct bq_db *db)
{
	return bq_db_step_done(db, db->begin);
}

int bq_db_commit(struct bq_db *db)
{
	return bq_db_step_done(db, db->commit);
}

void bq_db_rollback(struct bq_db *db)
{
	if (!sqlite3_get_autocommit(db->h)) {
		bq_db_step_done(db, db->rollback);
	}
}

/* A pragma that answers a row (journal_mode does); the first column must equal want. */
static int pragma_expect(struct bq_db *db, const char *sql, const char *want)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
	int err = 0;

	if (rc != SQLITE_OK) {
		return fail(db, rc, "pragma");
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		err = fail(db, rc, "pragma");
	} else if (want) {
		const unsigned char *got = sqlite3_column_text(st, 0);

		if (!got || strcmp((const char *)got, want) != 0) {
			bq_err(db->log, MOD, "msg=\"pragma refused\" sql=\"%s\" got=%s", sql,
			       got ? (const char *)got : "null");
			err = -EIO;
		}
	}
	sqlite3_finalize(st);
	return err;
}

int bq_db_open(const char *path, unsigned flags, int busy_ms, struct bq_log *log,
	       struct bq_db **out)
{
	struct bq_db *db;
	bool ro = flags & BQ_DB_READONLY;
	bool mem;
	int oflags = SQLITE_OPEN_NOMUTEX;
	char qpath[256];
	int rc;
	int err;

	*out = NULL;
	if (!path || !*path) {
		return -EINVAL;
	}
	/*
	 * ":memory:" is SQLite's private in-memory database, so tests can run a store's
	 * migrations without a file: there is no directory to create, and WAL needs a
	 * file (SQLite keeps journal_mode "memory" and would fail the WAL check below).
	 */
	mem = strcmp(path, BQ_DB_MEMORY) == 0;
	db = bq_calloc(1, sizeof(*db));
	if (!db) {
		return -ENOMEM;
	}
	db->log = log;
	db->path = bq_strdup(path);
	if (!db->path) {
		bq_free(db);
		return -ENOMEM;
	}
	if (!ro && !mem && !(flags & BQ_DB_NO_MKDIR)) {
		err = bq_db_mkdir_parents(path);
		if (err < 0) {
			bq_err(log, MOD, "msg=\"cannot create directory\" path=%s err=%d",
			       bq_log_quote(path, qpath, sizeof(qpath)), err);
			goto err;
		}
	}
	oflags |= ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	rc = sqlite3_open_v2(path, &db->h, oflags, NULL);
	if (rc != SQLITE_OK) {
		/* sqlite3_open_v2 leaves a handle even on failure, for the message. */
		err = fail(db, rc, "open");
		goto err;
	}
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, busy_ms);
	/*
	 * SQLite opens lazily: a file that is not a database is only noticed at the first
	 * read. Read the schema now so a corrupt file fails here with a clear message.
	 */
	err = pragma_expect(db, "PRAGMA schema_version", NULL);
	if (err < 0) {
		goto err;
	}
	if (!ro && !mem) {
		err = pragma_expect(db, "PRAGMA journal_mode=WAL", "wal");
		if (err < 0) {
			goto err;
		}
	}
	err = bq_db_exec(db, flags & BQ_DB_SYNC_NORMAL ? "PRAGMA synchronous=NORMAL"
						       : "PRAGMA synchronous=FULL");
	if (err < 0) {
		goto err;
	}
	err = bq_db_exec(db, "PRAGMA foreign_keys=ON");
	if (err < 0) {
		goto err;
	}
	/*
	 * SQLite's default page cache is 2 MiB per connection: an outbox of a few hundred
	 * thousand messages no longer fits, and every B-tree step became a pread (a third
	 * of the writer's time in a send burst). 32 MiB, allocated only as pages are used.
	 */
	err = bq_db_exec(db, "PRAGMA cache_size=-32768");
	if (err < 0) {
		goto err;
	}
	err = bq_db_prepare(db, "BEGIN IMMEDIATE", &db->begin);
	if (err == 0) {
		err = bq_db_prepare(db, "COMMIT", &db->commit);
	}
	if (err == 0) {
		err = bq_db_prepare(db, "ROLLBACK", &db->rollback);
	}
	if (err < 0) {
		goto err;
	}
	*out = db;
	return 0;
err:
	bq_db_close(db);
	return err;
}

void bq_db_close(struct bq_db *db)
{
	sqlite3_stmt *st;

	if (!db) {
		return;
	}
	if (db->h) {
		/* Owners may leave their statements to us; close_v2 would otherwise linger. */
		while ((st = sqlite3_next_stmt(db->h, NULL)) != NULL) {
			sqlite3_finalize(st);
		}
		if (sqlite3_close(db->h) != SQLITE_OK) {
			bq_warn(db->log, MOD, "msg=\"close failed\" detail=\"%s\"",
				sqlite3_errmsg(db->h));
			sqlite3_close_v2(db->h);
		}
	}
	bq_free(db->path);
	bq_free(db);
}

void bq_db_set_log(struct bq_db *db, struct bq_log *log)
{
	db->log = log;
}

sqlite3 *bq_db_handle(struct bq_db *db)
{
	return db->h;
}

const char *bq_db_path(const struct bq_db *db)
{
	return db->path;
}

int bq_db_version(struct bq_db *db, int *out)
{
	sqlite3_stmt *st;
	int rc;
	int err = 0;

	*out = 0;
	rc = sqlite3_prepare_v2(db->h,
				"SELECT COUNT(*) FROM sqlite_master "
				"WHERE type = 'table' AND name = 'schema_version'",
				-1, &st, NULL);
	if (rc != SQLITE_OK) {
		return fail(db, rc, "prepare");
	}
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		err = fail(db, rc, "schema check");
		sqlite3_finalize(st);
		return err;
	}
	if (sqlite3_column_int(st, 0) == 0) {
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	rc = sqlite3_prepare_v2(db->h, "SELECT COALESCE(MAX(version), 0) FROM schema_version", -1,
				&st, NULL);
	if (rc != SQLITE_OK) {
		return fail(db, rc, "prepare");
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int(st, 0);
	} else {
		err = fail(db, rc, "schema_version read");
	}
	sqlite3_finalize(st);
	return err;
}

static int apply_one(struct bq_db *db, const struct bq_db_migration *m)
{
	sqlite3_stmt *ins = NULL;
	int have;
	int err;

	err = bq_db_begin(db);
	if (err < 0) {
		return err;
	}
	/* Read again under the write lock: another process may have migrated meanwhile. */
	err = bq_db_version(db, &have);
	if (err < 0 || have >= m->version) {
		goto out;
	}
	err = bq_db_exec(db, m->sql);
	if (err < 0) {
		goto out;
	}
	err = bq_db_prepare(db, "INSERT INTO schema_version (version, applied_ms) VALUES (?, ?)",
			    &ins);
	if (err < 0) {
		goto out;
	}
	sqlite3_bind_int(ins, 1, m->version);
	sqlite3_bind_int64(ins, 2, (int64_t)bq_wall_ms());
	err = bq_db_step_done(db, ins);
	if (err < 0) {
		goto out;
	}
	err = bq_db_commit(db);
	if (err == 0) {
		bq_info(db->log, MOD, "msg=\"schema migrated\" version=%d", m->version);
	}
out:
	sqlite3_finalize(ins);
	if (err < 0) {
		bq_err(db->log, MOD, "msg=\"migration failed\" version=%d err=%d", m->version, err);
		bq_db_rollback(db);
	} else if (!sqlite3_get_autocommit(db->h)) {
		bq_db_rollback(db); /* nothing to do: someone else applied this step */
	}
	return err;
}

int bq_db_migrate(struct bq_db *db, const struct bq_db_migration *m, size_t n)
{
	int have;
	int err;

	for (size_t i = 0; i < n; i++) {
		if (m[i].version != (int)i + 1 || !m[i].sql) {
			return -EINVAL;
		}
	}
	err = bq_db_exec(db, "CREATE TABLE IF NOT EXISTS schema_version ("
			     "version INTEGER NOT NULL PRIMARY KEY, "
			     "applied_ms BIGINT NOT NULL)");
	if (err < 0) {
		return err;
	}
	err = bq_db_version(db, &have);
	if (err < 0) {
		return err;
	}
	if (have > (int)n) {
		bq_err(db->log, MOD,
		       "msg=\"database is newer than this program\" version=%d known=%zu", have, n);
		return -EPROTO;
	}
	for (size_t i = (size_t)have; i < n; i++) {
		err = apply_one(db, &m[i]);
		if (err < 0) {
			return err;
		}
	}
	return 0;
}
