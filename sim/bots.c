/* SPDX-License-Identifier: MIT */
/*
 * Bots: simulated users, each its own MeshClient (dedicated link) attached at one node.
 * Every bot writes DIR/bots/NAME.log, one flushed line per event, which tests grep:
 *   sent msg_id=HEX dst=ID|*
 *   ack msg_id=HEX status=NAME
 *   recv msg_id=HEX src=ID dst=ID|* text=TEXT      (first copies only)
 *   state STATE
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "sim.h"

#define BURST_MAX 100000

struct sim_bot {
	struct sim *s;
	char name[BQ_USER_ID_MAX + 1];
	int node;
	struct bq_mclient *mc;
	struct bq_muser *mu;
	FILE *log;
	uint64_t sent, received, acks;
	/* a burst in progress: messages "burst i" for i in [burst_next, burst_end] */
	int64_t burst_next, burst_end;
	char burst_dst[BQ_USER_ID_MAX + 1];
	bool burst_bcast;
};

const char *sim_bot_name(const struct sim_bot *b)
{
	return b->name;
}

static void bot_log(struct sim_bot *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bot_log(struct sim_bot *b, const char *fmt, ...)
{
	va_list ap;

	if (!b->log) {
		return;
	}
	va_start(ap, fmt);
	vfprintf(b->log, fmt, ap);
	va_end(ap);
	fputc('\n', b->log);
	fflush(b->log);
}

/* One log line per event: text is escaped so it can hold no newline. */
static void escape(const uint8_t *p, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < cap; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') {
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
		} else {
			out[o++] = (char)p[i];
		}
	}
	out[o] = '\0';
}

static void burst_pump(struct sim_bot *b)
{
	while (b->burst_next <= b->burst_end && b->mu) {
		char text[32];
		uint64_t id = 0;
		int n = snprintf(text, sizeof(text), "burst %" PRId64, b->burst_next);
		int rc = bq_muser_send(b->mu, b->burst_bcast ? NULL : b->burst_dst, text, (size_t)n,
				       0, &id);

		if (rc == -ENOBUFS) {
			return; /* the outbox is full: more when acks free a slot */
		}
		if (rc < 0) {
			bot_log(b, "error burst stopped: %s", strerror(-rc));
			b->burst_next = b->burst_end + 1;
			return;
		}
		b->sent++;
		b->burst_next++;
		bot_log(b, "sent msg_id=%016" PRIx64 " dst=%s", id,
			b->burst_bcast ? "*" : b->burst_dst);
	}
}

static void on_user(struct bq_muser *u, enum bq_muser_state st, const char *reason, void *ud)
{
	struct sim_bot *b = bq_muser_data(u);

	bot_log(b, "state %s%s%s", bq_muser_state_name(st), reason[0] ? " reason=" : "", reason);
}

static void on_message(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	struct sim_bot *b = bq_muser_data(u);
	bool bcast = f->flags & BQ_FF_BROADCAST;
	char src[BQ_USER_ID_MAX * 4 + 1], dst[BQ_USER_ID_MAX * 4 + 1];
	char text[BQ_TEXT_MAX * 4 + 1];

	escape((const uint8_t *)f->src, f->src_len, src, sizeof(src));
	if (bcast) {
		snprintf(dst, sizeof(dst), "*");
	} else {
		escape((const uint8_t *)f->dst, f->dst_len, dst, sizeof(dst));
	}
	escape(f->payload, f->payload_len, text, sizeof(text));
	b->received++;
	bot_log(b, "recv msg_id=%016" PRIx64 " src=%s dst=%s text=%s", f->msg_id, src, dst, text);
	/* Echo direct messages, never echoes (two echo bots would play ping-pong forever). */
	if (b->s->cfg.bot_echo && !bcast && f->src_len > 0 &&
	    !(f->payload_len >= 6 && memcmp(f->payload, "echo: ", 6) == 0)) {
		char reply[BQ_TEXT_MAX];
		char to[BQ_USER_ID_MAX + 1];
		size_t n = f->payload_len > BQ_TEXT_MAX - 6 ? BQ_TEXT_MAX - 6 : f->payload_len;
		uint64_t id = 0;

		memcpy(reply, "echo: ", 6);
		memcpy(reply + 6, f->payload, n);
		memcpy(to, f->src, f->src_len);
		to[f->src_len] = '\0';
		if (bq_muser_send(u, to, reply, n + 6, 0, &id) == 0) {
			b->sent++;
			bot_log(b, "sent msg_id=%016" PRIx64 " dst=%s", id, src);
		}
	}
}

static void on_ack(struct bq_muser *u, uint64_t id, uint8_t status, const char *reason, void *ud)
{
	struct sim_bot *b = bq_muser_data(u);

	b->acks++;
	bot_log(b, "ack msg_id=%016" PRIx64 " status=%s%s%s", id, bq_ack_status_name(status),
		reason[0] ? " reason=" : "", reason[0] ? reason : "");
	if (b->burst_next <= b->burst_end) {
		burst_pump(b);
	}
}

static void on_link(struct bq_mclient *c, enum bq_mclient_state st, int err, const char *reason,
		    void *ud)
{
	struct sim_bot *b = ud;

	if (st == BQ_MC_BACKOFF) {
		bot_log(b, "link down reason=%s", reason);
	}
}

/* NAME@NODE (the last '@' splits: user ids may contain '@'). */
static int bot_parse(const struct sim *s, const char *spec, size_t *name_len, int64_t *node,
		     char *err, size_t errlen)
{
	const char *at = strrchr(spec, '@');
	size_t nlen = at ? (size_t)(at - spec) : 0;

	if (!at || nlen == 0 || nlen > BQ_USER_ID_MAX || bq_opt_parse_int(at + 1, node) < 0 ||
	    *node < 1 || *node > s->n_nodes) {
		snprintf(err, errlen, "--bot: '%s' is not NAME@NODE with NODE in 1..%d", spec,
			 s->n_nodes);
		return -EINVAL;
	}
	if (!bq_user_id_valid(spec, nlen)) {
		snprintf(err, errlen, "--bot: '%.*s' is not a valid user id (1-64 of A-Z a-z 0-9 "
			 ". _ @ : -)", (int)nlen, spec);
		return -EINVAL;
	}
	*name_len = nlen;
	return 0;
}

int sim_bots_check(const struct sim *s, char *err, size_t errlen)
{
	for (size_t i = 0; i < s->cfg.bots.n; i++) {
		size_t nlen;
		int64_t node;
		int rc = bot_parse(s, s->cfg.bots.v[i], &nlen, &node, err, errlen);

		if (rc < 0) {
			return rc;
		}
		for (size_t k = 0; k < i; k++) {
			const char *o = s->cfg.bots.v[k];
			const char *at = strrchr(o, '@');

			if (at && (size_t)(at - o) == nlen &&
			    memcmp(o, s->cfg.bots.v[i], nlen) == 0) {
				snprintf(err, errlen, "--bot: '%.*s' is given twice", (int)nlen, o);
				return -EEXIST;
			}
		}
	}
	return 0;
}

static int bot_new(struct sim *s, const char *spec, char *err, size_t errlen)
{
	struct sim_bot *b, **v;
	struct bq_mclient_config cfg;
	struct bq_mclient_cbs cbs = {
		.link_state = on_link,
		.user_state = on_user,
		.message = on_message,
		.ack = on_ack,
	};
	char spec_addr[SIM_PATH_MAX + 8];
	char path[SIM_PATH_MAX + 128];
	char hello[BQ_NAME_MAX + 1];
	int64_t node;
	size_t nlen;
	int rc = bot_parse(s, spec, &nlen, &node, err, errlen);

	if (rc < 0) {
		return rc;
	}
	b = bq_calloc(1, sizeof(*b));
	v = bq_realloc(s->bots, (size_t)(s->n_bots + 1) * sizeof(*v));
	if (!b || !v) {
		bq_free(b);
		if (v) {
			s->bots = v;
		}
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->bots = v;
	s->bots[s->n_bots++] = b;
	b->s = s;
	memcpy(b->name, spec, nlen);
	b->name[nlen] = '\0';
	b->node = (int)node;
	b->burst_next = 1;
	b->burst_end = 0;
	snprintf(path, sizeof(path), "%s/bots/%s.log", s->dir, b->name);
	b->log = fopen(path, "a");
	if (!b->log) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -errno;
	}
	bq_mclient_config_defaults(&cfg);
	snprintf(spec_addr, sizeof(spec_addr), "unix:%s", s->nodes[node - 1].sock);
	if (bq_addr_parse(spec_addr, &cfg.node, err, errlen) < 0) {
		return -EINVAL;
	}
	snprintf(hello, sizeof(hello), "bot %.58s", b->name);
	cfg.name = hello;
	cfg.auth = s->auth;
	/* Nodes restart in tests: come back quickly. */
	cfg.backoff_cap_ms = 2000;
	/*
	 * A retransmission may arrive after a whole burst (100,000 messages) has gone by;
	 * the duplicate set must still remember the original then.
	 */
	cfg.dedupe_capacity = 256 * 1024;
	b->mc = bq_mclient_new(s->loop, &cfg, &cbs, b, s->log);
	if (!b->mc) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->mu = bq_mclient_attach(b->mc, b->name, b->name, b);
	if (!b->mu) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bot_log(b, "start node=%d addr=%s", b->node, s->nodes[node - 1].mac_text);
	return bq_mclient_start(b->mc, err, errlen);
}

int sim_bots_start(struct sim *s, char *err, size_t errlen)
{
	char path[SIM_PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/bots", s->dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	for (size_t i = 0; i < s->cfg.bots.n; i++) {
		int rc = bot_new(s, s->cfg.bots.v[i], err, errlen);

		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

void sim_bots_stop(struct sim *s)
{
	for (int i = 0; i < s->n_bots; i++) {
		if (s->bots[i]->mc) {
			bq_mclient_stop(s->bots[i]->mc);
		}
	}
}

void sim_bots_free(struct sim *s)
{
	for (int i = 0; i < s->n_bots; i++) {
		struct sim_bot *b = s->bots[i];

		bq_mclient_free(b->mc);
		if (b->log) {
			fclose(b->log);
		}
		bq_free(b);
	}
	bq_free(s->bots);
	s->bots = NULL;
	s->n_bots = 0;
}

bool sim_bots_converged(struct sim *s)
{
	for (int i = 0; i < s->n_bots; i++) {
		struct sim_bot *b = s->bots[i];

		if (bq_muser_state(b->mu) != BQ_MU_READY) {
			return false;
		}
		for (int k = 0; k < s->n_bots; k++) {
			if (bq_mclient_dir_presence(b->mc, s->bots[k]->name) != BQ_PRES_ONLINE) {
				return false;
			}
		}
	}
	return true;
}

bool sim_bots_listed(struct sim *s, const char *users_json)
{
	json_error_t jerr;
	json_t *root = json_loads(users_json, 0, &jerr);
	json_t *users = root ? json_object_get(root, "users") : NULL;
	int found = 0;
	size_t i;
	json_t *u;

	if (!json_is_array(users)) {
		json_decref(root);
		return false;
	}
	for (int k = 0; k < s->n_bots; k++) {
		json_array_foreach(users, i, u) {
			const char *id = json_string_value(json_object_get(u, "id"));
			const char *pres = json_string_value(json_object_get(u, "presence"));

			if (id && pres && strcmp(id, s->bots[k]->name) == 0 &&
			    strcmp(pres, "online") == 0) {
				found++;
				break;
			}
		}
	}
	json_decref(root);
	return found == s->n_bots;
}

struct sim_bot *sim_bot_find(struct sim *s, const char *name)
{
	for (int i = 0; i < s->n_bots; i++) {
		if (strcmp(s->bots[i]->name, name) == 0) {
			return s->bots[i];
		}
	}
	return NULL;
}

void sim_bot_send(struct sim *s, struct sim_bot *b, const char *dst, const char *text, char *out,
		  size_t cap)
{
	bool bcast = strcmp(dst, "*") == 0;
	uint64_t id = 0;
	int rc = bq_muser_send(b->mu, bcast ? NULL : dst, text, strlen(text), 0, &id);

	if (rc < 0) {
		snprintf(out, cap, "error cannot send: %s",
			 rc == -EINVAL ? "invalid destination user id" :
			 rc == -EMSGSIZE ? "text too long" :
			 rc == -ENOBUFS ? "too many messages outstanding" : strerror(-rc));
		return;
	}
	b->sent++;
	bot_log(b, "sent msg_id=%016" PRIx64 " dst=%s", id, bcast ? "*" : dst);
	snprintf(out, cap, "ok msg_id=%016" PRIx64, id);
}

void sim_bot_burst(struct sim *s, struct sim_bot *b, const char *dst, int64_t count, char *out,
		   size_t cap)
{
	bool bcast = strcmp(dst, "*") == 0;

	if (count < 1 || count > BURST_MAX) {
		snprintf(out, cap, "error COUNT must be 1..%d", BURST_MAX);
		return;
	}
	if (!bcast && !bq_user_id_valid(dst, strlen(dst))) {
		snprintf(out, cap, "error invalid destination user id");
		return;
	}
	if (b->burst_next <= b->burst_end) {
		snprintf(out, cap, "error bot %s is still sending a burst (%" PRId64 " left)",
			 b->name, b->burst_end - b->burst_next + 1);
		return;
	}
	b->burst_bcast = bcast;
	snprintf(b->burst_dst, sizeof(b->burst_dst), "%s", bcast ? "" : dst);
	b->burst_next = 1;
	b->burst_end = count;
	burst_pump(b);
	snprintf(out, cap, "ok sent=%" PRId64, count);
}

void *sim_bots_json(struct sim *s)
{
	json_t *arr = json_array();

	for (int i = 0; arr && i < s->n_bots; i++) {
		struct sim_bot *b = s->bots[i];
		json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:s}",
				      "name", b->name, "node", b->node,
				      "state", bq_muser_state_name(bq_muser_state(b->mu)),
				      "link", bq_mclient_state_name(bq_mclient_state(b->mc)),
				      "sent", (json_int_t)b->sent,
				      "received", (json_int_t)b->received,
				      "acks", (json_int_t)b->acks,
				      "outstanding", (json_int_t)bq_muser_outstanding(b->mu),
				      "burst_left",
				      (json_int_t)(b->burst_end >= b->burst_next ?
						   b->burst_end - b->burst_next + 1 : 0),
				      "last_error", bq_mclient_last_error(b->mc));

		if (o) {
			json_array_append_new(arr, o);
		}
	}
	return arr;
}
