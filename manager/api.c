/* SPDX-License-Identifier: MIT */
/*
 * The manager's HTTP API (ARCHITECTURE.md section 3): the seed's endpoints first
 * (/api/status, /api/connect, /api/disconnect, /api/send), then messages, users,
 * clients, events, health, readiness and metrics. JSON in and out; every error is
 * {"error": reason, "code": short_code} with the right status.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "http/json.h"
#include "manager.h"
#include "transport/addr.h"

static const char *const MOD = "api";

#define SSE_PING_MS 15000
#define UNSENT_RETRY_MS 200
#define STATUS_MAX (64u * 1024u * 1024u) /* 10,000 clients are about 2.5 MB */

static struct mgr *mgr_of(struct bq_http_req *req)
{
	return bq_http_req_user_data(req);
}

/* Reply with a JSON value (stolen). */
static void reply_json(struct bq_http_req *req, unsigned status, json_t *v)
{
	bq_json_reply(req, status, v, STATUS_MAX);
}

static json_t *parse_body(struct bq_http_req *req)
{
	char err[300];
	size_t len;
	const void *body = bq_http_req_body(req, &len);
	json_t *obj = NULL;

	if (bq_json_parse_object(body, len, &obj, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return NULL;
	}
	return obj;
}

/* A user id (string or integer) that can go on the mesh; replies 400 itself, the reason
 * prefixed with where ("messages[3]: " in a batch, "" otherwise). */
static bool get_user_id(struct bq_http_req *req, json_t *obj, const char *where, const char *field,
			char *id, size_t cap)
{
	char err[200];

	if (bq_json_get_id(obj, field, true, id, cap, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_field", "%s%s", where, err);
		return false;
	}
	if (!bq_user_id_valid(id, strlen(id))) {
		bq_http_reply_error(
			req, 400, "bad_field",
			"%sfield '%s' must be 1..%d characters of A-Z a-z 0-9 . _ @ : -", where,
			field, BQ_USER_ID_MAX);
		return false;
	}
	return true;
}

/* ---- /api/status and /api/clients ---- */

static json_t *ms_or_null(uint64_t ms)
{
	return ms ? json_integer((json_int_t)ms) : json_null();
}

static json_t *session_json(const struct bq_session *s, bool detail)
{
	struct bq_session_info in;
	json_t *o;

	bq_session_info(s, &in);
	o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:i, s:I, s:I}", "user_id", in.user_id,
		      "user_name", in.user_name, "state", bq_session_state_name(in.state),
		      "last_error", in.last_error[0] ? json_string(in.last_error) : json_null(),
		      "connected_since", ms_or_null(in.connected_since_ms), "reconnects",
		      (int)in.reconnects, "sent", (json_int_t)in.sent, "received",
		      (json_int_t)in.received);
	if (o && detail) {
		json_object_set_new(o, "last_error_code", json_integer(in.last_error_code));
		json_object_set_new(o, "created", ms_or_null(in.created_ms));
		json_object_set_new(o, "state_since", ms_or_null(in.state_since_ms));
		json_object_set_new(o, "outstanding", json_integer(in.outstanding));
		json_object_set_new(o, "link",
				    in.link_index >= 0 ? json_integer(in.link_index)
						       : json_string("dedicated"));
	}
	return o;
}

static void add_client(const struct bq_session *s, void *ud)
{
	json_array_append_new(ud, session_json(s, false));
}

static const char *odin_state(const struct bq_sessions_stats *st)
{
	if (st->links_up > 0) {
		return "connected";
	}
	return st->total ? "connecting" : "idle";
}

static json_t *stats_json(struct mgr *m, const struct bq_sessions_stats *st)
{
	json_t *o = json_object();

	if (!o) {
		return NULL;
	}
	json_object_set_new(o, "total", json_integer((json_int_t)st->total));
	for (int i = 0; i < BQ_SESS_NSTATES; i++) {
		json_object_set_new(o, bq_session_state_name((enum bq_session_state)i),
				    json_integer((json_int_t)st->by_state[i]));
	}
	json_object_set_new(o, "links", json_integer(st->links));
	json_object_set_new(o, "links_up", json_integer(st->links_up));
	json_object_set_new(o, "dials", json_integer((json_int_t)st->dials));
	json_object_set_new(o, "peak_connect_rate", json_integer(st->peak_connect_rate));
	json_object_set_new(o, "connect_rate_limit", json_integer(st->connect_rate_limit));
	json_object_set_new(o, "messages_sent", json_integer((json_int_t)st->sent));
	json_object_set_new(o, "messages_received", json_integer((json_int_t)st->received));
	json_object_set_new(o, "directory_entries", json_integer((json_int_t)st->directory_users));
	json_object_set_new(o, "pending_dispatch", json_integer((json_int_t)m->n_unsent));
	return o;
}

struct rtt_mean {
	uint64_t sum_us, n;
};

static void rtt_mean_add(uint32_t rtt_us, void *ud)
{
	struct rtt_mean *r = ud;

	r->sum_us += rtt_us;
	r->n++;
}

/* The Odin link's round trip: the mean of every up link's last PING, ms; null unmeasured. */
static json_t *odin_rtt_json(const struct mgr *m)
{
	struct rtt_mean r = {0, 0};

	bq_sessions_link_rtts(m->reg, rtt_mean_add, &r);
	return r.n ? json_real((double)r.sum_us / (double)r.n / 1000.0) : json_null();
}

static void h_status(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	struct bq_sessions_stats st;
	struct bq_evq_stats es;
	json_t *doc, *clients = json_array();
	const char *q = bq_http_req_query(req, "clients");

	bq_sessions_stats(m->reg, &st);
	bq_evq_get_stats(m->evq, &es);
	/* ?clients=0 leaves the per-user list out (10,000 users make it megabytes). */
	if (clients && !(q && strcmp(q, "0") == 0)) {
		bq_sessions_foreach(m->reg, add_client, clients);
	}
	doc = json_pack(
		"{s:{s:s, s:s, s:s, s:s, s:o}, s:{s:s, s:b, s:o, s:o, s:I, s:I}, s:o, s:o,"
		" s:I, s:s, s:s, s:I}",
		"odin", "address", m->o->odin, "transport", m->odin_transport, "dialled",
		bq_sessions_odin_text(m->reg), "state", odin_state(&st), "rtt_ms", odin_rtt_json(m),
		"backend", "url",
		m->o->backend_url, "reachable", m->backend_reachable, "last_ok",
		ms_or_null(m->backend_last_ok_ms), "error",
		m->backend_error[0] ? json_string(m->backend_error) : json_null(), "queued_events",
		(json_int_t)es.len, "dropped_events", (json_int_t)es.dropped, "clients",
		clients ? clients : json_null(), "stats", stats_json(m, &st), "uptime_s",
		(json_int_t)((bq_wall_ms() - m->started_ms) / 1000), "version", BQ_VERSION_STRING,
		"link_mode", bq_link_mode_name((enum bq_link_mode)m->o->link_mode), "nofile_limit",
		(json_int_t)m->nofile);
	reply_json(req, 200, doc);
}

static void h_client(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	const char *id = bq_http_req_param(req);
	const struct bq_session *s = id ? bq_sessions_get(m->reg, id) : NULL;

	if (!s) {
		bq_http_reply_error(req, 404, "unknown_user", "no session for user '%.64s'",
				    id ? id : "");
		return;
	}
	reply_json(req, 200, session_json(s, true));
}

/* ---- connect / disconnect ---- */

static void h_connect(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	json_t *obj = parse_body(req);
	char id[BQ_USER_ID_MAX + 1], err[200];
	const char *name = NULL;
	struct bq_session *s = NULL;
	int rc;

	if (!obj) {
		return;
	}
	if (!get_user_id(req, obj, "", "user_id", id, sizeof(id))) {
		goto out;
	}
	rc = bq_json_get_string(obj, "user_name", false, 1, BQ_NAME_MAX, &name, NULL, err,
				sizeof(err));
	if (rc == -EINVAL) {
		bq_http_reply_error(req, 400, "bad_field", "%s", err);
		goto out;
	}
	if (name && !bq_name_valid(name, strlen(name))) {
		bq_http_reply_error(req, 400, "bad_field",
				    "field 'user_name' must be UTF-8 without control characters");
		goto out;
	}
	rc = bq_sessions_connect(m->reg, id, name, &s);
	if (rc == -EALREADY) {
		reply_json(req, 200, json_pack("{s:s, s:s}", "user_id", id, "state", "ready"));
	} else if (rc == 0) {
		reply_json(req, 202,
			   json_pack("{s:s, s:s}", "user_id", id, "state",
				     bq_session_state_name(bq_session_state(s))));
	} else if (rc == -EINVAL) {
		bq_http_reply_error(req, 400, "bad_field", "user_id or user_name not accepted");
	} else {
		bq_http_reply_error(req, 503, "busy", "cannot create the session: %s",
				    strerror(-rc));
	}
out:
	json_decref(obj);
}

static void h_disconnect(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	json_t *obj = parse_body(req);
	char id[BQ_USER_ID_MAX + 1];

	if (!obj) {
		return;
	}
	if (get_user_id(req, obj, "", "user_id", id, sizeof(id))) {
		if (bq_sessions_disconnect(m->reg, id) < 0) {
			bq_http_reply_error(req, 404, "unknown_user", "no session for user '%s'",
					    id);
		} else {
			reply_json(req, 200,
				   json_pack("{s:s, s:s}", "user_id", id, "state", "disconnected"));
		}
	}
	json_decref(obj);
}

/* ---- send ---- */

void mgr_count_state(struct mgr *m, enum bq_outbox_state st)
{
	if ((unsigned)st < MGR_MSG_STATES) {
		m->msgs_by_state[st]++;
	}
}

static void set_state(struct mgr *m, uint64_t id, const char *user_id, enum bq_outbox_state st,
		      const char *reason)
{
	char hex[BQ_OUTBOX_ID_LEN + 1];

	if (bq_outbox_set_state(m->ob, id, st, reason) < 0) {
		bq_warn(m->log, MOD, "msg=\"state not recorded\" id=%016" PRIx64 " state=%s", id,
			bq_outbox_state_name(st));
	}
	mgr_count_state(m, st);
	if (!mgr_events_wanted(m)) {
		return;
	}
	bq_outbox_id_format(id, hex);
	mgr_event(m, json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s?}", "type", "delivery", "message_id",
			       hex, "user_id", user_id, "state", bq_outbox_state_name(st), "label",
			       bq_outbox_state_label(st), "reason", reason));
}

/*
 * Committed messages whose session could not take them yet (its window of unsettled
 * messages, max_outstanding, is full): a FIFO, retried as soon as receipts free room
 * (mgr_unsent_kick from the ACK callback) and every UNSENT_RETRY_MS otherwise. Only the
 * id and sender are kept; the text is read back from the outbox when it is retried.
 */
static int unsent_add(struct mgr *m, uint64_t id, const char *user_id)
{
	struct mgr_unsent *u;

	if (m->n_unsent >= MGR_UNSENT_MAX) {
		return -ENOBUFS;
	}
	if (!m->unsent) {
		m->unsent = bq_calloc(MGR_UNSENT_MAX, sizeof(*m->unsent));
		if (!m->unsent) {
			return -ENOMEM;
		}
	}
	u = &m->unsent[(m->unsent_head + m->n_unsent++) % MGR_UNSENT_MAX];
	u->id = id;
	snprintf(u->user_id, sizeof(u->user_id), "%s", user_id);
	if (!bq_timer_active(m->unsent_timer)) {
		bq_timer_start(m->unsent_timer, UNSENT_RETRY_MS);
	}
	return 0;
}

void mgr_unsent_kick(struct mgr *m)
{
	if (m->n_unsent && m->unsent_timer) {
		bq_timer_start(m->unsent_timer, 0);
	}
}

void mgr_dispatch(struct mgr *m, uint64_t id, const char *user_id, const char *dst,
		  const void *text, size_t len)
{
	bool broadcast = strcmp(dst, BQ_OUTBOX_BROADCAST_DEST) == 0;
	char hex[BQ_OUTBOX_ID_LEN + 1], reason[300];
	const struct bq_session *s;
	int rc;

	bq_outbox_id_format(id, hex);
	rc = bq_sessions_send(m->reg, user_id, broadcast ? NULL : dst, text, len, id, NULL);
	switch (rc) {
	case 0:
		if (broadcast) {
			bq_map_set(m->broadcasts, hex, BQ_OUTBOX_ID_LEN, m);
		}
		set_state(m, id, user_id, BQ_OUTBOX_QUEUED, NULL);
		return;
	case -EEXIST: /* already in flight (a resend after restart raced a retry) */
		return;
	case -ENOENT:
		set_state(m, id, user_id, BQ_OUTBOX_FAILED, "the sender has no session");
		return;
	case -ENOTCONN:
		s = bq_sessions_get(m->reg, user_id);
		if (s) {
			struct bq_session_info in;

			bq_session_info(s, &in);
			snprintf(reason, sizeof(reason), "the sender was refused by Odin: %.200s",
				 in.last_error);
		} else {
			snprintf(reason, sizeof(reason), "the sender was refused by Odin");
		}
		set_state(m, id, user_id, BQ_OUTBOX_FAILED, reason);
		return;
	case -EINVAL:
		set_state(m, id, user_id, BQ_OUTBOX_FAILED, "invalid destination");
		return;
	case -EMSGSIZE:
		set_state(m, id, user_id, BQ_OUTBOX_FAILED, "too large");
		return;
	default: /* -ENOBUFS, -ENOMEM: the session is full now; try again shortly */
		if (unsent_add(m, id, user_id) < 0) {
			set_state(m, id, user_id, BQ_OUTBOX_FAILED, "manager overloaded");
		}
		return;
	}
}

#define UNSENT_PER_TICK 4096
#define UNSENT_BLOCKED_MAX 32

static void unsent_tick(struct bq_timer *t, void *ud)
{
	struct mgr *m = ud;
	size_t n = m->n_unsent < UNSENT_PER_TICK ? m->n_unsent : UNSENT_PER_TICK;
	/* Senders found full in this round: their later messages wait without a read. */
	char blocked[UNSENT_BLOCKED_MAX][BQ_USER_ID_MAX + 1];
	size_t n_blocked = 0;

	for (size_t i = 0; i < n; i++) {
		struct mgr_unsent u = m->unsent[m->unsent_head];
		struct bq_outbox_msg *msg = NULL;
		bool skip = false;
		size_t before;

		m->unsent_head = (m->unsent_head + 1) % MGR_UNSENT_MAX;
		m->n_unsent--;
		for (size_t k = 0; k < n_blocked && !skip; k++) {
			skip = strcmp(blocked[k], u.user_id) == 0;
		}
		if (skip) {
			unsent_add(m, u.id, u.user_id); /* room: it was just taken out */
			continue;
		}
		if (bq_outbox_get(m->ob, u.id, &msg) < 0) {
			/* Still committed as accepted: the next start sends it. */
			bq_warn(m->log, MOD,
				"msg=\"message left for the next start\" id=%016" PRIx64, u.id);
			continue;
		}
		before = m->n_unsent;
		if (!bq_outbox_state_terminal(msg->state)) {
			mgr_dispatch(m, msg->id, msg->user_id, msg->destination, msg->body,
				     msg->body_len);
		}
		bq_outbox_msg_free(msg);
		if (m->n_unsent > before && n_blocked < UNSENT_BLOCKED_MAX) {
			snprintf(blocked[n_blocked++], sizeof(blocked[0]), "%s", u.user_id);
		}
	}
	if (m->n_unsent && !bq_timer_active(t)) {
		bq_timer_start(t, UNSENT_RETRY_MS);
	}
}

struct send_ctx {
	struct mgr *m;
	struct bq_http_req *req; /* NULL once the client went away */
	size_t len;
	char user_id[BQ_USER_ID_MAX + 1];
	char dst[BQ_USER_ID_MAX + 1];
	char text[]; /* len bytes */
};

static void send_abort(struct bq_http_req *req, void *ud)
{
	struct send_ctx *c = ud;

	c->req = NULL; /* the message is still committed and sent; only the answer is lost */
}

static void send_committed(struct bq_outbox *ob, int err, uint64_t id, void *ud)
{
	struct send_ctx *c = ud;
	struct mgr *m = c->m;
	char hex[BQ_OUTBOX_ID_LEN + 1];

	if (err == 0) {
		mgr_count_state(m, BQ_OUTBOX_ACCEPTED);
		bq_outbox_id_format(id, hex);
		if (c->req) {
			reply_json(c->req, 202,
				   json_pack("{s:s, s:s}", "message_id", hex, "state", "accepted"));
		}
		if (!m->stopping) {
			/* When stopping it stays accepted and the next start sends it. */
			mgr_dispatch(m, id, c->user_id, c->dst, c->text, c->len);
		}
	} else if (c->req) {
		bq_http_reply_error(c->req, 500, "store_error",
				    "the message could not be stored: %s", strerror(-err));
	}
	bq_free(c);
}

/*
 * One message of a send request: sender with a session, a valid destination, text of
 * 1..BQ_TEXT_MAX bytes. Replies 400/413/404 itself (the reason starts with where, e.g.
 * "messages[3]: ", for a batch) and returns false.
 */
static bool send_fields(struct bq_http_req *req, struct mgr *m, json_t *obj, const char *where,
			char *user_id, char *dst, const char **text, size_t *len)
{
	char err[200];
	int rc;

	if (!json_is_object(obj)) {
		bq_http_reply_error(req, 400, "bad_field", "%smust be an object", where);
		return false;
	}
	if (!get_user_id(req, obj, where, "user_id", user_id, BQ_USER_ID_MAX + 1)) {
		return false;
	}
	if (bq_json_get_id(obj, "destination", true, dst, BQ_USER_ID_MAX + 1, err, sizeof(err)) <
	    0) {
		bq_http_reply_error(req, 400, "bad_field", "%s%s", where, err);
		return false;
	}
	if (strcmp(dst, BQ_OUTBOX_BROADCAST_DEST) != 0 && !bq_user_id_valid(dst, strlen(dst))) {
		bq_http_reply_error(req, 400, "bad_field",
				    "%sfield 'destination' must be a user id or \"broadcast\"",
				    where);
		return false;
	}
	rc = bq_json_get_string(obj, "message", true, 1, SIZE_MAX, text, len, err, sizeof(err));
	if (rc < 0) {
		bq_http_reply_error(req, 400, "bad_field", "%s%s", where, err);
		return false;
	}
	if (*len > BQ_TEXT_MAX) {
		bq_http_reply_error(req, 413, "too_large",
				    "%sfield 'message' is %zu bytes; the mesh carries at most %d",
				    where, *len, BQ_TEXT_MAX);
		return false;
	}
	if (!bq_sessions_get(m->reg, user_id)) {
		bq_http_reply_error(req, 404, "unknown_user",
				    "%sno session for user '%s': POST /api/connect first", where,
				    user_id);
		return false;
	}
	return true;
}

static void h_send(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	json_t *obj = parse_body(req);
	char user_id[BQ_USER_ID_MAX + 1], dst[BQ_USER_ID_MAX + 1];
	const char *text;
	size_t len;
	struct send_ctx *c = NULL;
	struct bq_outbox_new nm = {0};
	int rc;

	if (!obj) {
		return;
	}
	if (!send_fields(req, m, obj, "", user_id, dst, &text, &len)) {
		goto out;
	}
	/* Sized to the text: not zeroed, every field is set below. */
	c = bq_malloc(sizeof(*c) + len);
	if (!c) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	memcpy(c->user_id, user_id, sizeof(user_id));
	memcpy(c->dst, dst, sizeof(dst));
	memcpy(c->text, text, len);
	c->len = len;
	c->m = m;
	c->req = req;
	nm.user_id = c->user_id;
	nm.destination = c->dst;
	nm.body = c->text;
	nm.body_len = len;
	rc = bq_outbox_accept(m->ob, &nm, send_committed, c, NULL);
	if (rc < 0) {
		if (rc == -EAGAIN) {
			m->http_rejected_busy++;
		}
		bq_http_reply_error(req, 503, "busy", "the outbox is not taking messages now: %s",
				    strerror(-rc));
		goto out;
	}
	bq_http_req_on_abort(req, send_abort, c);
	c = NULL; /* send_committed owns it; the reply is deferred until the commit */
out:
	bq_free(c);
	json_decref(obj);
}

/*
 * POST /api/send/batch {"messages": [{user_id, destination, message}, ...]}: up to
 * MGR_BATCH_MAX messages in one request, for a backend that sends many at once (HTTP
 * per message costs more than the rest of the path). Every entry is validated before
 * any is accepted (a 4xx names the entry); then each is committed like a single send,
 * and the 202 comes when all commits are done, with one result per entry in order:
 * {message_id, state:"accepted"} or {error, code} (503 busy when the outbox was full).
 */
#define MGR_BATCH_MAX 1000

struct batch_entry {
	struct batch *b;
	uint64_t id;
	int err; /* 1 while waiting for the commit */
	size_t len;
	const char *text; /* into b->texts */
	char user_id[BQ_USER_ID_MAX + 1];
	char dst[BQ_USER_ID_MAX + 1];
};

struct batch {
	struct mgr *m;
	struct bq_http_req *req; /* NULL once the client went away */
	size_t n, waiting;
	char *texts;
	struct batch_entry e[];
};

static void batch_abort(struct bq_http_req *req, void *ud)
{
	struct batch *b = ud;

	b->req = NULL;
}

static void batch_finish(struct batch *b)
{
	json_t *results = json_array();
	char hex[BQ_OUTBOX_ID_LEN + 1];

	for (size_t i = 0; results && i < b->n; i++) {
		struct batch_entry *e = &b->e[i];

		if (e->err == 0) {
			bq_outbox_id_format(e->id, hex);
			json_array_append_new(results, json_pack("{s:s, s:s}", "message_id", hex,
								 "state", "accepted"));
		} else {
			json_array_append_new(
				results, json_pack("{s:s, s:s}", "error", strerror(-e->err), "code",
						   e->err == -EAGAIN ? "busy" : "store_error"));
		}
	}
	if (b->req) {
		reply_json(b->req, 202,
			   json_pack("{s:o}", "messages", results ? results : json_array()));
	} else {
		json_decref(results);
	}
	bq_free(b->texts);
	bq_free(b);
}

static void batch_committed(struct bq_outbox *ob, int err, uint64_t id, void *ud)
{
	struct batch_entry *e = ud;
	struct batch *b = e->b;

	e->err = err;
	e->id = id;
	if (err == 0) {
		mgr_count_state(b->m, BQ_OUTBOX_ACCEPTED);
		if (!b->m->stopping) {
			mgr_dispatch(b->m, id, e->user_id, e->dst, e->text, e->len);
		}
	}
	if (--b->waiting == 0) {
		batch_finish(b);
	}
}

static void h_send_batch(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	json_t *obj = parse_body(req), *list, *item;
	struct batch *b = NULL;
	size_t n, i, total = 0, off = 0;
	char where[48];

	if (!obj) {
		return;
	}
	list = json_object_get(obj, "messages");
	if (!json_is_array(list) || json_array_size(list) == 0) {
		bq_http_reply_error(req, 400, "bad_field",
				    "field 'messages' must be a non-empty array");
		goto out;
	}
	n = json_array_size(list);
	if (n > MGR_BATCH_MAX) {
		bq_http_reply_error(req, 413, "too_large", "%zu messages; at most %d per request",
				    n, MGR_BATCH_MAX);
		goto out;
	}
	b = bq_calloc(1, sizeof(*b) + n * sizeof(b->e[0]));
	if (!b) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	b->m = m;
	b->n = n;
	json_array_foreach(list, i, item)
	{
		struct batch_entry *e = &b->e[i];

		snprintf(where, sizeof(where), "messages[%zu]: ", i);
		if (!send_fields(req, m, item, where, e->user_id, e->dst, &e->text, &e->len)) {
			goto out;
		}
		total += e->len;
	}
	/* The texts point into obj: copy them, obj goes at the end of this handler. */
	b->texts = bq_malloc(total ? total : 1);
	if (!b->texts) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct batch_entry *e = &b->e[i];

		memcpy(b->texts + off, e->text, e->len);
		e->text = b->texts + off;
		off += e->len;
		e->b = b;
	}
	b->req = req;
	b->waiting = 1; /* held until every accept was tried, so no reply mid-loop */
	for (i = 0; i < n; i++) {
		struct batch_entry *e = &b->e[i];
		struct bq_outbox_new nm = {.user_id = e->user_id,
					   .destination = e->dst,
					   .body = e->text,
					   .body_len = e->len};
		int rc = bq_outbox_accept(m->ob, &nm, batch_committed, e, NULL);

		if (rc < 0) {
			if (rc == -EAGAIN) {
				m->http_rejected_busy++;
			}
			e->err = rc;
		} else {
			e->err = 1;
			b->waiting++;
		}
	}
	bq_http_req_on_abort(req, batch_abort, b);
	if (--b->waiting == 0) {
		batch_finish(b); /* nothing was accepted: answer now */
	}
	b = NULL;
out:
	if (b) {
		bq_free(b->texts);
		bq_free(b);
	}
	json_decref(obj);
}

/* ---- messages ---- */

static void h_message(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	const char *p = bq_http_req_param(req);
	struct bq_outbox_msg *msg = NULL;
	char hex[BQ_OUTBOX_ID_LEN + 1];
	uint64_t id;
	json_t *doc, *hist;
	int rc;

	if (!p || bq_outbox_id_parse(p, &id) < 0) {
		bq_http_reply_error(req, 400, "bad_id", "a message id is 16 hex digits");
		return;
	}
	rc = bq_outbox_get(m->ob, id, &msg);
	if (rc == -ENOENT) {
		bq_http_reply_error(req, 404, "unknown_message", "no message %s", p);
		return;
	}
	if (rc < 0) {
		bq_http_reply_error(req, 500, "store_error", "cannot read the message: %s",
				    strerror(-rc));
		return;
	}
	hist = json_array();
	for (size_t i = 0; hist && i < msg->n_events; i++) {
		json_array_append_new(hist, json_pack("{s:s, s:s?, s:I}", "state",
						      bq_outbox_state_name(msg->events[i].state),
						      "reason", msg->events[i].reason, "at",
						      (json_int_t)msg->events[i].at_ms));
	}
	bq_outbox_id_format(msg->id, hex);
	doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:I, s:I, s:i, s:b, s:o}", "message_id",
			hex, "user_id", msg->user_id, "destination", msg->destination, "state",
			bq_outbox_state_name(msg->state), "label",
			bq_outbox_state_label(msg->state), "reason", msg->reason, "created",
			(json_int_t)msg->created_ms, "updated", (json_int_t)msg->updated_ms,
			"attempts", (int)msg->attempts, "receipts",
			strcmp(msg->destination, BQ_OUTBOX_BROADCAST_DEST) != 0, "history",
			hist ? hist : json_null());
	bq_outbox_msg_free(msg);
	reply_json(req, 200, doc);
}

/* ---- users (the mesh directory) ---- */

struct dir_walk {
	json_t *users, *nodes;
};

static const char *presence_name(uint8_t p)
{
	switch (p) {
	case BQ_PRES_ONLINE:
		return "online";
	case BQ_PRES_GONE:
		return "gone";
	default:
		return "offline";
	}
}

static void add_dir_entry(const struct bq_dir_entry *e, void *ud)
{
	struct dir_walk *w = ud;
	char addr[18];
	json_t *o;

	if (e->kind == BQ_DIR_USER) {
		bq_bdaddr_format(e->home, addr);
		o = json_pack("{s:s#, s:s#, s:s, s:s, s:i}", "user_id", e->id, (int)e->id_len,
			      "user_name", e->name, (int)e->name_len, "home", addr, "presence",
			      presence_name(e->presence), "age_s", (int)e->age_s);
		json_array_append_new(w->users, o);
	} else if (e->kind == BQ_DIR_NODE) {
		json_t *nb = json_array();

		for (uint8_t i = 0; nb && i < e->n_neigh; i++) {
			bq_bdaddr_format(e->neigh + (size_t)i * BQ_NODE_ADDR_LEN, addr);
			json_array_append_new(nb, json_string(addr));
		}
		bq_bdaddr_format(e->node, addr);
		o = json_pack("{s:s, s:s#, s:o, s:i}", "address", addr, "name", e->name,
			      (int)e->name_len, "neighbours", nb ? nb : json_array(), "age_s",
			      (int)e->age_s);
		json_array_append_new(w->nodes, o);
	}
}

static void h_users(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	struct dir_walk w = {json_array(), json_array()};

	if (!w.users || !w.nodes) {
		json_decref(w.users);
		json_decref(w.nodes);
		bq_http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	bq_sessions_dir_foreach(m->reg, add_dir_entry, &w);
	reply_json(req, 200,
		   json_pack("{s:I, s:o, s:o}", "count", (json_int_t)json_array_size(w.users),
			     "users", w.users, "nodes", w.nodes));
}

/* ---- event stream ---- */

static void sse_closed(struct bq_http_stream *st, void *ud)
{
	struct mgr *m = ud;

	for (size_t i = 0; i < m->n_sse; i++) {
		if (m->sse[i] == st) {
			m->sse[i] = m->sse[--m->n_sse];
			return;
		}
	}
}

void mgr_sse_broadcast(struct mgr *m, const char *type, const char *json, size_t len)
{
	struct bq_buf b;

	if (m->n_sse == 0) {
		return;
	}
	bq_buf_init(&b, len + 128);
	if (bq_buf_printf(&b, "event: %s\ndata: ", type) < 0 || bq_buf_append(&b, json, len) < 0 ||
	    bq_buf_append(&b, "\n\n", 2) < 0) {
		bq_buf_free(&b);
		return;
	}
	/* Backwards: a stream that overflows is closed later, never removed under us. */
	for (size_t i = m->n_sse; i-- > 0;) {
		if (bq_http_stream_send(m->sse[i], b.data, b.len) == -ENOBUFS) {
			m->sse_dropped++;
		}
	}
	bq_buf_free(&b);
}

static void sse_ping(struct bq_timer *t, void *ud)
{
	struct mgr *m = ud;

	for (size_t i = m->n_sse; i-- > 0;) {
		bq_http_stream_send(m->sse[i], ": ping\n\n", 8);
	}
	bq_timer_start(t, SSE_PING_MS);
}

static void h_events(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	struct bq_http_stream *st;

	if (m->n_sse >= MGR_SSE_MAX) {
		bq_http_reply_error(req, 503, "busy", "too many event streams (at most %d)",
				    MGR_SSE_MAX);
		return;
	}
	st = bq_http_reply_stream(req, sse_closed, m);
	if (!st) {
		return;
	}
	m->sse[m->n_sse++] = st;
	bq_http_stream_send(st, ": blueq-manager events\n\n", 24);
}

/* ---- health, readiness, metrics ---- */

static void h_health(struct bq_http_req *req, void *ud)
{
	reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	struct bq_sessions_stats st;
	bool odin;

	bq_sessions_stats(m->reg, &st);
	/* With no session there is no link to judge Odin by: ready, and it says so. */
	odin = st.links_up > 0 || st.total == 0;
	reply_json(req, odin ? 200 : 503,
		   json_pack("{s:b, s:s, s:b, s:b}", "ready", odin, "odin", odin_state(&st),
			     "store", m->ob != NULL, "backend_reachable", m->backend_reachable));
}

static const uint32_t RTT_BOUNDS_US[] = {250,	500,   1000,   2500,   5000,   10000,
					 25000, 50000, 100000, 250000, 500000, 1000000};
#define RTT_NB (sizeof(RTT_BOUNDS_US) / sizeof(RTT_BOUNDS_US[0]))

struct rtt_hist {
	uint64_t le[RTT_NB];
	uint64_t count;
	double sum_s;
};

static void rtt_add(uint32_t rtt_us, void *ud)
{
	struct rtt_hist *h = ud;

	for (size_t i = 0; i < RTT_NB; i++) {
		if (rtt_us <= RTT_BOUNDS_US[i]) {
			h->le[i]++;
		}
	}
	h->count++;
	h->sum_s += rtt_us / 1e6;
}

static void h_metrics(struct bq_http_req *req, void *ud)
{
	struct mgr *m = mgr_of(req);
	struct bq_sessions_stats st;
	struct bq_outbox_stats os;
	struct bq_evq_stats es;
	struct bq_http_server_stats hs;
	struct rtt_hist h = {{0}, 0, 0};
	struct bq_buf b;
	int rc = 0;

	bq_sessions_stats(m->reg, &st);
	bq_outbox_get_stats(m->ob, &os);
	bq_evq_get_stats(m->evq, &es);
	bq_http_server_get_stats(m->http, &hs);
	bq_sessions_link_rtts(m->reg, rtt_add, &h);
	bq_buf_init(&b, 1u << 20);
	rc |= bq_buf_printf(&b, "# HELP blueq_sessions Sessions by state.\n"
				"# TYPE blueq_sessions gauge\n");
	for (int i = 0; i < BQ_SESS_NSTATES; i++) {
		rc |= bq_buf_printf(&b, "blueq_sessions{state=\"%s\"} %zu\n",
				    bq_session_state_name((enum bq_session_state)i),
				    st.by_state[i]);
	}
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_links Links to Odin.\n# TYPE blueq_links gauge\n"
			    "blueq_links{state=\"open\"} %u\nblueq_links{state=\"up\"} %u\n",
			    st.links, st.links_up);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_dials_total Connect attempts to Odin.\n"
			    "# TYPE blueq_dials_total counter\nblueq_dials_total %" PRIu64 "\n",
			    st.dials);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_reconnects_total Reconnects (dials after the "
			    "first).\n# TYPE blueq_reconnects_total counter\n"
			    "blueq_reconnects_total %" PRIu64 "\n",
			    st.dials > st.links ? st.dials - st.links : 0);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_connect_rate_peak Most dials in one second.\n"
			    "# TYPE blueq_connect_rate_peak gauge\nblueq_connect_rate_peak %u\n",
			    st.peak_connect_rate);
	rc |= bq_buf_printf(&b, "# HELP blueq_messages_total Message state changes since "
				"start.\n# TYPE blueq_messages_total counter\n");
	for (int i = 0; i < MGR_MSG_STATES; i++) {
		rc |= bq_buf_printf(&b, "blueq_messages_total{state=\"%s\"} %" PRIu64 "\n",
				    bq_outbox_state_name((enum bq_outbox_state)i),
				    m->msgs_by_state[i]);
	}
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_messages_received_total Inbound messages.\n"
			    "# TYPE blueq_messages_received_total counter\n"
			    "blueq_messages_received_total %" PRIu64 "\n",
			    st.received);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_queue_depth Items waiting.\n"
			    "# TYPE blueq_queue_depth gauge\n"
			    "blueq_queue_depth{queue=\"outbox_writer\"} %zu\n"
			    "blueq_queue_depth{queue=\"dispatch_retry\"} %zu\n"
			    "blueq_queue_depth{queue=\"backend_events\"} %zu\n",
			    os.queued, m->n_unsent, es.len);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_backend_events_dropped_total Events dropped from "
			    "the full backend queue.\n# TYPE blueq_backend_events_dropped_total "
			    "counter\nblueq_backend_events_dropped_total %" PRIu64 "\n",
			    es.dropped);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_receipts_held Inbound messages whose DELIVERED receipt "
			    "waits for the backend to store them.\n# TYPE blueq_receipts_held gauge\n"
			    "blueq_receipts_held %zu\n"
			    "# HELP blueq_receipts_total Held receipts settled: sent, or not sent "
			    "(the sender's repeat asks again).\n# TYPE blueq_receipts_total counter\n"
			    "blueq_receipts_total{result=\"sent\"} %" PRIu64 "\n"
			    "blueq_receipts_total{result=\"not_sent\"} %" PRIu64 "\n",
			    m->n_receipts, m->receipts_confirmed, m->receipts_unsent);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_backend_reachable 1 if the last backend call "
			    "succeeded.\n# TYPE blueq_backend_reachable gauge\n"
			    "blueq_backend_reachable %d\n",
			    m->backend_reachable ? 1 : 0);
	rc |= bq_buf_printf(&b,
			    "# HELP blueq_outbox_commits_total Outbox transactions.\n"
			    "# TYPE blueq_outbox_commits_total counter\n"
			    "blueq_outbox_commits_total %" PRIu64 "\n",
			    os.commits);
	rc |= bq_buf_printf(&b, "# HELP blueq_http_requests_total HTTP requests by status "
				"class.\n# TYPE blueq_http_requests_total counter\n");
	for (int i = 2; i <= 5; i++) {
		rc |= bq_buf_printf(&b, "blueq_http_requests_total{class=\"%dxx\"} %" PRIu64 "\n",
				    i, hs.by_class[i]);
	}
	rc |= bq_buf_printf(&b, "# HELP blueq_link_rtt_seconds Last PING round trip of each "
				"link that is up.\n# TYPE blueq_link_rtt_seconds histogram\n");
	for (size_t i = 0; i < RTT_NB; i++) {
		rc |= bq_buf_printf(&b, "blueq_link_rtt_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
				    RTT_BOUNDS_US[i] / 1e6, h.le[i]);
	}
	rc |= bq_buf_printf(&b,
			    "blueq_link_rtt_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
			    "blueq_link_rtt_seconds_sum %.6f\nblueq_link_rtt_seconds_count %" PRIu64
			    "\n",
			    h.count, h.sum_s, h.count);
	if (rc < 0) {
		bq_buf_free(&b);
		bq_http_reply_error(req, 500, "internal", "metrics too large or out of memory");
		return;
	}
	bq_http_reply(req, 200, "text/plain; version=0.0.4", b.data, b.len);
	bq_buf_free(&b);
}

const struct bq_http_route mgr_routes[] = {
	{BQ_HTTP_GET, "/api/status", h_status},
	{BQ_HTTP_POST, "/api/connect", h_connect},
	{BQ_HTTP_POST, "/api/disconnect", h_disconnect},
	{BQ_HTTP_POST, "/api/send", h_send},
	{BQ_HTTP_POST, "/api/send/batch", h_send_batch},
	{BQ_HTTP_GET, "/api/messages/*", h_message},
	{BQ_HTTP_GET, "/api/users", h_users},
	{BQ_HTTP_GET, "/api/clients/*", h_client},
	{BQ_HTTP_GET, "/api/events", h_events},
	{BQ_HTTP_GET, "/health", h_health},
	{BQ_HTTP_GET, "/ready", h_ready},
	{BQ_HTTP_GET, "/metrics", h_metrics},
	{0, NULL, NULL},
};

int mgr_api_start(struct mgr *m, char *err, size_t errlen)
{
	struct bq_http_server_config cfg;
	int rc;

	m->unsent_timer = bq_timer_new(m->loop, unsent_tick, m);
	m->sse_ping = bq_timer_new(m->loop, sse_ping, m);
	if (!m->unsent_timer || !m->sse_ping) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bq_timer_start(m->sse_ping, SSE_PING_MS);
	bq_http_server_config_defaults(&cfg);
	cfg.bind_host = m->o->api_host;
	cfg.port = (uint16_t)m->o->api_port;
	cfg.max_body = (size_t)m->o->max_body;
	cfg.bearer_token = m->o->api_token;
	cfg.routes = mgr_routes;
	cfg.user_data = m;
	rc = bq_http_server_start(m->loop, m->log, &cfg, &m->http, err, errlen);
	return rc;
}

void mgr_api_stop(struct mgr *m)
{
	bq_http_server_free(m->http); /* streams and pending sends get their callbacks */
	m->http = NULL;
	m->n_sse = 0;
	bq_timer_free(m->unsent_timer);
	bq_timer_free(m->sse_ping);
	m->unsent_timer = m->sse_ping = NULL;
	bq_free(m->unsent);
	m->unsent = NULL;
	m->n_unsent = 0;
	m->unsent_head = 0;
}
