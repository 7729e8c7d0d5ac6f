/* SPDX-License-Identifier: MIT */
/*
 * The manager's side of the web backend: events pushed in batches to
 * POST /api/bluetooth/events (retried with backoff, idempotent by event id, from a
 * bounded queue), and the safety-net poll GET /api/bluetooth/users?since=CURSOR that
 * connects users the backend knows and removes deleted ones. The backend's own push
 * (POST /api/connect) is the main path; see docs/manager.md, "Backend".
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "http/json.h"
#include "manager.h"

static const char *const MOD = "backend";

#define PUSH_MAX_BYTES (256u * 1024u)
#define PUSH_TIMEOUT_MS 10000
#define PUSH_BACKOFF_CAP_MS 10000
#define POLL_TIMEOUT_MS 10000
#define CURSOR_MAX 63

static bool have_backend(const struct mgr *m)
{
	return m->o->backend_url && m->o->backend_url[0];
}

static void set_unreachable(struct mgr *m, const char *what, int status)
{
	/* On the change, and on the first failure after start (it starts unreachable). */
	if (m->backend_reachable || !m->backend_error[0]) {
		bq_warn(m->log, MOD, "msg=\"backend unreachable\" url=%s call=%s status=%d%s",
			m->o->backend_url, what, status,
			status == 401 || status == 403
				? " hint=\"the backend refused our token: start the manager with "
				  "--backend-token-file BACKEND_DATA_DIR/service.token (or on the "
				  "backend's --data-dir)\""
				: "");
	}
	m->backend_reachable = false;
	if (status < 0) {
		snprintf(m->backend_error, sizeof(m->backend_error), "%s: %s", what,
			 strerror(-status));
	} else {
		snprintf(m->backend_error, sizeof(m->backend_error), "%s: HTTP %d", what, status);
	}
}

static void set_reachable(struct mgr *m)
{
	if (!m->backend_reachable) {
		bq_info(m->log, MOD, "msg=\"backend reachable\" url=%s", m->o->backend_url);
	}
	m->backend_reachable = true;
	m->backend_error[0] = '\0';
	m->backend_last_ok_ms = bq_wall_ms();
}

/* ---- event push ---- */

static void push_kick(struct mgr *m)
{
	if (!m->push_call && !bq_timer_active(m->push_timer) && bq_evq_len(m->evq) > 0 &&
	    !m->stopping) {
		/* Delay 0: everything queued in this loop round goes in one batch. */
		bq_timer_start(m->push_timer, 0);
	}
}

static void receipts_settle(struct mgr *m, uint64_t first, uint64_t last, bool stored);

static void push_done(int status, const char *body, size_t len, void *ud)
{
	struct mgr *m = ud;
	uint32_t delay;

	m->push_call = NULL;
	if (status >= 200 && status < 300) {
		/* The backend stored these events: their messages' receipts can go now. */
		receipts_settle(m, m->push_last_seq - m->push_n + 1, m->push_last_seq, true);
		bq_evq_ack(m->evq, m->push_last_seq);
		bq_backoff_reset(&m->push_backoff);
		m->pushes++;
		set_reachable(m);
		push_kick(m);
		return;
	}
	m->push_failures++;
	if (status == 400 || status == 413 || status == 422) {
		/*
		 * The backend refuses this batch for what it is: retrying it forever would
		 * stop every later event behind it, so it is dropped and said so.
		 */
		bq_warn(m->log, MOD,
			"msg=\"backend refused an event batch; dropped\" status=%d "
			"body=%.200s",
			status, body ? body : "");
		receipts_settle(m, m->push_last_seq - m->push_n + 1, m->push_last_seq, false);
		bq_evq_ack(m->evq, m->push_last_seq);
		push_kick(m);
		return;
	}
	if (status == -ECANCELED) {
		return;
	}
	set_unreachable(m, "POST /api/bluetooth/events", status);
	delay = bq_backoff_next(&m->push_backoff);
	bq_debug(m->log, MOD, "msg=\"event push failed\" status=%d retry_ms=%u", status, delay);
	bq_timer_start(m->push_timer, delay);
}

static void push_tick(struct bq_timer *t, void *ud)
{
	struct mgr *m = ud;
	struct bq_buf body;
	struct bq_http_request req = {0};
	char url[2200];
	size_t n = 0;
	uint64_t last = 0;
	int rc;

	if (m->push_call || bq_evq_len(m->evq) == 0 || m->stopping) {
		return;
	}
	bq_buf_init(&body, PUSH_MAX_BYTES + 64);
	rc = bq_buf_append(&body, "{\"events\":", 10);
	if (rc == 0) {
		rc = bq_evq_peek(m->evq, (size_t)m->o->event_batch, PUSH_MAX_BYTES, &body, &n,
				 &last);
	}
	if (rc == 0) {
		rc = bq_buf_append(&body, "}", 1);
	}
	if (rc < 0 || n == 0) {
		bq_buf_free(&body);
		bq_timer_start(t, bq_backoff_next(&m->push_backoff));
		return;
	}
	snprintf(url, sizeof(url), "%s/api/bluetooth/events", m->o->backend_url);
	req.method = "POST";
	req.url = url;
	req.bearer_token = m->backend_token;
	req.body = body.data;
	req.body_len = body.len;
	req.timeout_ms = PUSH_TIMEOUT_MS;
	m->push_last_seq = last;
	m->push_n = n;
	rc = bq_http_client_request(m->cli, &req, push_done, m, &m->push_call);
	bq_buf_free(&body);
	if (rc < 0) {
		m->push_call = NULL;
		bq_timer_start(t, bq_backoff_next(&m->push_backoff));
	}
}

bool mgr_events_wanted(const struct mgr *m)
{
	return m->n_sse > 0 || (have_backend(m) && m->evq);
}

static uint64_t event_emit(struct mgr *m, json_t *ev, bool to_streams);

void mgr_event(struct mgr *m, json_t *ev)
{
	event_emit(m, ev, true);
}

bool mgr_holds_receipts(const struct mgr *m)
{
	return have_backend(m) && m->receipts;
}

static struct mgr_receipt *receipt_at(struct mgr *m, size_t i)
{
	return &m->receipts[(m->receipts_head + i) % MGR_RECEIPTS_MAX];
}

void mgr_inbound(struct mgr *m, json_t *ev, const char *user_id, const char *src, uint64_t msg_id,
		 bool first)
{
	uint64_t seq = event_emit(m, ev, first);
	struct mgr_receipt *r;

	if (!mgr_holds_receipts(m)) {
		bq_sessions_confirm(m->reg, user_id, src, msg_id);
		return;
	}
	if (!seq || m->n_receipts >= MGR_RECEIPTS_MAX) {
		/* Not queued, or too many held: no receipt now; the sender's repeat asks again. */
		m->receipts_unsent++;
		return;
	}
	r = receipt_at(m, m->n_receipts++);
	r->evq_seq = seq;
	r->msg_id = msg_id;
	snprintf(r->user_id, sizeof(r->user_id), "%s", user_id);
	snprintf(r->src, sizeof(r->src), "%s", src);
}

/*
 * The backend answered for the batch of seqs first..last: stored (confirm those receipts)
 * or refused (drop them: the senders' repeats bring the messages again). A receipt for
 * an event older than the batch belongs to an event the queue dropped: never sent.
 */
static void receipts_settle(struct mgr *m, uint64_t first, uint64_t last, bool stored)
{
	while (m->n_receipts) {
		struct mgr_receipt *r = receipt_at(m, 0);

		if (r->evq_seq > last) {
			break;
		}
		if (stored && r->evq_seq >= first &&
		    bq_sessions_confirm(m->reg, r->user_id, r->src, r->msg_id) == 0) {
			m->receipts_confirmed++;
		} else {
			m->receipts_unsent++;
		}
		m->receipts_head = (m->receipts_head + 1) % MGR_RECEIPTS_MAX;
		m->n_receipts--;
	}
}

static uint64_t event_emit(struct mgr *m, json_t *ev, bool to_streams)
{
	struct bq_evq_stats qs;
	uint64_t seq = 0;
	char id[48];
	char *text;
	const char *type;
	size_t len;

	if (!ev) {
		return 0;
	}
	if (!mgr_events_wanted(m)) {
		/* Nobody to tell: skip the encoding (four events per message sent). */
		json_decref(ev);
		return 0;
	}
	m->event_seq++;
	snprintf(id, sizeof(id), "%s-%" PRIu64, m->instance, m->event_seq);
	json_object_set_new(ev, "id", json_string(id));
	json_object_set_new(ev, "at", json_integer((json_int_t)bq_wall_ms()));
	text = json_dumps(ev, JSON_COMPACT);
	if (!text) {
		json_decref(ev);
		return 0;
	}
	len = strlen(text);
	/* type points into ev: broadcast before ev is released. */
	type = json_string_value(json_object_get(ev, "type"));
	if (to_streams) {
		mgr_sse_broadcast(m, type ? type : "event", text, len);
	}
	json_decref(ev);
	if (have_backend(m) && m->evq && bq_evq_push(m->evq, text, len) == 0) {
		bq_evq_get_stats(m->evq, &qs);
		seq = qs.next_seq - 1;
		push_kick(m);
	}
	free(text); /* jansson's allocator */
	return seq;
}

/* ---- user poll ---- */

static void poll_arm(struct mgr *m)
{
	if (m->o->poll_interval > 0 && !m->stopping) {
		bq_timer_start(m->poll_timer, m->o->poll_interval);
	}
}

static bool cursor_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CURSOR_MAX) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      c == '-' || c == '_' || c == '.' || c == ':')) {
			return false;
		}
	}
	return true;
}

/* One user record of the poll answer: connect it, or remove it when deleted. */
static void poll_user(struct mgr *m, json_t *u, size_t *connected, size_t *removed)
{
	char id[BQ_USER_ID_MAX + 1], err[160];
	const char *name = NULL;
	json_t *deleted = json_object_get(u, "deleted");

	if (!json_is_object(u) ||
	    bq_json_get_id(u, "user_id", true, id, sizeof(id), err, sizeof(err)) < 0) {
		bq_warn(m->log, MOD, "msg=\"poll: user record skipped\" reason=\"%s\"",
			json_is_object(u) ? err : "not an object");
		return;
	}
	if (json_is_true(deleted)) {
		if (bq_sessions_disconnect(m->reg, id) == 0) {
			(*removed)++;
		}
		return;
	}
	if (bq_json_get_string(u, "user_name", false, 1, BQ_NAME_MAX, &name, NULL, err,
			       sizeof(err)) == -EINVAL) {
		name = NULL;
	}
	if (!bq_user_id_valid(id, strlen(id)) || (name && !bq_name_valid(name, strlen(name)))) {
		bq_warn(m->log, MOD, "msg=\"poll: user cannot go on the mesh\" user_id=%.64s", id);
		return;
	}
	if (!bq_sessions_get(m->reg, id) && bq_sessions_connect(m->reg, id, name, NULL) == 0) {
		(*connected)++;
	}
}

static void poll_tick(struct bq_timer *t, void *ud);

static void poll_done(int status, const char *body, size_t len, void *ud)
{
	struct mgr *m = ud;
	json_t *doc = NULL, *users, *cursor, *u;
	char err[200], cur[CURSOR_MAX + 1] = "";
	size_t i, connected = 0, removed = 0;
	bool more;

	m->poll_call = NULL;
	if (status == -ECANCELED) {
		return;
	}
	m->polls++;
	if (status != 200) {
		m->poll_failures++;
		if (status == 404) {
			/* An older backend without the poll endpoint: reachable, nothing to sync.
			 */
			set_reachable(m);
			bq_debug(m->log, MOD, "msg=\"backend has no users endpoint\"");
		} else {
			set_unreachable(m, "GET /api/bluetooth/users", status);
		}
		poll_arm(m);
		return;
	}
	set_reachable(m);
	if (bq_json_parse_object(body, len, &doc, err, sizeof(err)) < 0 ||
	    !json_is_array(users = json_object_get(doc, "users"))) {
		m->poll_failures++;
		bq_warn(m->log, MOD, "msg=\"poll: bad answer\" reason=\"%s\"",
			doc ? "no 'users' array" : err);
		json_decref(doc);
		poll_arm(m);
		return;
	}
	json_array_foreach(users, i, u)
	{
		poll_user(m, u, &connected, &removed);
	}
	cursor = json_object_get(doc, "cursor");
	if (json_is_integer(cursor)) {
		snprintf(cur, sizeof(cur), "%" JSON_INTEGER_FORMAT, json_integer_value(cursor));
	} else if (json_is_string(cursor) && cursor_ok(json_string_value(cursor))) {
		snprintf(cur, sizeof(cur), "%s", json_string_value(cursor));
	}
	if (cur[0]) {
		memcpy(m->poll_cursor, cur, sizeof(cur));
	}
	more = json_is_true(json_object_get(doc, "more"));
	if (connected || removed) {
		bq_info(m->log, MOD, "msg=\"poll\" users=%zu connected=%zu removed=%zu cursor=%s",
			json_array_size(users), connected, removed, m->poll_cursor);
	}
	json_decref(doc);
	if (more && cur[0]) {
		bq_timer_start(m->poll_timer, 0); /* the next page at once */
	} else {
		poll_arm(m);
	}
}

static void poll_tick(struct bq_timer *t, void *ud)
{
	struct mgr *m = ud;
	struct bq_http_request req = {0};
	char url[2300];
	int rc;

	if (m->poll_call || m->stopping) {
		return;
	}
	snprintf(url, sizeof(url), "%s/api/bluetooth/users?since=%s", m->o->backend_url,
		 m->poll_cursor);
	req.method = "GET";
	req.url = url;
	req.bearer_token = m->backend_token;
	req.timeout_ms = POLL_TIMEOUT_MS;
	rc = bq_http_client_request(m->cli, &req, poll_done, m, &m->poll_call);
	if (rc < 0) {
		m->poll_call = NULL;
		bq_warn(m->log, MOD, "msg=\"poll not started\" err=\"%s\"", strerror(-rc));
		poll_arm(m);
	}
	(void)t;
}

int mgr_backend_start(struct mgr *m, char *err, size_t errlen)
{
	snprintf(m->poll_cursor, sizeof(m->poll_cursor), "0");
	bq_backoff_init(&m->push_backoff, 100, PUSH_BACKOFF_CAP_MS, bq_wall_ms() ^ 0x5eed);
	m->evq = bq_evq_new((size_t)m->o->event_queue, (size_t)m->o->event_queue * 2048u);
	m->cli = bq_http_client_new(m->loop, m->log, NULL);
	m->push_timer = bq_timer_new(m->loop, push_tick, m);
	m->poll_timer = bq_timer_new(m->loop, poll_tick, m);
	if (have_backend(m)) {
		m->receipts = bq_calloc(MGR_RECEIPTS_MAX, sizeof(*m->receipts));
	}
	if (!m->evq || !m->cli || !m->push_timer || !m->poll_timer ||
	    (have_backend(m) && !m->receipts)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (have_backend(m)) {
		/* The initial user scan of the web app: every user the backend has. */
		bq_timer_start(m->poll_timer, 0);
	}
	return 0;
}

void mgr_backend_stop(struct mgr *m)
{
	bq_timer_free(m->push_timer);
	bq_timer_free(m->poll_timer);
	m->push_timer = m->poll_timer = NULL;
	bq_http_client_free(m->cli); /* cancels the calls: their callbacks see -ECANCELED */
	m->cli = NULL;
	bq_evq_free(m->evq);
	m->evq = NULL;
	bq_free(m->receipts); /* unsent receipts: the senders' repeats come after a restart */
	m->receipts = NULL;
	m->n_receipts = 0;
}
