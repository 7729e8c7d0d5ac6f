/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/store.h"
#include "core/alloc.h"
#include "store/db.h"
#include "testutil.h"

#define T0 1700000000000LL

static void make_path(char *out, size_t cap, const char *name)
{
	const char *dir = bq_test_tmpdir();

	ck_assert_ptr_nonnull(dir);
	snprintf(out, cap, "%s/%s", dir, name);
}

static struct bq_bstore *open_new(char *path, size_t cap)
{
	struct bq_bstore *bs = NULL;

	make_path(path, cap, "data/backend.db");
	ck_assert_int_eq(bq_bstore_open(path, NULL, &bs), 0);
	ck_assert_ptr_nonnull(bs);
	return bs;
}

static bool is_hex16(const char *s)
{
	if (strlen(s) != 16) {
		return false;
	}
	for (; *s; s++) {
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) {
			return false;
		}
	}
	return true;
}

static void create(struct bq_bstore *bs, const char *name, struct bq_buser *u)
{
	ck_assert_int_eq(bq_bstore_user_create(bs, name, "$argon2id$hash", BQ_BSTORE_ADMIN_IF_FIRST,
					       T0, u, NULL),
			 0);
}

START_TEST(test_open_schema_version)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_db *db;
	int v = 0;

	bq_bstore_close(bs);
	ck_assert_int_eq(bq_db_open(path, 0, 100, NULL, &db), 0);
	ck_assert_int_eq(bq_db_version(db, &v), 0);
	ck_assert_int_eq(v, 1);
	bq_db_close(db);
	/* Opening again does not re-apply the step. */
	ck_assert_int_eq(bq_bstore_open(path, NULL, &bs), 0);
	bq_bstore_close(bs);
	bq_bstore_close(NULL);
	ck_assert_int_eq(bq_bstore_open("", NULL, &bs), -EINVAL);
	ck_assert_ptr_null(bs);
}
END_TEST

START_TEST(test_users_create_get)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser a;
	struct bq_buser b;
	struct bq_buser g;
	char name65[66];
	bool first = false;
	int64_t n = -1;

	ck_assert_int_eq(bq_bstore_user_count(bs, &n), 0);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(
		bq_bstore_user_create(bs, "Alice", "h1", BQ_BSTORE_ADMIN_IF_FIRST, T0, &a, &first),
		0);
	ck_assert(first);
	ck_assert(a.is_admin);
	ck_assert(is_hex16(a.id));
	ck_assert_str_eq(a.username, "Alice");
	ck_assert_int_eq(a.change_seq, 1);

	/* Same name in another case: taken, and nothing consumed. */
	ck_assert_int_eq(bq_bstore_user_create(bs, "aLICE", "h2", 0, T0, NULL, &first), -EEXIST);
	ck_assert_int_eq(bq_bstore_user_create(bs, "ALICE", "h2", 0, T0, NULL, NULL), -EEXIST);
	ck_assert_int_eq(bq_bstore_user_create(bs, "Bob", "h2", BQ_BSTORE_ADMIN_IF_FIRST, T0 + 1,
					       &b, &first),
			 0);
	ck_assert(!first);
	ck_assert(!b.is_admin);
	ck_assert_int_eq(b.change_seq, 2);
	ck_assert_str_ne(a.id, b.id);

	ck_assert_int_eq(bq_bstore_user_create(bs, "carol", "h3", BQ_BSTORE_ADMIN, T0, &g, &first),
			 0);
	ck_assert(g.is_admin);
	ck_assert(!first);

	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "alice", &g), 0);
	ck_assert_str_eq(g.id, a.id);
	ck_assert_str_eq(g.username, "Alice");
	ck_assert_str_eq(g.pass_hash, "h1");
	ck_assert(g.is_admin);
	ck_assert_int_eq(g.created_ms, T0);
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "BOB", &g), 0);
	ck_assert_str_eq(g.id, b.id);
	ck_assert_int_eq(bq_bstore_user_get_by_id(bs, b.id, &g), 0);
	ck_assert_str_eq(g.username, "Bob");
	ck_assert_str_eq(g.pass_hash, "h2");
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "dave", &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_get_by_id(bs, "0000000000000000", &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_get_by_id(bs, "", &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_count(bs, &n), 0);
	ck_assert_int_eq(n, 3);

	memset(name65, 'x', 65);
	name65[65] = '\0';
	ck_assert_int_eq(bq_bstore_user_create(bs, name65, "h", 0, T0, NULL, NULL), -EMSGSIZE);
	name65[64] = '\0';
	ck_assert_int_eq(bq_bstore_user_create(bs, name65, "h", 0, T0, NULL, NULL), 0);
	ck_assert_int_eq(bq_bstore_user_create(bs, "", "h", 0, T0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(bq_bstore_user_create(bs, "eve", "", 0, T0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(bq_bstore_user_create(bs, NULL, "h", 0, T0, NULL, NULL), -EINVAL);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_first_user_without_flag)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser u;
	bool first = false;

	/* An admin name is configured and this is not it: first, yet not admin. */
	ck_assert_int_eq(bq_bstore_user_create(bs, "zed", "h", 0, T0, &u, &first), 0);
	ck_assert(first);
	ck_assert(!u.is_admin);
	/* Deleting every user does not make the next one "first". */
	ck_assert_int_eq(bq_bstore_user_delete(bs, u.id, T0 + 1), 0);
	ck_assert_int_eq(
		bq_bstore_user_create(bs, "yan", "h", BQ_BSTORE_ADMIN_IF_FIRST, T0, &u, &first), 0);
	ck_assert(!first);
	ck_assert(!u.is_admin);
	bq_bstore_close(bs);
}
END_TEST

struct seen_users {
	int n;
	char id[8][BQ_BSTORE_ID_LEN + 1];
	bool deleted[8];
	int64_t seq[8];
	int stop_at; /* return 1 on this call (1-based), 0: never */
};

static int user_cb(void *ud, const struct bq_buser_change *c)
{
	struct seen_users *s = ud;

	ck_assert_int_lt(s->n, 8);
	snprintf(s->id[s->n], sizeof(s->id[0]), "%s", c->id);
	s->deleted[s->n] = c->deleted;
	s->seq[s->n] = c->change_seq;
	s->n++;
	return s->n == s->stop_at ? 1 : 0;
}

START_TEST(test_poll_cursor)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser u[3];
	struct seen_users s = {0};
	int64_t cur = -1;
	int64_t cur2;
	bool more = true;
	int64_t n;

	create(bs, "u1", &u[0]);
	create(bs, "u2", &u[1]);
	create(bs, "u3", &u[2]);

	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 10, user_cb, &s, &cur, &more), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert(!more);
	for (int i = 0; i < 3; i++) {
		ck_assert_str_eq(s.id[i], u[i].id);
		ck_assert(!s.deleted[i]);
	}
	ck_assert_int_eq(cur, s.seq[2]);
	ck_assert_int_lt(s.seq[0], s.seq[1]);

	/* Nothing new: the cursor stays. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_users_since(bs, cur, 10, user_cb, &s, &cur2, &more), 0);
	ck_assert_int_eq(s.n, 0);
	ck_assert_int_eq(cur2, cur);
	ck_assert(!more);

	ck_assert_int_eq(bq_bstore_user_delete(bs, u[1].id, T0 + 5), 0);
	ck_assert_int_eq(bq_bstore_user_delete(bs, u[1].id, T0 + 6), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_delete(bs, "ffffffffffffffff", T0 + 6), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_get_by_id(bs, u[1].id, NULL), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "u2", NULL), -ENOENT);
	/* Names of deleted accounts stay reserved. */
	ck_assert_int_eq(bq_bstore_user_create(bs, "U2", "h", 0, T0, NULL, NULL), -EEXIST);
	ck_assert_int_eq(bq_bstore_user_count(bs, &n), 0);
	ck_assert_int_eq(n, 2);

	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_users_since(bs, cur, 10, user_cb, &s, &cur2, &more), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_str_eq(s.id[0], u[1].id);
	ck_assert(s.deleted[0]);
	ck_assert_int_gt(cur2, cur);
	ck_assert(!more);

	/* Paging: u1, u3, then deleted u2 (its new seq). */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 2, user_cb, &s, &cur, &more), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert(more);
	ck_assert_str_eq(s.id[0], u[0].id);
	ck_assert_str_eq(s.id[1], u[2].id);
	ck_assert_int_eq(cur, s.seq[1]);
	ck_assert_int_eq(bq_bstore_users_since(bs, cur, 2, user_cb, &s, &cur, &more), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert(!more);
	ck_assert_str_eq(s.id[2], u[1].id);
	ck_assert(s.deleted[2]);
	ck_assert_int_eq(cur, cur2);

	/* Exactly limit rows left: more is false. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 3, user_cb, &s, &cur, &more), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert(!more);

	/* The callback stops the walk; the cursor covers what it took. */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 10, user_cb, &s, &cur, &more), 1);
	ck_assert_int_eq(s.n, 2);
	ck_assert_int_eq(cur, s.seq[0]);

	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 0, user_cb, &s, &cur, &more), -EINVAL);
	ck_assert_int_eq(
		bq_bstore_users_since(bs, 0, BQ_BSTORE_PAGE_MAX + 1, user_cb, &s, &cur, &more),
		-EINVAL);
	ck_assert_int_eq(bq_bstore_users_since(bs, -1, 1, user_cb, &s, &cur, &more), -EINVAL);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_sessions)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser a;
	struct bq_buser b;
	struct bq_buser g;
	int64_t seen;

	create(bs, "alice", &a);
	create(bs, "bob", &b);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th1", a.id, T0, T0 + 3600000), 0);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th1", b.id, T0, T0 + 3600000), -EEXIST);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th2", "0123456789abcdef", T0, T0 + 1), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_add(bs, "", a.id, T0, T0 + 1), -EINVAL);

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 1000, &g), 0);
	ck_assert_str_eq(g.id, a.id);
	ck_assert_str_eq(g.username, "alice");
	ck_assert(g.is_admin);

	/* last_seen moves at most once a minute. */
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th1", &seen), 0);
	ck_assert_int_eq(seen, T0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 59999, NULL), 0);
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th1", &seen), 0);
	ck_assert_int_eq(seen, T0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 60000, NULL), 0);
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th1", &seen), 0);
	ck_assert_int_eq(seen, T0 + 60000);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 100000, NULL), 0);
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th1", &seen), 0);
	ck_assert_int_eq(seen, T0 + 60000);

	/* Expired at expires_ms exactly. */
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 3599999, NULL), 0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th1", T0 + 3600000, &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "nope", T0, &g), -ENOENT);

	ck_assert_int_eq(bq_bstore_session_add(bs, "th3", b.id, T0, T0 + 10), 0);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th4", b.id, T0, T0 + 20), 0);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th5", b.id, T0, T0 + 30), 0);
	ck_assert_int_eq(bq_bstore_session_purge_expired(bs, T0 + 20), 2);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th4", T0, NULL), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th5", T0, NULL), 0);
	ck_assert_int_eq(bq_bstore_session_purge_expired(bs, T0 + 20), 0);

	ck_assert_int_eq(bq_bstore_session_remove(bs, "th5"), 0);
	ck_assert_int_eq(bq_bstore_session_remove(bs, "th5"), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th5", &seen), -ENOENT);

	/* A deleted user's sessions die with the account. */
	ck_assert_int_eq(bq_bstore_session_add(bs, "th6", b.id, T0, T0 + 3600000), 0);
	ck_assert_int_eq(bq_bstore_user_delete(bs, b.id, T0 + 1), 0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "th6", T0 + 2, NULL), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_last_seen(bs, "th6", &seen), -ENOENT);
	ck_assert_int_eq(bq_bstore_session_add(bs, "th7", b.id, T0, T0 + 3600000), -ENOENT);
	bq_bstore_close(bs);
}
END_TEST

struct seen_pending {
	int n;
	struct bq_bpending p[8];
	struct bq_bstore *bs;
	bool reschedule;
};

static int pending_cb(void *ud, const struct bq_bpending *p)
{
	struct seen_pending *s = ud;

	ck_assert_int_lt(s->n, 8);
	s->p[s->n++] = *p;
	if (s->reschedule) {
		/* Allowed from the callback: rows were read before. */
		ck_assert_int_eq(bq_bstore_pending_reschedule(s->bs, p->user_id, p->attempts + 1,
							      p->next_try_ms + 1000000, "refused"),
				 0);
	}
	return 0;
}

START_TEST(test_pending_connects)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser u[3];
	struct seen_pending s = {0};
	char long_err[400];
	int64_t n;

	create(bs, "p1", &u[0]);
	create(bs, "p2", &u[1]);
	create(bs, "p3", &u[2]);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, u[0].id, "p1", T0 + 300), 0);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, u[1].id, "p2", T0 + 100), 0);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, u[2].id, "p3", T0 + 100), 0);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, "0000000000000000", "x", T0), -ENOENT);
	ck_assert_int_eq(bq_bstore_pending_count(bs, &n), 0);
	ck_assert_int_eq(n, 3);

	/* Nothing due before the earliest. */
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 99, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 0);

	/* Earliest first, ties by user id. */
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 300, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert_int_eq(s.p[0].next_try_ms, T0 + 100);
	ck_assert_int_eq(s.p[1].next_try_ms, T0 + 100);
	ck_assert_int_lt(strcmp(s.p[0].user_id, s.p[1].user_id), 0);
	ck_assert_str_eq(s.p[2].user_id, u[0].id);
	ck_assert_str_eq(s.p[2].user_name, "p1");
	ck_assert_int_eq(s.p[2].attempts, 0);
	ck_assert_str_eq(s.p[2].last_error, "");

	/* Limit. */
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 300, 2, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0, 0, pending_cb, &s), -EINVAL);

	/* Reschedule from the callback: each row reported once, then not due. */
	memset(&s, 0, sizeof(s));
	s.bs = bs;
	s.reschedule = true;
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 300, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 3);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 300, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 0);
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 1000200, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 2);
	ck_assert_int_eq(s.p[0].attempts, 1);
	ck_assert_str_eq(s.p[0].last_error, "refused");

	/* Reschedule: attempts, time, error cut at 255 bytes without splitting UTF-8. */
	memset(long_err, 'e', sizeof(long_err));
	memcpy(long_err + 254, "\xc3\xa9", 2); /* é straddles the limit */
	long_err[sizeof(long_err) - 1] = '\0';
	ck_assert_int_eq(bq_bstore_pending_reschedule(bs, u[0].id, 7, T0 + 5, long_err), 0);
	ck_assert_int_eq(bq_bstore_pending_reschedule(bs, "0000000000000000", 1, T0, NULL),
			 -ENOENT);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 5, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_str_eq(s.p[0].user_id, u[0].id);
	ck_assert_int_eq(s.p[0].attempts, 7);
	ck_assert_int_eq(strlen(s.p[0].last_error), 254);

	/* Upsert of an existing one restarts it. */
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, u[0].id, "P1", T0 + 1), 0);
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 5, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_int_eq(s.p[0].attempts, 0);
	ck_assert_str_eq(s.p[0].user_name, "P1");
	ck_assert_str_eq(s.p[0].last_error, "");
	ck_assert_int_eq(bq_bstore_pending_count(bs, &n), 0);
	ck_assert_int_eq(n, 3);

	ck_assert_int_eq(bq_bstore_pending_remove(bs, u[0].id), 0);
	ck_assert_int_eq(bq_bstore_pending_remove(bs, u[0].id), -ENOENT);
	/* Deleting the user removes its pending connect. */
	ck_assert_int_eq(bq_bstore_user_delete(bs, u[1].id, T0), 0);
	ck_assert_int_eq(bq_bstore_pending_count(bs, &n), 0);
	ck_assert_int_eq(n, 1);
	bq_bstore_close(bs);
}
END_TEST

struct got_msg {
	int n;
	char id[16][BQ_BSTORE_MSGID_MAX + 1];
	char text[64];
	size_t text_len;
	char state[16];
	char reason[300];
	bool has_reason;
	int64_t created_ms;
	int64_t updated_ms;
	char conv[64];
	char from[64];
	char to[64];
};

static int msg_cb(void *ud, const struct bq_bmsg *m)
{
	struct got_msg *g = ud;

	ck_assert_int_lt(g->n, 16);
	snprintf(g->id[g->n++], sizeof(g->id[0]), "%s", m->id);
	ck_assert_uint_lt(m->text_len, sizeof(g->text));
	memcpy(g->text, m->text, m->text_len);
	g->text[m->text_len] = '\0';
	g->text_len = m->text_len;
	snprintf(g->state, sizeof(g->state), "%s", m->state);
	g->has_reason = m->reason != NULL;
	snprintf(g->reason, sizeof(g->reason), "%s", m->reason ? m->reason : "");
	g->created_ms = m->created_ms;
	g->updated_ms = m->updated_ms;
	snprintf(g->conv, sizeof(g->conv), "%s", m->conv);
	snprintf(g->from, sizeof(g->from), "%s", m->from_id);
	snprintf(g->to, sizeof(g->to), "%s", m->to_id);
	return 0;
}

static struct got_msg get_msg(struct bq_bstore *bs, const char *id)
{
	struct got_msg g;

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_get(bs, id, msg_cb, &g), 0);
	ck_assert_int_eq(g.n, 1);
	return g;
}

START_TEST(test_messages_insert_state)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_bmsg m = {
		.id = "00000000000000a1",
		.conv = "alice:bob",
		.from_id = "bob",
		.to_id = "alice",
		.text = "hello",
		.text_len = 5,
		.state = "received",
		.created_ms = T0,
	};
	struct got_msg g;
	static char big[BQ_BSTORE_TEXT_MAX + 1];
	char reason[300];
	bool changed = true;

	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	/* Delivered twice: stored once, unchanged. */
	m.text = "other";
	m.created_ms = T0 + 9;
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), -EEXIST);
	g = get_msg(bs, m.id);
	ck_assert_str_eq(g.text, "hello");
	ck_assert_str_eq(g.state, "received");
	ck_assert(!g.has_reason);
	ck_assert_int_eq(g.created_ms, T0);
	ck_assert_int_eq(g.updated_ms, T0);
	ck_assert_str_eq(g.conv, "alice:bob");
	ck_assert_str_eq(g.from, "bob");
	ck_assert_str_eq(g.to, "alice");
	/* received is terminal. */
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "failed", "x", T0 + 1, &changed), 0);
	ck_assert(!changed);

	/* Outbound life: queued -> sent -> queued -> sent -> delivered, then nothing moves. */
	m.id = "00000000000000b2";
	m.from_id = "alice";
	m.to_id = "bob";
	m.text = "";
	m.text_len = 0;
	m.state = "queued";
	m.created_ms = T0 + 10;
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "sent", NULL, T0 + 11, &changed), 0);
	ck_assert(changed);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "queued", "link down", T0 + 12, NULL),
			 0);
	g = get_msg(bs, m.id);
	ck_assert_str_eq(g.state, "queued");
	ck_assert_str_eq(g.reason, "link down");
	ck_assert_int_eq(g.updated_ms, T0 + 12);
	ck_assert_str_eq(g.text, "");
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "delivered", NULL, T0 + 13, &changed),
			 0);
	ck_assert(changed);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "sent", NULL, T0 + 14, &changed), 0);
	ck_assert(!changed);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "failed", "expired", T0 + 15, &changed),
			 0);
	ck_assert(!changed);
	g = get_msg(bs, m.id);
	ck_assert_str_eq(g.state, "delivered");
	ck_assert(!g.has_reason);
	ck_assert_int_eq(g.updated_ms, T0 + 13);

	/* failed and broadcast are terminal too; reasons are cut at 255 bytes. */
	memset(reason, 'r', sizeof(reason));
	reason[sizeof(reason) - 1] = '\0';
	m.id = "00000000000000c3";
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "failed", reason, T0 + 20, &changed), 0);
	ck_assert(changed);
	g = get_msg(bs, m.id);
	ck_assert_uint_eq(strlen(g.reason), BQ_BSTORE_REASON_MAX);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "delivered", NULL, T0 + 21, &changed),
			 0);
	ck_assert(!changed);
	m.id = "00000000000000d4";
	m.to_id = "broadcast";
	m.conv = "broadcast";
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "broadcast", NULL, T0 + 22, NULL), 0);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "queued", NULL, T0 + 23, &changed), 0);
	ck_assert(!changed);
	ck_assert_str_eq(get_msg(bs, m.id).state, "broadcast");

	ck_assert_int_eq(bq_bstore_msg_set_state(bs, "nope", "sent", NULL, T0, &changed), -ENOENT);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, m.id, "bogus", NULL, T0, &changed), -EINVAL);
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_get(bs, "nope", msg_cb, &g), -ENOENT);
	ck_assert_int_eq(g.n, 0);

	ck_assert(bq_bstore_state_terminal("delivered"));
	ck_assert(bq_bstore_state_terminal("failed"));
	ck_assert(bq_bstore_state_terminal("broadcast"));
	ck_assert(bq_bstore_state_terminal("received"));
	ck_assert(!bq_bstore_state_terminal("queued"));
	ck_assert(!bq_bstore_state_terminal("sent"));
	ck_assert(!bq_bstore_state_terminal(NULL));
	ck_assert(bq_bstore_state_valid("sent"));
	ck_assert(!bq_bstore_state_valid("accepted"));

	/* Bad input. */
	m.id = "00000000000000e5";
	m.state = "bogus";
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), -EINVAL);
	m.state = "queued";
	m.text = "a\0b";
	m.text_len = 3;
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), -EINVAL);
	memset(big, 'x', sizeof(big));
	m.text = big;
	m.text_len = sizeof(big);
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), -EMSGSIZE);
	m.text_len = BQ_BSTORE_TEXT_MAX;
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	m.id = "";
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), -EINVAL);
	ck_assert_int_eq(bq_bstore_msg_insert(bs, NULL), -EINVAL);

	/* Rekey: the backend's temporary id becomes the manager's. */
	ck_assert_int_eq(bq_bstore_msg_rekey(bs, "00000000000000c3", "00000000000000f6"), 0);
	ck_assert_int_eq(bq_bstore_msg_get(bs, "00000000000000c3", msg_cb, &g), -ENOENT);
	ck_assert_str_eq(get_msg(bs, "00000000000000f6").state, "failed");
	ck_assert_int_eq(bq_bstore_msg_rekey(bs, "00000000000000c3", "0000000000000107"), -ENOENT);
	ck_assert_int_eq(bq_bstore_msg_rekey(bs, "00000000000000f6", "00000000000000a1"), -EEXIST);
	bq_bstore_close(bs);
}
END_TEST

static void put_msg(struct bq_bstore *bs, const char *conv, const char *id, int64_t at)
{
	struct bq_bmsg m = {
		.id = id,
		.conv = conv,
		.from_id = "a",
		.to_id = "b",
		.text = id,
		.text_len = strlen(id),
		.state = "sent",
		.created_ms = at,
	};

	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
}

START_TEST(test_messages_paging)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct got_msg g;
	/* Insertion order differs from the expected order on purpose. */
	static const struct {
		const char *id;
		int64_t at;
	} in[] = {
		{"m05", 200}, {"m01", 100}, {"m09", 200}, {"m03", 300},
		{"m07", 200}, {"m02", 100}, {"m08", 50},
	};
	static const char *const want[] = {"m03", "m09", "m07", "m05", "m02", "m01", "m08"};
	int64_t before_ms;
	char before_id[BQ_BSTORE_MSGID_MAX + 1];
	int k = 0;

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		put_msg(bs, "a:b", in[i].id, T0 + in[i].at);
	}
	put_msg(bs, "a:c", "m99", T0 + 250);
	put_msg(bs, "broadcast", "m98", T0 + 250);

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_page(bs, "a:b", 0, NULL, 3, msg_cb, &g), 0);
	ck_assert_int_eq(g.n, 3);
	/* Walk pages of 3 with the last row as the cursor; the middle page splits the
	 * three messages at the same millisecond. */
	while (g.n > 0) {
		for (int i = 0; i < g.n; i++) {
			ck_assert_int_lt(k, 7);
			ck_assert_str_eq(g.id[i], want[k]);
			k++;
		}
		snprintf(before_id, sizeof(before_id), "%s", g.id[g.n - 1]);
		before_ms = 0;
		for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
			if (strcmp(in[i].id, before_id) == 0) {
				before_ms = T0 + in[i].at;
			}
		}
		memset(&g, 0, sizeof(g));
		ck_assert_int_eq(bq_bstore_msg_page(bs, "a:b", before_ms, before_id, 3, msg_cb, &g),
				 0);
	}
	ck_assert_int_eq(k, 7);

	/* A cursor inside a run of equal timestamps. */
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_page(bs, "a:b", T0 + 200, "m07", 10, msg_cb, &g), 0);
	ck_assert_int_eq(g.n, 4);
	ck_assert_str_eq(g.id[0], "m05");
	ck_assert_str_eq(g.id[1], "m02");

	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_page(bs, "broadcast", 0, NULL, 10, msg_cb, &g), 0);
	ck_assert_int_eq(g.n, 1);
	ck_assert_str_eq(g.id[0], "m98");
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_page(bs, "nobody", 0, NULL, 10, msg_cb, &g), 0);
	ck_assert_int_eq(g.n, 0);
	ck_assert_int_eq(bq_bstore_msg_page(bs, "a:b", 0, NULL, 0, msg_cb, &g), -EINVAL);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_conv_key)
{
	char k1[BQ_BSTORE_CONV_MAX + 1];
	char k2[BQ_BSTORE_CONV_MAX + 1];
	char id64[65];
	char id65[66];
	char colons[65];

	ck_assert_int_eq(bq_bstore_conv_key("bob", "alice", k1, sizeof(k1)), 0);
	ck_assert_str_eq(k1, "alice:bob");
	ck_assert_int_eq(bq_bstore_conv_key("alice", "bob", k1, sizeof(k1)), 0);
	ck_assert_str_eq(k1, "alice:bob");
	ck_assert_int_eq(bq_bstore_conv_key("alice", "broadcast", k1, sizeof(k1)), 0);
	ck_assert_str_eq(k1, "broadcast");
	/* Mesh ids may hold ':'; the escape keeps pairs apart. */
	ck_assert_int_eq(bq_bstore_conv_key("a:b", "c", k1, sizeof(k1)), 0);
	ck_assert_int_eq(bq_bstore_conv_key("a", "b:c", k2, sizeof(k2)), 0);
	ck_assert_str_eq(k1, "a%3Ab:c");
	ck_assert_str_eq(k2, "a:b%3Ac");
	ck_assert_int_eq(bq_bstore_conv_key("a%3Ab", "c", k2, sizeof(k2)), 0);
	ck_assert_str_eq(k2, "a%253Ab:c");
	ck_assert_str_ne(k1, k2);

	/* The largest key fits the documented size. */
	memset(colons, ':', 64);
	colons[64] = '\0';
	memset(id64, '%', 64);
	id64[64] = '\0';
	ck_assert_int_eq(bq_bstore_conv_key(colons, id64, k1, sizeof(k1)), 0);
	ck_assert_uint_eq(strlen(k1), BQ_BSTORE_CONV_MAX);
	ck_assert_int_eq(bq_bstore_conv_key(colons, id64, k1, sizeof(k1) - 1), -ENOSPC);
	ck_assert_str_eq(k1, "");
	ck_assert_int_eq(bq_bstore_conv_key("", "b", k1, sizeof(k1)), -EINVAL);
	ck_assert_int_eq(bq_bstore_conv_key("a", NULL, k1, sizeof(k1)), -EINVAL);
	memset(id64, 'x', 64);
	ck_assert_int_eq(bq_bstore_conv_key(id64, "b", k1, sizeof(k1)), 0);
	memset(id65, 'x', 65);
	id65[65] = '\0';
	ck_assert_int_eq(bq_bstore_conv_key(id65, "b", k1, sizeof(k1)), -EINVAL);
}
END_TEST

START_TEST(test_events_seen_prune)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));

	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-1", T0), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-1", T0 + 5), -EEXIST);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-2", T0 + 10), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-3", T0 + 20), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "", T0), -EINVAL);
	/* Strictly older than the limit. */
	ck_assert_int_eq(bq_bstore_event_prune(bs, T0 + 10), 1);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-1", T0 + 30), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "inst-2", T0 + 30), -EEXIST);
	ck_assert_int_eq(bq_bstore_event_prune(bs, T0 + 100), 3);
	ck_assert_int_eq(bq_bstore_event_prune(bs, T0 + 100), 0);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_meta)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	char buf[64];
	char big[BQ_BSTORE_VALUE_MAX + 2];

	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, sizeof(buf)), -ENOENT);
	ck_assert_int_eq(bq_bstore_meta_set(bs, "service_token_hash", "abc"), 0);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "abc");
	ck_assert_int_eq(bq_bstore_meta_set(bs, "service_token_hash", "defg"), 0);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "defg");
	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, 4), -ENOSPC);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, 5), 0);
	ck_assert_int_eq(bq_bstore_meta_set(bs, "change_seq", "99"), -EINVAL);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "change_seq", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "0");
	memset(big, 'v', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(bq_bstore_meta_set(bs, "k", big), -EMSGSIZE);
	big[sizeof(big) - 2] = '\0';
	ck_assert_int_eq(bq_bstore_meta_set(bs, "k", big), 0);
	ck_assert_int_eq(bq_bstore_meta_set(bs, "", "x"), -EINVAL);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_batch)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser a;
	struct bq_buser b;
	char buf[32];
	struct got_msg g;

	ck_assert_int_eq(bq_bstore_commit(bs), -EINVAL);
	ck_assert_int_eq(bq_bstore_rollback(bs), -EINVAL);

	/* Rolled back: nothing stays. */
	ck_assert_int_eq(bq_bstore_begin(bs), 0);
	ck_assert_int_eq(bq_bstore_begin(bs), -EALREADY);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e1", T0), 0);
	put_msg(bs, "a:b", "x1", T0);
	create(bs, "alice", &a);
	ck_assert_int_eq(bq_bstore_rollback(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e1", T0), 0);
	memset(&g, 0, sizeof(g));
	ck_assert_int_eq(bq_bstore_msg_get(bs, "x1", msg_cb, &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "alice", NULL), -ENOENT);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "change_seq", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "0");

	/* A failing call inside a batch is undone alone; the batch goes on. */
	create(bs, "alice", &a);
	ck_assert_int_eq(bq_bstore_begin(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e1", T0), -EEXIST);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e2", T0), 0);
	ck_assert_int_eq(bq_bstore_user_create(bs, "ALICE", "h", 0, T0, NULL, NULL), -EEXIST);
	ck_assert_int_eq(bq_bstore_user_delete(bs, "0000000000000000", T0), -ENOENT);
	put_msg(bs, "a:b", "x2", T0);
	create(bs, "bob", &b);
	ck_assert_int_eq(bq_bstore_commit(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e2", T0), -EEXIST);
	ck_assert_str_eq(get_msg(bs, "x2").id[0], "x2");
	/* The failed create and delete took no change_seq. */
	ck_assert_int_eq(a.change_seq, 1);
	ck_assert_int_eq(b.change_seq, 2);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "change_seq", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "2");

	/* Closing inside a batch rolls it back. */
	ck_assert_int_eq(bq_bstore_begin(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e3", T0), 0);
	bq_bstore_close(bs);
	ck_assert_int_eq(bq_bstore_open(path, NULL, &bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "e3", T0), 0);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_reopen_keeps_everything)
{
	char path[512];
	struct bq_bstore *bs = open_new(path, sizeof(path));
	struct bq_buser a;
	struct bq_buser b;
	struct bq_buser g;
	struct seen_pending s = {0};
	char buf[32];
	int64_t n;

	create(bs, "alice", &a);
	create(bs, "bob", &b);
	ck_assert_int_eq(bq_bstore_user_delete(bs, b.id, T0 + 1), 0);
	ck_assert_int_eq(bq_bstore_session_add(bs, "tok", a.id, T0, T0 + 100000), 0);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, a.id, "alice", T0 + 5), 0);
	put_msg(bs, "a:b", "r1", T0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev", T0), 0);
	ck_assert_int_eq(bq_bstore_meta_set(bs, "service_token_hash", "sth"), 0);
	bq_bstore_close(bs);

	ck_assert_int_eq(bq_bstore_open(path, NULL, &bs), 0);
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "Alice", &g), 0);
	ck_assert_str_eq(g.id, a.id);
	ck_assert(g.is_admin);
	ck_assert_int_eq(bq_bstore_user_get_by_id(bs, b.id, &g), -ENOENT);
	ck_assert_int_eq(bq_bstore_user_count(bs, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "tok", T0 + 1, &g), 0);
	ck_assert_str_eq(g.id, a.id);
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0 + 5, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 1);
	ck_assert_str_eq(get_msg(bs, "r1").text, "r1");
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev", T0), -EEXIST);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "service_token_hash", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "sth");
	/* The sequence goes on where it stopped (create, create, delete: 3). */
	create(bs, "carol", &g);
	ck_assert_int_eq(g.change_seq, 4);
	ck_assert_int_eq(
		bq_bstore_user_create(bs, "dave", "h", BQ_BSTORE_ADMIN_IF_FIRST, T0, &g, NULL), 0);
	ck_assert(!g.is_admin);
	bq_bstore_close(bs);
}
END_TEST

/*
 * The in-memory database of bq_bstore_open(BQ_DB_MEMORY) lives inside the store, which
 * does not hand out its connection. SQLite calls every registered auto-extension for each
 * new connection, with its handle: the test keeps the last one to look at the schema.
 */
static sqlite3 *last_conn;

static int catch_conn(sqlite3 *h, const char **err, const void *api)
{
	(void)err;
	(void)api;
	last_conn = h;
	return SQLITE_OK;
}

static long long conn_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st;
	long long v;

	ck_assert_int_eq(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* The schema as text: every table and index with its SQL, in name order. */
static void conn_schema(sqlite3 *h, char *out, size_t cap)
{
	sqlite3_stmt *st;
	size_t len = 0;

	out[0] = '\0';
	ck_assert_int_eq(
		sqlite3_prepare_v2(h,
				   "SELECT type, name, COALESCE(sql, '') FROM sqlite_master "
				   "WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
				   -1, &st, NULL),
		SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int n = snprintf(out + len, cap - len, "%s %s: %s\n", sqlite3_column_text(st, 0),
				 sqlite3_column_text(st, 1), sqlite3_column_text(st, 2));

		ck_assert_int_gt(n, 0);
		ck_assert_uint_lt((size_t)n, cap - len);
		len += (size_t)n;
	}
	sqlite3_finalize(st);
}

/*
 * The store's whole migration chain on SQLite's in-memory database: the same schema and
 * version as on a file, foreign keys enforced, and every table used through the API.
 */
START_TEST(test_memory_store)
{
	static char file_schema[16384];
	static char mem_schema[16384];
	char path[512];
	char buf[32];
	struct bq_bstore *bs = NULL;
	struct bq_buser a;
	struct bq_buser b;
	struct bq_buser g;
	struct seen_pending sp = {0};
	struct seen_users su = {0};
	struct got_msg gm;
	struct bq_bmsg m = {
		.id = "m1",
		.conv = "alice:bob",
		.from_id = "alice",
		.to_id = "bob",
		.text = "hello",
		.text_len = 5,
		.state = "queued",
		.created_ms = T0,
	};
	struct bq_db *fdb;
	sqlite3 *h;
	int64_t n;
	int64_t cur;
	bool more;
	bool changed;
	int file_version;

	/* What the chain leaves on a file, to compare with. */
	bs = open_new(path, sizeof(path));
	bq_bstore_close(bs);
	ck_assert_int_eq(bq_db_open(path, BQ_DB_READONLY, 100, NULL, &fdb), 0);
	ck_assert_int_eq(bq_db_version(fdb, &file_version), 0);
	ck_assert_int_ge(file_version, 1);
	conn_schema(bq_db_handle(fdb), file_schema, sizeof(file_schema));
	bq_db_close(fdb);

	ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))catch_conn), SQLITE_OK);
	last_conn = NULL;
	bs = NULL;
	ck_assert_int_eq(bq_bstore_open(BQ_DB_MEMORY, NULL, &bs), 0);
	h = last_conn;
	sqlite3_reset_auto_extension();
	ck_assert_ptr_nonnull(bs);
	ck_assert_ptr_nonnull(h);
	ck_assert_str_eq(sqlite3_db_filename(h, "main"), ""); /* no file behind it */

	/* Every step applied once, in order, and nothing else: the file's schema exactly. */
	ck_assert_int_eq(conn_int(h, "SELECT COALESCE(MAX(version), 0) FROM schema_version"),
			 file_version);
	ck_assert_int_eq(conn_int(h, "SELECT COUNT(*) FROM schema_version"), file_version);
	ck_assert_int_eq(conn_int(h, "SELECT MIN(version) FROM schema_version"), 1);
	conn_schema(h, mem_schema, sizeof(mem_schema));
	ck_assert_str_eq(mem_schema, file_schema);
	ck_assert_ptr_nonnull(strstr(mem_schema, "table users:"));
	ck_assert_int_eq(conn_int(h, "PRAGMA foreign_keys"), 1);
	ck_assert_int_eq(conn_int(h, "SELECT COUNT(*) FROM pragma_integrity_check "
				     "WHERE integrity_check != 'ok'"),
			 0);

	/* Foreign keys are enforced: a session of a user that does not exist is refused. */
	ck_assert_int_eq(sqlite3_exec(h,
				      "INSERT INTO sessions (token_hash, user_id, created_ms, "
				      "expires_ms, last_seen_ms) VALUES ('t', 'nobody', 0, 1, 0)",
				      NULL, NULL, NULL) &
				 0xff,
			 SQLITE_CONSTRAINT);
	ck_assert_int_eq(conn_int(h, "SELECT COUNT(*) FROM sessions"), 0);

	/* users (and meta's change_seq behind them) */
	create(bs, "alice", &a);
	ck_assert(a.is_admin);
	create(bs, "bob", &b);
	ck_assert(!b.is_admin);
	ck_assert_int_eq(bq_bstore_user_get_by_name(bs, "ALICE", &g), 0);
	ck_assert_str_eq(g.id, a.id);
	ck_assert_int_eq(bq_bstore_user_count(bs, &n), 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(bq_bstore_users_since(bs, 0, 10, user_cb, &su, &cur, &more), 0);
	ck_assert_int_eq(su.n, 2);
	ck_assert_int_eq(cur, 2);
	ck_assert(!more);
	/* sessions */
	ck_assert_int_eq(bq_bstore_session_add(bs, "tok", a.id, T0, T0 + 1000), 0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "tok", T0 + 1, &g), 0);
	ck_assert_str_eq(g.username, "alice");
	ck_assert_int_eq(bq_bstore_session_add(bs, "tok2", "0000000000000000", T0, T0 + 1),
			 -ENOENT);
	/* pending_connects */
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, b.id, "bob", T0), 0);
	ck_assert_int_eq(bq_bstore_pending_count(bs, &n), 0);
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0, 10, pending_cb, &sp), 0);
	ck_assert_int_eq(sp.n, 1);
	ck_assert_str_eq(sp.p[0].user_name, "bob");
	/* messages */
	ck_assert_int_eq(bq_bstore_msg_insert(bs, &m), 0);
	ck_assert_int_eq(bq_bstore_msg_set_state(bs, "m1", "delivered", NULL, T0 + 5, &changed), 0);
	ck_assert(changed);
	gm = get_msg(bs, "m1");
	ck_assert_str_eq(gm.text, "hello");
	ck_assert_str_eq(gm.state, "delivered");
	memset(&gm, 0, sizeof(gm));
	ck_assert_int_eq(bq_bstore_msg_page(bs, "alice:bob", 0, NULL, 10, msg_cb, &gm), 0);
	ck_assert_int_eq(gm.n, 1);
	/* seen_events */
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev1", T0), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev1", T0), -EEXIST);
	/* meta */
	ck_assert_int_eq(bq_bstore_meta_set(bs, "k", "v"), 0);
	ck_assert_int_eq(bq_bstore_meta_get(bs, "k", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "v");
	/* A batch (BEGIN IMMEDIATE and savepoints) on the in-memory database. */
	ck_assert_int_eq(bq_bstore_begin(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev2", T0), 0);
	ck_assert_int_eq(bq_bstore_rollback(bs), 0);
	ck_assert_int_eq(bq_bstore_event_seen(bs, "ev2", T0), 0);
	/* The soft delete touches users, sessions and pending_connects in one transaction. */
	ck_assert_int_eq(bq_bstore_user_delete(bs, a.id, T0 + 9), 0);
	ck_assert_int_eq(bq_bstore_session_lookup(bs, "tok", T0 + 10, NULL), -ENOENT);
	ck_assert_int_eq(conn_int(h, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
	bq_bstore_close(bs);
}
END_TEST

START_TEST(test_alloc_failures)
{
	char path[512];
	struct bq_bstore *bs = NULL;
	struct seen_pending s = {0};
	struct bq_buser u;
	unsigned long n;
	int err = -1;

	make_path(path, sizeof(path), "alloc/backend.db");
	/* Fail each allocation of open in turn: an error, never a crash or a leak. */
	for (n = 1; n < 100; n++) {
		bq_alloc_fail_nth(n);
		err = bq_bstore_open(path, NULL, &bs);
		bq_alloc_fail_nth(0);
		if (err == 0) {
			break;
		}
		ck_assert_int_eq(err, -ENOMEM);
		ck_assert_ptr_null(bs);
	}
	ck_assert_int_eq(err, 0);
	ck_assert_uint_gt(n, 1);

	create(bs, "alice", &u);
	ck_assert_int_eq(bq_bstore_pending_upsert(bs, u.id, "alice", T0), 0);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0, 10, pending_cb, &s), -ENOMEM);
	bq_alloc_fail_nth(0);
	ck_assert_int_eq(s.n, 0);
	/* The statement was left ready for the next call. */
	ck_assert_int_eq(bq_bstore_pending_due(bs, T0, 10, pending_cb, &s), 0);
	ck_assert_int_eq(s.n, 1);
	bq_bstore_close(bs);
}
END_TEST

static Suite *bstore_suite(void)
{
	Suite *s = suite_create("bstore");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_open_schema_version);
	tcase_add_test(tc, test_users_create_get);
	tcase_add_test(tc, test_first_user_without_flag);
	tcase_add_test(tc, test_poll_cursor);
	tcase_add_test(tc, test_sessions);
	tcase_add_test(tc, test_pending_connects);
	tcase_add_test(tc, test_messages_insert_state);
	tcase_add_test(tc, test_messages_paging);
	tcase_add_test(tc, test_conv_key);
	tcase_add_test(tc, test_events_seen_prune);
	tcase_add_test(tc, test_meta);
	tcase_add_test(tc, test_batch);
	tcase_add_test(tc, test_reopen_keeps_everything);
	tcase_add_test(tc, test_memory_store);
	tcase_add_test(tc, test_alloc_failures);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(bstore_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
