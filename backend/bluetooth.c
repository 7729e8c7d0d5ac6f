/* SPDX-License-Identifier: MIT */
/*
 * What the manager tells the backend (POST /api/bluetooth/events: session states,
 * directory changes, inbound messages, delivery states; applied once each by event id,
 * in one transaction per batch), and the seed's Bluetooth endpoints, which act through
 * the manager: /api/bluetooth/manager/status, .../connect/<user_id>,
 * .../disconnect/<user_id>, /api/bluetooth/send. A user acts only as themselves; the
 * admin for anyone.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "http/json.h"
#include "proto/frame.h"

static const char *const MOD = "bluetooth";

#define BT_USERS_MAX 100000 /* users remembered from the manager's events */

/*
 * Cached reads of the manager (GET /api/status, GET /api/users). However many browsers
 * ask, the manager is asked once at a time: requests that arrive while a read is in
 * flight wait for it and all get its answer, and an answer younger than READ_FRESH_MS
 * is served again without asking. Every event batch from the manager and every call
 * the backend makes on a user's behalf marks them stale, so a change the manager
 * reported (or this backend caused) is never hidden behind the cache.
 */
#define READ_FRESH_MS 100
#define READ_WAITERS_MAX 4096

enum { READ_STATUS, READ_USERS, READ_KINDS };

static const char *const read_paths[READ_KINDS] = {"/api/status", "/api/users"};

struct read_waiter {
	struct read_cache *rc;
	struct bq_http_req *req;
	struct read_waiter *prev, *next;
};

struct read_cache {
	struct be *b;
	const char *path;
	char *body; /* the manager's last 2xx answer, or NULL */
	size_t len;
	unsigned status;
	uint64_t fetched_us;
	bool in_flight;
	bool stale; /* marked while a read was in flight: its answer is not reused */
	struct read_waiter *waiters;
	size_t n_waiters;
};

struct be_reads {
	struct read_cache kinds[READ_KINDS];
};

static void reads_free(struct be *b);
static void snapshot_free(struct be *b);

int be_bt_start(struct be *b, char *err, size_t errlen)
{
	struct be_reads *r = bq_calloc(1, sizeof(*r));

	if (r) {
		for (unsigned i = 0; i < READ_KINDS; i++) {
			r->kinds[i].b = b;
			r->kinds[i].path = read_paths[i];
		}
	}
	b->reads = r;
	b->bt_users = bq_map_new();
	if (!b->bt_users || !r) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void be_bt_stop(struct be *b)
{
	size_t pos = 0, klen;
	const char *k;
	struct be_bt_user *u;

	reads_free(b);
	snapshot_free(b);
	if (!b->bt_users) {
		return;
	}
	while ((u = bq_map_next(b->bt_users, &pos, &k, &klen))) {
		bq_free(u);
	}
	bq_map_free(b->bt_users);
	b->bt_users = NULL;
}

const struct be_bt_user *be_bt_get(const struct be *b, const char *user_id)
{
	return b->bt_users && user_id ? bq_map_get(b->bt_users, user_id, strlen(user_id)) : NULL;
}

void be_bt_foreach(const struct be *b,
		   void (*fn)(const char *user_id, const struct be_bt_user *u, void *ud), void *ud)
{
	size_t pos = 0, klen;
	const char *k;
	struct be_bt_user *u;
	char id[BQ_USER_ID_MAX + 1];

	while (b->bt_users && (u = bq_map_next(b->bt_users, &pos, &k, &klen))) {
		if (klen < sizeof(id)) {
			memcpy(id, k, klen);
			id[klen] = '\0';
			fn(id, u, ud);
		}
	}
}

/* The record for user_id, created on first sight (NULL: invalid id, full, or ENOMEM). */
static struct be_bt_user *bt_user(struct be *b, const char *user_id)
{
	size_t len = user_id ? strlen(user_id) : 0;
	struct be_bt_user *u;
	struct bq_buser web;

	if (!len || !bq_user_id_valid(user_id, len)) {
		return NULL;
	}
	u = bq_map_get(b->bt_users, user_id, len);
	if (u) {
		return u;
	}
	if (bq_map_size(b->bt_users) >= BT_USERS_MAX) {
		return NULL;
	}
	u = bq_calloc(1, sizeof(*u));
	if (!u || bq_map_set(b->bt_users, user_id, len, u) < 0) {
		bq_free(u);
		return NULL;
	}
	u->web = bq_bstore_user_get_by_name(b->store, user_id, &web) == 0;
	snprintf(u->name, sizeof(u->name), "%s", user_id);
	return u;
}

static const char *str(json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

static void publish_presence(struct be *b, const char *user_id, const struct be_bt_user *u)
{
	be_chat_publish(b,
			json_pack("{s:s, s:s, s:s, s:b, s:s?, s:s?}", "type", "presence", "user_id",
				  user_id, "name", u->name, "web", u->web, "presence",
				  u->presence[0] ? u->presence : NULL, "bluetooth",
				  u->state[0] ? u->state : NULL),
			NULL, NULL);
}

/* One event; false when it was not understood (counted, not fatal). */
static bool apply(struct be *b, json_t *ev)
{
	const char *type = str(ev, "type"), *user = str(ev, "user_id");
	struct be_bt_user *u;

	if (!type) {
		return false;
	}
	if (strcmp(type, "session") == 0) {
		const char *state = str(ev, "state");

		if (!state || !(u = bt_user(b, user))) {
			return false;
		}
		snprintf(u->state, sizeof(u->state), "%s", state);
		publish_presence(b, user, u);
		return true;
	}
	if (strcmp(type, "directory") == 0) {
		const char *name = str(ev, "user_name"), *presence = str(ev, "presence");

		if (!presence || !(u = bt_user(b, user))) {
			return false;
		}
		snprintf(u->presence, sizeof(u->presence), "%s", presence);
		snprintf(u->home, sizeof(u->home), "%s", str(ev, "home") ? str(ev, "home") : "");
		if (name && bq_name_valid(name, strlen(name))) {
			snprintf(u->name, sizeof(u->name), "%s", name);
		}
		publish_presence(b, user, u);
		return true;
	}
	if (strcmp(type, "message") == 0) {
		const char *id = str(ev, "message_id"), *from = str(ev, "from"),
			   *to = str(ev, "to");
		const char *text = str(ev, "text");
		json_t *at = json_object_get(ev, "at");

		if (!id || !from || !to || !text) {
			return false;
		}
		be_chat_inbound(b, id, from, to, text,
				json_is_integer(at) ? (int64_t)json_integer_value(at)
						    : (int64_t)bq_wall_ms());
		return true;
	}
	if (strcmp(type, "delivery") == 0) {
		const char *id = str(ev, "message_id"), *state = str(ev, "state");

		if (!id || !state) {
			return false;
		}
		be_chat_delivery(b, id, state, str(ev, "reason"));
		return true;
	}
	return false;
}

/*
 * After a start, the backend knows nothing of the manager's sessions and directory
 * until something changes (events carry changes only): one snapshot of the manager's
 * status and users fills the gaps. It never overwrites what an event already told
 * (an event is newer than a snapshot read alongside it), and it is retried with
 * backoff until the manager has answered both once.
 */
#define SNAPSHOT_RETRY_MIN_MS 200
#define SNAPSHOT_RETRY_MAX_MS 10000

struct snapshot_call {
	struct snapshot *sn;
	unsigned kind;
};

struct snapshot {
	struct be *b;
	struct snapshot_call calls[READ_KINDS];
	struct bq_timer *timer;
	struct bq_backoff backoff;
	bool got[READ_KINDS];
	unsigned in_flight;
};

static void snapshot_fill(struct be *b, unsigned kind, json_t *doc)
{
	json_t *list = json_object_get(doc, kind == READ_STATUS ? "clients" : "users"), *e;
	size_t i, filled = 0;

	json_array_foreach(list, i, e)
	{
		const char *user = str(e, "user_id");
		const struct be_bt_user *known = be_bt_get(b, user);
		json_t *ev;

		if (kind == READ_STATUS && (!known || !known->state[0])) {
			ev = json_pack("{s:s, s:s?, s:s?}", "type", "session", "user_id", user,
				       "state", str(e, "state"));
		} else if (kind == READ_USERS && (!known || !known->presence[0])) {
			ev = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "type", "directory",
				       "user_id", user, "user_name", str(e, "user_name"),
				       "presence", str(e, "presence"), "home", str(e, "home"));
		} else {
			continue;
		}
		if (ev && apply(b, ev)) {
			filled++;
		}
		json_decref(ev);
	}
	if (filled) {
		b->contacts_gen++;
	}
	bq_info(b->log, MOD, "msg=\"snapshot from the manager\" of=%s filled=%zu", read_paths[kind],
		filled);
}

static void snapshot_done(int status, const char *body, size_t len, void *ud);

static void snapshot_tick(struct bq_timer *t, void *ud)
{
	struct snapshot *sn = ud;
	struct be *b = sn->b;

	(void)t;
	for (unsigned k = 0; k < READ_KINDS && !b->stopping; k++) {
		if (sn->got[k]) {
			continue;
		}
		if (be_manager_call(b, "GET", read_paths[k], NULL, snapshot_done, &sn->calls[k]) ==
		    0) {
			sn->in_flight++;
		}
	}
	if (!sn->in_flight && !(sn->got[0] && sn->got[1])) {
		bq_timer_start(sn->timer, bq_backoff_next(&sn->backoff));
	}
}

static void snapshot_done(int status, const char *body, size_t len, void *ud)
{
	const struct snapshot_call *call = ud;
	unsigned kind = call->kind;
	struct snapshot *sn = call->sn;
	struct be *b = sn->b;
	json_t *doc;

	sn->in_flight--;
	if (status == 200 && !b->stopping && (doc = json_loadb(body, len, 0, NULL))) {
		snapshot_fill(b, kind, doc);
		json_decref(doc);
		sn->got[kind] = true;
	}
	if (!sn->in_flight && !(sn->got[0] && sn->got[1]) && !b->stopping) {
		bq_timer_start(sn->timer, bq_backoff_next(&sn->backoff));
	}
}

int be_bt_snapshot_start(struct be *b)
{
	struct snapshot *sn = bq_calloc(1, sizeof(*sn));

	if (!sn || !(sn->timer = bq_timer_new(b->loop, snapshot_tick, sn))) {
		bq_free(sn);
		return -ENOMEM;
	}
	sn->b = b;
	for (unsigned k = 0; k < READ_KINDS; k++) {
		sn->calls[k] = (struct snapshot_call){sn, k};
	}
	bq_backoff_init(&sn->backoff, SNAPSHOT_RETRY_MIN_MS, SNAPSHOT_RETRY_MAX_MS, bq_wall_ms());
	b->snapshot = sn;
	bq_timer_start(sn->timer, 0);
	return 0;
}

/* After the HTTP client is freed (its calls have ended). */
static void snapshot_free(struct be *b)
{
	struct snapshot *sn = b->snapshot;

	if (sn) {
		bq_timer_free(sn->timer);
		bq_free(sn);
		b->snapshot = NULL;
	}
}

void be_h_bt_events(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	char err[300];
	size_t len, i, applied = 0, repeated = 0, ignored = 0;
	const void *body = bq_http_req_body(req, &len);
	json_t *doc = NULL, *events, *ev;
	int64_t now = (int64_t)bq_wall_ms();
	int rc;

	if (!be_service_auth(b, req)) {
		return;
	}
	if (bq_json_parse_object(body, len, &doc, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return;
	}
	events = json_object_get(doc, "events");
	if (!json_is_array(events)) {
		json_decref(doc);
		bq_http_reply_error(req, 400, "bad_field", "field 'events' must be an array");
		return;
	}
	/* One transaction: an event is marked seen exactly when its effects are stored. */
	rc = bq_bstore_begin(b->store);
	if (rc < 0) {
		json_decref(doc);
		bq_http_reply_error(req, 503, "store_error", "cannot store events now: %s",
				    strerror(-rc));
		return;
	}
	json_array_foreach(events, i, ev)
	{
		const char *id = str(ev, "id");

		if (!json_is_object(ev) || !id) {
			ignored++;
			continue;
		}
		rc = bq_bstore_event_seen(b->store, id, now);
		if (rc == -EEXIST) {
			repeated++;
			continue;
		}
		if (rc < 0) {
			bq_bstore_rollback(b->store);
			json_decref(doc);
			bq_http_reply_error(req, 503, "store_error", "cannot store events now: %s",
					    strerror(-rc));
			return;
		}
		if (apply(b, ev)) {
			applied++;
		} else {
			ignored++;
		}
	}
	rc = bq_bstore_commit(b->store);
	json_decref(doc);
	if (rc < 0) {
		bq_http_reply_error(req, 503, "store_error", "cannot store events now: %s",
				    strerror(-rc));
		return;
	}
	b->events_applied += applied;
	b->events_repeated += repeated;
	if (applied) {
		b->contacts_gen++;
		be_bt_reads_stale(b);
	}
	if (ignored) {
		bq_debug(b->log, MOD, "msg=\"events not understood\" count=%zu", ignored);
	}
	be_reply_json(req, 200,
		      json_pack("{s:I, s:I, s:I}", "applied", (json_int_t)applied, "repeated",
				(json_int_t)repeated, "ignored", (json_int_t)ignored));
}

/* ---- the seed's endpoints: calls to the manager on behalf of a user ---- */

struct proxy {
	struct be *b;
	struct bq_http_req *req; /* NULL once the browser went away */
};

static void proxy_abort(struct bq_http_req *req, void *ud)
{
	struct proxy *p = ud;

	p->req = NULL;
}

/* Answer a browser with the manager's answer as it gave it, or 503 naming the manager. */
static void relay(struct be *b, struct bq_http_req *req, int status, const char *body, size_t len)
{
	if (status < 0) {
		bq_http_reply_error(req, 503, "manager_unreachable",
				    "the manager at %s is unreachable: %s", b->o->manager_url,
				    strerror(-status));
	} else {
		bq_http_reply(req, (unsigned)status, NULL, body, len);
	}
}

static void proxy_done(int status, const char *body, size_t len, void *ud)
{
	struct proxy *p = ud;

	be_bt_reads_stale(p->b); /* a connect, disconnect or send may have changed them */
	if (p->req) {
		relay(p->b, p->req, status, body, len);
	}
	bq_free(p);
}

/* Call the manager and answer the browser with its answer (deferred). body may be NULL. */
static void proxy(struct be *b, struct bq_http_req *req, const char *method, const char *path,
		  json_t *body)
{
	struct proxy *p = bq_calloc(1, sizeof(*p));
	char *text = NULL;
	int rc;

	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	if (!p || (body && !text)) {
		bq_free(p);
		free(text);
		bq_http_reply_error(req, 503, "busy", "out of memory");
		return;
	}
	p->b = b;
	p->req = req;
	rc = be_manager_call(b, method, path, text, proxy_done, p);
	free(text);
	if (rc < 0) {
		bq_free(p);
		bq_http_reply_error(req, 503, "busy", "cannot call the manager now: %s",
				    strerror(-rc));
		return;
	}
	bq_http_req_on_abort(req, proxy_abort, p);
}

static void waiter_unlink(struct read_waiter *w)
{
	struct read_cache *rc = w->rc;

	if (w->prev) {
		w->prev->next = w->next;
	} else {
		rc->waiters = w->next;
	}
	if (w->next) {
		w->next->prev = w->prev;
	}
	rc->n_waiters--;
}

static void waiter_abort(struct bq_http_req *req, void *ud)
{
	struct read_waiter *w = ud;

	(void)req;
	waiter_unlink(w);
	bq_free(w);
}

static void read_done(int status, const char *body, size_t len, void *ud)
{
	struct read_cache *rc = ud;
	struct read_waiter *w, *list = rc->waiters;
	char *copy = NULL;

	rc->in_flight = false;
	rc->waiters = NULL;
	rc->n_waiters = 0;
	bq_free(rc->body);
	rc->body = NULL;
	if (status >= 200 && status < 300 && !rc->stale && (copy = bq_malloc(len + 1))) {
		memcpy(copy, body, len);
		rc->body = copy;
		rc->len = len;
		rc->status = (unsigned)status;
		rc->fetched_us = bq_loop_now_us(rc->b->loop);
	}
	rc->stale = false;
	while ((w = list)) {
		list = w->next;
		relay(rc->b, w->req, status, body, len);
		bq_free(w);
	}
}

static void read_cached(struct be *b, struct bq_http_req *req, unsigned kind)
{
	struct be_reads *r = b->reads;
	struct read_cache *rc = &r->kinds[kind];
	struct read_waiter *w;
	int err;

	if (rc->body && bq_loop_now_us(b->loop) - rc->fetched_us < READ_FRESH_MS * 1000ull) {
		bq_http_reply(req, rc->status, NULL, rc->body, rc->len);
		return;
	}
	if (rc->n_waiters >= READ_WAITERS_MAX || !(w = bq_calloc(1, sizeof(*w)))) {
		bq_http_reply_error(req, 503, "busy", "too many requests waiting for the manager");
		return;
	}
	if (!rc->in_flight) {
		err = be_manager_call(b, "GET", rc->path, NULL, read_done, rc);
		if (err < 0) {
			bq_free(w);
			bq_http_reply_error(req, 503, "busy", "cannot call the manager now: %s",
					    strerror(-err));
			return;
		}
		rc->in_flight = true;
	}
	w->rc = rc;
	w->req = req;
	w->next = rc->waiters;
	if (w->next) {
		w->next->prev = w;
	}
	rc->waiters = w;
	rc->n_waiters++;
	bq_http_req_on_abort(req, waiter_abort, w);
}

/* After the server and the client are gone: no waiter and no read is left. */
static void reads_free(struct be *b)
{
	struct be_reads *r = b->reads;

	for (unsigned i = 0; r && i < READ_KINDS; i++) {
		bq_free(r->kinds[i].body);
	}
	bq_free(r);
	b->reads = NULL;
}

void be_bt_reads_stale(struct be *b)
{
	struct be_reads *r = b->reads;

	for (unsigned i = 0; r && i < READ_KINDS; i++) {
		bq_free(r->kinds[i].body);
		r->kinds[i].body = NULL;
		if (r->kinds[i].in_flight) {
			r->kinds[i].stale = true;
		}
	}
}

/* The user may act for user_id: themselves, or anyone when admin. Replies 403 itself. */
static bool may_act_for(struct bq_http_req *req, const struct bq_buser *me, const char *user_id)
{
	if (me->is_admin || strcasecmp(me->username, user_id) == 0) {
		return true;
	}
	bq_http_reply_error(req, 403, "forbidden", "%s may act only as themselves", me->username);
	return false;
}

void be_h_bt_manager_status(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct bq_buser me;

	if (be_auth_user(b, req, &me)) {
		read_cached(b, req, READ_STATUS);
	}
}

void be_h_bt_mesh(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct bq_buser me;

	(void)ud;
	if (be_auth_user(b, req, &me)) {
		read_cached(b, req, READ_USERS);
	}
}

static void connect_or_disconnect(struct bq_http_req *req, bool connect)
{
	struct be *b = bq_http_req_user_data(req);
	const char *target = bq_http_req_param(req);
	struct bq_buser me;

	if (!be_auth_user(b, req, &me)) {
		return;
	}
	if (!target || !bq_user_id_valid(target, strlen(target))) {
		bq_http_reply_error(req, 400, "bad_user", "not a user id: '%.64s'",
				    target ? target : "");
		return;
	}
	if (!may_act_for(req, &me, target)) {
		return;
	}
	if (connect) {
		proxy(b, req, "POST", "/api/connect",
		      json_pack("{s:s, s:s}", "user_id", target, "user_name", target));
	} else {
		proxy(b, req, "POST", "/api/disconnect", json_pack("{s:s}", "user_id", target));
	}
}

void be_h_bt_manager_connect(struct bq_http_req *req, void *ud)
{
	connect_or_disconnect(req, true);
}

void be_h_bt_manager_disconnect(struct bq_http_req *req, void *ud)
{
	connect_or_disconnect(req, false);
}

void be_h_bt_send(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct bq_buser me;
	char err[300], user[BQ_USER_ID_MAX + 1];
	size_t len;
	const void *body;
	json_t *obj = NULL;
	int rc;

	if (!be_auth_user(b, req, &me)) {
		return;
	}
	body = bq_http_req_body(req, &len);
	if (bq_json_parse_object(body, len, &obj, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return;
	}
	/* user_id defaults to the caller; the manager checks the rest of the fields. */
	rc = bq_json_get_id(obj, "user_id", false, user, sizeof(user), err, sizeof(err));
	if (rc == -ENOENT) {
		snprintf(user, sizeof(user), "%s", me.username);
		json_object_set_new(obj, "user_id", json_string(user));
	} else if (rc < 0) {
		json_decref(obj);
		bq_http_reply_error(req, 400, "bad_field", "%s", err);
		return;
	}
	if (!may_act_for(req, &me, user)) {
		json_decref(obj);
		return;
	}
	proxy(b, req, "POST", "/api/send", obj);
}
