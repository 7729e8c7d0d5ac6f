/* SPDX-License-Identifier: MIT */
/*
 * sessions: the client manager's session registry. Design notes: docs/manager.md.
 *
 * A session is the manager's view of one user; the MeshClient engine does the protocol
 * work. A "link" wraps one bq_mclient and lists the sessions it carries: one in
 * dedicated mode (the session owns it), many in shared mode (the registry's pool owns
 * them). A session's state is derived from its link's state while the link is not up
 * and from its own user's attach/scan state once it is.
 *
 * Lifetimes: a session leaves the id map the moment it is disconnected, so the id can
 * be connected again at once; its memory goes after the current dispatch round (shared
 * mode) or once its dedicated link has flushed the DETACH (the before-sleep reaper),
 * never in the middle of a callback stack that may point at it.
 */
#include "manager/sessions.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/map.h"
#include "manager/ratelimit.h"
#include "mesh/client.h"

static const char *const MOD = "sessions";

#define SHARED_LINKS_MAX 64
#define DIR_LINKS_MAX 8
#define REASON_MAX 256
/* A stopped dedicated link gets this long to flush its DETACH (the link gives up at 1 s). */
#define REAP_DEADLINE_MS 2000
/* Inbound duplicate keys per link: one user per dedicated link, thousands per shared one. */
#define DEDUPE_DEDICATED 128
#define DEDUPE_SHARED 65536

struct link {
	struct bq_sessions *reg;
	struct bq_mclient *mc;
	struct bq_session *head, *tail; /* the sessions it carries */
	uint32_t n_users;
	int index;    /* pool slot in shared mode, -1 in dedicated mode */
	bool started; /* bq_mclient_start succeeded (it may still be waiting at the gate) */
	bool up;
	bool keeps_dir;
	struct link *reap_next;		 /* on reg->reaping while a stopped link flushes */
	struct bq_session *reap_session; /* dedicated: the session waiting for "disconnected" */
	uint64_t reap_deadline_ms;
};

struct bq_session {
	struct bq_sessions *reg;
	struct link *link;
	struct bq_session *prev, *next; /* on link->head; next is kept on removal (walks) */
	struct bq_muser *mu;
	char *last_error; /* NULL if none; at most REASON_MAX bytes */
	int last_err;
	enum bq_session_state state;
	bool retry;   /* failed: the registry's retry timer will try again */
	bool removed; /* out of the map; memory about to go */
	uint32_t reconnects;
	uint64_t sent, received;
	uint64_t created_ms, since_ms, connected_since_ms;
	char user_id[BQ_USER_ID_MAX + 1];
	char user_name[BQ_NAME_MAX + 1];
};

struct bq_sessions {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_sessions_config cfg;
	char *client_name;
	struct bq_sessions_cbs cbs;
	void *ud;
	bq_sessions_destroy_fn destroy;

	struct bq_map *by_id; /* user id -> struct bq_session */
	size_t by_state[BQ_SESS_NSTATES];
	struct link *pool[SHARED_LINKS_MAX];
	struct link *dir_links[DIR_LINKS_MAX];
	uint32_t n_links, links_up;

	struct bq_ratelimit gate;
	struct bq_rate_meter dials;
	uint64_t sent, received;

	struct bq_timer *retry_timer;
	struct bq_backoff retry_backoff;
	size_t n_retry;
	struct link *reaping;
	bool hook_on;
	bool stopping;
	char odin_text[BQ_ADDR_STRLEN];
};

static const char *const STATE_NAMES[BQ_SESS_NSTATES] = {
	[BQ_SESS_NEW] = "new",
	[BQ_SESS_CONNECTING] = "connecting",
	[BQ_SESS_ATTACHING] = "attaching",
	[BQ_SESS_SCANNING] = "scanning",
	[BQ_SESS_READY] = "ready",
	[BQ_SESS_BACKOFF] = "backoff",
	[BQ_SESS_DISCONNECTING] = "disconnecting",
	[BQ_SESS_DISCONNECTED] = "disconnected",
	[BQ_SESS_FAILED] = "failed",
};

const char *bq_session_state_name(enum bq_session_state st)
{
	return (unsigned)st < BQ_SESS_NSTATES ? STATE_NAMES[st] : "?";
}

const char *bq_link_mode_name(enum bq_link_mode m)
{
	return m == BQ_LINK_SHARED ? "shared" : "dedicated";
}

int bq_link_mode_parse(const char *s, enum bq_link_mode *out)
{
	if (s && strcmp(s, "dedicated") == 0) {
		*out = BQ_LINK_DEDICATED;
		return 0;
	}
	if (s && strcmp(s, "shared") == 0) {
		*out = BQ_LINK_SHARED;
		return 0;
	}
	return -EINVAL;
}

void bq_sessions_config_defaults(struct bq_sessions_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = BQ_LINK_DEDICATED;
	cfg->shared_links = 4;
	cfg->client_name = "blueq-manager";
	cfg->connect_timeout_ms = 10000;
	cfg->handshake_timeout_ms = 5000;
	cfg->ping_interval_ms = 5000;
	cfg->dead_after_ms = 15000;
	cfg->backoff_base_ms = 100;
	cfg->backoff_cap_ms = 30000;
	/* 10,000 sessions back within 5 s of an Odin restart (ARCHITECTURE.md section 9). */
	cfg->connect_rate = 2500;
	cfg->connect_burst = 100;
	cfg->directory_links = 2;
}

/* ---- state --------------------------------------------------------------------------- */

static void set_error(struct bq_session *s, int err, const char *reason)
{
	char *copy;

	if (!reason || !reason[0]) {
		return;
	}
	copy = bq_strndup(reason, REASON_MAX);
	if (!copy) {
		return; /* keep the older text rather than nothing */
	}
	bq_free(s->last_error);
	s->last_error = copy;
	s->last_err = err;
}

static void set_state(struct bq_session *s, enum bq_session_state to, int err, const char *reason)
{
	struct bq_sessions *reg = s->reg;
	enum bq_session_state from = s->state;
	char q[REASON_MAX + 16];

	if (from == to) {
		return;
	}
	reg->by_state[from]--;
	reg->by_state[to]++;
	s->state = to;
	s->since_ms = bq_wall_ms();
	if (to == BQ_SESS_READY) {
		s->connected_since_ms = s->since_ms;
	} else if (from == BQ_SESS_READY) {
		s->connected_since_ms = 0;
	}
	if (from == BQ_SESS_BACKOFF && to == BQ_SESS_CONNECTING) {
		s->reconnects++;
	}
	if (err || to == BQ_SESS_FAILED || to == BQ_SESS_BACKOFF) {
		set_error(s, err, reason);
	}
	bq_info(reg->log, MOD, "user_id=%s from=%s to=%s reason=%s err=%d", s->user_id,
		STATE_NAMES[from], STATE_NAMES[to],
		bq_log_quote(reason ? reason : "", q, sizeof(q)), err);
	if (reg->cbs.state) {
		reg->cbs.state(s, from, to, err, reason ? reason : "", reg->ud);
	}
}

/* What the session's state is, seen through its link and its user. */
static enum bq_session_state link_view(const struct bq_session *s)
{
	const struct link *l = s->link;

	switch (bq_mclient_state(l->mc)) {
	case BQ_MC_IDLE:
		return l->started ? BQ_SESS_CONNECTING : BQ_SESS_NEW;
	case BQ_MC_CONNECTING:
	case BQ_MC_HELLO:
		return BQ_SESS_CONNECTING;
	case BQ_MC_BACKOFF:
		return BQ_SESS_BACKOFF;
	case BQ_MC_STOPPED:
		return BQ_SESS_DISCONNECTING;
	case BQ_MC_UP:
		break;
	}
	if (!s->mu) {
		return BQ_SESS_FAILED;
	}
	switch (bq_muser_state(s->mu)) {
	case BQ_MU_ATTACHING:
		return BQ_SESS_ATTACHING;
	case BQ_MU_SCANNING:
		return BQ_SESS_SCANNING;
	case BQ_MU_READY:
		return BQ_SESS_READY;
	case BQ_MU_REJECTED:
		return BQ_SESS_FAILED;
	case BQ_MU_DETACHED:
		break;
	}
	return BQ_SESS_DISCONNECTING;
}

static bool rejected(const struct bq_session *s)
{
	return s->mu && bq_muser_state(s->mu) == BQ_MU_REJECTED;
}

/* ---- retries of failed sessions ------------------------------------------------------- */

static void schedule_retry(struct bq_session *s)
{
	struct bq_sessions *reg = s->reg;

	if (!s->retry) {
		s->retry = true;
		reg->n_retry++;
	}
	if (!bq_timer_active(reg->retry_timer)) {
		bq_timer_start(reg->retry_timer, bq_backoff_next(&reg->retry_backoff));
	}
}

static void clear_retry(struct bq_session *s)
{
	if (s->retry) {
		s->retry = false;
		s->reg->n_retry--;
	}
}

/* ---- links ----------------------------------------------------------------------------- */

static uint32_t gate_cb(void *ud)
{
	struct bq_sessions *reg = ud;
	uint64_t wait_us = bq_ratelimit_reserve(&reg->gate, bq_loop_now_us(reg->loop));
	uint64_t ms = (wait_us + 999) / 1000;

	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

static void on_link_state(struct bq_mclient *mc, enum bq_mclient_state st, int err,
			  const char *reason, void *ud)
{
	struct link *l = ud;
	struct bq_sessions *reg = l->reg;

	if (st == BQ_MC_UP && !l->up) {
		l->up = true;
		reg->links_up++;
	} else if (st != BQ_MC_UP && l->up) {
		l->up = false;
		reg->links_up--;
	}
	if (st == BQ_MC_CONNECTING) {
		bq_rate_meter_hit(&reg->dials, bq_loop_now_us(reg->loop));
		snprintf(reg->odin_text, sizeof(reg->odin_text), "%s", bq_mclient_node_text(mc));
	}
	if (reg->stopping || st == BQ_MC_STOPPED || st == BQ_MC_IDLE) {
		return;
	}
	/* A callback may disconnect sessions: removed ones keep their next pointer. */
	for (struct bq_session *s = l->head, *next; s; s = next) {
		next = s->next;
		if (s->removed || rejected(s)) {
			continue;
		}
		set_state(s, link_view(s), err, reason);
		if (reg->stopping) {
			return;
		}
	}
}

static void on_user_state(struct bq_muser *u, enum bq_muser_state st, const char *reason, void *ud)
{
	struct bq_session *s = bq_muser_data(u);

	if (!s || s->removed || s->mu != u || s->reg->stopping) {
		return;
	}
	switch (st) {
	case BQ_MU_ATTACHING:
		/* After a link loss the link's own state (backoff) already speaks. */
		if (bq_mclient_state(s->link->mc) == BQ_MC_UP) {
			set_state(s, BQ_SESS_ATTACHING, 0, reason);
		}
		break;
	case BQ_MU_SCANNING:
		set_state(s, BQ_SESS_SCANNING, 0, reason);
		break;
	case BQ_MU_READY:
		clear_retry(s);
		if (s->reg->n_retry == 0) {
			bq_backoff_reset(&s->reg->retry_backoff);
		}
		set_state(s, BQ_SESS_READY, 0, reason);
		break;
	case BQ_MU_REJECTED:
		set_state(s, BQ_SESS_FAILED, -EACCES,
			  reason && reason[0] ? reason : "attach refused");
		if (!s->removed) {
			schedule_retry(s);
		}
		break;
	case BQ_MU_DETACHED:
		break;
	}
}

static struct link *dir_source(const struct bq_sessions *reg)
{
	struct link *up = NULL, *any = NULL;

	for (int i = 0; i < DIR_LINKS_MAX; i++) {
		struct link *l = reg->dir_links[i];

		if (!l) {
			continue;
		}
		if (l->up && l->n_users > 0) {
			return l;
		}
		if (l->up && !up) {
			up = l;
		}
		if (!any) {
			any = l;
		}
	}
	return up ? up : any;
}

static void on_directory(struct bq_mclient *mc, const struct bq_dir_entry *e, void *ud)
{
	struct link *l = ud;
	struct bq_sessions *reg = l->reg;

	/* Every link hears every record; the owner hears them from one. */
	if (reg->stopping || !reg->cbs.directory || !l->keeps_dir || dir_source(reg) != l) {
		return;
	}
	reg->cbs.directory(e, reg->ud);
}

static void on_message(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	struct bq_session *s = bq_muser_data(u);
	struct bq_sessions *reg;
	char src[BQ_USER_ID_MAX + 1];
	bool broadcast = (f->flags & BQ_FF_BROADCAST) != 0;

	if (!s || s->removed || s->reg->stopping) {
		return;
	}
	reg = s->reg;
	s->received++;
	reg->received++;
	snprintf(src, sizeof(src), "%.*s", (int)f->src_len, f->src ? f->src : "");
	if (reg->cbs.message) {
		reg->cbs.message(s, src, broadcast ? NULL : s->user_id, f->msg_id, f->payload,
				 f->payload_len, reg->ud);
	}
}

static void on_message_repeat(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	struct bq_session *s = bq_muser_data(u);
	char src[BQ_USER_ID_MAX + 1];

	(void)ud;
	if (!s || s->removed || s->reg->stopping || !s->reg->cbs.message_repeat) {
		return;
	}
	snprintf(src, sizeof(src), "%.*s", (int)f->src_len, f->src ? f->src : "");
	s->reg->cbs.message_repeat(s, src, s->user_id, f->msg_id, f->payload, f->payload_len,
				   s->reg->ud);
}

int bq_sessions_confirm(struct bq_sessions *reg, const char *user_id, const char *src,
			uint64_t msg_id)
{
	struct bq_session *s = bq_sessions_get(reg, user_id);

	if (!s || s->removed || !s->mu) {
		return -ENOENT;
	}
	return bq_muser_confirm(s->mu, src, msg_id);
}

static void on_ack(struct bq_muser *u, uint64_t msg_id, uint8_t status, const char *reason,
		   void *ud)
{
	struct bq_session *s = bq_muser_data(u);

	if (!s || s->removed || s->reg->stopping || !s->reg->cbs.ack) {
		return;
	}
	s->reg->cbs.ack(s, msg_id, status, reason, s->reg->ud);
}

static void dir_links_add(struct bq_sessions *reg, struct link *l)
{
	for (uint32_t i = 0; i < reg->cfg.directory_links && i < DIR_LINKS_MAX; i++) {
		if (!reg->dir_links[i]) {
			reg->dir_links[i] = l;
			l->keeps_dir = true;
			return;
		}
	}
}

static bool dir_links_full(const struct bq_sessions *reg)
{
	for (uint32_t i = 0; i < reg->cfg.directory_links && i < DIR_LINKS_MAX; i++) {
		if (!reg->dir_links[i]) {
			return false;
		}
	}
	return true;
}

static void dir_links_remove(struct bq_sessions *reg, struct link *l)
{
	for (int i = 0; i < DIR_LINKS_MAX; i++) {
		if (reg->dir_links[i] == l) {
			reg->dir_links[i] = NULL;
		}
	}
	l->keeps_dir = false;
}

static struct link *link_new(struct bq_sessions *reg, int index, bool keeps_dir)
{
	struct bq_mclient_config mc;
	const struct bq_mclient_cbs cbs = {
		.link_state = on_link_state,
		.user_state = on_user_state,
		.directory = on_directory,
		.message = on_message,
		.message_repeat = on_message_repeat,
		.ack = on_ack,
	};
	struct link *l = bq_calloc(1, sizeof(*l));

	if (!l) {
		return NULL;
	}
	bq_mclient_config_defaults(&mc);
	mc.node = reg->cfg.odin;
	mc.name = reg->client_name;
	mc.auth = reg->cfg.auth;
	mc.connect_timeout_ms = reg->cfg.connect_timeout_ms;
	mc.hello_timeout_ms = reg->cfg.handshake_timeout_ms;
	mc.ping_interval_ms = reg->cfg.ping_interval_ms;
	mc.dead_after_ms = reg->cfg.dead_after_ms;
	mc.backoff_base_ms = reg->cfg.backoff_base_ms;
	mc.backoff_cap_ms = reg->cfg.backoff_cap_ms;
	if (reg->cfg.retransmit_ms) {
		mc.retransmit_ms = reg->cfg.retransmit_ms;
	}
	if (reg->cfg.msg_expire_ms) {
		mc.msg_expire_ms = reg->cfg.msg_expire_ms;
	}
	if (reg->cfg.max_outstanding) {
		mc.max_outstanding = reg->cfg.max_outstanding;
	}
	mc.dedupe_capacity = index < 0 ? DEDUPE_DEDICATED : DEDUPE_SHARED;
	mc.no_directory = !keeps_dir;
	mc.hold_receipts = reg->cfg.hold_receipts;
	mc.connect_gate = gate_cb;
	mc.connect_gate_ud = reg;
	l->reg = reg;
	l->index = index;
	l->mc = bq_mclient_new(reg->loop, &mc, &cbs, l, reg->log);
	if (!l->mc) {
		bq_free(l);
		return NULL;
	}
	if (keeps_dir) {
		dir_links_add(reg, l);
	}
	reg->n_links++;
	return l;
}

static void link_free(struct link *l)
{
	struct bq_sessions *reg;

	if (!l) {
		return;
	}
	reg = l->reg;
	if (l->up) {
		reg->links_up--;
	}
	dir_links_remove(reg, l);
	reg->n_links--;
	bq_mclient_free(l->mc);
	bq_free(l);
}

static void link_add_session(struct link *l, struct bq_session *s)
{
	s->link = l;
	s->prev = l->tail;
	s->next = NULL;
	if (l->tail) {
		l->tail->next = s;
	} else {
		l->head = s;
	}
	l->tail = s;
	l->n_users++;
}

/* Unlink s but keep s->next: a walk standing on s must be able to go on. */
static void link_remove_session(struct link *l, struct bq_session *s)
{
	if (s->prev) {
		s->prev->next = s->next;
	} else {
		l->head = s->next;
	}
	if (s->next) {
		s->next->prev = s->prev;
	} else {
		l->tail = s->prev;
	}
	l->n_users--;
}

/* Start dialing (through the gate). A failure at once fails the link's sessions. */
static int link_start(struct link *l)
{
	char err[256] = "";
	int rc = bq_mclient_start(l->mc, err, sizeof(err));

	if (rc < 0) {
		if (!err[0]) {
			snprintf(err, sizeof(err), "cannot connect: %s", strerror(-rc));
		}
		bq_warn(l->reg->log, MOD, "link=%d msg=\"link cannot start\" err=%d reason=\"%s\"",
			l->index, rc, err);
		for (struct bq_session *s = l->head, *next; s; s = next) {
			next = s->next;
			if (s->removed) {
				continue;
			}
			set_state(s, BQ_SESS_FAILED, rc, err);
			if (!s->removed) {
				schedule_retry(s);
			}
		}
		return rc;
	}
	l->started = true;
	/* Waiting at the gate is silent in the engine: say "connecting" here. */
	for (struct bq_session *s = l->head, *next; s; s = next) {
		next = s->next;
		if (s->removed || rejected(s)) {
			continue;
		}
		clear_retry(s);
		set_state(s, link_view(s), 0, NULL);
	}
	return 0;
}

static struct link *pool_pick(struct bq_sessions *reg)
{
	struct link *best = NULL;
	int free_slot = -1;

	for (uint32_t i = 0; i < reg->cfg.shared_links; i++) {
		struct link *l = reg->pool[i];

		if (!l) {
			if (free_slot < 0) {
				free_slot = (int)i;
			}
			continue;
		}
		if (!best || l->n_users < best->n_users) {
			best = l;
		}
	}
	if (best && (best->n_users == 0 || free_slot < 0)) {
		return best;
	}
	if (free_slot < 0) {
		return NULL;
	}
	reg->pool[free_slot] =
		link_new(reg, free_slot, (uint32_t)free_slot < reg->cfg.directory_links);
	return reg->pool[free_slot];
}

/* ---- sessions -------------------------------------------------------------------------- */

static void session_mem_free(void *ud)
{
	struct bq_session *s = ud;

	bq_free(s->last_error);
	bq_free(s);
}

/* Forget s (no callback); its memory goes at once or after this round. */
static void session_release(struct bq_session *s, bool deferred)
{
	struct bq_sessions *reg = s->reg;

	reg->by_state[s->state]--;
	clear_retry(s);
	s->removed = true;
	if (!deferred) {
		session_mem_free(s);
	} else if (bq_loop_defer(reg->loop, session_mem_free, s) < 0) {
		bq_warn(reg->log, MOD, "user_id=%s msg=\"leaked removed session (no memory)\"",
			s->user_id);
	}
}

/* Try a failed session again: start its link, or attach a refused user anew. */
static void retry_one(struct bq_session *s)
{
	struct link *l = s->link;

	clear_retry(s);
	if (!l->started) {
		link_start(l);
	} else if (rejected(s)) {
		bq_muser_detach(s->mu);
		s->mu = bq_mclient_attach(l->mc, s->user_id, s->user_name, s);
		if (!s->mu) {
			schedule_retry(s);
			return;
		}
		if (link_view(s) == BQ_SESS_BACKOFF) {
			/* The link is down: its reason is the session's error now, not the retry. */
			const char *why = bq_mclient_last_error(l->mc);

			set_state(s, BQ_SESS_BACKOFF, -ENOTCONN, why && why[0] ? why : "link down");
		} else {
			set_state(s, link_view(s), 0, "attach retried");
		}
	}
}

/* Retry every failed session once; those that fail again are rescheduled. */
static void retry_cb(struct bq_timer *t, void *ud)
{
	struct bq_sessions *reg = ud;
	struct bq_session **v;
	size_t n = 0, pos = 0, klen;
	const char *k;
	struct bq_session *s;

	if (reg->n_retry == 0 || reg->stopping) {
		return;
	}
	v = bq_malloc(reg->n_retry * sizeof(*v));
	if (!v) {
		bq_timer_start(t, bq_backoff_next(&reg->retry_backoff));
		return;
	}
	while ((s = bq_map_next(reg->by_id, &pos, &k, &klen)) && n < reg->n_retry) {
		if (s->retry) {
			v[n++] = s;
		}
	}
	for (size_t i = 0; i < n && !reg->stopping; i++) {
		if (!v[i]->removed && v[i]->retry) {
			retry_one(v[i]);
		}
	}
	bq_free(v);
	/*
	 * No reset here even when nothing is left to retry: a refused user's retry clears
	 * its flag at once and is refused again a moment later. The step resets when a
	 * session reaches ready (see on_user_state).
	 */
	if (reg->n_retry > 0 && !bq_timer_active(t)) {
		bq_timer_start(t, bq_backoff_next(&reg->retry_backoff));
	}
}

/* Before sleep: stopped dedicated links that have flushed (or run out of time) go. */
static void reap_hook(struct bq_loop *loop, void *ud)
{
	struct bq_sessions *reg = ud;
	uint64_t now = bq_loop_now_ms(loop);
	struct link **pp = &reg->reaping;

	while (*pp) {
		struct link *l = *pp;
		struct bq_session *s;

		if (bq_mclient_busy(l->mc) && now < l->reap_deadline_ms) {
			pp = &l->reap_next;
			continue;
		}
		*pp = l->reap_next;
		s = l->reap_session;
		link_free(l);
		if (s) {
			set_state(s, BQ_SESS_DISCONNECTED, 0, "detached");
			session_release(s, false);
		}
		/* A callback may have changed the list: walk it again from the start. */
		pp = &reg->reaping;
	}
}

/* The dedicated link that kept a directory copy is going: another link takes over. */
static void dir_promote(struct bq_sessions *reg)
{
	size_t pos = 0, klen;
	const char *k;
	struct bq_session *s;

	while (!dir_links_full(reg) && (s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
		if (!s->link->keeps_dir) {
			bq_mclient_keep_directory(s->link->mc);
			dir_links_add(reg, s->link);
			bq_info(reg->log, MOD, "user_id=%s msg=\"link now keeps the directory\"",
				s->user_id);
		}
	}
}

struct bq_sessions *bq_sessions_new(struct bq_loop *loop, const struct bq_sessions_config *cfg,
				    const struct bq_sessions_cbs *cbs, void *ud,
				    bq_sessions_destroy_fn destroy, struct bq_log *log, char *err,
				    size_t errlen)
{
	struct bq_sessions *reg;
	const char *name =
		cfg->client_name && cfg->client_name[0] ? cfg->client_name : "blueq-manager";

	if (cfg->mode == BQ_LINK_SHARED && cfg->shared_links > SHARED_LINKS_MAX) {
		snprintf(err, errlen, "shared links must be 1..%d (got %u)", SHARED_LINKS_MAX,
			 cfg->shared_links);
		return NULL;
	}
	if (!bq_name_valid(name, strlen(name))) {
		snprintf(err, errlen, "invalid client name '%s'", name);
		return NULL;
	}
	reg = bq_calloc(1, sizeof(*reg));
	if (!reg) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	reg->loop = loop;
	reg->log = log;
	reg->cfg = *cfg;
	reg->cfg.client_name = NULL;
	if (reg->cfg.shared_links == 0) {
		reg->cfg.shared_links = 4;
	}
	if (reg->cfg.directory_links == 0) {
		reg->cfg.directory_links = 2;
	}
	if (reg->cfg.directory_links > DIR_LINKS_MAX) {
		reg->cfg.directory_links = DIR_LINKS_MAX;
	}
	if (cbs) {
		reg->cbs = *cbs;
	}
	reg->ud = ud;
	bq_ratelimit_init(&reg->gate, reg->cfg.connect_rate, reg->cfg.connect_burst);
	bq_rate_meter_init(&reg->dials);
	bq_backoff_init(&reg->retry_backoff, cfg->backoff_base_ms ? cfg->backoff_base_ms : 100,
			cfg->backoff_cap_ms ? cfg->backoff_cap_ms : 30000, 0);
	bq_addr_format(&cfg->odin, reg->odin_text, sizeof(reg->odin_text));
	reg->client_name = bq_strndup(name, BQ_NAME_MAX);
	reg->by_id = bq_map_new();
	reg->retry_timer = bq_timer_new(loop, retry_cb, reg);
	if (!reg->client_name || !reg->by_id || !reg->retry_timer ||
	    bq_loop_before_sleep(loop, reap_hook, reg) < 0) {
		snprintf(err, errlen, "out of memory");
		bq_sessions_free(reg);
		return NULL;
	}
	reg->hook_on = true;
	reg->destroy = destroy; /* only now: a failed new must not call it */
	return reg;
}

int bq_sessions_connect(struct bq_sessions *reg, const char *user_id, const char *user_name,
			struct bq_session **out)
{
	size_t idlen = user_id ? strlen(user_id) : 0, namelen;
	struct bq_session *s;
	struct link *l;

	if (!user_id || idlen > BQ_USER_ID_MAX || !bq_user_id_valid(user_id, idlen)) {
		return -EINVAL;
	}
	if (!user_name) {
		user_name = user_id;
	}
	namelen = strlen(user_name);
	if (namelen > BQ_NAME_MAX || !bq_name_valid(user_name, namelen)) {
		return -EINVAL;
	}
	if (reg->stopping) {
		return -ESHUTDOWN;
	}
	s = bq_map_get(reg->by_id, user_id, idlen);
	if (s) {
		if (out) {
			*out = s;
		}
		/* Asking again for a failed session means "try now", not at the next retry. */
		if (s->retry) {
			retry_one(s);
		}
		return s->state == BQ_SESS_READY ? -EALREADY : 0;
	}
	s = bq_calloc(1, sizeof(*s));
	if (!s) {
		return -ENOMEM;
	}
	s->reg = reg;
	s->state = BQ_SESS_NEW;
	memcpy(s->user_id, user_id, idlen);
	memcpy(s->user_name, user_name, namelen);
	s->created_ms = s->since_ms = bq_wall_ms();
	if (reg->cfg.mode == BQ_LINK_SHARED) {
		l = pool_pick(reg);
	} else {
		l = link_new(reg, -1, !dir_links_full(reg));
	}
	if (!l || bq_map_set(reg->by_id, user_id, idlen, s) < 0) {
		if (l && l->index < 0) {
			link_free(l);
		}
		bq_free(s);
		return -ENOMEM;
	}
	link_add_session(l, s);
	reg->by_state[BQ_SESS_NEW]++;
	s->mu = bq_mclient_attach(l->mc, s->user_id, s->user_name, s);
	if (!s->mu) {
		bq_map_remove(reg->by_id, user_id, idlen);
		link_remove_session(l, s);
		if (l->index < 0) {
			link_free(l);
		}
		session_release(s, false);
		return -ENOMEM;
	}
	bq_debug(reg->log, MOD, "user_id=%s msg=\"session created\" link=%d", s->user_id, l->index);
	if (out) {
		*out = s;
	}
	if (!l->started) {
		link_start(l); /* a failure leaves the session failed and retried */
	} else {
		set_state(s, link_view(s), 0, NULL);
	}
	return 0;
}

int bq_sessions_disconnect(struct bq_sessions *reg, const char *user_id)
{
	struct bq_session *s = user_id ? bq_map_get(reg->by_id, user_id, strlen(user_id)) : NULL;
	struct link *l;
	struct bq_muser *mu;

	if (!s) {
		return -ENOENT;
	}
	bq_map_remove(reg->by_id, s->user_id, strlen(s->user_id));
	clear_retry(s);
	set_state(s, BQ_SESS_DISCONNECTING, 0, "disconnect requested");
	l = s->link;
	mu = s->mu;
	s->mu = NULL;
	s->removed = true;
	link_remove_session(l, s);
	/*
	 * The session outlives its place on the link: a dedicated link is freed by the
	 * reaper before the last "disconnected" report, whose callback may read the
	 * session's info.
	 */
	s->link = NULL;
	if (l->index >= 0) {
		/* Shared: the DETACH is queued on a link that stays; nothing to wait for. */
		bq_muser_detach(mu);
		set_state(s, BQ_SESS_DISCONNECTED, 0, "detached");
		session_release(s, true);
		return 0;
	}
	/* Dedicated: stop the link (DETACH, close after flush); the reaper finishes. */
	if (l->keeps_dir) {
		dir_links_remove(reg, l);
		dir_promote(reg);
	}
	bq_mclient_stop(l->mc);
	l->reap_session = s;
	l->reap_deadline_ms = bq_loop_now_ms(reg->loop) + REAP_DEADLINE_MS;
	l->reap_next = reg->reaping;
	reg->reaping = l;
	return 0;
}

struct bq_session *bq_sessions_get(const struct bq_sessions *reg, const char *user_id)
{
	return user_id ? bq_map_get(reg->by_id, user_id, strlen(user_id)) : NULL;
}

size_t bq_sessions_count(const struct bq_sessions *reg)
{
	return bq_map_size(reg->by_id);
}

void bq_sessions_foreach(const struct bq_sessions *reg,
			 void (*fn)(const struct bq_session *s, void *ud), void *ud)
{
	size_t pos = 0, klen;
	const char *k;
	const struct bq_session *s;

	while ((s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
		fn(s, ud);
	}
}

void bq_sessions_link_rtts(const struct bq_sessions *reg, void (*fn)(uint32_t rtt_us, void *ud),
			   void *ud)
{
	size_t pos = 0, klen;
	const char *k;
	const struct bq_session *s;
	uint32_t rtt;

	if (reg->cfg.mode == BQ_LINK_SHARED) {
		for (int i = 0; i < SHARED_LINKS_MAX; i++) {
			if (reg->pool[i] && reg->pool[i]->up &&
			    (rtt = bq_mclient_rtt_us(reg->pool[i]->mc)) > 0) {
				fn(rtt, ud);
			}
		}
		return;
	}
	while ((s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
		if (s->link && s->link->up && (rtt = bq_mclient_rtt_us(s->link->mc)) > 0) {
			fn(rtt, ud);
		}
	}
}

void bq_sessions_stats(const struct bq_sessions *reg, struct bq_sessions_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < BQ_SESS_NSTATES; i++) {
		out->by_state[i] = reg->by_state[i];
		out->total += reg->by_state[i];
	}
	out->links = reg->n_links;
	out->links_up = reg->links_up;
	out->dials = reg->dials.total;
	out->peak_connect_rate = reg->dials.peak;
	out->connect_rate_limit = reg->cfg.connect_rate;
	out->connect_burst = reg->cfg.connect_burst;
	out->sent = reg->sent;
	out->received = reg->received;
	out->directory_users = bq_sessions_dir_count(reg);
}

const char *bq_sessions_odin_text(const struct bq_sessions *reg)
{
	return reg->odin_text;
}

int bq_sessions_send(struct bq_sessions *reg, const char *user_id, const char *dst,
		     const void *text, size_t len, uint64_t msg_id, uint64_t *id_out)
{
	struct bq_session *s = bq_sessions_get(reg, user_id);
	int rc;

	if (!s) {
		return -ENOENT;
	}
	if (len > BQ_TEXT_MAX) {
		return -EMSGSIZE;
	}
	if (!s->mu) {
		return -ENOTCONN;
	}
	rc = bq_muser_send(s->mu, dst, text, len, msg_id, id_out);
	if (rc == 0) {
		s->sent++;
		reg->sent++;
	}
	return rc;
}

size_t bq_sessions_dir_count(const struct bq_sessions *reg)
{
	const struct link *l = dir_source(reg);

	return l ? bq_mclient_dir_count(l->mc) : 0;
}

int bq_sessions_dir_presence(const struct bq_sessions *reg, const char *user_id)
{
	const struct link *l = dir_source(reg);

	return l && user_id ? bq_mclient_dir_presence(l->mc, user_id) : -ENOENT;
}

void bq_sessions_dir_foreach(const struct bq_sessions *reg,
			     void (*fn)(const struct bq_dir_entry *e, void *ud), void *ud)
{
	const struct link *l = dir_source(reg);

	if (l) {
		bq_mclient_dir_foreach(l->mc, fn, ud);
	}
}

void bq_sessions_stop(struct bq_sessions *reg)
{
	size_t pos = 0, klen;
	const char *k;
	struct bq_session *s;

	if (reg->stopping) {
		return;
	}
	reg->stopping = true;
	bq_timer_stop(reg->retry_timer);
	if (reg->cfg.mode == BQ_LINK_SHARED) {
		for (uint32_t i = 0; i < reg->cfg.shared_links; i++) {
			if (reg->pool[i]) {
				bq_mclient_stop(reg->pool[i]->mc);
			}
		}
		return;
	}
	while ((s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
		bq_mclient_stop(s->link->mc);
	}
}

bool bq_sessions_busy(const struct bq_sessions *reg)
{
	size_t pos = 0, klen;
	const char *k;
	const struct bq_session *s;

	for (const struct link *l = reg->reaping; l; l = l->reap_next) {
		if (bq_mclient_busy(l->mc)) {
			return true;
		}
	}
	if (reg->cfg.mode == BQ_LINK_SHARED) {
		for (uint32_t i = 0; i < reg->cfg.shared_links; i++) {
			if (reg->pool[i] && bq_mclient_busy(reg->pool[i]->mc)) {
				return true;
			}
		}
		return false;
	}
	while ((s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
		if (bq_mclient_busy(s->link->mc)) {
			return true;
		}
	}
	return false;
}

void bq_sessions_free(struct bq_sessions *reg)
{
	size_t pos = 0, klen;
	const char *k;
	struct bq_session *s;

	if (!reg) {
		return;
	}
	reg->stopping = true;
	if (reg->hook_on) {
		bq_loop_before_sleep_remove(reg->loop, reap_hook, reg);
	}
	while (reg->reaping) {
		struct link *l = reg->reaping;

		reg->reaping = l->reap_next;
		if (l->reap_session) {
			session_release(l->reap_session, false);
		}
		link_free(l);
	}
	if (reg->by_id) {
		while ((s = bq_map_next(reg->by_id, &pos, &k, &klen))) {
			if (s->link->index < 0) {
				link_free(s->link);
			}
			session_release(s, false);
		}
		bq_map_free(reg->by_id);
	}
	for (int i = 0; i < SHARED_LINKS_MAX; i++) {
		link_free(reg->pool[i]);
	}
	bq_timer_free(reg->retry_timer);
	bq_free(reg->client_name);
	if (reg->destroy) {
		reg->destroy(reg->ud);
	}
	bq_free(reg);
}

/* ---- one session ----------------------------------------------------------------------- */

const char *bq_session_user_id(const struct bq_session *s)
{
	return s->user_id;
}

enum bq_session_state bq_session_state(const struct bq_session *s)
{
	return s->state;
}

void bq_session_info(const struct bq_session *s, struct bq_session_info *out)
{
	memset(out, 0, sizeof(*out));
	out->user_id = s->user_id;
	out->user_name = s->user_name;
	out->state = s->state;
	out->last_error = s->last_error ? s->last_error : "";
	out->last_error_code = s->last_err;
	out->created_ms = s->created_ms;
	out->state_since_ms = s->since_ms;
	out->connected_since_ms = s->connected_since_ms;
	out->reconnects = s->reconnects;
	out->sent = s->sent;
	out->received = s->received;
	out->outstanding = s->mu ? bq_muser_outstanding(s->mu) : 0;
	out->link_index = s->link ? s->link->index : -1;
}
