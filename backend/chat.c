/* SPDX-License-Identifier: MIT */
/*
 * Chat: contacts, message history, sending through the manager, and the browsers' live
 * event streams (GET /api/events, SSE).
 *
 * A web user's mesh id is their username (mesh.c), so "user id" below is always that.
 * A message sent from a browser is stored first under a backend id, then handed to the
 * manager; its 202 gives the mesh id, and the row is rekeyed to it so the manager's
 * delivery events (and the inbound copy the receiving session reports, same id) find it.
 *
 * Events carry a sequence number (the SSE id) that starts from the wall clock times
 * 1000 at each start, so an id from an earlier run is older than anything in the ring
 * and its stream gets "reset" (the browser reloads) instead of a silent gap.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/opt.h"
#include "http/json.h"
#include "proto/frame.h"

static const char *const MOD = "chat";

#define STREAMS_MAX 256
#define PING_MS 15000
#define RING_MAX 1000
#define RING_BYTES_MAX (8u << 20) /* the ring's frames together */
#define FRAME_MAX (128u << 10)	  /* one SSE frame; a 4 KiB text escaped fits many times */
#define REPLAY_MAX (128u << 10)	  /* more than this to replay: "reset" (buffer is 256 KiB) */
#define TEXT_MAX 4096		  /* the mesh's limit (the manager answers 413 above) */
#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define EARLY_MAX 64	    /* delivery events that overtook their send's 202 */
#define CONTACTS_MAX 100000 /* web users listed, a bound on one answer */
#define CONTACTS_REPLY_MAX (32u << 20)

struct chat_stream {
	struct be_chat *c;
	struct bq_http_stream *st;
	char user[BQ_BSTORE_PEER_MAX + 1];
};

struct ring_ev {
	uint64_t seq;
	char *frame; /* the whole SSE text, owned */
	size_t len;
	char *to_a, *to_b; /* owned; both NULL: everyone */
};

struct early_delivery {
	bool used;
	char id[BQ_BSTORE_MSGID_MAX + 1];
	char state[16];
	char reason[BQ_BSTORE_REASON_MAX + 1];
	bool has_reason;
};

struct send_ctx {
	struct be *b;
	struct bq_http_req *req; /* NULL once the browser went away */
	struct send_ctx *prev, *next;
	char id[BQ_BSTORE_ID_LEN + 1]; /* the backend's id until the manager gives its own */
	char from[BQ_BSTORE_PEER_MAX + 1];
	char to[BQ_BSTORE_PEER_MAX + 1];
	char *text;
	size_t len;
	int64_t at;
	/* The receiving session's copy of this message, when it arrived before the 202. */
	bool parked;
	char parked_id[BQ_BSTORE_MSGID_MAX + 1];
	int64_t parked_at;
};

struct be_chat {
	struct be *b;
	struct chat_stream *streams[STREAMS_MAX];
	size_t n_streams;
	struct bq_timer *ping;
	uint64_t next_seq;
	struct ring_ev ring[RING_MAX];
	size_t ring_head, ring_n, ring_bytes; /* oldest at ring_head */
	struct send_ctx *sends;		      /* waiting for the manager */
	struct early_delivery early[EARLY_MAX];
	size_t early_next;
	uint64_t published, dropped_streams, replays, resets;
	struct contacts_cache *contacts;
};

static struct be_chat *chat_of(const struct be *b)
{
	return b ? b->chat : NULL;
}

/* ---- JSON helpers ---- */

static json_t *msg_json(const char *id, const char *from, const char *to, const char *text,
			size_t len, const char *state, const char *reason, int64_t at)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:s, s:s?, s:I}", "id", id, "from", from, "to", to,
			 "text", bq_json_text(text, len), "state", state, "reason", reason, "at",
			 (json_int_t)at);
}

static bool peer_ok(const char *s)
{
	return s && (strcmp(s, "broadcast") == 0 || bq_user_id_valid(s, strlen(s)));
}

/* ---- the ring and publishing ---- */

static void ring_drop_oldest(struct be_chat *c)
{
	struct ring_ev *e = &c->ring[c->ring_head];

	c->ring_bytes -= e->len;
	bq_free(e->frame);
	bq_free(e->to_a);
	bq_free(e->to_b);
	memset(e, 0, sizeof(*e));
	c->ring_head = (c->ring_head + 1) % RING_MAX;
	c->ring_n--;
}

static void ring_add(struct be_chat *c, uint64_t seq, struct bq_buf *frame, const char *to_a,
		     const char *to_b)
{
	struct ring_ev *e;
	char *a = to_a ? bq_strdup(to_a) : NULL;
	char *bb = to_b ? bq_strdup(to_b) : NULL;

	if ((to_a && !a) || (to_b && !bb)) {
		/* Out of memory: this event cannot be replayed, so nothing older can be. */
		bq_free(a);
		bq_free(bb);
		while (c->ring_n > 0) {
			ring_drop_oldest(c);
		}
		return;
	}
	while (c->ring_n > 0 &&
	       (c->ring_n == RING_MAX || c->ring_bytes + frame->len > RING_BYTES_MAX)) {
		ring_drop_oldest(c);
	}
	e = &c->ring[(c->ring_head + c->ring_n) % RING_MAX];
	e->seq = seq;
	e->frame = (char *)frame->data; /* taken over from the buffer */
	e->len = frame->len;
	e->to_a = a;
	e->to_b = bb;
	frame->data = NULL;
	frame->len = frame->cap = 0;
	c->ring_bytes += e->len;
	c->ring_n++;
}

/* The oldest sequence number a resume can still be served from. */
static uint64_t ring_first(const struct be_chat *c)
{
	return c->ring_n > 0 ? c->ring[c->ring_head].seq : c->next_seq;
}

static bool meant_for(const char *user, const char *to_a, const char *to_b)
{
	if (!to_a && !to_b) {
		return true;
	}
	return (to_a && strcmp(user, to_a) == 0) || (to_b && strcmp(user, to_b) == 0);
}

static bool type_ok(const char *t)
{
	if (!t || !t[0] || strlen(t) > 32) {
		return false;
	}
	for (const char *p = t; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || *p == '_' || *p == '-')) {
			return false;
		}
	}
	return true;
}

static void send_to(struct be_chat *c, struct chat_stream *cs, const void *data, size_t len)
{
	if (bq_http_stream_send(cs->st, data, len) == -ENOBUFS) {
		/* The server closes it; its closed callback removes it later. */
		c->dropped_streams++;
		bq_info(c->b->log, MOD, "msg=\"slow event stream dropped\" user=%s", cs->user);
	}
}

void be_chat_publish(struct be *b, json_t *ev, const char *to_a, const char *to_b)
{
	struct be_chat *c = chat_of(b);
	struct bq_buf frame;
	const char *type;
	uint64_t seq;

	if (!c || !ev) {
		json_decref(ev);
		return;
	}
	type = json_string_value(json_object_get(ev, "type"));
	if (!type_ok(type)) {
		bq_warn(b->log, MOD, "msg=\"event without a usable type not published\"");
		json_decref(ev);
		return;
	}
	seq = c->next_seq++;
	if (!json_object_get(ev, "id")) {
		json_object_set_new(ev, "id", json_integer((json_int_t)seq));
	}
	bq_buf_init(&frame, FRAME_MAX);
	if (bq_buf_printf(&frame, "id: %" PRIu64 "\nevent: %s\ndata: ", seq, type) < 0 ||
	    bq_json_dump(ev, &frame) < 0 || bq_buf_append(&frame, "\n\n", 2) < 0) {
		bq_warn(b->log, MOD,
			"msg=\"event not published: too large or out of memory\" "
			"type=%s",
			type);
		json_decref(ev);
		bq_buf_free(&frame);
		return;
	}
	json_decref(ev);
	c->published++;
	/* Backwards: an overflowing stream is closed later, never removed under us. */
	for (size_t i = c->n_streams; i-- > 0;) {
		if (meant_for(c->streams[i]->user, to_a, to_b)) {
			send_to(c, c->streams[i], frame.data, frame.len);
		}
	}
	ring_add(c, seq, &frame, to_a, to_b);
	bq_buf_free(&frame);
}

/* ---- event streams ---- */

static void stream_closed(struct bq_http_stream *st, void *ud)
{
	struct chat_stream *cs = ud;
	struct be_chat *c = cs->c;

	(void)st;
	if (!c) {
		bq_free(cs); /* chat stopped first */
		return;
	}
	for (size_t i = 0; i < c->n_streams; i++) {
		if (c->streams[i] == cs) {
			c->streams[i] = c->streams[--c->n_streams];
			break;
		}
	}
	bq_debug(c->b->log, MOD, "msg=\"event stream closed\" user=%s streams=%zu", cs->user,
		 c->n_streams);
	bq_free(cs);
}

static void ping(struct bq_timer *t, void *ud)
{
	struct be_chat *c = ud;

	for (size_t i = c->n_streams; i-- > 0;) {
		send_to(c, c->streams[i], ": ping\n\n", 8);
	}
	bq_timer_start(t, PING_MS);
}

static void send_reset(struct be_chat *c, struct chat_stream *cs)
{
	char frame[200];
	uint64_t last = c->next_seq - 1;
	int n;

	/* With the latest id, so the browser's next reconnect resumes from here. */
	n = snprintf(frame, sizeof(frame),
		     "id: %" PRIu64 "\nevent: reset\ndata: {\"type\":\"reset\",\"id\":%" PRIu64
		     "}\n\n",
		     last, last);
	c->resets++;
	send_to(c, cs, frame, (size_t)n);
}

/* Resume after last_id: the ring's later events for this user, or "reset". */
static void replay(struct be_chat *c, struct chat_stream *cs, const char *last_id)
{
	int64_t v;
	uint64_t last;
	size_t total = 0;

	if (bq_opt_parse_int(last_id, &v) < 0 || v < 0) {
		send_reset(c, cs);
		return;
	}
	last = (uint64_t)v;
	if (last >= c->next_seq || last + 1 < ring_first(c)) {
		/* From another run, made up, or older than what the ring holds. */
		send_reset(c, cs);
		return;
	}
	for (size_t i = 0; i < c->ring_n; i++) {
		const struct ring_ev *e = &c->ring[(c->ring_head + i) % RING_MAX];

		if (e->seq > last && meant_for(cs->user, e->to_a, e->to_b)) {
			total += e->len;
		}
	}
	if (total > REPLAY_MAX) {
		send_reset(c, cs);
		return;
	}
	c->replays++;
	for (size_t i = 0; i < c->ring_n; i++) {
		const struct ring_ev *e = &c->ring[(c->ring_head + i) % RING_MAX];

		if (e->seq > last && meant_for(cs->user, e->to_a, e->to_b)) {
			send_to(c, cs, e->frame, e->len);
		}
	}
}

void be_h_events(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct be_chat *c = chat_of(b);
	const char *last_id;
	struct chat_stream *cs;
	struct bq_buser me;

	(void)ud;
	if (!be_auth_user(b, req, &me)) {
		return;
	}
	if (!c) {
		bq_http_reply_error(req, 503, "busy", "the event service is not running");
		return;
	}
	if (c->n_streams >= STREAMS_MAX) {
		bq_http_reply_error(req, 503, "busy", "too many event streams (at most %d)",
				    STREAMS_MAX);
		return;
	}
	last_id = bq_http_req_header(req, "Last-Event-ID");
	if (!last_id || !last_id[0]) {
		last_id = bq_http_req_query(req, "last_event_id");
	}
	cs = bq_calloc(1, sizeof(*cs));
	if (!cs) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		return;
	}
	cs->c = c;
	snprintf(cs->user, sizeof(cs->user), "%s", me.username);
	cs->st = bq_http_reply_stream(req, stream_closed, cs);
	if (!cs->st) {
		bq_free(cs);
		return;
	}
	c->streams[c->n_streams++] = cs;
	bq_debug(b->log, MOD, "msg=\"event stream opened\" user=%s streams=%zu", cs->user,
		 c->n_streams);
	send_to(c, cs, ": blueq-backend events\n\n", 24);
	if (last_id && last_id[0]) {
		replay(c, cs, last_id);
	}
}

/* ---- contacts ---- */

struct contacts_walk {
	json_t *web; /* user id -> contact object */
	size_t n;
	bool truncated;
};

static int contacts_add_web(void *ud, const struct bq_buser_change *ch)
{
	struct contacts_walk *w = ud;
	json_t *o;

	if (ch->deleted) {
		return 0;
	}
	if (w->n >= CONTACTS_MAX) {
		w->truncated = true;
		return 1;
	}
	o = json_pack("{s:s, s:s, s:b, s:n, s:n, s:n}", "user_id", ch->username, "name",
		      ch->username, "web", 1, "presence", "bluetooth", "home");
	if (!o || json_object_set_new(w->web, ch->username, o) < 0) {
		return -ENOMEM;
	}
	w->n++;
	return 0;
}

static json_t *str_or_null(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

static void contacts_add_bt(const char *user_id, const struct be_bt_user *u, void *ud)
{
	struct contacts_walk *w = ud;
	json_t *o = json_object_get(w->web, user_id);

	if (o) {
		json_object_set_new(o, "presence", str_or_null(u->presence));
		json_object_set_new(o, "bluetooth", str_or_null(u->state));
		json_object_set_new(o, "home", str_or_null(u->home));
		return;
	}
	if (u->web) {
		return; /* a web user this backend no longer has (deleted) */
	}
	if (w->n >= CONTACTS_MAX) {
		w->truncated = true;
		return;
	}
	o = json_pack("{s:s, s:s, s:b, s:o, s:o, s:o}", "user_id", user_id, "name",
		      u->name[0] ? u->name : user_id, "web", 0, "presence",
		      str_or_null(u->presence), "bluetooth", str_or_null(u->state), "home",
		      str_or_null(u->home));
	if (o && json_object_set_new(w->web, user_id, o) == 0) {
		w->n++;
	}
}

static int contact_cmp(const void *pa, const void *pb)
{
	const json_t *a = *(const json_t *const *)pa, *b = *(const json_t *const *)pb;
	const char *na = json_string_value(json_object_get(a, "name"));
	const char *nb = json_string_value(json_object_get(b, "name"));
	int r = strcasecmp(na ? na : "", nb ? nb : "");

	if (r == 0) {
		r = strcmp(json_string_value(json_object_get(a, "user_id")),
			   json_string_value(json_object_get(b, "user_id")));
	}
	return r;
}

/*
 * The contact list is the same for everyone but the caller, and it changes far less
 * often than it is read: it is built once per change (b->contacts_gen) as one compact
 * JSON text per contact, in order, and each request copies the pieces around its own
 * entry. No store query and no JSON encoding per request.
 */
struct contact_piece {
	size_t off, len; /* in contacts_cache.text */
};

struct contacts_cache {
	bool valid;
	uint64_t gen;
	struct bq_buf text;	      /* every contact's JSON, back to back */
	struct contact_piece *pieces; /* in list order */
	size_t n;
	struct bq_map *index; /* user id -> struct contact_piece */
	bool truncated;
};

static void contacts_cache_clear(struct contacts_cache *cc)
{
	bq_buf_free(&cc->text);
	bq_free(cc->pieces);
	bq_map_free(cc->index);
	memset(cc, 0, sizeof(*cc));
}

/* Walk the store and the manager's users into a sorted array of contact objects. */
static int contacts_collect(struct be *b, json_t ***list_out, size_t *n_out, json_t **objs,
			    bool *truncated)
{
	struct contacts_walk w = {0};
	json_t **list = NULL, *v;
	const char *key;
	int64_t cursor = 0, next = 0;
	bool more = true;
	size_t n = 0;
	int rc;

	w.web = json_object();
	if (!w.web) {
		return -ENOMEM;
	}
	/* Every live web user: the manager's poll walk, from the start, page by page. */
	while (more && !w.truncated) {
		rc = bq_bstore_users_since(b->store, cursor, BQ_BSTORE_PAGE_MAX, contacts_add_web,
					   &w, &next, &more);
		if (rc < 0) {
			json_decref(w.web);
			return rc;
		}
		cursor = next;
	}
	be_bt_foreach(b, contacts_add_bt, &w);
	if (w.truncated) {
		bq_warn(b->log, MOD, "msg=\"contacts cut\" max=%d", CONTACTS_MAX);
	}
	list = bq_calloc(json_object_size(w.web) + 1, sizeof(*list));
	if (!list) {
		json_decref(w.web);
		return -ENOMEM;
	}
	json_object_foreach(w.web, key, v)
	{
		list[n++] = v;
	}
	qsort(list, n, sizeof(*list), contact_cmp);
	*list_out = list;
	*n_out = n;
	*objs = w.web; /* owns the objects list points at */
	*truncated = w.truncated;
	return 0;
}

static int contacts_cache_build(struct be *b, struct contacts_cache *cc)
{
	json_t **list = NULL, *objs = NULL;
	size_t n = 0;
	int rc;

	contacts_cache_clear(cc);
	rc = contacts_collect(b, &list, &n, &objs, &cc->truncated);
	if (rc < 0) {
		return rc;
	}
	bq_buf_init(&cc->text, CONTACTS_REPLY_MAX);
	cc->pieces = bq_calloc(n + 1, sizeof(*cc->pieces));
	cc->index = bq_map_new();
	rc = cc->pieces && cc->index ? 0 : -ENOMEM;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const char *id = json_string_value(json_object_get(list[i], "user_id"));
		struct contact_piece *p = &cc->pieces[i];

		p->off = cc->text.len;
		rc = bq_json_dump(list[i], &cc->text);
		p->len = cc->text.len - p->off;
		if (rc == 0 && id) {
			rc = bq_map_set(cc->index, id, strlen(id), p);
		}
	}
	bq_free(list);
	json_decref(objs);
	if (rc < 0) {
		contacts_cache_clear(cc);
		return rc;
	}
	cc->n = n;
	cc->gen = b->contacts_gen;
	cc->valid = true;
	return 0;
}

void be_h_contacts(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct be_chat *c = chat_of(b);
	struct contacts_cache *cc = c->contacts;
	const struct contact_piece *mine;
	struct bq_buser me;
	struct bq_buf out;
	char head[64];
	size_t count;
	bool first = true;
	int rc = 0, n;

	(void)ud;
	if (!be_auth_user(b, req, &me)) {
		return;
	}
	if (!cc->valid || cc->gen != b->contacts_gen) {
		rc = contacts_cache_build(b, cc);
		if (rc < 0) {
			bq_http_reply_error(req, 500, "store_error", "cannot list the contacts: %s",
					    strerror(-rc));
			return;
		}
	}
	mine = bq_map_get(cc->index, me.username, strlen(me.username));
	count = cc->n - (mine ? 1 : 0);
	n = snprintf(head, sizeof(head), "{\"count\":%zu,\"contacts\":[", count);
	bq_buf_init(&out, CONTACTS_REPLY_MAX + sizeof(head) + 32);
	rc = bq_buf_append(&out, head, (size_t)n);
	for (size_t i = 0; rc == 0 && i < cc->n; i++) {
		const struct contact_piece *p = &cc->pieces[i];

		if (p == mine) {
			continue;
		}
		if (!first) {
			rc = bq_buf_append(&out, ",", 1);
		}
		first = false;
		if (rc == 0) {
			rc = bq_buf_append(&out, cc->text.data + p->off, p->len);
		}
	}
	if (rc == 0) {
		n = snprintf(head, sizeof(head), "],\"truncated\":%s}",
			     cc->truncated ? "true" : "false");
		rc = bq_buf_append(&out, head, (size_t)n);
	}
	if (rc < 0) {
		bq_buf_free(&out);
		bq_http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	bq_http_reply(req, 200, NULL, out.data, out.len);
	bq_buf_free(&out);
}

/* ---- history ---- */

struct page_walk {
	json_t *arr;
	size_t limit, n;
	bool more;
	int64_t last_at;
	char last_id[BQ_BSTORE_MSGID_MAX + 1];
};

static int page_add(void *ud, const struct bq_bmsg *m)
{
	struct page_walk *w = ud;

	if (w->n == w->limit) {
		w->more = true; /* the one extra row asked for */
		return 1;
	}
	if (json_array_append_new(w->arr,
				  msg_json(m->id, m->from_id, m->to_id, m->text, m->text_len,
					   m->state, m->reason, m->created_ms)) < 0) {
		return -ENOMEM;
	}
	w->n++;
	w->last_at = m->created_ms;
	snprintf(w->last_id, sizeof(w->last_id), "%s", m->id);
	return 0;
}

void be_h_messages_get(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	const char *with = bq_http_req_query(req, "with");
	const char *before = bq_http_req_query(req, "before");
	const char *before_id = bq_http_req_query(req, "before_id");
	const char *limit_s = bq_http_req_query(req, "limit");
	struct page_walk w = {0};
	char conv[BQ_BSTORE_CONV_MAX + 1];
	struct bq_buser me;
	int64_t before_ms = 0, limit = PAGE_DEFAULT;
	json_t *out;
	int rc;

	(void)ud;
	if (!be_auth_user(b, req, &me)) {
		return;
	}
	if (!with || !with[0]) {
		bq_http_reply_error(req, 400, "bad_query",
				    "'with' is required: a user id or 'broadcast'");
		return;
	}
	if (!peer_ok(with)) {
		bq_http_reply_error(req, 400, "bad_query",
				    "'with' must be a user id (1..64 of A-Z a-z 0-9 . _ @ : -) "
				    "or 'broadcast'");
		return;
	}
	if (limit_s && (bq_opt_parse_int(limit_s, &limit) < 0 || limit < 1 || limit > PAGE_MAX)) {
		bq_http_reply_error(req, 400, "bad_query", "'limit' must be 1..%d", PAGE_MAX);
		return;
	}
	if (before && (bq_opt_parse_int(before, &before_ms) < 0 || before_ms < 0)) {
		bq_http_reply_error(req, 400, "bad_query",
				    "'before' must be a time in ms (a 'next' cursor)");
		return;
	}
	if (before_id && (!before || strlen(before_id) > BQ_BSTORE_MSGID_MAX)) {
		bq_http_reply_error(req, 400, "bad_query",
				    "'before_id' needs 'before' and is at most %d bytes",
				    BQ_BSTORE_MSGID_MAX);
		return;
	}
	if (bq_bstore_conv_key(me.username, with, conv, sizeof(conv)) < 0) {
		bq_http_reply_error(req, 400, "bad_query", "no conversation with '%s'", with);
		return;
	}
	w.arr = json_array();
	w.limit = (size_t)limit;
	if (!w.arr) {
		bq_http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	/* A time alone pages strictly before it: every id sorts after "". */
	rc = bq_bstore_msg_page(b->store, conv, before_ms,
				before ? (before_id ? before_id : "") : NULL, w.limit + 1, page_add,
				&w);
	if (rc < 0) {
		json_decref(w.arr);
		bq_http_reply_error(req, 500, "store_error", "cannot read the messages: %s",
				    strerror(-rc));
		return;
	}
	out = json_pack("{s:s, s:o}", "with", with, "messages", w.arr);
	if (out && w.more) {
		json_object_set_new(out, "next",
				    json_pack("{s:I, s:s}", "before", (json_int_t)w.last_at,
					      "before_id", w.last_id));
	}
	bq_json_reply(req, 200, out, CONTACTS_REPLY_MAX);
}

/* ---- sending ---- */

static void send_unlink(struct send_ctx *s)
{
	struct be_chat *c = chat_of(s->b);

	if (s->prev) {
		s->prev->next = s->next;
	} else if (c && c->sends == s) {
		c->sends = s->next;
	}
	if (s->next) {
		s->next->prev = s->prev;
	}
	s->prev = s->next = NULL;
}

static void send_free(struct send_ctx *s)
{
	send_unlink(s);
	bq_free(s->text);
	bq_free(s);
}

static void send_abort(struct bq_http_req *req, void *ud)
{
	struct send_ctx *s = ud;

	(void)req;
	s->req = NULL;
}

static void publish_msg(struct be *b, const char *id, const char *from, const char *to,
			const char *text, size_t len, const char *state, const char *reason,
			int64_t at, bool sender_only)
{
	json_t *m = msg_json(id, from, to, text, len, state, reason, at);

	if (!m) {
		return;
	}
	if (sender_only) {
		be_chat_publish(b, json_pack("{s:s, s:o}", "type", "message", "message", m), from,
				NULL);
	} else if (strcmp(to, "broadcast") == 0) {
		be_chat_publish(b, json_pack("{s:s, s:o}", "type", "message", "message", m), NULL,
				NULL);
	} else {
		be_chat_publish(b, json_pack("{s:s, s:o}", "type", "message", "message", m), from,
				to);
	}
}

/* Store an inbound message and tell its two sides (nothing when the id is stored). */
static void inbound_store(struct be *b, const char *msg_id, const char *from, const char *to,
			  const char *text, size_t len, int64_t at)
{
	char conv[BQ_BSTORE_CONV_MAX + 1];
	struct bq_bmsg m = {0};
	int rc;

	if (bq_bstore_conv_key(from, to, conv, sizeof(conv)) < 0) {
		bq_warn(b->log, MOD, "msg=\"inbound message with unusable ids dropped\" id=%s",
			msg_id);
		return;
	}
	m.id = msg_id;
	m.conv = conv;
	m.from_id = from;
	m.to_id = to;
	m.text = text;
	m.text_len = len;
	m.state = "received";
	m.created_ms = at;
	rc = bq_bstore_msg_insert(b->store, &m);
	if (rc == -EEXIST) {
		bq_debug(b->log, MOD, "msg=\"inbound message repeated\" id=%s", msg_id);
		return;
	}
	if (rc < 0) {
		bq_warn(b->log, MOD, "msg=\"inbound message not stored\" id=%s err=%d", msg_id, rc);
		return;
	}
	publish_msg(b, msg_id, from, to, text, len, "received", NULL, at, false);
}

/* Apply delivery events that arrived before the 202 told us this id. */
static void early_apply(struct be *b, const char *id)
{
	struct be_chat *c = chat_of(b);

	if (!c) {
		return;
	}
	/* Oldest first, so the states are applied in the order they came. */
	for (size_t k = 0; k < EARLY_MAX; k++) {
		struct early_delivery *e = &c->early[(c->early_next + k) % EARLY_MAX];

		if (e->used && strcmp(e->id, id) == 0) {
			e->used = false;
			be_chat_delivery(b, e->id, e->state, e->has_reason ? e->reason : NULL);
		}
	}
}

/* The manager's error answer as one line: its own error text, or the body's start. */
static void manager_error(const char *body, size_t len, char *code, size_t codelen, char *why,
			  size_t whylen)
{
	json_t *v = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	const char *e = v ? json_string_value(json_object_get(v, "error")) : NULL;
	const char *k = v ? json_string_value(json_object_get(v, "code")) : NULL;

	snprintf(code, codelen, "%s", k && k[0] && strlen(k) < 40 ? k : "manager_error");
	if (e) {
		snprintf(why, whylen, "%.200s", e);
	} else {
		snprintf(why, whylen, "%.100s", body && len ? body : "(no body)");
	}
	json_decref(v);
}

static void send_failed(struct send_ctx *s, const char *reason)
{
	struct be *b = s->b;

	if (bq_bstore_msg_set_state(b->store, s->id, "failed", reason, (int64_t)bq_wall_ms(),
				    NULL) < 0) {
		bq_warn(b->log, MOD, "msg=\"failed state not recorded\" id=%s", s->id);
	}
	if (!b->stopping) {
		publish_msg(b, s->id, s->from, s->to, s->text, s->len, "failed", reason, s->at,
			    true);
	}
}

static void send_done(int status, const char *body, size_t len, void *ud)
{
	struct send_ctx *s = ud;
	struct be *b = s->b;
	char code[48], why[300], reason[600];
	const char *mid = NULL;
	json_t *v = NULL;
	int rc;

	send_unlink(s);
	if (status < 0) {
		if (status == -ECANCELED) {
			snprintf(reason, sizeof(reason),
				 "the backend stopped before the manager answered");
		} else {
			snprintf(reason, sizeof(reason), "the manager at %s is unreachable: %s",
				 b->o->manager_url, strerror(-status));
		}
		send_failed(s, reason);
		if (s->req) {
			bq_http_reply_error(s->req, 503, "manager_unreachable",
					    "the manager at %s is unreachable", b->o->manager_url);
		}
		goto out;
	}
	if (status == 200 || status == 202) {
		v = json_loadb(body, len, 0, NULL);
		mid = v ? json_string_value(json_object_get(v, "message_id")) : NULL;
		if (!mid || !mid[0] || strlen(mid) > BQ_BSTORE_MSGID_MAX) {
			send_failed(s, "the manager's answer has no message_id");
			if (s->req) {
				bq_http_reply_error(s->req, 502, "bad_gateway",
						    "the manager's answer has no message_id");
			}
			goto out;
		}
		rc = bq_bstore_msg_rekey(b->store, s->id, mid);
		if (rc < 0) {
			/* Keep the backend's id: the message is stored, only its events miss. */
			bq_warn(b->log, MOD, "msg=\"message not rekeyed\" id=%s mesh_id=%s err=%d",
				s->id, mid, rc);
			mid = s->id;
		}
		if (s->req) {
			be_reply_json(s->req, 202,
				      json_pack("{s:o}", "message",
						msg_json(mid, s->from, s->to, s->text, s->len,
							 "queued", NULL, s->at)));
		}
		publish_msg(b, mid, s->from, s->to, s->text, s->len, "queued", NULL, s->at, false);
		/* The receiving session's copy, when it was another message after all. */
		if (s->parked && strcmp(s->parked_id, mid) != 0) {
			inbound_store(b, s->parked_id, s->from, s->to, s->text, s->len,
				      s->parked_at);
		}
		s->parked = false;
		early_apply(b, mid);
		goto out;
	}
	manager_error(body, len, code, sizeof(code), why, sizeof(why));
	snprintf(reason, sizeof(reason), "the manager refused it (HTTP %d): %s", status, why);
	send_failed(s, reason);
	if (s->req) {
		/* The manager's 401/403 is this backend's configuration, not the browser's
		 * login: a browser told 401 would log its user out. */
		bq_http_reply_error(s->req,
				    status >= 400 && status <= 599 && status != 401 && status != 403
					    ? (unsigned)status
					    : 502,
				    code, "the manager refused the message (HTTP %d): %s", status,
				    why);
	}
out:
	if (s->parked) {
		inbound_store(b, s->parked_id, s->from, s->to, s->text, s->len, s->parked_at);
	}
	json_decref(v);
	send_free(s);
}

void be_h_messages_post(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct be_chat *c = chat_of(b);
	struct bq_buser me;
	struct send_ctx *s = NULL;
	struct bq_bmsg m = {0};
	char err[300], to[BQ_BSTORE_PEER_MAX + 1], conv[BQ_BSTORE_CONV_MAX + 1];
	const char *text;
	size_t len, blen;
	const void *body = bq_http_req_body(req, &blen);
	json_t *obj = NULL, *out = NULL;
	char *payload = NULL;
	int rc;

	(void)ud;
	if (!be_auth_user(b, req, &me)) {
		return;
	}
	if (bq_json_parse_object(body, blen, &obj, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return;
	}
	if (bq_json_get_id(obj, "to", true, to, sizeof(to), err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_field", "%s", err);
		goto out;
	}
	if (!peer_ok(to)) {
		bq_http_reply_error(req, 400, "bad_field",
				    "field 'to' must be a user id (1..64 of A-Z a-z 0-9 . _ @ : -) "
				    "or 'broadcast'");
		goto out;
	}
	/* Any length here (the body is bounded): over TEXT_MAX is a 413, not a 400. */
	rc = bq_json_get_string(obj, "text", true, 0, SIZE_MAX, &text, &len, err, sizeof(err));
	if (rc < 0) {
		bq_http_reply_error(req, 400, "bad_field", "%s", err);
		goto out;
	}
	if (len == 0) {
		bq_http_reply_error(req, 400, "bad_field", "field 'text' is empty");
		goto out;
	}
	if (len > TEXT_MAX) {
		bq_http_reply_error(req, 413, "too_large",
				    "field 'text' is %zu bytes: at most %d (the mesh's limit)", len,
				    TEXT_MAX);
		goto out;
	}
	if (!c || b->stopping) {
		bq_http_reply_error(req, 503, "busy", "the backend is stopping");
		goto out;
	}
	if (bq_bstore_conv_key(me.username, to, conv, sizeof(conv)) < 0) {
		bq_http_reply_error(req, 400, "bad_field", "no conversation with '%s'", to);
		goto out;
	}
	s = bq_calloc(1, sizeof(*s));
	if (s) {
		s->text = bq_malloc(len + 1);
	}
	if (!s || !s->text) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	s->b = b;
	memcpy(s->text, text, len);
	s->text[len] = '\0';
	s->len = len;
	s->at = (int64_t)bq_wall_ms();
	snprintf(s->from, sizeof(s->from), "%s", me.username);
	snprintf(s->to, sizeof(s->to), "%s", to);
	bq_bstore_new_id(s->id);
	m.id = s->id;
	m.conv = conv;
	m.from_id = s->from;
	m.to_id = s->to;
	m.text = s->text;
	m.text_len = len;
	m.state = "queued";
	m.created_ms = s->at;
	rc = bq_bstore_msg_insert(b->store, &m);
	if (rc < 0) {
		bq_http_reply_error(req, 500, "store_error", "cannot store the message: %s",
				    strerror(-rc));
		goto out;
	}
	out = json_pack("{s:s, s:s, s:s#}", "user_id", s->from, "destination", s->to, "message",
			s->text, (int)len);
	payload = out ? json_dumps(out, JSON_COMPACT) : NULL;
	if (!payload) {
		send_failed(s, "out of memory");
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	rc = be_manager_call(b, "POST", "/api/send", payload, send_done, s);
	if (rc < 0) {
		snprintf(err, sizeof(err), "cannot call the manager: %s",
			 rc == -EAGAIN ? "too many calls in flight" : strerror(-rc));
		send_failed(s, err);
		bq_http_reply_error(req, 503, "busy", "%s", err);
		goto out;
	}
	s->req = req;
	bq_http_req_on_abort(req, send_abort, s);
	s->next = c->sends;
	if (c->sends) {
		c->sends->prev = s;
	}
	c->sends = s;
	s = NULL;
out:
	if (s) {
		bq_free(s->text);
		bq_free(s);
	}
	free(payload);
	json_decref(out);
	json_decref(obj);
}

/* ---- from the manager (bluetooth.c) ---- */

static int msg_exists(void *ud, const struct bq_bmsg *m)
{
	(void)ud;
	(void)m;
	return 0;
}

void be_chat_inbound(struct be *b, const char *msg_id, const char *from, const char *to,
		     const char *text, int64_t at_ms)
{
	struct be_chat *c = chat_of(b);
	size_t len;

	if (!msg_id || !from || !to || !text) {
		return;
	}
	len = strlen(text);
	if (bq_bstore_msg_get(b->store, msg_id, msg_exists, NULL) == 0) {
		bq_debug(b->log, MOD, "msg=\"inbound message repeated\" id=%s", msg_id);
		return;
	}
	/*
	 * Our own user's message, reported by the receiving session before the manager's
	 * 202 reached us: hold it on the send, which stores it under this id.
	 */
	for (struct send_ctx *s = c ? c->sends : NULL; s; s = s->next) {
		if (strcmp(s->from, from) == 0 && strcmp(s->to, to) == 0 && s->len == len &&
		    memcmp(s->text, text, len) == 0) {
			if (s->parked && strcmp(s->parked_id, msg_id) == 0) {
				return;
			}
			if (!s->parked) {
				s->parked = true;
				snprintf(s->parked_id, sizeof(s->parked_id), "%s", msg_id);
				s->parked_at = at_ms;
				return;
			}
		}
	}
	inbound_store(b, msg_id, from, to, text, len, at_ms);
}

static int msg_sender(void *ud, const struct bq_bmsg *m)
{
	char *from = ud;

	snprintf(from, BQ_BSTORE_PEER_MAX + 1, "%s", m->from_id);
	return 0;
}

void be_chat_delivery(struct be *b, const char *msg_id, const char *state, const char *reason)
{
	struct be_chat *c = chat_of(b);
	char from[BQ_BSTORE_PEER_MAX + 1] = "";
	bool changed = false;
	int rc;

	if (!msg_id || !state) {
		return;
	}
	if (strcmp(state, "accepted") == 0) {
		state = "queued"; /* the manager's outbox took it: still queued for us */
	}
	if (!bq_bstore_state_valid(state) || strcmp(state, "received") == 0) {
		bq_warn(b->log, MOD,
			"msg=\"delivery with an unknown state ignored\" id=%s state=%.20s", msg_id,
			state);
		return;
	}
	rc = bq_bstore_msg_set_state(b->store, msg_id, state, reason, (int64_t)bq_wall_ms(),
				     &changed);
	if (rc == -ENOENT) {
		/* Maybe a send whose 202 is still on its way: keep it until then (bounded). */
		if (c && c->sends && strlen(msg_id) <= BQ_BSTORE_MSGID_MAX) {
			struct early_delivery *e = &c->early[c->early_next];

			e->used = true;
			snprintf(e->id, sizeof(e->id), "%s", msg_id);
			snprintf(e->state, sizeof(e->state), "%s", state);
			e->has_reason = reason != NULL;
			snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
			c->early_next = (c->early_next + 1) % EARLY_MAX;
		}
		return;
	}
	if (rc < 0) {
		bq_warn(b->log, MOD, "msg=\"delivery not recorded\" id=%s err=%d", msg_id, rc);
		return;
	}
	if (!changed) {
		return; /* already final */
	}
	if (bq_bstore_msg_get(b->store, msg_id, msg_sender, from) < 0 || !from[0]) {
		return;
	}
	be_chat_publish(b,
			json_pack("{s:s, s:s, s:s, s:s?}", "type", "delivery", "message_id", msg_id,
				  "state", state, "reason", reason),
			from, NULL);
}

/* ---- start and stop ---- */

int be_chat_start(struct be *b, char *err, size_t errlen)
{
	struct be_chat *c = bq_calloc(1, sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	c->b = b;
	c->next_seq = bq_wall_ms() * 1000 + 1;
	c->ping = bq_timer_new(b->loop, ping, c);
	c->contacts = bq_calloc(1, sizeof(*c->contacts));
	if (!c->ping || !c->contacts) {
		bq_timer_free(c->ping);
		bq_free(c->contacts);
		bq_free(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bq_timer_start(c->ping, PING_MS);
	b->chat = c;
	return 0;
}

/*
 * After bq_http_server_free (streams' closed callbacks and aborts have run) and after
 * the HTTP client is freed (sends' callbacks have run): nothing can reach us later.
 */
void be_chat_stop(struct be *b)
{
	struct be_chat *c = chat_of(b);

	if (!c) {
		return;
	}
	bq_info(b->log, MOD,
		"msg=\"chat stopped\" published=%" PRIu64 " dropped_streams=%" PRIu64
		" replays=%" PRIu64 " resets=%" PRIu64,
		c->published, c->dropped_streams, c->replays, c->resets);
	while (c->sends) {
		/* Only if the client outlives us: its callbacks then see no chat. */
		struct send_ctx *s = c->sends;

		c->sends = s->next;
		s->prev = s->next = NULL;
	}
	/* Only if the server still runs: its closed callbacks come later and free them. */
	for (size_t i = 0; i < c->n_streams; i++) {
		c->streams[i]->c = NULL;
		bq_http_stream_close(c->streams[i]->st);
	}
	while (c->ring_n > 0) {
		ring_drop_oldest(c);
	}
	contacts_cache_clear(c->contacts);
	bq_free(c->contacts);
	bq_timer_free(c->ping);
	bq_free(c);
	b->chat = NULL;
}
