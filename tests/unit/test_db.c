/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/db.h"
#include "testutil.h"

static const struct bq_db_migration steps[] = {
	{1, "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY, v BIGINT NOT NULL)"},
	{2, "CREATE TABLE b (id TEXT NOT NULL PRIMARY KEY);"
	    "CREATE INDEX a_v ON a (v)"},
};

static void db_path(char *out, size_t cap, const char *name)
{
	const char *dir = bq_test_tmpdir();

	ck_assert_ptr_nonnull(dir);
	snprintf(out, cap, "%s/%s", dir, name);
}

static long long query_int(struct bq_db *db, const char *sql)
{
	sqlite3_stmt *st;
	long long v;

	ck_assert_int_eq(bq_db_prepare(db, sql, &st), 0);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static bool table_exists(struct bq_db *db, const char *name)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
	return query_int(db, sql) == 1;
}

static const char *query_text(struct bq_db *db, const char *sql, char *out, size_t cap)
{
	sqlite3_stmt *st;

	ck_assert_int_eq(bq_db_prepare(db, sql, &st), 0);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

START_TEST(test_open_creates_dirs_and_wal)
{
	char path[512];
	char buf[32];
	struct bq_db *db;
	struct stat st;
	int v;

	db_path(path, sizeof(path), "x/y/z/test.db");
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_str_eq(query_text(db, "PRAGMA journal_mode", buf, sizeof(buf)), "wal");
	ck_assert_int_eq(query_int(db, "PRAGMA synchronous"), 2); /* FULL */
	ck_assert_int_eq(query_int(db, "PRAGMA foreign_keys"), 1);
	ck_assert_int_eq(query_int(db, "PRAGMA busy_timeout"), 1000);
	ck_assert_str_eq(bq_db_path(db), path);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 0);
	bq_db_close(db);

	ck_assert_int_eq(bq_db_open(path, BQ_DB_SYNC_NORMAL, 10, NULL, &db), 0);
	ck_assert_int_eq(query_int(db, "PRAGMA synchronous"), 1); /* NORMAL */
	bq_db_close(db);
}
END_TEST

START_TEST(test_no_mkdir)
{
	char path[512];
	struct bq_db *db = (struct bq_db *)1;

	db_path(path, sizeof(path), "missing/test.db");
	ck_assert_int_eq(bq_db_open(path, BQ_DB_NO_MKDIR, 10, NULL, &db), -ENOENT);
	ck_assert_ptr_null(db);
}
END_TEST

START_TEST(test_migrate_fresh_and_reopen)
{
	char path[512];
	struct bq_db *db;
	int v;

	db_path(path, sizeof(path), "m.db");
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	/* Step 1 only, as an older program would have left it. */
	ck_assert_int_eq(bq_db_migrate(db, steps, 1), 0);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert(table_exists(db, "a"));
	ck_assert(!table_exists(db, "b"));
	ck_assert_int_eq(bq_db_exec(db, "INSERT INTO a (id, v) VALUES ('k', 7)"), 0);
	bq_db_close(db);

	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, steps, 2), 0);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 2);
	ck_assert(table_exists(db, "b"));
	ck_assert_int_eq(query_int(db, "SELECT v FROM a WHERE id = 'k'"), 7);
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM schema_version"), 2);
	bq_db_close(db);

	/* Reopening an up-to-date database applies nothing. */
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, steps, 2), 0);
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM schema_version"), 2);
	/* A program that knows only step 1 refuses the newer database. */
	ck_assert_int_eq(bq_db_migrate(db, steps, 1), -EPROTO);
	bq_db_close(db);
}
END_TEST

START_TEST(test_migrate_failure_rolls_back)
{
	static const struct bq_db_migration bad[] = {
		{1, "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY)"},
		{2, "CREATE TABLE c (id TEXT); CREATE TABLE oops ("},
	};
	static const struct bq_db_migration gap[] = {
		{1, "CREATE TABLE a (id TEXT)"},
		{3, "CREATE TABLE b (id TEXT)"},
	};
	char path[512];
	struct bq_db *db;
	int v;

	db_path(path, sizeof(path), "f.db");
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, gap, 2), -EINVAL);
	ck_assert_int_eq(bq_db_migrate(db, bad, 2), -EINVAL);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert(table_exists(db, "a"));
	/* The first statement of the failed step is undone with the rest. */
	ck_assert(!table_exists(db, "c"));
	ck_assert(sqlite3_get_autocommit(bq_db_handle(db)));
	bq_db_close(db);
}
END_TEST

START_TEST(test_corrupt_file)
{
	char path[512];
	char junk[8192];
	struct bq_db *db = (struct bq_db *)1;
	int fd;

	db_path(path, sizeof(path), "corrupt.db");
	memset(junk, 'Z', sizeof(junk));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	ck_assert_int_eq(bq_db_open(path, 0, 10, NULL, &db), -EBADMSG);
	ck_assert_ptr_null(db);
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 10, NULL, &db), -EBADMSG);
}
END_TEST

static int log_lines;
static char last_line[2048];

static void sink(void *ud, enum bq_log_level level, const char *line)
{
	log_lines++;
	snprintf(last_line, sizeof(last_line), "%s", line);
}

START_TEST(test_unusable_paths)
{
	char path[600];
	char file[512];
	struct bq_db *db = (struct bq_db *)1;
	struct bq_log *log = bq_log_new("test");
	int fd;

	bq_log_set_sink(log, sink, NULL);
	/* A regular file where a directory should be (fails even for root). */
	db_path(file, sizeof(file), "plainfile");
	fd = open(file, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/sub/test.db", file);
	log_lines = 0;
	ck_assert_int_eq(bq_db_open(path, 0, 10, log, &db), -ENOTDIR);
	ck_assert_ptr_null(db);
	ck_assert_int_eq(log_lines, 1);
	ck_assert_ptr_nonnull(strstr(last_line, "plainfile"));
	/* Same without mkdir: SQLite's CANTOPEN carries the OS error. */
	ck_assert_int_eq(bq_db_open(path, BQ_DB_NO_MKDIR, 10, log, &db), -ENOTDIR);
	/* A directory is not a database. */
	db_path(path, sizeof(path), "");
	ck_assert_int_lt(bq_db_open(path, 0, 10, log, &db), 0);
	ck_assert_ptr_null(db);
	/* Read-only open of a missing file. */
	db_path(path, sizeof(path), "nothere.db");
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 10, log, &db), -ENOENT);
	ck_assert_int_eq(bq_db_open("", 0, 10, log, &db), -EINVAL);
	bq_log_free(log);
}
END_TEST

START_TEST(test_statements)
{
	char path[512];
	struct bq_db *db;
	sqlite3_stmt *ins;
	sqlite3_stmt *bad = (sqlite3_stmt *)1;

	db_path(path, sizeof(path), "s.db");
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, steps, 2), 0);
	ck_assert_int_eq(bq_db_prepare(db, "SELEKT 1", &bad), -EINVAL);
	ck_assert_ptr_null(bad);
	ck_assert_int_eq(bq_db_prepare(db, "INSERT INTO a (id, v) VALUES (?1, ?2)", &ins), 0);

	ck_assert_int_eq(bq_db_begin(db), 0);
	ck_assert(!sqlite3_get_autocommit(bq_db_handle(db)));
	ck_assert_int_eq(bq_db_bind_text(ins, 1, "one", 3), 0);
	ck_assert_int_eq(bq_db_bind_i64(ins, 2, INT64_MAX), 0);
	ck_assert_int_eq(bq_db_step_done(db, ins), 0);
	/* Bindings were cleared: reusing the statement needs new ones. */
	ck_assert_int_eq(bq_db_bind_text(ins, 1, "one", 3), 0);
	ck_assert_int_eq(bq_db_bind_i64(ins, 2, 1), 0);
	ck_assert_int_eq(bq_db_step_done(db, ins), -EEXIST);
	/* A failed statement leaves the transaction and the earlier row alone. */
	ck_assert(!sqlite3_get_autocommit(bq_db_handle(db)));
	ck_assert_int_eq(bq_db_bind_text(ins, 1, "two", 3), 0);
	ck_assert_int_eq(bq_db_bind_i64(ins, 2, 2), 0);
	ck_assert_int_eq(bq_db_step_done(db, ins), 0);
	ck_assert_int_eq(bq_db_commit(db), 0);
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM a"), 2);
	ck_assert_int_eq(query_int(db, "SELECT v FROM a WHERE id = 'one'"), INT64_MAX);

	ck_assert_int_eq(bq_db_begin(db), 0);
	ck_assert_int_eq(bq_db_exec(db, "DELETE FROM a"), 0);
	bq_db_rollback(db);
	bq_db_rollback(db); /* harmless twice */
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM a"), 2);
	ck_assert_int_eq(bq_db_exec(db, "NOT SQL"), -EINVAL);
	/* ins is left prepared: close finalizes it (LeakSanitizer would notice). */
	bq_db_close(db);
	bq_db_close(NULL);
}
END_TEST

/* A read-only connection sees what the writer committed, while the writer holds its lock. */
START_TEST(test_reader_beside_writer)
{
	char path[512];
	struct bq_db *w, *r;

	db_path(path, sizeof(path), "rw.db");
	ck_assert_int_eq(bq_db_open(path, 0, 1000, NULL, &w), 0);
	ck_assert_int_eq(bq_db_migrate(w, steps, 2), 0);
	ck_assert_int_eq(bq_db_exec(w, "INSERT INTO a (id, v) VALUES ('x', 1)"), 0);
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 10, NULL, &r), 0);
	ck_assert_int_eq(bq_db_begin(w), 0);
	ck_assert_int_eq(bq_db_exec(w, "INSERT INTO a (id, v) VALUES ('y', 2)"), 0);
	/* Uncommitted: invisible, and the reader is not blocked. */
	ck_assert_int_eq(query_int(r, "SELECT COUNT(*) FROM a"), 1);
	ck_assert_int_eq(bq_db_commit(w), 0);
	ck_assert_int_eq(query_int(r, "SELECT COUNT(*) FROM a"), 2);
	ck_assert_int_eq(bq_db_exec(r, "INSERT INTO a (id, v) VALUES ('z', 3)"), -EROFS);
	bq_db_close(r);
	bq_db_close(w);
}
END_TEST

/* The whole migration path on SQLite's in-memory database: no file, no directory. */
START_TEST(test_memory_db)
{
	char buf[32];
	struct bq_db *db = NULL;
	struct bq_db *other = NULL;
	int v = -1;

	ck_assert_int_eq(bq_db_open(BQ_DB_MEMORY, 0, 1000, NULL, &db), 0);
	ck_assert_ptr_nonnull(db);
	/* WAL needs a file: the journal stays in memory, and nothing else changes. */
	ck_assert_str_eq(query_text(db, "PRAGMA journal_mode", buf, sizeof(buf)), "memory");
	ck_assert_int_eq(query_int(db, "PRAGMA foreign_keys"), 1);
	ck_assert_int_eq(query_int(db, "PRAGMA busy_timeout"), 1000);
	ck_assert_str_eq(bq_db_path(db), ":memory:");
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 0);

	/* Step by step, as on a file: 1, then 2, then nothing more to do. */
	ck_assert_int_eq(bq_db_migrate(db, steps, 1), 0);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert(table_exists(db, "a"));
	ck_assert(!table_exists(db, "b"));
	ck_assert_int_eq(bq_db_migrate(db, steps, 2), 0);
	ck_assert_int_eq(bq_db_migrate(db, steps, 2), 0);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM schema_version"), 2);
	ck_assert(table_exists(db, "b"));
	ck_assert_int_eq(bq_db_migrate(db, steps, 1), -EPROTO);
	ck_assert_int_eq(bq_db_exec(db, "INSERT INTO a (id, v) VALUES ('k', 7)"), 0);
	ck_assert_int_eq(query_int(db, "SELECT v FROM a WHERE id = 'k'"), 7);

	/* Transactions work (the migrations' BEGIN IMMEDIATE did too). */
	ck_assert_int_eq(bq_db_begin(db), 0);
	ck_assert_int_eq(bq_db_exec(db, "DELETE FROM a"), 0);
	bq_db_rollback(db);
	ck_assert_int_eq(query_int(db, "SELECT COUNT(*) FROM a"), 1);

	/* Each connection has its own database: a second one starts empty. */
	ck_assert_int_eq(bq_db_open(BQ_DB_MEMORY, BQ_DB_SYNC_NORMAL, 10, NULL, &other), 0);
	ck_assert_int_eq(bq_db_version(other, &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert(!table_exists(other, "a"));
	bq_db_close(other);
	bq_db_close(db);

	/* Nothing named ":memory:" was created in the working directory. */
	ck_assert_int_eq(access(":memory:", F_OK), -1);
}
END_TEST

/* A failing step on the in-memory database is rolled back as on a file. */
START_TEST(test_memory_db_failed_step)
{
	static const struct bq_db_migration bad[] = {
		{1, "CREATE TABLE a (id TEXT NOT NULL PRIMARY KEY)"},
		{2, "CREATE TABLE c (id TEXT); CREATE TABLE oops ("},
	};
	struct bq_db *db;
	int v;

	ck_assert_int_eq(bq_db_open(BQ_DB_MEMORY, 0, 1000, NULL, &db), 0);
	ck_assert_int_eq(bq_db_migrate(db, bad, 2), -EINVAL);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert(table_exists(db, "a"));
	ck_assert(!table_exists(db, "c"));
	ck_assert(sqlite3_get_autocommit(bq_db_handle(db)));
	bq_db_close(db);
}
END_TEST

START_TEST(test_errno_map)
{
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_OK), 0);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_DONE), 0);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_ROW), 0);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_CONSTRAINT_PRIMARYKEY), -EEXIST);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_BUSY), -EBUSY);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_FULL), -ENOSPC);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_NOTADB), -EBADMSG);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_CORRUPT), -EBADMSG);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_NOMEM), -ENOMEM);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_IOERR_FSYNC), -EIO);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_TOOBIG), -EMSGSIZE);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_READONLY), -EROFS);
	ck_assert_int_eq(bq_db_errno(NULL, SQLITE_PROTOCOL), -EIO);
}
END_TEST

static Suite *db_suite(void)
{
	Suite *s = suite_create("db");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_open_creates_dirs_and_wal);
	tcase_add_test(tc, test_no_mkdir);
	tcase_add_test(tc, test_migrate_fresh_and_reopen);
	tcase_add_test(tc, test_migrate_failure_rolls_back);
	tcase_add_test(tc, test_corrupt_file);
	tcase_add_test(tc, test_unusable_paths);
	tcase_add_test(tc, test_statements);
	tcase_add_test(tc, test_reader_beside_writer);
	tcase_add_test(tc, test_memory_db);
	tcase_add_test(tc, test_memory_db_failed_step);
	tcase_add_test(tc, test_errno_map);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(db_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
