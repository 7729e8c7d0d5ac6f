/* SPDX-License-Identifier: MIT */
/*
 * bench_manager: blueq-manager against real blueq-node processes.
 *
 *     bench_manager BIN_DIR        (BIN_DIR holds blueq-node and blueq-manager)
 *     BENCH_SESSIONS=N             sessions for the scale phases (default 10000)
 *     BENCH_KEEP=1                 keep the temporary directory (logs) at the end
 *     BENCH_NODE_LOG=LEVEL         the nodes' --log-level (default warn)
 *     BENCH_PHASES=a,b             only these of sessions (= shared,dedicated), throughput,
 *                                  latency, http
 *
 * Everything runs below a private temporary directory: the nodes listen on UNIX
 * sockets there, the manager is pointed at Odin with unix:/path, has no backend and
 * an API port chosen by the kernel (read from its "listening" log line). All HTTP load
 * goes through lib/http/client (libcurl multi on bq_loop); receivers are MeshClient
 * engines in this process, so one clock times a POST and the arrival it causes.
 *
 * Phases: N sessions in shared and in dedicated link mode (time to ready, RSS per idle
 * session, Odin SIGKILL + restart), send throughput manager -> Odin -> peer (durable
 * and --sync-normal commits), API-to-destination latency over a 4-node line (1 and 3
 * hops), and GET /api/status requests per second. Prints a table beside the targets
 * of ARCHITECTURE.md section 9. A benchmark, not a test: it never fails on a slow
 * figure; every wait has a deadline and a row says "timed out" rather than hanging.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "common.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/opt.h"
#include "http/client.h"
#include "loop/loop.h"
#include "mesh/client.h"
#include "transport/addr.h"

#define PROG "bench_manager"
#define ODIN_MAC "D8:3A:DD:03:1E:77"
#define LINE_NODES 4	 /* phase 5: node 1 (Odin) - node 2 - node 3 - node 4 */
#define WINDOW 256	 /* HTTP requests in flight for bulk load */
#define SEND_COUNT 50000 /* phase 4 */
#define SEND_BATCH 100	 /* messages per POST /api/send/batch in phase 4b */
#define BATCH_WINDOW 16	 /* batch requests in flight */
#define LAT_SAMPLES 1000 /* phase 5, per receiver */
#define LAT_WARMUP 20	 /* not counted: first dials, page cache, JIT-free warm-up */
#define LAT_MSG_MAX_US 2000000ull
#define HTTP_CONC 64 /* phase 6 */
/*
 * lib/http/client opens at most 16 connections per client (MAX_CONNECTIONS in
 * client.c) and queues the rest inside libcurl, so "256 in flight" takes 16 clients.
 */
#define CLIENT_CONNS 16
#define MAX_CLIENTS (WINDOW / CLIENT_CONNS)
#define HTTP_SECONDS 3
#define HTTP_SESSIONS 100
#define POLL_MS 20
#define ARGS_MAX BENCH_ARGS_MAX
#define PATHLEN 320
#define SEC 1000000ull

/* Repeated GETs of /api/status?clients=0 or /metrics, at most one in flight. */
struct poller {
	bool active, busy, metrics;
	uint64_t next_us;
	uint64_t sent_us;  /* start of the request in flight */
	uint64_t asked_us; /* start of the request whose answer is below */
	uint64_t at_us;	   /* when that answer arrived */
	uint64_t answers, errors;
	int64_t ready, total, dials, peak_rate, rate_limit; /* status */
	int64_t delivered, accepted, failed;		    /* metrics */
};

/* A receiver engine in this process, attached at a chosen node. */
struct rx {
	const char *user;
	struct bq_mclient *mc;
	struct bq_muser *mu;
	bool ready;
	uint64_t received;
	uint64_t last_us;
	char last_text[32];
};

struct bench;
struct load;
typedef size_t (*load_make_fn)(struct load *l, uint64_t i, char *body, size_t cap);

/* A closed-loop HTTP load: total requests (0: until end_us), at most window in flight. */
struct load {
	struct bench *b;
	struct bq_http_client *cli[MAX_CLIENTS];
	unsigned ncli, next_cli;
	const char *method;
	char url[160];
	load_make_fn make;
	const char *prefix;
	uint64_t total, end_us;
	uint32_t window, inflight;
	int ok_status, ok_alt;
	bool retry_busy; /* re-issue requests answered 503 */
	uint64_t *redo;
	size_t n_redo;
	uint64_t issued, ok, ok_in_window, busy, failed;
	uint64_t t_first_us, t_last_ok_us;
	int last_bad;
	char last_body[120];
	bool stop;
};

struct bench {
	char bin_dir[PATH_MAX];
	char dir[256]; /* short: UNIX socket paths below it must fit in 108 bytes */
	unsigned sessions;
	struct bq_log *log;
	struct bq_loop *loop;
	struct bq_http_client *ctl; /* polls and one-off requests */
	struct bench_proc nodes[LINE_NODES];
	struct bench_proc mgr;
	int mgr_runs;
	char url[64];
	struct poller poll;
	struct load *load;
	char died[PATHLEN + 100];
	uint64_t next_alive_check;
	struct bench_rows rows;
	bool failed; /* keep the directory for the logs */
};

/* For the exit path: children are killed whatever way main ends. */
static struct bench *g_bench;

static void cleanup(void)
{
	struct bench *b = g_bench;

	if (!b) {
		return;
	}
	for (int i = 0; i < LINE_NODES; i++) {
		if (b->nodes[i].pid > 0) {
			kill(b->nodes[i].pid, SIGKILL);
			waitpid(b->nodes[i].pid, NULL, 0);
			b->nodes[i].pid = 0;
		}
	}
	if (b->mgr.pid > 0) {
		kill(b->mgr.pid, SIGKILL);
		waitpid(b->mgr.pid, NULL, 0);
		b->mgr.pid = 0;
	}
	if (b->failed || getenv("BENCH_KEEP")) {
		fprintf(stderr, PROG ": logs kept in %s\n", b->dir);
	} else if (b->dir[0]) {
		bench_rm_tree(b->dir);
	}
}

static void on_fatal_signal(int signo)
{
	/* The children follow through PR_SET_PDEATHSIG; restore and re-raise. */
	signal(signo, SIG_DFL);
	raise(signo);
}

static uint64_t vmrss_kib(pid_t pid)
{
	char path[64], line[256];
	uint64_t kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f) {
		return 0;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			int64_t v;

			if (bench_leading_int(line + 6, &v, NULL) && v >= 0) {
				kib = (unsigned long long)v;
			}
			break;
		}
	}
	fclose(f);
	return kib;
}

/* Node i (1-based; 1 is Odin) listening on n<i>.sock, dialing n<i+1>.sock if neighbour. */
static void node_setup(struct bench *b, int i, bool neighbour)
{
	struct bench_proc *p = &b->nodes[i - 1];
	char addr[32], listen[PATHLEN], ctl[PATHLEN], key[PATHLEN], neigh[PATHLEN], maxc[24];
	const char *argv[ARGS_MAX + 1];
	int a = 0;
	char bin[PATH_MAX + 32];

	snprintf(bin, sizeof(bin), "%s/blueq-node", b->bin_dir);
	snprintf(p->name, sizeof(p->name), i == 1 ? "Odin" : "node %d", i);
	snprintf(p->log, sizeof(p->log), "%s/n%d.log", b->dir, i);
	snprintf(addr, sizeof(addr), i == 1 ? ODIN_MAC : "02:00:00:00:00:%02d", i);
	snprintf(listen, sizeof(listen), "unix:%s/n%d.sock", b->dir, i);
	snprintf(ctl, sizeof(ctl), "%s/n%d.ctl", b->dir, i);
	snprintf(key, sizeof(key), "%s/network.key", b->dir);
	snprintf(neigh, sizeof(neigh), "unix:%s/n%d.sock", b->dir, i + 1);
	snprintf(maxc, sizeof(maxc), "%u", b->sessions + 1000 > 20000 ? b->sessions + 1000 : 20000);
	argv[a++] = bin;
	argv[a++] = "--addr";
	argv[a++] = addr;
	argv[a++] = "--listen";
	argv[a++] = listen;
	argv[a++] = "--control";
	argv[a++] = ctl;
	argv[a++] = "--key-file";
	argv[a++] = key;
	argv[a++] = "--announce-interval";
	argv[a++] = "1s";
	argv[a++] = "--max-clients";
	argv[a++] = maxc;
	argv[a++] = "--log-level";
	argv[a++] = getenv("BENCH_NODE_LOG") ? getenv("BENCH_NODE_LOG") : "warn";
	if (neighbour) {
		argv[a++] = "--neighbour";
		argv[a++] = neigh;
	}
	argv[a] = NULL;
	bench_proc_set_args(p, argv);
}

/* Start node i and wait (bounded) until its control socket answers. */
static void node_start(struct bench *b, int i)
{
	struct bench_proc *p = &b->nodes[i - 1];
	char ctl[PATHLEN];
	uint64_t end = bench_now_us() + 10 * SEC;

	bench_proc_start(p);
	snprintf(ctl, sizeof(ctl), "%s/n%d.ctl", b->dir, i);
	while (!bench_unix_probe(ctl)) {
		if (!bench_proc_alive(p, NULL)) {
			bench_die("%s exited at start (see %s)", p->name, p->log);
		}
		if (bench_now_us() > end) {
			bench_die("%s did not come up within 10 s (see %s)", p->name, p->log);
		}
		usleep(10000);
	}
}

/* ---- HTTP: polls, one-off requests and loads -------------------------------------- */

static int64_t json_int_at(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static bool metric_value(const char *body, const char *name, int64_t *out)
{
	const char *p = body;
	size_t n = strlen(name);

	while ((p = strstr(p, name)) != NULL) {
		if ((p == body || p[-1] == '\n') && p[n] == ' ') {
			int64_t v;

			if (bench_leading_int(p + n + 1, &v, NULL)) {
				*out = v;
				return true;
			}
			return false;
		}
		p += n;
	}
	return false;
}

static void poll_cb(int status, const char *body, size_t len, void *ud)
{
	struct poller *p = ud;
	json_t *doc, *st;

	p->busy = false;
	if (status == -ECANCELED) {
		return;
	}
	if (status != 200) {
		p->errors++;
		return;
	}
	if (p->metrics) {
		metric_value(body, "blueq_messages_total{state=\"delivered\"}", &p->delivered);
		metric_value(body, "blueq_messages_total{state=\"accepted\"}", &p->accepted);
		metric_value(body, "blueq_messages_total{state=\"failed\"}", &p->failed);
	} else {
		doc = json_loadb(body, len, 0, NULL);
		st = doc ? json_object_get(doc, "stats") : NULL;
		if (!st) {
			p->errors++;
			json_decref(doc);
			return;
		}
		p->ready = json_int_at(st, "ready");
		p->total = json_int_at(st, "total");
		p->dials = json_int_at(st, "dials");
		p->peak_rate = json_int_at(st, "peak_connect_rate");
		p->rate_limit = json_int_at(st, "connect_rate_limit");
		json_decref(doc);
	}
	p->asked_us = p->sent_us;
	p->at_us = bench_now_us();
	p->answers++;
}

static void poll_begin(struct bench *b, bool metrics)
{
	struct poller *p = &b->poll;

	if (p->busy) {
		/* One in flight from the previous target: let it land first (bounded). */
		uint64_t end = bench_now_us() + 5 * SEC;

		while (p->busy && bench_now_us() < end) {
			bq_loop_run_once(b->loop, 10);
		}
	}
	memset(p, 0, sizeof(*p));
	p->active = true;
	p->metrics = metrics;
	p->ready = p->total = -1;
}

static void poll_tick(struct bench *b)
{
	struct poller *p = &b->poll;
	struct bq_http_request req = {.method = "GET"};
	char url[200];
	uint64_t t = bench_now_us();

	if (!p->active || p->busy || t < p->next_us) {
		return;
	}
	snprintf(url, sizeof(url), "%s%s", b->url,
		 p->metrics ? "/metrics" : "/api/status?clients=0");
	req.url = url;
	req.timeout_ms = 10000;
	p->next_us = t + POLL_MS * 1000;
	p->sent_us = t;
	if (bq_http_client_request(b->ctl, &req, poll_cb, p, NULL) == 0) {
		p->busy = true;
	}
}

static void load_cb(int status, const char *body, size_t len, void *ud);

struct load_call {
	struct load *l;
	uint64_t i;
};

static struct load *load_new(struct bench *b, const char *method, const char *path, uint64_t total,
			     uint32_t window, unsigned ncli)
{
	struct load *l = bq_calloc(1, sizeof(*l));
	struct bq_http_client_config cfg;

	if (!l) {
		bench_die("out of memory");
	}
	if (ncli < 1 || ncli > MAX_CLIENTS) {
		ncli = ncli < 1 ? 1 : MAX_CLIENTS;
	}
	bq_http_client_config_defaults(&cfg);
	cfg.max_calls = (window + ncli - 1) / ncli;
	cfg.max_response = 64u << 20;
	l->b = b;
	l->method = method;
	snprintf(l->url, sizeof(l->url), "%s%s", b->url, path);
	l->total = total;
	l->window = window;
	l->ok_status = 200;
	l->ncli = ncli;
	for (unsigned i = 0; i < ncli; i++) {
		l->cli[i] = bq_http_client_new(b->loop, b->log, &cfg);
		if (!l->cli[i]) {
			bench_die("cannot create an HTTP client");
		}
	}
	l->redo = bq_calloc(window, sizeof(*l->redo));
	if (!l->redo) {
		bench_die("out of memory");
	}
	return l;
}

static void load_free(struct load *l)
{
	if (!l) {
		return;
	}
	l->stop = true;
	for (unsigned i = 0; i < l->ncli; i++) {
		bq_http_client_free(l->cli[i]); /* calls still running report -ECANCELED */
	}
	bq_free(l->redo);
	bq_free(l);
}

/* One request body at a time is built (single thread); batches need room. */
static char load_body[128 * 1024];

static void load_refill(struct load *l)
{
	char *body = load_body;

	while (!l->stop && l->inflight < l->window) {
		struct bq_http_request req = {.method = l->method, .timeout_ms = 30000};
		struct load_call *c;
		bool redo = l->n_redo > 0;
		uint64_t i;
		size_t len = 0;
		int rc = -EAGAIN;

		if (l->end_us && bench_now_us() >= l->end_us) {
			break;
		}
		if (redo) {
			i = l->redo[l->n_redo - 1];
		} else if (l->total && l->issued >= l->total) {
			break;
		} else {
			i = l->issued;
		}
		if (l->make) {
			len = l->make(l, i, body, sizeof(load_body));
		}
		req.url = l->url;
		req.body = len ? body : NULL;
		req.body_len = len;
		c = bq_malloc(sizeof(*c));
		if (!c) {
			bench_die("out of memory");
		}
		c->l = l;
		c->i = i;
		if (!l->t_first_us) {
			l->t_first_us = bench_now_us();
		}
		for (unsigned k = 0; k < l->ncli && rc == -EAGAIN; k++) {
			rc = bq_http_client_request(l->cli[l->next_cli++ % l->ncli], &req, load_cb,
						    c, NULL);
		}
		if (rc < 0) {
			bq_free(c);
			if (rc != -EAGAIN) {
				l->failed++;
				l->last_bad = rc;
				l->stop = true;
			}
			break;
		}
		if (redo) {
			l->n_redo--;
		} else {
			l->issued++;
		}
		l->inflight++;
	}
}

static void load_cb(int status, const char *body, size_t len, void *ud)
{
	struct load_call *c = ud;
	struct load *l = c->l;
	uint64_t t = bench_now_us();

	l->inflight--;
	if (status == -ECANCELED) {
		bq_free(c);
		return;
	}
	if (status == l->ok_status || (l->ok_alt && status == l->ok_alt)) {
		l->ok++;
		if (!l->end_us || t <= l->end_us) {
			l->ok_in_window++;
		}
		l->t_last_ok_us = t;
	} else if (status == 503 && l->retry_busy && l->n_redo < l->window) {
		l->busy++;
		l->redo[l->n_redo++] = c->i;
	} else {
		l->failed++;
		l->last_bad = status;
		snprintf(l->last_body, sizeof(l->last_body), "%.100s", body ? body : "");
	}
	bq_free(c);
}

static bool load_finished(const struct load *l)
{
	if (l->inflight || l->n_redo) {
		return false;
	}
	if (l->stop) {
		return true;
	}
	if (l->end_us) {
		return bench_now_us() >= l->end_us;
	}
	return l->issued >= l->total;
}

/*
 * Run the loop until done(ud) or the deadline, keeping the load fed and the poll going.
 * False on the deadline or when the manager or a node died (b->died says which).
 */
static bool run_until(struct bench *b, bool (*done)(struct bench *b, void *ud), void *ud,
		      uint64_t deadline_us)
{
	for (;;) {
		uint64_t t;

		if (done(b, ud)) {
			return true;
		}
		t = bench_now_us();
		if (t >= deadline_us) {
			return false;
		}
		if (t >= b->next_alive_check) {
			int st = 0;

			b->next_alive_check = t + 100000;
			if (b->mgr.argv[0] && b->mgr.pid > 0 && !bench_proc_alive(&b->mgr, &st)) {
				snprintf(b->died, sizeof(b->died), "manager died (%s %d; see %s)",
					 WIFSIGNALED(st) ? "signal" : "exit status",
					 WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
					 b->mgr.log);
				bench_say("%s", b->died);
				return false;
			}
			for (int i = 0; i < LINE_NODES; i++) {
				if (b->nodes[i].pid > 0 && !bench_proc_alive(&b->nodes[i], &st)) {
					snprintf(b->died, sizeof(b->died), "%s died (see %s)",
						 b->nodes[i].name, b->nodes[i].log);
					bench_say("%s", b->died);
					return false;
				}
			}
		}
		if (b->load) {
			load_refill(b->load);
		}
		poll_tick(b);
		bq_loop_run_once(b->loop, 5);
	}
}

static bool idle_done(struct bench *b, void *ud)
{
	return false;
}

/* Let the loop (receivers, HTTP) run for ms without waiting for anything. */
static void run_for(struct bench *b, uint64_t ms)
{
	run_until(b, idle_done, NULL, bench_now_us() + ms * 1000);
}

struct sync_call {
	bool done;
	int status;
	char *body;
	size_t len;
};

static void sync_cb(int status, const char *body, size_t len, void *ud)
{
	struct sync_call *s = ud;

	s->done = true;
	s->status = status;
	if (body) {
		s->body = bq_malloc(len + 1);
		if (s->body) {
			memcpy(s->body, body, len + 1);
			s->len = len;
		}
	}
}

static bool sync_done(struct bench *b, void *ud)
{
	return ((struct sync_call *)ud)->done;
}

/* One request on the control client, waited for (bounded). Status or negative errno. */
static int http_do(struct bench *b, const char *method, const char *path, const char *body,
		   char **resp, size_t *resp_len)
{
	struct bq_http_request req = {.method = method,
				      .body = body,
				      .body_len = body ? strlen(body) : 0,
				      .timeout_ms = 10000};
	struct sync_call s = {0};
	char url[256];
	int rc;

	snprintf(url, sizeof(url), "%s%s", b->url, path);
	req.url = url;
	rc = bq_http_client_request(b->ctl, &req, sync_cb, &s, NULL);
	if (rc < 0) {
		return rc;
	}
	if (!run_until(b, sync_done, &s, bench_now_us() + 15 * SEC)) {
		/* The call is still running; it must not write into s after we return. */
		while (!s.done) {
			bq_loop_run_once(b->loop, 100);
		}
	}
	if (resp) {
		*resp = s.body;
		if (resp_len) {
			*resp_len = s.len;
		}
	} else {
		bq_free(s.body);
	}
	return s.status;
}

/* ---- the manager ------------------------------------------------------------------- */

static void mgr_start(struct bench *b, const char *mode, bool sync_normal)
{
	struct bench_proc *p = &b->mgr;
	char bin[PATH_MAX + 32], odin[PATHLEN], data[PATHLEN];
	const char *argv[ARGS_MAX + 1];
	uint64_t end = bench_now_us() + 10 * SEC;
	int a = 0;

	b->mgr_runs++;
	snprintf(bin, sizeof(bin), "%s/blueq-manager", b->bin_dir);
	snprintf(odin, sizeof(odin), "unix:%s/n1.sock", b->dir);
	snprintf(data, sizeof(data), "%s/mgr%d", b->dir, b->mgr_runs);
	if (mkdir(data, 0700) < 0 && errno != EEXIST) {
		bench_die("mkdir %s: %s", data, strerror(errno));
	}
	snprintf(p->name, sizeof(p->name), "manager");
	snprintf(p->log, sizeof(p->log), "%s/mgr%d.log", b->dir, b->mgr_runs);
	argv[a++] = bin;
	argv[a++] = odin;
	argv[a++] = "--backend-url";
	argv[a++] = "";
	argv[a++] = "--api-port";
	argv[a++] = "0";
	argv[a++] = "--data-dir";
	argv[a++] = data;
	argv[a++] = "--link-mode";
	argv[a++] = mode;
	if (sync_normal) {
		argv[a++] = "--sync-normal";
	}
	argv[a] = NULL;
	bench_proc_set_args(p, argv);
	bench_proc_start(p);

	/* The port is in the log line msg="listening" on=http://127.0.0.1:PORT. */
	for (;;) {
		static const char key[] = "msg=\"listening\" on=http://127.0.0.1:";
		char buf[65536];
		int fd = open(p->log, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		const char *at;

		if (fd >= 0) {
			close(fd);
		}
		buf[n > 0 ? n : 0] = '\0';
		at = strstr(buf, key);
		if (at) {
			int64_t port;

			if (!bench_leading_int(at + sizeof(key) - 1, &port, NULL) || port <= 0 ||
			    port > 65535) {
				bench_die("cannot read the API port from %s", p->log);
			}
			snprintf(b->url, sizeof(b->url), "http://127.0.0.1:%" PRId64, port);
			return;
		}
		if (!bench_proc_alive(p, NULL)) {
			bench_die("the manager exited at start (see %s)", p->log);
		}
		if (bench_now_us() > end) {
			bench_die("the manager did not log \"listening\" within 10 s (see %s)",
				  p->log);
		}
		usleep(20000);
	}
}

static void mgr_stop(struct bench *b)
{
	uint64_t t = bench_now_us();

	poll_begin(b, false);
	b->poll.active = false;
	if (b->mgr.pid > 0 && !bench_proc_stop(&b->mgr, SIGTERM, 5000)) {
		bench_say("note: the manager did not exit within 5 s of SIGTERM; killed (see %s)",
			  b->mgr.log);
	} else if (bench_now_us() - t > 2 * SEC) {
		bench_say("note: the manager took %.1f s to exit on SIGTERM",
			  (bench_now_us() - t) / 1e6);
	}
	b->mgr.argv[0] = NULL;
}

static bool ready_at_least(struct bench *b, void *ud)
{
	const int64_t *want = ud;

	return b->poll.answers && b->poll.ready >= *want;
}

struct ready_after {
	int64_t want;
	uint64_t after_us;
	bool at_most; /* ready <= want instead of >= */
};

static bool ready_after_done(struct bench *b, void *ud)
{
	const struct ready_after *r = ud;

	if (!b->poll.answers || b->poll.asked_us < r->after_us) {
		return false;
	}
	return r->at_most ? b->poll.ready <= r->want : b->poll.ready >= r->want;
}

/* POST /api/connect for one user and wait until `want` sessions are ready. */
static bool connect_one(struct bench *b, const char *user, int64_t want)
{
	char body[160];
	int st;

	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"user_name\":\"%s\"}", user, user);
	st = http_do(b, "POST", "/api/connect", body, NULL, NULL);
	if (st != 202 && st != 200) {
		bench_say("POST /api/connect %s answered %d", user, st);
		return false;
	}
	poll_begin(b, false);
	return run_until(b, ready_at_least, &want, bench_now_us() + 15 * SEC);
}

static size_t make_connect(struct load *l, uint64_t i, char *body, size_t cap)
{
	int n = snprintf(body, cap,
			 "{\"user_id\":\"%s%06" PRIu64 "\",\"user_name\":\"Bench %" PRIu64 "\"}",
			 l->prefix, i, i);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* ---- receivers in this process ----------------------------------------------------- */

static void rx_user_state(struct bq_muser *u, enum bq_muser_state st, const char *reason, void *ud)
{
	struct rx *r = ud;

	r->ready = st == BQ_MU_READY;
	if (st == BQ_MU_REJECTED) {
		bench_say("receiver %s rejected: %s", r->user, reason ? reason : "");
	}
}

static void rx_message(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	struct rx *r = ud;
	size_t n = f->payload_len < sizeof(r->last_text) - 1 ? f->payload_len
							     : sizeof(r->last_text) - 1;

	r->last_us = bench_now_us();
	r->received++;
	memcpy(r->last_text, f->payload, n);
	r->last_text[n] = '\0';
}

static bool rx_ready_done(struct bench *b, void *ud)
{
	return ((struct rx *)ud)->ready;
}

static void rx_start(struct bench *b, struct rx *r, const char *user, int node)
{
	struct bq_mclient_config cfg;
	struct bq_mclient_cbs cbs = {.user_state = rx_user_state, .message = rx_message};
	char addr[PATHLEN], err[300];

	memset(r, 0, sizeof(*r));
	r->user = user;
	bq_mclient_config_defaults(&cfg);
	snprintf(addr, sizeof(addr), "unix:%s/n%d.sock", b->dir, node);
	if (bq_addr_parse(addr, &cfg.node, err, sizeof(err)) < 0) {
		bench_die("%s", err);
	}
	cfg.name = "bench-rx";
	cfg.dedupe_capacity = 65536;
	r->mc = bq_mclient_new(b->loop, &cfg, &cbs, r, b->log);
	r->mu = r->mc ? bq_mclient_attach(r->mc, user, user, r) : NULL;
	if (!r->mu || bq_mclient_start(r->mc, err, sizeof(err)) < 0) {
		bench_die("cannot start the receiver %s", user);
	}
	if (!run_until(b, rx_ready_done, r, bench_now_us() + 10 * SEC)) {
		bench_die("receiver %s not ready at node %d within 10 s %s", user, node, b->died);
	}
}

static void rx_stop(struct bench *b, struct rx *r)
{
	uint64_t end = bench_now_us() + SEC;

	if (!r->mc) {
		return;
	}
	bq_mclient_stop(r->mc);
	while (bq_mclient_busy(r->mc) && bench_now_us() < end) {
		bq_loop_run_once(b->loop, 10);
	}
	bq_mclient_free(r->mc);
	r->mc = NULL;
	r->mu = NULL;
}

/* ---- phases 1-3: sessions, memory, Odin restart ---------------------------------- */

static double mib(uint64_t kib)
{
	return kib / 1024.0;
}

static void phase_sessions(struct bench *b, bool dedicated)
{
	const char *mode = dedicated ? "dedicated" : "shared";
	int64_t n = b->sessions;
	uint64_t rss0, rss1, rss2, odin_rss, t_ready, t_kill, t_down = 0, t_restart, dials0;
	uint64_t deadline_s = 30 + (uint64_t)n / 500;
	struct ready_after ra;
	struct load *l;
	char what[200];
	bool ok;

	if (dedicated) {
		struct rlimit rl;

		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
		    rl.rlim_max < (rlim_t)n + 256) {
			char why[80];

			snprintf(why, sizeof(why), "not measured: descriptor limit %llu",
				 (unsigned long long)rl.rlim_max);
			snprintf(what, sizeof(what),
				 "dedicated: %" PRId64
				 " sessions, first POST /api/connect -> all ready",
				 n);
			bench_add_row(&b->rows, what, "-", "%s", why);
			bench_add_row(&b->rows, "dedicated: RSS per idle session",
				      "(shared: <= 4 KiB)", "%s", why);
			bench_add_row(&b->rows,
				      "dedicated: Odin SIGKILL + restart -> all ready again",
				      "<= 5 s for 10,000", "%s", why);
			return;
		}
	}
	bench_say("%s mode: %" PRId64 " sessions", mode, n);
	node_setup(b, 1, false);
	node_start(b, 1);
	mgr_start(b, mode, false);
	run_for(b, 300);
	rss0 = vmrss_kib(b->mgr.pid);

	/* 1/2: connect N users, 256 POSTs in flight; poll stats.ready every 20 ms. */
	poll_begin(b, false);
	l = load_new(b, "POST", "/api/connect", (uint64_t)n, WINDOW, MAX_CLIENTS);
	l->make = make_connect;
	l->prefix = dedicated ? "d" : "s";
	l->ok_status = 202;
	l->ok_alt = 200;
	b->load = l;
	b->died[0] = '\0';
	ok = run_until(b, ready_at_least, &n, bench_now_us() + deadline_s * SEC);
	t_ready = b->poll.at_us;
	snprintf(what, sizeof(what),
		 "%s: %" PRId64 " sessions, first POST /api/connect -> stats.ready == N", mode, n);
	if (ok) {
		bench_add_row(
			&b->rows, what, "- (per session: p99 <= 20 ms)",
			"%.2f s (%.0f sessions/s; all %" PRIu64 " POSTs answered after %.2f s%s)",
			(t_ready - l->t_first_us) / 1e6, n / ((t_ready - l->t_first_us) / 1e6),
			l->ok, (l->t_last_ok_us - l->t_first_us) / 1e6,
			l->failed ? ", some POSTs failed" : "");
	} else {
		bench_add_row(&b->rows, what, "- (per session: p99 <= 20 ms)",
			      "%s after %" PRIu64 " s (ready %" PRId64 " of %" PRId64 ", %" PRIu64
			      " POSTs answered OK, %" PRIu64 " failed, %" PRId64 " dials)",
			      b->died[0] ? b->died : "timed out", deadline_s, b->poll.ready, n,
			      l->ok, l->failed, b->poll.dials);
	}
	if (l->failed) {
		bench_say("%s: %" PRIu64 " connect POSTs failed; last status %d: %s", mode,
			  l->failed, l->last_bad, l->last_body);
	}
	b->load = NULL;
	load_free(l);
	if (!ok) {
		snprintf(what, sizeof(what), "%s: manager RSS per idle session", mode);
		bench_add_row(
			&b->rows, what, dedicated ? "(shared only: <= 4 KiB)" : "<= 4 KiB",
			"not measured: the sessions never were all ready (RSS now %.1f MiB, Odin "
			"%.1f MiB)",
			mib(vmrss_kib(b->mgr.pid)), mib(vmrss_kib(b->nodes[0].pid)));
		snprintf(what, sizeof(what), "%s: Odin SIGKILL + restart -> all ready again", mode);
		bench_add_row(&b->rows, what, "<= 5 s for 10,000",
			      "not measured: the sessions never were all ready");
		goto out;
	}

	/* Memory: RSS after 2 s idle, minus RSS before the first connect. */
	run_for(b, 2000);
	rss1 = vmrss_kib(b->mgr.pid);
	odin_rss = vmrss_kib(b->nodes[0].pid);
	snprintf(what, sizeof(what), "%s: manager RSS per idle session (after 2 s idle)", mode);
	bench_add_row(&b->rows, what, dedicated ? "(shared only: <= 4 KiB)" : "<= 4 KiB",
		      "%.0f bytes (RSS %.1f -> %.1f MiB; Odin RSS %.1f MiB)",
		      rss1 > rss0 ? (double)(rss1 - rss0) * 1024.0 / (double)n : 0.0, mib(rss0),
		      mib(rss1), mib(odin_rss));

	/* 3: SIGKILL Odin, wait until no session is ready, start it again on the same socket. */
	dials0 = (uint64_t)b->poll.dials;
	bench_proc_stop(&b->nodes[0], SIGKILL, 1000);
	t_kill = bench_now_us();
	ra = (struct ready_after){.want = 0, .after_us = t_kill, .at_most = true};
	if (run_until(b, ready_after_done, &ra, t_kill + 20 * SEC)) {
		t_down = b->poll.at_us;
	} else {
		bench_say("%s: %" PRId64 " sessions still ready 20 s after Odin was killed", mode,
			  b->poll.ready);
	}
	t_restart = bench_now_us();
	node_start(b, 1);
	ra = (struct ready_after){.want = n, .after_us = t_restart};
	ok = run_until(b, ready_after_done, &ra, t_restart + deadline_s * SEC);
	snprintf(what, sizeof(what), "%s: Odin SIGKILL + restart -> stats.ready == N again", mode);
	if (ok) {
		bench_add_row(&b->rows, what, "<= 5 s for 10,000",
			      "%.2f s (all left ready %.0f ms after the kill%s)",
			      (b->poll.at_us - t_restart) / 1e6,
			      t_down ? (t_down - t_kill) / 1e3 : -1.0, t_down ? "" : ": never");
	} else {
		bench_add_row(&b->rows, what, "<= 5 s for 10,000",
			      "%s after %" PRIu64 " s (ready %" PRId64 " of %" PRId64 ")",
			      b->died[0] ? b->died : "timed out", deadline_s, b->poll.ready, n);
	}
	snprintf(what, sizeof(what), "%s: stats.peak_connect_rate (since start)", mode);
	bench_add_row(&b->rows, what, "<= configured bound + burst",
		      "%" PRId64 " dials/s (bound %" PRId64 "/s, burst 100; %" PRId64
		      " dials in the restart)",
		      b->poll.peak_rate, b->poll.rate_limit,
		      b->poll.dials >= 0 ? b->poll.dials - (int64_t)dials0 : -1);
	if (ok) {
		run_for(b, 1000);
		rss2 = vmrss_kib(b->mgr.pid);
		snprintf(what, sizeof(what), "%s: manager RSS after the restart (1 s idle)", mode);
		bench_add_row(&b->rows, what, "(no growth expected)",
			      "%.1f MiB (%+.1f MiB since all ready)", mib(rss2),
			      mib(rss2) - mib(rss1));
	}
out:
	mgr_stop(b);
	bench_proc_stop(&b->nodes[0], SIGTERM, 3000);
}

/* ---- phase 4: send throughput ------------------------------------------------------ */

static size_t make_send(struct load *l, uint64_t i, char *body, size_t cap)
{
	int n = snprintf(body, cap,
			 "{\"user_id\":\"tx\",\"destination\":\"rx\",\"message\":\"bench %08" PRIu64
			 " 32-byte payload..\"}",
			 i);

	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static bool delivered_done(struct bench *b, void *ud)
{
	return b->poll.answers && b->poll.delivered >= *(const int64_t *)ud;
}

static void phase_throughput(struct bench *b, struct rx *rx, bool sync_normal)
{
	const char *how = sync_normal ? "--sync-normal" : "durable commits";
	int64_t want = SEND_COUNT;
	uint64_t rx0 = rx->received, t_done;
	struct load *l;
	char what[200];
	bool ok;

	bench_say("throughput: %d POST /api/send, %s", SEND_COUNT, how);
	mgr_start(b, "dedicated", sync_normal);
	if (!connect_one(b, "tx", 1)) {
		snprintf(what, sizeof(what), "send throughput (%s)", how);
		bench_add_row(&b->rows, what, ">= 20,000 messages/s", "%s",
			      b->died[0] ? b->died
					 : "timed out: the sender session never became ready");
		mgr_stop(b);
		return;
	}
	poll_begin(b, true);
	l = load_new(b, "POST", "/api/send", SEND_COUNT, WINDOW, MAX_CLIENTS);
	l->make = make_send;
	l->ok_status = 202;
	l->retry_busy = true;
	b->load = l;
	b->died[0] = '\0';
	ok = run_until(b, delivered_done, &want, bench_now_us() + 60 * SEC);
	t_done = b->poll.at_us;
	snprintf(what, sizeof(what), "API accepts (202), %d POST /api/send, %d in flight (%s)",
		 SEND_COUNT, WINDOW, how);
	if (l->ok >= SEND_COUNT) {
		bench_add_row(&b->rows, what, "(202 = committed)",
			      "%.0f messages/s (%.2f s; %" PRIu64 " 503 busy retried, %" PRIu64
			      " failed)",
			      SEND_COUNT / ((l->t_last_ok_us - l->t_first_us) / 1e6),
			      (l->t_last_ok_us - l->t_first_us) / 1e6, l->busy, l->failed);
	} else {
		bench_add_row(&b->rows, what, "(202 = committed)",
			      "%s: %" PRIu64 " of %d answered 202 in 60 s (%" PRIu64
			      " 503, %" PRIu64 " failed, last %d %s)",
			      b->died[0] ? b->died : "timed out", l->ok, SEND_COUNT, l->busy,
			      l->failed, l->last_bad, l->last_body);
	}
	snprintf(what, sizeof(what),
		 "end to end manager -> Odin -> peer, delivered (/metrics) (%s)", how);
	if (ok) {
		bench_add_row(
			&b->rows, what, ">= 20,000 messages/s",
			"%.0f messages/s (%d delivered %.2f s after the first POST; receiver got "
			"%" PRIu64 ")",
			SEND_COUNT / ((t_done - l->t_first_us) / 1e6), SEND_COUNT,
			(t_done - l->t_first_us) / 1e6, rx->received - rx0);
	} else {
		bench_add_row(&b->rows, what, ">= 20,000 messages/s",
			      "%s: %" PRId64 " of %d delivered after 60 s (receiver got %" PRIu64
			      ", failed %" PRId64 ")",
			      b->died[0] ? b->died : "timed out", b->poll.delivered, SEND_COUNT,
			      rx->received - rx0, b->poll.failed);
	}
	b->load = NULL;
	load_free(l);
	mgr_stop(b);
}

/* Phase 4b: the same messages, SEND_BATCH per POST /api/send/batch. */
static size_t make_send_batch(struct load *l, uint64_t i, char *body, size_t cap)
{
	size_t off = 0;
	int n = snprintf(body, cap, "{\"messages\":[");

	if (n < 0 || (size_t)n >= cap) {
		return 0;
	}
	off = (size_t)n;
	for (uint64_t k = 0; k < SEND_BATCH; k++) {
		n = snprintf(body + off, cap - off,
			     "%s{\"user_id\":\"tx\",\"destination\":\"rx\",\"message\":\"bench "
			     "%08" PRIu64 " 32-byte payload..\"}",
			     k ? "," : "", i * SEND_BATCH + k);
		if (n < 0 || (size_t)n >= cap - off) {
			return 0;
		}
		off += (size_t)n;
	}
	n = snprintf(body + off, cap - off, "]}");
	return n > 0 && (size_t)n < cap - off ? off + (size_t)n : 0;
}

static void phase_throughput_batch(struct bench *b, struct rx *rx)
{
	int64_t want = SEND_COUNT;
	uint64_t rx0 = rx->received, t_done;
	struct load *l;
	char what[200];
	bool ok;

	bench_say("throughput: %d messages in POST /api/send/batch of %d", SEND_COUNT, SEND_BATCH);
	mgr_start(b, "dedicated", false);
	snprintf(what, sizeof(what),
		 "end to end manager -> Odin -> peer, POST /api/send/batch of %d, %d in flight "
		 "(durable commits)",
		 SEND_BATCH, BATCH_WINDOW);
	if (!connect_one(b, "tx", 1)) {
		bench_add_row(&b->rows, what, ">= 20,000 messages/s", "%s",
			      b->died[0] ? b->died
					 : "timed out: the sender session never became ready");
		mgr_stop(b);
		return;
	}
	poll_begin(b, true);
	l = load_new(b, "POST", "/api/send/batch", SEND_COUNT / SEND_BATCH, BATCH_WINDOW, 4);
	l->make = make_send_batch;
	l->ok_status = 202;
	b->load = l;
	b->died[0] = '\0';
	ok = run_until(b, delivered_done, &want, bench_now_us() + 60 * SEC);
	t_done = b->poll.at_us;
	if (ok) {
		bench_add_row(
			&b->rows, what, ">= 20,000 messages/s",
			"%.0f messages/s (%d delivered %.2f s after the first POST; receiver got "
			"%" PRIu64 ")",
			SEND_COUNT / ((t_done - l->t_first_us) / 1e6), SEND_COUNT,
			(t_done - l->t_first_us) / 1e6, rx->received - rx0);
	} else {
		bench_add_row(&b->rows, what, ">= 20,000 messages/s",
			      "%s: %" PRId64 " of %d delivered after 60 s (receiver got %" PRIu64
			      ", failed %" PRId64 ", %" PRIu64 " requests ok)",
			      b->died[0] ? b->died : "timed out", b->poll.delivered, SEND_COUNT,
			      rx->received - rx0, b->poll.failed, l->ok);
	}
	b->load = NULL;
	load_free(l);
	mgr_stop(b);
}

/* ---- phase 5: latency over a 4-node line ------------------------------------------- */

struct lat_wait {
	struct sync_call call;
	struct rx *rx;
	char text[32];
};

static bool lat_done(struct bench *b, void *ud)
{
	struct lat_wait *w = ud;

	return w->call.done && strcmp(w->rx->last_text, w->text) == 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;

	return a < c ? -1 : a > c;
}

static void measure_latency(struct bench *b, struct rx *rx, int hops, const char *target)
{
	uint64_t *lat = bq_calloc(LAT_SAMPLES, sizeof(*lat));
	uint64_t end = bench_now_us() + 60 * SEC;
	unsigned n = 0, lost = 0, errors = 0;
	char url[200], body[200], what[200];

	if (!lat) {
		bench_die("out of memory");
	}
	snprintf(url, sizeof(url), "%s/api/send", b->url);
	for (unsigned i = 0; i < LAT_WARMUP + LAT_SAMPLES && bench_now_us() < end; i++) {
		struct lat_wait w = {.rx = rx};
		struct bq_http_request req = {.method = "POST", .url = url, .timeout_ms = 10000};
		uint64_t t0;

		snprintf(w.text, sizeof(w.text), "lat-%d-%06u", hops, i);
		snprintf(body, sizeof(body),
			 "{\"user_id\":\"tx\",\"destination\":\"%s\",\"message\":\"%s\"}", rx->user,
			 w.text);
		req.body = body;
		req.body_len = strlen(body);
		t0 = bench_now_us();
		if (bq_http_client_request(b->ctl, &req, sync_cb, &w.call, NULL) < 0) {
			bench_die("cannot start a request");
		}
		if (!run_until(b, lat_done, &w, t0 + LAT_MSG_MAX_US)) {
			lost++;
			/* The call must land before w goes out of scope. */
			while (!w.call.done) {
				bq_loop_run_once(b->loop, 50);
			}
			if (b->died[0]) {
				bq_free(w.call.body);
				break;
			}
		} else if (w.call.status != 202) {
			errors++;
		} else if (i >= LAT_WARMUP) {
			lat[n++] = rx->last_us - t0;
		}
		bq_free(w.call.body);
	}
	qsort(lat, n, sizeof(*lat), cmp_u64);
	snprintf(what, sizeof(what), "API -> destination latency, %d hop%s from Odin: p50 / p99",
		 hops, hops == 1 ? "" : "s");
	if (n == 0) {
		bench_add_row(&b->rows, what, target, "%s",
			      b->died[0] ? b->died : "timed out: no sample");
	} else {
		bench_add_row(&b->rows, what, target,
			      "%.2f ms / %.2f ms (max %.2f ms; %u samples%s%s)", lat[n / 2] / 1e3,
			      lat[(size_t)n * 99 / 100] / 1e3, lat[n - 1] / 1e3, n,
			      lost ? ", some timed out (2 s)" : "", errors ? ", some non-202" : "");
	}
	if (lost || errors) {
		bench_say("latency %d hops: %u lost (2 s), %u non-202", hops, lost, errors);
	}
	bq_free(lat);
}

static bool users_known(struct bench *b)
{
	char *body = NULL;
	bool ok = false;
	int st = http_do(b, "GET", "/api/users", NULL, &body, NULL);

	if (st == 200 && body) {
		json_t *doc = json_loads(body, 0, NULL);
		json_t *users = doc ? json_object_get(doc, "users") : NULL;
		size_t i;
		json_t *u;
		int seen = 0;

		json_array_foreach(users, i, u)
		{
			const char *id = json_string_value(json_object_get(u, "user_id"));
			const char *pr = json_string_value(json_object_get(u, "presence"));

			if (id && pr && strcmp(pr, "online") == 0 &&
			    (strcmp(id, "rx2") == 0 || strcmp(id, "rx4") == 0)) {
				seen++;
			}
		}
		ok = seen == 2;
		json_decref(doc);
	}
	bq_free(body);
	return ok;
}

static void phase_latency(struct bench *b, struct rx *rx2, struct rx *rx4)
{
	uint64_t end;

	bench_say("latency: 4-node line, receivers at node 2 and node 4");
	for (int i = LINE_NODES; i >= 1; i--) {
		node_setup(b, i, i < LINE_NODES);
		node_start(b, i);
	}
	rx_start(b, rx2, "rx2", 2);
	rx_start(b, rx4, "rx4", 4);
	mgr_start(b, "dedicated", false);
	b->died[0] = '\0';
	if (!connect_one(b, "tx", 1)) {
		bench_add_row(&b->rows, "API -> destination latency", "-", "%s",
			      b->died[0] ? b->died
					 : "timed out: the sender session never became ready");
		return;
	}
	b->poll.active = false;
	end = bench_now_us() + 20 * SEC;
	while (!users_known(b)) {
		if (bench_now_us() > end || b->died[0]) {
			bench_add_row(&b->rows, "API -> destination latency", "-",
				      "timed out: the manager's directory never showed rx2 and rx4 "
				      "online");
			return;
		}
		run_for(b, 100);
	}
	measure_latency(b, rx2, 1, "p50 <= 2 ms, p99 <= 10 ms");
	measure_latency(b, rx4, 3, "p99 <= 20 ms");
}

/* ---- phase 6: GET /api/status requests per second -------------------------------- */

static bool load_done(struct bench *b, void *ud)
{
	return load_finished(ud);
}

static void phase_http(struct bench *b)
{
	static const char *const paths[] = {"/api/status", "/api/status?clients=0", "/health"};
	int64_t want = HTTP_SESSIONS;
	struct load *l;
	size_t doc_len = 0;
	char *doc = NULL;
	char what[200];

	bench_say("HTTP: %d sessions, %d concurrent keep-alive GETs for %d s each", HTTP_SESSIONS,
		  HTTP_CONC, HTTP_SECONDS);
	/* The latency phase left "tx" connected: add the rest. */
	poll_begin(b, false);
	l = load_new(b, "POST", "/api/connect", HTTP_SESSIONS - 1, 32, 2);
	l->make = make_connect;
	l->prefix = "h";
	l->ok_status = 202;
	l->ok_alt = 200;
	b->load = l;
	b->died[0] = '\0';
	if (!run_until(b, ready_at_least, &want, bench_now_us() + 20 * SEC)) {
		b->load = NULL;
		load_free(l);
		bench_add_row(&b->rows, "GET /api/status", "-",
			      "%s: %" PRId64 " of %d sessions ready",
			      b->died[0] ? b->died : "timed out", b->poll.ready, HTTP_SESSIONS);
		return;
	}
	b->load = NULL;
	load_free(l);
	b->poll.active = false;
	if (http_do(b, "GET", "/api/status", NULL, &doc, &doc_len) != 200) {
		doc_len = 0;
	}
	bq_free(doc);
	for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
		l = load_new(b, "GET", paths[k], 0, HTTP_CONC, HTTP_CONC / CLIENT_CONNS);
		l->end_us = bench_now_us() + HTTP_SECONDS * SEC;
		b->load = l;
		run_until(b, load_done, l, l->end_us + 10 * SEC);
		snprintf(what, sizeof(what), "GET %s, %d sessions, %d concurrent keep-alive",
			 paths[k], HTTP_SESSIONS, HTTP_CONC);
		if (k == 0) {
			/* The 20x comparison with Flask is bench_backend's: browsers read the
			 * status through the backend, which shares one read of it. */
			bench_add_row(&b->rows, what, "(the 20x target: bench_backend)",
				      "%.0f requests/s (%zu-byte document%s)",
				      l->ok_in_window / (double)HTTP_SECONDS, doc_len,
				      l->failed ? "; some failed" : "");
		} else {
			bench_add_row(&b->rows, what, "(reference)", "%.0f requests/s%s",
				      l->ok_in_window / (double)HTTP_SECONDS,
				      l->failed ? "; some failed" : "");
		}
		if (l->failed) {
			bench_say("GET %s: %" PRIu64 " failed, last %d %s", paths[k], l->failed,
				  l->last_bad, l->last_body);
		}
		b->load = NULL;
		load_free(l);
	}
}

/* BENCH_PHASES: a comma-separated subset of the phase names (unset: all). */
static bool phase_on(const char *list, const char *name)
{
	size_t n = strlen(name);

	if (!list || !list[0]) {
		return true;
	}
	for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
		if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) {
			return true;
		}
	}
	return false;
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	struct rx rx = {0}, rx2 = {0}, rx4 = {0};
	struct bq_http_client_config hc;
	const char *env = getenv("BENCH_SESSIONS");
	const char *phases = getenv("BENCH_PHASES");
	char path[PATH_MAX + 32], header[200];
	uint64_t t_start = bench_now_us();

	if (argc != 2) {
		fprintf(stderr, "usage: " PROG " BIN_DIR   (BIN_DIR holds blueq-node and "
				"blueq-manager; BENCH_SESSIONS=N, default 10000)\n");
		return 2;
	}
	b->sessions = 10000;
	if (env && env[0]) {
		int64_t v;

		if (bq_opt_parse_int(env, &v) < 0 || v < 1 || v > 1000000) {
			fprintf(stderr, PROG ": BENCH_SESSIONS must be 1..1000000\n");
			return 2;
		}
		b->sessions = (unsigned)v;
	}
	snprintf(b->bin_dir, sizeof(b->bin_dir), "%s", argv[1]);
	for (int i = 0; i < 2; i++) {
		const char *prog = i == 0 ? "blueq-node" : "blueq-manager";

		if (snprintf(path, sizeof(path), "%s/%s", b->bin_dir, prog) >= (int)sizeof(path) ||
		    access(path, X_OK) < 0) {
			fprintf(stderr, PROG ": %s/%s: not an executable\n", b->bin_dir, prog);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	snprintf(b->dir, sizeof(b->dir), "%s/bq-bmgr.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(b->dir)) {
		fprintf(stderr, PROG ": mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	g_bench = b;
	bench_init(PROG, &b->failed);
	atexit(cleanup);
	b->log = bq_log_new(PROG);
	b->loop = bq_loop_new(NULL, b->log);
	bq_http_client_config_defaults(&hc);
	hc.max_calls = 8;
	hc.max_response = 64u << 20;
	b->ctl = b->loop ? bq_http_client_new(b->loop, b->log, &hc) : NULL;
	if (!b->log || !b->ctl) {
		bench_die("cannot create the loop or the HTTP client");
	}
	bq_log_set_level(b->log, BQ_LOG_WARN);
	bench_say("sessions=%u dir=%s", b->sessions, b->dir);

	if (phase_on(phases, "sessions") || phase_on(phases, "shared")) {
		phase_sessions(b, false);
	}
	if (phase_on(phases, "sessions") || phase_on(phases, "dedicated")) {
		phase_sessions(b, true);
	}
	if (phase_on(phases, "throughput")) {
		node_setup(b, 1, false);
		node_start(b, 1);
		rx_start(b, &rx, "rx", 1);
		phase_throughput(b, &rx, false);
		phase_throughput(b, &rx, true);
		phase_throughput_batch(b, &rx);
		rx_stop(b, &rx);
		bench_proc_stop(&b->nodes[0], SIGTERM, 3000);
	}
	if (phase_on(phases, "latency") || phase_on(phases, "http")) {
		phase_latency(b, &rx2, &rx4);
		if (b->mgr.pid > 0 && phase_on(phases, "http")) {
			phase_http(b);
		}
	}
	mgr_stop(b);
	rx_stop(b, &rx2);
	rx_stop(b, &rx4);
	for (int i = 0; i < LINE_NODES; i++) {
		bench_proc_stop(&b->nodes[i], SIGTERM, 3000);
	}

	snprintf(header, sizeof(header),
		 "what (blueq-manager, %u sessions, real blueq-node processes over UNIX sockets)",
		 b->sessions);
	bench_print_rows(&b->rows, header);
	printf("\n(%.0f s in all)\n", (bench_now_us() - t_start) / 1e6);
	fflush(stdout);

	bq_http_client_free(b->ctl);
	bq_loop_free(b->loop);
	bq_log_free(b->log);
	return 0;
}
