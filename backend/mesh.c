/* SPDX-License-Identifier: MIT */
/*
 * The manager side: every registered user is connected through the manager at once
 * (POST {manager}/api/connect), from a pending row in SQLite that stays until the
 * manager said yes, so a manager that is down or a backend restart loses nothing; and
 * the manager's safety-net poll, GET /api/bluetooth/users?since=CURSOR.
 * The mesh user id of a web user is their username (unique forever: deleted users keep
 * their names), which the manager's sessions and the mesh directory show.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/opt.h"

static const char *const MOD = "mesh";

#define PUSH_BATCH 64
#define PUSH_IDLE_MS 1000 /* how often to look again while connects are pending */
#define RETRY_CAP_MS 30000
#define POLL_LIMIT 500

struct push_call {
	struct be *b;
	char user_id[BQ_BSTORE_ID_LEN + 1];
	char name[BQ_BSTORE_NAME_MAX + 1];
	int attempts;
};

/* Exponential with full jitter, 100 ms to 30 s: a returning manager is not stormed. */
static int64_t retry_delay_ms(int attempts)
{
	uint64_t cap = 100;

	for (int i = 0; i < attempts && cap < RETRY_CAP_MS; i++) {
		cap *= 2;
	}
	if (cap > RETRY_CAP_MS) {
		cap = RETRY_CAP_MS;
	}
	return 100 + (int64_t)randombytes_uniform((uint32_t)cap);
}

static void push_done(int status, const char *body, size_t len, void *ud)
{
	struct push_call *pc = ud;
	struct be *b = pc->b;
	char why[200];

	b->in_flight--;
	if (status == -ECANCELED) {
		bq_free(pc);
		return;
	}
	if (status == 200 || status == 202) {
		if (!b->manager_reachable) {
			bq_info(b->log, MOD, "msg=\"manager reachable\" url=%s", b->o->manager_url);
		}
		b->manager_reachable = true;
		b->connects_ok++;
		bq_bstore_pending_remove(b->store, pc->user_id);
		bq_info(b->log, MOD, "msg=\"user connected through the manager\" user=%s",
			pc->name);
	} else {
		if (status < 0) {
			snprintf(why, sizeof(why), "%s", strerror(-status));
			if (b->manager_reachable) {
				bq_warn(b->log, MOD,
					"msg=\"manager unreachable\" url=%s err=\"%s\"",
					b->o->manager_url, why);
			}
			b->manager_reachable = false;
		} else {
			snprintf(why, sizeof(why), "HTTP %d: %.150s", status, body ? body : "");
			b->manager_reachable = true;
		}
		b->connects_failed++;
		bq_bstore_pending_reschedule(b->store, pc->user_id, pc->attempts + 1,
					     (int64_t)bq_wall_ms() + retry_delay_ms(pc->attempts),
					     why);
	}
	bq_free(pc);
	if (!b->stopping && !bq_timer_active(b->push_timer)) {
		bq_timer_start(b->push_timer, 0);
	}
}

static int push_one(void *ud, const struct bq_bpending *p)
{
	struct be *b = ud;
	struct push_call *pc = bq_calloc(1, sizeof(*pc));
	json_t *body;
	char *text;
	int rc;

	if (!pc) {
		return -ENOMEM;
	}
	pc->b = b;
	pc->attempts = p->attempts;
	snprintf(pc->user_id, sizeof(pc->user_id), "%s", p->user_id);
	snprintf(pc->name, sizeof(pc->name), "%s", p->user_name);
	body = json_pack("{s:s, s:s}", "user_id", p->user_name, "user_name", p->user_name);
	text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	if (!text) {
		bq_free(pc);
		return -ENOMEM;
	}
	/* Not due again until this call ends, whatever happens to the process meanwhile. */
	bq_bstore_pending_reschedule(b->store, p->user_id, p->attempts,
				     (int64_t)bq_wall_ms() + 2 * BE_MANAGER_TIMEOUT_MS,
				     p->last_error);
	rc = be_manager_call(b, "POST", "/api/connect", text, push_done, pc);
	free(text);
	if (rc < 0) {
		bq_free(pc);
		return rc == -EAGAIN ? 1 : rc; /* full: stop this round, the timer comes back */
	}
	b->in_flight++;
	return 0;
}

static void push_tick(struct bq_timer *t, void *ud)
{
	struct be *b = ud;
	int64_t pending = 0;

	if (b->stopping) {
		return;
	}
	bq_bstore_pending_due(b->store, (int64_t)bq_wall_ms(), PUSH_BATCH, push_one, b);
	if (bq_bstore_pending_count(b->store, &pending) == 0 && pending > 0) {
		bq_timer_start(t, PUSH_IDLE_MS);
	}
}

void be_mesh_connect_soon(struct be *b)
{
	if (b->push_timer) {
		bq_timer_start(b->push_timer, 0);
	}
}

/* ---- the manager's poll ---- */

struct poll_walk {
	json_t *users;
};

static int poll_add(void *ud, const struct bq_buser_change *c)
{
	struct poll_walk *w = ud;

	return json_array_append_new(w->users,
				     json_pack("{s:s, s:s, s:b}", "user_id", c->username,
					       "user_name", c->username, "deleted", c->deleted)) < 0
		       ? -ENOMEM
		       : 0;
}

bool be_service_auth(struct be *b, struct bq_http_req *req)
{
	char token[BQ_TOKEN_LEN + 1], hash[BQ_TOKEN_HASH_HEX + 1];

	if (!bq_bearer_parse(bq_http_req_header(req, "Authorization"), token, sizeof(token))) {
		bq_http_reply_error(
			req, 401, "unauthorized",
			"the manager's service token is required (Authorization: Bearer)");
		return false;
	}
	bq_token_hash(token, hash);
	if (sodium_memcmp(hash, b->service_hash, BQ_TOKEN_HASH_HEX) != 0) {
		bq_http_reply_error(req, 401, "unauthorized", "wrong service token");
		return false;
	}
	return true;
}

void be_h_users_poll(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	const char *since = bq_http_req_query(req, "since");
	struct poll_walk w = {json_array()};
	int64_t cursor = 0, next = 0;
	bool more = false;
	char cur[32];
	int rc;

	if (!be_service_auth(b, req)) {
		json_decref(w.users);
		return;
	}
	if (since && (bq_opt_parse_int(since, &cursor) < 0 || cursor < 0)) {
		json_decref(w.users);
		bq_http_reply_error(req, 400, "bad_cursor",
				    "'since' must be a cursor this backend gave");
		return;
	}
	rc = w.users ? bq_bstore_users_since(b->store, cursor, POLL_LIMIT, poll_add, &w, &next,
					     &more)
		     : -ENOMEM;
	if (rc < 0) {
		json_decref(w.users);
		bq_http_reply_error(req, 500, "store_error", "cannot read the users: %s",
				    strerror(-rc));
		return;
	}
	snprintf(cur, sizeof(cur), "%" PRId64, next);
	be_reply_json(req, 200,
		      json_pack("{s:o, s:s, s:b}", "users", w.users, "cursor", cur, "more", more));
}

int be_manager_call(struct be *b, const char *method, const char *path, const char *body,
		    bq_http_response_cb cb, void *ud)
{
	struct bq_http_request r = {0};
	char url[1200];

	snprintf(url, sizeof(url), "%s%s", b->o->manager_url, path);
	r.method = method;
	r.url = url;
	r.bearer_token = b->o->manager_token;
	r.body = body;
	r.body_len = body ? strlen(body) : 0;
	r.timeout_ms = BE_MANAGER_TIMEOUT_MS;
	return bq_http_client_request(b->cli, &r, cb, ud, NULL);
}

int be_mesh_start(struct be *b, char *err, size_t errlen)
{
	struct bq_http_client_config cfg;

	bq_http_client_config_defaults(&cfg);
	b->cli = bq_http_client_new(b->loop, b->log, &cfg);
	b->push_timer = bq_timer_new(b->loop, push_tick, b);
	if (!b->cli || !b->push_timer) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* Connects left by the last run (manager down, or a crash mid-call) go now. */
	bq_timer_start(b->push_timer, 0);
	return 0;
}

void be_mesh_stop(struct be *b)
{
	b->stopping = true;
	bq_timer_free(b->push_timer);
	b->push_timer = NULL;
	bq_http_client_free(b->cli); /* cancels calls in flight: their rows stay pending */
	b->cli = NULL;
}
