/* SPDX-License-Identifier: MIT */
/*
 * The simulator's control socket (line commands, one-line replies; docs/simulation.md)
 * and sim_request, the client side of the same one-line protocol, used to proxy
 * commands to a node's control socket and to probe nodes at start-up.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "proto/frame.h"
#include "sim.h"

#define CTL_LINE_MAX 65536
#define CTL_OUT_MAX (16 * 1024 * 1024)
#define CTL_REPLY_MAX (4 * 1024 * 1024)
#define NODE_PROXY_TIMEOUT_MS 5000

struct ctl_conn {
	struct sim *s;
	struct bq_conn *conn;
	struct bq_buf in;
	struct bq_buf out;
	bool busy;      /* a proxied request is in flight; later lines wait */
	bool gone;      /* the peer left while busy: free when the request ends */
	bool closing;   /* close once the output is written */
	bool eof;       /* the peer sent everything: answer it, then close */
	struct ctl_conn *prev, *next;
};

/* ---- sim_request: one line out, one line back -------------------------------------- */

struct request {
	struct sim *s;
	struct bq_conn *conn;
	struct bq_timer *timer;
	struct bq_buf reply;
	char *line;
	uint32_t timeout_ms;
	sim_request_cb done;
	void *ud;
};

static void request_finish(struct request *r, int err, const char *text)
{
	if (r->conn) {
		bq_conn_close(r->conn);
		r->conn = NULL;
	}
	bq_timer_free(r->timer);
	r->timer = NULL;
	r->done(r->ud, err, text);
	bq_buf_free(&r->reply);
	bq_free(r->line);
	bq_free(r);
}

static void request_timeout(struct bq_timer *t, void *ud)
{
	struct request *r = ud;
	char text[96];

	snprintf(text, sizeof(text), "no reply within %u ms", r->timeout_ms);
	request_finish(r, -ETIMEDOUT, text);
}

static void request_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct request *r = ud;

	if (events & BQ_CONN_ERROR) {
		char text[300];

		snprintf(text, sizeof(text), "%s", bq_conn_error_text(c));
		request_finish(r, bq_conn_error(c) ? bq_conn_error(c) : -EIO, text);
		return;
	}
	if (events & BQ_CONN_CONNECTED) {
		struct iovec iov[2] = {
			{ .iov_base = r->line, .iov_len = strlen(r->line) },
			{ .iov_base = "\n", .iov_len = 1 },
		};

		if (bq_conn_writev(c, iov, 2) != (ssize_t)(iov[0].iov_len + 1)) {
			request_finish(r, -EIO, "cannot send the command");
			return;
		}
	}
	if (!(events & BQ_CONN_READABLE)) {
		return;
	}
	for (;;) {
		int err = 0;
		uint8_t *dst = bq_buf_reserve(&r->reply, 4096, &err);
		ssize_t n;
		uint8_t *nl;

		if (!dst) {
			request_finish(r, -EMSGSIZE, "reply too long");
			return;
		}
		n = bq_conn_read(c, dst, 4096);
		if (n == -EAGAIN) {
			return;
		}
		if (n <= 0) {
			if (r->reply.len) {
				request_finish(r, 0, bq_buf_cstr(&r->reply));
			} else {
				request_finish(r, -ECONNRESET, "closed without a reply");
			}
			return;
		}
		bq_buf_commit(&r->reply, (size_t)n);
		nl = memchr(r->reply.data, '\n', r->reply.len);
		if (nl) {
			*nl = '\0';
			request_finish(r, 0, (const char *)r->reply.data);
			return;
		}
	}
}

int sim_request(struct sim *s, const char *path, const char *line, uint32_t timeout_ms,
		sim_request_cb done, void *ud)
{
	struct request *r = bq_calloc(1, sizeof(*r));
	char spec[SIM_PATH_MAX + 8], err[300];
	struct bq_addr a;
	int rc;

	if (!r) {
		return -ENOMEM;
	}
	r->s = s;
	r->done = done;
	r->ud = ud;
	r->timeout_ms = timeout_ms;
	bq_buf_init(&r->reply, CTL_REPLY_MAX);
	r->line = bq_strdup(line);
	r->timer = bq_timer_new(s->loop, request_timeout, r);
	snprintf(spec, sizeof(spec), "unix:%s", path);
	rc = !r->line || !r->timer ? -ENOMEM : bq_addr_parse(spec, &a, err, sizeof(err));
	if (rc == 0) {
		rc = bq_conn_connect(s->loop, &a, request_cb, r, &r->conn, err, sizeof(err));
	}
	if (rc < 0) {
		bq_timer_free(r->timer);
		bq_free(r->line);
		bq_free(r);
		return rc;
	}
	bq_timer_start(r->timer, timeout_ms);
	return 0;
}

/* ---- the control socket ------------------------------------------------------------ */

static void ctl_free(struct ctl_conn *cc)
{
	struct sim *s = cc->s;

	if (cc->conn) {
		bq_conn_close(cc->conn);
		cc->conn = NULL;
	}
	if (cc->prev) {
		cc->prev->next = cc->next;
	} else if (s->ctls == cc) {
		s->ctls = cc->next;
	}
	if (cc->next) {
		cc->next->prev = cc->prev;
	}
	cc->prev = cc->next = NULL;
	if (cc->busy) {
		cc->gone = true; /* the request's callback frees it */
		return;
	}
	bq_buf_free(&cc->in);
	bq_buf_free(&cc->out);
	bq_free(cc);
}

static void ctl_flush(struct ctl_conn *cc)
{
	while (cc->out.len && cc->conn) {
		struct iovec iov = { .iov_base = cc->out.data, .iov_len = cc->out.len };
		ssize_t n = bq_conn_writev(cc->conn, &iov, 1);

		if (n == -EAGAIN) {
			bq_conn_want_write(cc->conn, true);
			return;
		}
		if (n < 0) {
			ctl_free(cc);
			return;
		}
		bq_buf_consume(&cc->out, (size_t)n);
	}
	if (cc->conn) {
		bq_conn_want_write(cc->conn, false);
		if (cc->closing) {
			ctl_free(cc);
		}
	}
}

static void reply(struct ctl_conn *cc, const char *line)
{
	if (bq_buf_append(&cc->out, line, strlen(line)) < 0 ||
	    bq_buf_append(&cc->out, "\n", 1) < 0) {
		cc->closing = true; /* a peer that never reads loses its connection */
	}
}

static void replyf(struct ctl_conn *cc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void replyf(struct ctl_conn *cc, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	reply(cc, line);
}

static char *next_word(char **p)
{
	char *w;

	while (**p == ' ' || **p == '\t') {
		(*p)++;
	}
	if (!**p) {
		return NULL;
	}
	w = *p;
	while (**p && **p != ' ' && **p != '\t') {
		(*p)++;
	}
	if (**p) {
		*(*p)++ = '\0';
	}
	return w;
}

static char *rest(char **p)
{
	while (**p == ' ' || **p == '\t') {
		(*p)++;
	}
	return **p ? *p : NULL;
}

static struct sim_node *node_arg(struct ctl_conn *cc, char **p)
{
	char *w = next_word(p);
	int64_t n;

	if (!w || bq_opt_parse_int(w, &n) < 0 || n < 1 || n > cc->s->n_nodes) {
		replyf(cc, "error expected a node number 1..%d", cc->s->n_nodes);
		return NULL;
	}
	return &cc->s->nodes[n - 1];
}

static void cmd_status(struct ctl_conn *cc, char *args)
{
	struct sim *s = cc->s;
	json_t *root = json_object(), *nodes = json_array(), *edges = json_array();
	json_t *bots = sim_bots_json(s);
	char *text;

	for (int i = 0; i < s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];

		json_array_append_new(nodes, json_pack(
			"{s:i, s:s, s:s, s:I, s:b, s:i, s:s, s:s, s:s}", "index", n->idx, "name",
			n->name, "addr", n->mac_text, "pid", (json_int_t)(n->alive ? n->pid : 0),
			"alive", n->alive, "starts", (int)n->starts, "socket", n->sock, "control",
			n->ctl, "log", n->log));
	}
	for (int i = 0; i < s->n_edges; i++) {
		struct sim_edge *e = &s->edges[i];
		json_t *types = json_object();
		json_t *o = json_pack("{s:i, s:i, s:b, s:I, s:I, s:i}", "a", e->a, "b", e->b, "cut",
				      e->cut, "carried", (json_int_t)e->carried, "dropped",
				      (json_int_t)e->dropped, "links", (int)e->links);

		for (int t = 0; t < 16 && types; t++) {
			if (e->by_type[t]) {
				json_object_set_new(types, t && bq_frame_type_known((uint8_t)t) ?
							   bq_frame_type_name((uint8_t)t) : "other",
						    json_integer((json_int_t)e->by_type[t]));
			}
		}
		if (o && types) {
			json_object_set_new(o, "types", types);
		} else {
			json_decref(types);
		}
		json_array_append_new(edges, o);
	}
	json_object_set_new(root, "ready", json_boolean(s->ready));
	json_object_set_new(root, "nodes", nodes);
	json_object_set_new(root, "edges", edges);
	json_object_set_new(root, "bots", bots ? (json_t *)bots : json_array());
	json_object_set_new(root, "latency_ms", json_integer((json_int_t)s->latency_ms));
	json_object_set_new(root, "loss_percent", json_real(s->loss_ppm / 10000.0));
	json_object_set_new(root, "dir", json_string(s->dir));
	json_object_set_new(root, "addr_map", json_string(s->addr_map));
	text = json_dumps(root, JSON_COMPACT);
	reply(cc, text ? text : "error out of memory");
	free(text);
	json_decref(root);
}

static void cmd_cut_heal(struct ctl_conn *cc, char *args, bool cut)
{
	struct sim_node *a = node_arg(cc, &args), *b = a ? node_arg(cc, &args) : NULL;
	struct sim_edge *e;

	if (!a || !b) {
		return;
	}
	e = sim_edge_find(cc->s, a->idx, b->idx);
	if (!e) {
		replyf(cc, "error no edge between %d and %d", a->idx, b->idx);
		return;
	}
	if (cut) {
		sim_air_cut(cc->s, e);
		replyf(cc, "ok cut %d-%d", e->a, e->b);
	} else {
		e->cut = false;
		replyf(cc, "ok healed %d-%d", e->a, e->b);
	}
	bq_info(cc->s->log, "sim", "msg=\"edge %s\" edge=%d-%d", cut ? "cut" : "healed", e->a,
		e->b);
}

static void cmd_cut(struct ctl_conn *cc, char *args)
{
	cmd_cut_heal(cc, args, true);
}

static void cmd_heal(struct ctl_conn *cc, char *args)
{
	cmd_cut_heal(cc, args, false);
}

static void cmd_signal(struct ctl_conn *cc, char *args, int signo, const char *verb)
{
	struct sim_node *n = node_arg(cc, &args);
	int rc;

	if (!n) {
		return;
	}
	rc = sim_node_signal(cc->s, n, signo);
	if (rc == -ESRCH) {
		replyf(cc, "error node %d is not running", n->idx);
	} else if (rc < 0) {
		replyf(cc, "error cannot signal node %d: %s", n->idx, strerror(-rc));
	} else {
		replyf(cc, "ok %s %d pid=%ld", verb, n->idx, (long)n->pid);
	}
}

static void cmd_kill(struct ctl_conn *cc, char *args)
{
	cmd_signal(cc, args, SIGKILL, "killed");
}

static void cmd_stop(struct ctl_conn *cc, char *args)
{
	cmd_signal(cc, args, SIGTERM, "stopping");
}

static void cmd_start(struct ctl_conn *cc, char *args)
{
	struct sim_node *n = node_arg(cc, &args);
	char err[300];

	if (!n) {
		return;
	}
	sim_reap(cc->s); /* a node killed a moment ago may not be reaped yet */
	if (n->alive) {
		replyf(cc, "error node %d is already running (pid %ld)", n->idx, (long)n->pid);
		return;
	}
	if (sim_node_spawn(cc->s, n, err, sizeof(err)) < 0) {
		replyf(cc, "error %s", err);
		return;
	}
	replyf(cc, "ok started %d pid=%ld", n->idx, (long)n->pid);
}

static struct sim_bot *bot_arg(struct ctl_conn *cc, char **p)
{
	char *w = next_word(p);
	struct sim_bot *b = w ? sim_bot_find(cc->s, w) : NULL;

	if (!b) {
		replyf(cc, "error no bot named '%s'", w ? w : "");
	}
	return b;
}

static void cmd_bot_send(struct ctl_conn *cc, char *args)
{
	struct sim_bot *b = bot_arg(cc, &args);
	char *dst = b ? next_word(&args) : NULL;
	char *text = dst ? rest(&args) : NULL;
	char out[256];

	if (!b) {
		return;
	}
	if (!text) {
		reply(cc, "error usage: bot-send BOT DST|* TEXT");
		return;
	}
	sim_bot_send(cc->s, b, dst, text, out, sizeof(out));
	reply(cc, out);
}

static void cmd_bot_burst(struct ctl_conn *cc, char *args)
{
	struct sim_bot *b = bot_arg(cc, &args);
	char *dst = b ? next_word(&args) : NULL;
	char *count = dst ? next_word(&args) : NULL;
	int64_t n;
	char out[256];

	if (!b) {
		return;
	}
	if (!count || rest(&args) || bq_opt_parse_int(count, &n) < 0) {
		reply(cc, "error usage: bot-burst BOT DST|* COUNT");
		return;
	}
	sim_bot_burst(cc->s, b, dst, n, out, sizeof(out));
	reply(cc, out);
}

static void process_lines(struct ctl_conn *cc);

static void proxy_done(void *ud, int err, const char *text)
{
	struct ctl_conn *cc = ud;

	cc->busy = false;
	if (cc->gone) {
		ctl_free(cc);
		return;
	}
	if (err < 0) {
		replyf(cc, "error node did not answer: %s", text);
	} else {
		reply(cc, text);
	}
	process_lines(cc);
}

static void cmd_node(struct ctl_conn *cc, char *args)
{
	struct sim_node *n = node_arg(cc, &args);
	char *line = n ? rest(&args) : NULL;
	int rc;

	if (!n) {
		return;
	}
	if (!line) {
		reply(cc, "error usage: node N COMMAND");
		return;
	}
	if (!n->alive) {
		replyf(cc, "error node %d is not running", n->idx);
		return;
	}
	rc = sim_request(cc->s, n->ctl, line, NODE_PROXY_TIMEOUT_MS, proxy_done, cc);
	if (rc < 0) {
		replyf(cc, "error cannot reach node %d: %s", n->idx, strerror(-rc));
		return;
	}
	cc->busy = true;
}

static void cmd_latency(struct ctl_conn *cc, char *args)
{
	char *w = next_word(&args);
	uint64_t ms;

	if (!w || bq_opt_parse_duration(w, &ms) < 0 || ms > 60000) {
		reply(cc, "error usage: latency DURATION (0..60s, e.g. 20ms)");
		return;
	}
	cc->s->latency_ms = ms;
	replyf(cc, "ok latency_ms=%" PRIu64, ms);
}

static void cmd_loss(struct ctl_conn *cc, char *args)
{
	char *w = next_word(&args);
	uint32_t ppm;

	if (!w || sim_parse_percent(w, &ppm) < 0) {
		reply(cc, "error usage: loss PERCENT (0..100, e.g. 2.5)");
		return;
	}
	cc->s->loss_ppm = ppm;
	replyf(cc, "ok loss_percent=%u.%04u", ppm / 10000, ppm % 10000);
}

static void quit_deferred(void *ud)
{
	sim_shutdown(ud, 0);
}

static void cmd_quit(struct ctl_conn *cc, char *args)
{
	reply(cc, "ok bye");
	if (bq_loop_defer(cc->s->loop, quit_deferred, cc->s) < 0) {
		sim_shutdown(cc->s, 0);
	}
}

static const struct {
	const char *name;
	void (*fn)(struct ctl_conn *cc, char *args);
	const char *usage;
} commands[] = {
	{ "status", cmd_status, "status" },
	{ "cut", cmd_cut, "cut A B" },
	{ "heal", cmd_heal, "heal A B" },
	{ "kill", cmd_kill, "kill N" },
	{ "stop", cmd_stop, "stop N" },
	{ "start", cmd_start, "start N" },
	{ "bot-send", cmd_bot_send, "bot-send BOT DST|* TEXT" },
	{ "bot-burst", cmd_bot_burst, "bot-burst BOT DST|* COUNT" },
	{ "node", cmd_node, "node N COMMAND" },
	{ "latency", cmd_latency, "latency DURATION" },
	{ "loss", cmd_loss, "loss PERCENT" },
	{ "quit", cmd_quit, "quit" },
};

static void dispatch(struct ctl_conn *cc, char *line)
{
	char *p = line;
	char *cmd = next_word(&p);

	if (!cmd) {
		return;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, cmd) == 0) {
			commands[i].fn(cc, p);
			return;
		}
	}
	{
		char list[512];
		size_t o = 0;

		for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && o < sizeof(list);
		     i++) {
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "",
					      commands[i].usage);
		}
		replyf(cc, "error unknown command '%.64s' (commands: %s)", cmd, list);
	}
}

static void process_lines(struct ctl_conn *cc)
{
	while (!cc->busy && !cc->closing && cc->in.len) {
		uint8_t *nl = memchr(cc->in.data, '\n', cc->in.len);
		size_t len;

		if (!nl) {
			if (cc->in.len >= CTL_LINE_MAX) {
				reply(cc, "error line too long");
				cc->closing = true;
			}
			break;
		}
		len = (size_t)(nl - cc->in.data);
		*nl = '\0';
		if (len && cc->in.data[len - 1] == '\r') {
			cc->in.data[len - 1] = '\0';
		}
		dispatch(cc, (char *)cc->in.data);
		bq_buf_consume(&cc->in, len + 1);
	}
	if (cc->eof && !cc->busy) {
		cc->closing = true; /* answered everything the peer asked */
	}
	ctl_flush(cc);
}

static void ctl_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct ctl_conn *cc = ud;

	if (events & BQ_CONN_ERROR) {
		ctl_free(cc);
		return;
	}
	if ((events & BQ_CONN_READABLE) && !cc->eof) {
		for (;;) {
			int err = 0;
			uint8_t *dst;
			ssize_t n;

			if (cc->in.len >= CTL_LINE_MAX) {
				break; /* a command is pending or too long: process first */
			}
			dst = bq_buf_reserve(&cc->in, CTL_LINE_MAX - cc->in.len, &err);
			if (!dst) {
				ctl_free(cc);
				return;
			}
			n = bq_conn_read(c, dst, CTL_LINE_MAX - cc->in.len);
			if (n == -EAGAIN) {
				break;
			}
			if (n <= 0) {
				cc->eof = true;
				break;
			}
			bq_buf_commit(&cc->in, (size_t)n);
		}
		process_lines(cc);
		return;
	}
	if (events & BQ_CONN_WRITABLE) {
		ctl_flush(cc);
	}
}

static void ctl_accept(struct bq_listener *l, struct bq_conn *c, void *ud)
{
	struct sim *s = ud;
	struct ctl_conn *cc = bq_calloc(1, sizeof(*cc));

	if (!cc) {
		bq_conn_close(c);
		return;
	}
	cc->s = s;
	cc->conn = c;
	bq_buf_init(&cc->in, CTL_LINE_MAX);
	bq_buf_init(&cc->out, CTL_OUT_MAX);
	cc->next = s->ctls;
	if (cc->next) {
		cc->next->prev = cc;
	}
	s->ctls = cc;
	bq_conn_set_cb(c, ctl_cb, cc);
}

int sim_ctl_start(struct sim *s, char *err, size_t errlen)
{
	char spec[SIM_PATH_MAX + 8];
	struct bq_addr a;
	int rc;

	snprintf(spec, sizeof(spec), "unix:%s", s->control);
	rc = bq_addr_parse(spec, &a, err, errlen);
	if (rc < 0) {
		return rc;
	}
	return bq_listener_new(s->loop, &a, ctl_accept, s, &s->ctl_lis, err, errlen);
}

void sim_ctl_stop(struct sim *s)
{
	bq_listener_free(s->ctl_lis);
	s->ctl_lis = NULL;
	while (s->ctls) {
		struct ctl_conn *cc = s->ctls;

		ctl_flush(cc);
		if (s->ctls == cc) {
			ctl_free(cc);
		}
	}
}
