/* SPDX-License-Identifier: MIT */
/*
 * bench_backend: blueq-backend beside the Flask reference of bench/baseline.
 *
 *     bench_backend BIN_DIR [BASELINE_DIR]
 *         BIN_DIR holds blueq-node, blueq-manager and blueq-backend; BASELINE_DIR holds
 *         the Flask app.py (default bench/baseline, as bench/run.sh runs it)
 *     BENCH_KEEP=1     keep the temporary directory (logs) at the end
 *
 * One blueq-node plays Odin on a UNIX socket, one blueq-manager serves both backends,
 * blueq-backend runs with --hash-cost interactive (the production cost) and the Flask
 * app runs under gunicorn with 2 sync workers, as such an app is deployed. Without
 * gunicorn on PATH the Flask rows say so and everything else is still measured.
 *
 * Phases:
 *   1. 100 users registered in both backends (the same names, so the manager knows
 *      each once), then until the manager reports them all ready.
 *   2. GET /api/contacts and GET /api/bluetooth/manager/status, each for 3 s with 100
 *      keep-alive connections from wrk (one thread; Debian's package, installed by
 *      bench/run.sh), or, without wrk, 100 requests in flight through lib/http/client
 *      (after a 0.5 s warm-up; a heavier generator that takes a core of its own):
 *      requests/s, p99, and blueq / Flask.
 *   3. Registration -> ready: 200 users registered one at a time; each is timed from its
 *      POST /api/register to the manager's "session" event with state "ready" for it
 *      (the manager's GET /api/events held open on a raw socket, read by the loop), and
 *      from the 201 to that event, which leaves the password hash out. Then 30 logins,
 *      each one Argon2id verify at the same cost: the hashing time on its own.
 *
 * A benchmark, not a test: it never fails on a slow figure; every wait has a deadline
 * and a row says "timed out" rather than hanging.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
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

#define PROG "bench_backend"
#define ODIN_MAC "D8:3A:DD:03:1E:77"
#define PASSWORD "correct horse battery"
#define USERS 100     /* phase 1, in each backend */
#define SEED_WINDOW 4 /* registrations in flight while seeding */
#define CONC 100      /* phase 2: requests in flight */
/*
 * lib/http/client opens at most 16 connections per client (MAX_CONNECTIONS in
 * client.c) and queues the rest inside libcurl: 100 connections take 7 clients.
 */
#define NCLI 7
#define WARMUP_MS 500
#define HTTP_SECONDS 3
#define LAT_CAP (1u << 20) /* latency samples kept per load */
#define REG_SAMPLES 200	   /* phase 3 */
#define REG_WAIT_MS 5000   /* per registration: 201 and ready */
#define REG_PHASE_S 60
#define LOGIN_SAMPLES 30
#define SSE_BUF 65536
#define PATHLEN 320
#define SEC 1000000ull

/* The manager's GET /api/events, read as it arrives (HTTP/1.0: no chunked framing). */
struct sse {
	int fd;
	bool hello; /* the stream's opening comment arrived */
	bool closed;
	char buf[SSE_BUF];
	size_t len;
	char want[40];	   /* the user whose "ready" is awaited */
	uint64_t ready_us; /* when that event was read; 0: not yet */
	uint64_t events;
};

struct load;

struct bench {
	char bin_dir[PATH_MAX];
	char baseline_dir[PATH_MAX];
	char gunicorn[PATH_MAX];
	char wrk[PATH_MAX]; /* "" when wrk is not installed: lib/http/client loads instead */
	char dir[256];	    /* short: UNIX socket paths below it must fit in 108 bytes */
	struct bq_log *log;
	struct bq_loop *loop;
	struct bq_http_client *ctl; /* one-off requests and seeding */
	struct bench_proc odin, mgr, be, fl;
	int mgr_port;
	char mgr_url[64], be_url[64], fl_url[64];
	char be_token[128], fl_token[128];
	struct load *load;
	struct sse sse;
	char died[PATHLEN + 100];
	uint64_t next_alive_check;
	struct bench_rows rows;
	bool failed; /* keep the directory for the logs */
};

/* For the exit path: children are stopped whatever way main ends. */
static struct bench *g_bench;

static void cleanup(void)
{
	struct bench *b = g_bench;

	if (!b) {
		return;
	}
	/* Front to back: the Flask app and the backend call the manager, which calls Odin. */
	bench_proc_stop(&b->fl, 0, 3000);
	if (b->fl.pgid > 0) {
		kill(-b->fl.pgid, SIGKILL); /* a worker its master left behind */
		b->fl.pgid = 0;
	}
	bench_proc_stop(&b->be, 0, 3000);
	bench_proc_stop(&b->mgr, 0, 3000);
	bench_proc_stop(&b->odin, 0, 3000);
	if (b->failed || getenv("BENCH_KEEP")) {
		fprintf(stderr, PROG ": logs kept in %s\n", b->dir);
	} else if (b->dir[0]) {
		bench_rm_tree(b->dir);
	}
}

static void on_fatal_signal(int signo)
{
	/*
	 * The children follow through PR_SET_PDEATHSIG, but gunicorn's workers are its
	 * children, not ours: end its whole group. Then restore and re-raise.
	 */
	if (g_bench && g_bench->fl.pgid > 0) {
		kill(-g_bench->fl.pgid, SIGKILL);
	}
	signal(signo, SIG_DFL);
	raise(signo);
}

/*
 * The port in p's log after key (e.g. msg="listening" on=http://127.0.0.1:), waited for
 * up to 15 s (gunicorn imports Flask first).
 */
static int log_port(struct bench_proc *p, const char *key)
{
	uint64_t end = bench_now_us() + 15 * SEC;

	for (;;) {
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

			if (!bench_leading_int(at + strlen(key), &port, NULL) || port <= 0 ||
			    port > 65535) {
				bench_die("cannot read the port from %s", p->log);
			}
			return (int)port;
		}
		if (!bench_proc_alive(p, NULL)) {
			bench_die("%s exited at start (see %s)", p->name, p->log);
		}
		if (bench_now_us() > end) {
			bench_die("%s did not log its port within 15 s (see %s)", p->name, p->log);
		}
		usleep(20000);
	}
}

/*
 * A free loopback port from the kernel, for the manager: the backend must know the
 * manager's URL before the manager can start (it needs the backend's token file).
 */
static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
		port = ntohs(sa.sin_port);
	}
	if (fd >= 0) {
		close(fd);
	}
	if (port <= 0) {
		bench_die("cannot get a free port: %s", strerror(errno));
	}
	return port;
}

/* PROG on PATH, or false. */
static bool find_on_path(const char *prog, char *out, size_t cap)
{
	const char *path = getenv("PATH");

	while (path && *path) {
		const char *colon = strchr(path, ':');
		size_t n = colon ? (size_t)(colon - path) : strlen(path);
		int w = snprintf(out, cap, "%.*s/%s", (int)n, path, prog);

		if (n > 0 && w > 0 && (size_t)w < cap && access(out, X_OK) == 0) {
			return true;
		}
		path += n + (colon ? 1 : 0);
	}
	return false;
}

static void start_odin(struct bench *b)
{
	struct bench_proc *p = &b->odin;
	char bin[PATH_MAX + 32], listen[PATHLEN], ctl[PATHLEN], key[PATHLEN];
	const char *argv[] = {bin,	   "--addr",	  ODIN_MAC,	"--listen", listen,
			      "--control", ctl,		  "--key-file", key,	    "--max-clients",
			      "20000",	   "--log-level", "warn",	NULL};
	uint64_t end = bench_now_us() + 10 * SEC;

	snprintf(bin, sizeof(bin), "%s/blueq-node", b->bin_dir);
	snprintf(p->name, sizeof(p->name), "Odin");
	snprintf(p->log, sizeof(p->log), "%s/odin.log", b->dir);
	snprintf(listen, sizeof(listen), "unix:%s/odin.sock", b->dir);
	snprintf(ctl, sizeof(ctl), "%s/odin.ctl", b->dir);
	snprintf(key, sizeof(key), "%s/network.key", b->dir);
	bench_proc_set_args(p, argv);
	bench_proc_start(p);
	while (!bench_unix_probe(ctl)) {
		if (!bench_proc_alive(p, NULL)) {
			bench_die("Odin exited at start (see %s)", p->log);
		}
		if (bench_now_us() > end) {
			bench_die("Odin did not come up within 10 s (see %s)", p->log);
		}
		usleep(10000);
	}
}

static void start_backend(struct bench *b)
{
	struct bench_proc *p = &b->be;
	char bin[PATH_MAX + 32], data[PATHLEN], murl[64];
	/* All the load comes from one address: no rate limit (the Flask app has none). */
	const char *argv[] = {bin,  "--port",	       "0",	      "--data-dir",
			      data, "--hash-cost",     "interactive", "--manager-url",
			      murl, "--register-rate", "0",	      "--login-rate",
			      "0",  "--log-level",     "info",	      NULL};

	snprintf(bin, sizeof(bin), "%s/blueq-backend", b->bin_dir);
	snprintf(p->name, sizeof(p->name), "blueq-backend");
	snprintf(p->log, sizeof(p->log), "%s/backend.log", b->dir);
	snprintf(data, sizeof(data), "%s/be", b->dir);
	snprintf(murl, sizeof(murl), "%s", b->mgr_url);
	bench_proc_set_args(p, argv);
	bench_proc_start(p);
	snprintf(b->be_url, sizeof(b->be_url), "http://127.0.0.1:%d",
		 log_port(p, "msg=\"listening\" on=http://127.0.0.1:"));
}

static void start_manager(struct bench *b)
{
	struct bench_proc *p = &b->mgr;
	char bin[PATH_MAX + 32], odin[PATHLEN], data[PATHLEN], tok[PATHLEN], port[16];
	const char *argv[] = {bin,  odin,	   b->be_url, "--api-port",
			      port, "--data-dir",  data,      "--backend-token-file",
			      tok,  "--log-level", "warn",    NULL};
	uint64_t end = bench_now_us() + 10 * SEC;

	snprintf(bin, sizeof(bin), "%s/blueq-manager", b->bin_dir);
	snprintf(p->name, sizeof(p->name), "blueq-manager");
	snprintf(p->log, sizeof(p->log), "%s/manager.log", b->dir);
	snprintf(odin, sizeof(odin), "unix:%s/odin.sock", b->dir);
	snprintf(data, sizeof(data), "%s/mgr", b->dir);
	snprintf(tok, sizeof(tok), "%s/be/service.token", b->dir);
	snprintf(port, sizeof(port), "%d", b->mgr_port);
	if (mkdir(data, 0700) < 0 && errno != EEXIST) {
		bench_die("mkdir %s: %s", data, strerror(errno));
	}
	bench_proc_set_args(p, argv);
	bench_proc_start(p);
	/* Its "listening" line is at info; at warn, wait until the port answers. */
	for (;;) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)b->mgr_port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		if (fd >= 0) {
			close(fd);
		}
		if (up) {
			return;
		}
		if (!bench_proc_alive(p, NULL)) {
			bench_die("the manager exited at start (see %s)", p->log);
		}
		if (bench_now_us() > end) {
			bench_die("the manager did not listen on port %d within 10 s (see %s)",
				  b->mgr_port, p->log);
		}
		usleep(10000);
	}
}

/* gunicorn -w 2 -b 127.0.0.1:0 --chdir BASELINE app:app, as bench/baseline/README.md. */
static void start_flask(struct bench *b)
{
	struct bench_proc *p = &b->fl;
	char db[PATHLEN];
	const char *argv[] = {b->gunicorn,     "-w",	  "2", "-b", "127.0.0.1:0", "--chdir",
			      b->baseline_dir, "app:app", NULL};

	snprintf(p->name, sizeof(p->name), "gunicorn");
	snprintf(p->log, sizeof(p->log), "%s/flask.log", b->dir);
	snprintf(db, sizeof(db), "%s/baseline.db", b->dir);
	p->stop_sig = SIGINT;
	p->own_group = true;
	/* The app's configuration, read at import (the children inherit the environment). */
	if (setenv("BLUEQ_MANAGER_URL", b->mgr_url, 1) < 0 ||
	    setenv("BLUEQ_BASELINE_DB", db, 1) < 0) {
		bench_die("setenv: %s", strerror(errno));
	}
	bench_proc_set_args(p, argv);
	bench_proc_start(p);
	snprintf(b->fl_url, sizeof(b->fl_url), "http://127.0.0.1:%d",
		 log_port(p, "Listening at: http://127.0.0.1:"));
}

/* ---- the loop: requests, loads, the event stream ----------------------------------- */

struct load {
	struct bench *b;
	struct bq_http_client *cli[NCLI];
	unsigned next_cli;
	char url[200];
	const char *bearer;
	uint64_t count_from_us, end_us;
	uint32_t inflight;
	uint64_t ok, failed;
	int64_t *lat;
	size_t n_lat;
	int last_bad;
	char last_body[120];
	bool stop;
};

struct load_call {
	struct load *l;
	uint64_t t0;
};

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
	if (status != 200) {
		l->failed++;
		l->last_bad = status;
		snprintf(l->last_body, sizeof(l->last_body), "%.100s", body ? body : "");
	} else if (t >= l->count_from_us && t <= l->end_us) {
		l->ok++;
		if (l->n_lat < LAT_CAP) {
			l->lat[l->n_lat++] = (int64_t)(t - c->t0);
		}
	}
	bq_free(c);
}

static void load_refill(struct load *l)
{
	while (!l->stop && l->inflight < CONC && bench_now_us() < l->end_us) {
		struct bq_http_request req = {.method = "GET",
					      .url = l->url,
					      .bearer_token = l->bearer,
					      .timeout_ms = 30000};
		struct load_call *c = bq_malloc(sizeof(*c));
		int rc = -EAGAIN;

		if (!c) {
			bench_die("out of memory");
		}
		c->l = l;
		c->t0 = bench_now_us();
		for (unsigned k = 0; k < NCLI && rc == -EAGAIN; k++) {
			rc = bq_http_client_request(l->cli[l->next_cli++ % NCLI], &req, load_cb, c,
						    NULL);
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
		l->inflight++;
	}
}

static bool load_finished(const struct load *l)
{
	return l->inflight == 0 && (l->stop || bench_now_us() >= l->end_us);
}

static void sse_close(struct bench *b)
{
	if (b->sse.fd >= 0) {
		bq_loop_io_remove(b->loop, b->sse.fd);
		close(b->sse.fd);
	}
	b->sse.fd = -1;
	b->sse.closed = true;
}

/*
 * Run the loop until done(ud) or the deadline, keeping the load fed. False on the
 * deadline or when one of our processes died (b->died says which).
 */
static bool run_until(struct bench *b, bool (*done)(struct bench *b, void *ud), void *ud,
		      uint64_t deadline_us)
{
	struct bench_proc *procs[] = {&b->odin, &b->mgr, &b->be, &b->fl};

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
			b->next_alive_check = t + 100000;
			for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
				if (procs[i]->argv[0] && procs[i]->pid > 0 &&
				    !bench_proc_alive(procs[i], NULL)) {
					snprintf(b->died, sizeof(b->died), "%s died (see %s)",
						 procs[i]->name, procs[i]->log);
					bench_say("%s", b->died);
					b->failed = true;
					return false;
				}
			}
		}
		if (b->load) {
			load_refill(b->load);
		}
		bq_loop_run_once(b->loop, 5);
	}
}

struct sync_call {
	bool done;
	int status;
	uint64_t at_us; /* when the answer arrived */
	char *body;
};

static void sync_cb(int status, const char *body, size_t len, void *ud)
{
	struct sync_call *s = ud;

	s->done = true;
	s->status = status;
	s->at_us = bench_now_us();
	if (body) {
		s->body = bq_malloc(len + 1);
		if (s->body) {
			memcpy(s->body, body, len + 1);
		}
	}
}

static bool sync_done(struct bench *b, void *ud)
{
	return ((struct sync_call *)ud)->done;
}

static void sync_start(struct bench *b, struct sync_call *s, const char *method, const char *url,
		       const char *bearer, const char *body)
{
	struct bq_http_request req = {.method = method,
				      .url = url,
				      .bearer_token = bearer,
				      .body = body,
				      .body_len = body ? strlen(body) : 0,
				      .timeout_ms = 10000};

	memset(s, 0, sizeof(*s));
	if (bq_http_client_request(b->ctl, &req, sync_cb, s, NULL) < 0) {
		bench_die("cannot start a request to %s", url);
	}
}

/* Until the call has landed: it must not write into s after the caller returns. */
static void sync_finish(struct bench *b, struct sync_call *s)
{
	if (!run_until(b, sync_done, s, bench_now_us() + 15 * SEC)) {
		while (!s->done) {
			bq_loop_run_once(b->loop, 100);
		}
	}
}

/* One request on the control client, waited for (bounded). Status or negative errno. */
static int http_do(struct bench *b, const char *method, const char *base, const char *path,
		   const char *bearer, const char *body, char **resp)
{
	struct sync_call s;
	char url[256];

	snprintf(url, sizeof(url), "%s%s", base, path);
	sync_start(b, &s, method, url, bearer, body);
	sync_finish(b, &s);
	if (resp) {
		*resp = s.body;
	} else {
		bq_free(s.body);
	}
	return s.status;
}

static void sse_line(struct bench *b, struct sse *s, char *line)
{
	json_t *ev, *type, *state, *user;

	if (strncmp(line, ": blueq-manager events", 22) == 0) {
		s->hello = true;
		return;
	}
	if (strncmp(line, "data: ", 6) != 0) {
		return;
	}
	s->events++;
	if (!s->want[0] || s->ready_us || !strstr(line, "\"session\"")) {
		return;
	}
	ev = json_loads(line + 6, 0, NULL);
	type = json_object_get(ev, "type");
	state = json_object_get(ev, "state");
	user = json_object_get(ev, "user_id");
	if (json_is_string(type) && strcmp(json_string_value(type), "session") == 0 &&
	    json_is_string(state) && strcmp(json_string_value(state), "ready") == 0 &&
	    json_is_string(user) && strcmp(json_string_value(user), s->want) == 0) {
		s->ready_us = bench_now_us();
	}
	json_decref(ev);
}

static void sse_io(struct bq_loop *loop, int fd, unsigned events, void *ud)
{
	struct bench *b = ud;
	struct sse *s = &b->sse;

	for (;;) {
		ssize_t n = read(fd, s->buf + s->len, sizeof(s->buf) - 1 - s->len);
		char *start, *nl;

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			bench_say("the manager's event stream closed");
			sse_close(b);
			return;
		}
		if (n < 0) {
			return;
		}
		s->len += (size_t)n;
		s->buf[s->len] = '\0';
		start = s->buf;
		while ((nl = strchr(start, '\n')) != NULL) {
			*nl = '\0';
			if (nl > start && nl[-1] == '\r') {
				nl[-1] = '\0';
			}
			sse_line(b, s, start);
			start = nl + 1;
		}
		s->len -= (size_t)(start - s->buf);
		memmove(s->buf, start, s->len);
		if (s->len == sizeof(s->buf) - 1) {
			s->len = 0; /* a line longer than the buffer: none of ours */
		}
	}
}

static bool sse_hello(struct bench *b, void *ud)
{
	return b->sse.hello || b->sse.closed;
}

static bool sse_open(struct bench *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)b->mgr_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char req[160];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int n = snprintf(req, sizeof(req),
			 "GET /api/events HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n"
			 "Accept: text/event-stream\r\n\r\n",
			 b->mgr_port);

	memset(&b->sse, 0, sizeof(b->sse));
	b->sse.fd = -1;
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, req, (size_t)n) != n || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 ||
	    bq_loop_io_add(b->loop, fd, BQ_EV_READ, sse_io, b) < 0) {
		bench_say("cannot open the manager's event stream: %s", strerror(errno));
		if (fd >= 0) {
			close(fd);
		}
		return false;
	}
	b->sse.fd = fd;
	return run_until(b, sse_hello, NULL, bench_now_us() + 5 * SEC) && b->sse.hello;
}

/* ---- phase 1: users in both backends ----------------------------------------------- */

struct seed {
	const char *base;
	char *token0; /* the first user's token: the caller of the loads */
	size_t token_cap;
	unsigned issued, answered, ok, failed, inflight;
	int last_bad;
	char last_body[120];
};

struct seed_call {
	struct seed *s;
	unsigned i;
};

static void seed_cb(int status, const char *body, size_t len, void *ud)
{
	struct seed_call *c = ud;
	struct seed *s = c->s;

	s->inflight--;
	s->answered++;
	if (status == 201) {
		s->ok++;
		if (c->i == 0) {
			json_t *doc = json_loadb(body, len, 0, NULL);
			const char *tok = json_string_value(json_object_get(doc, "token"));

			snprintf(s->token0, s->token_cap, "%s", tok ? tok : "");
			json_decref(doc);
		}
	} else if (status != -ECANCELED) {
		s->failed++;
		s->last_bad = status;
		snprintf(s->last_body, sizeof(s->last_body), "%.100s", body ? body : "");
	}
	bq_free(c);
}

static bool seed_done(struct bench *b, void *ud)
{
	struct seed *s = ud;
	char url[200], body[160];

	while (s->issued < USERS && s->inflight < SEED_WINDOW) {
		struct bq_http_request req = {.method = "POST", .url = url, .timeout_ms = 30000};
		struct seed_call *c = bq_malloc(sizeof(*c));

		if (!c) {
			bench_die("out of memory");
		}
		c->s = s;
		c->i = s->issued;
		snprintf(url, sizeof(url), "%s/api/register", s->base);
		snprintf(body, sizeof(body), "{\"username\":\"bench%03u\",\"password\":\"%s\"}",
			 s->issued, PASSWORD);
		req.body = body;
		req.body_len = strlen(body);
		if (bq_http_client_request(b->ctl, &req, seed_cb, c, NULL) < 0) {
			bq_free(c);
			break;
		}
		s->issued++;
		s->inflight++;
	}
	return s->answered >= USERS;
}

/* Register USERS users; the first one's token into token. A message or NULL. */
static const char *seed_users(struct bench *b, const char *base, const char *name, char *token,
			      size_t cap, char *why, size_t why_cap)
{
	struct seed s = {.base = base, .token0 = token, .token_cap = cap};
	uint64_t t0 = bench_now_us();
	bool ok;

	token[0] = '\0';
	ok = run_until(b, seed_done, &s, t0 + 60 * SEC);
	while (s.inflight) {
		bq_loop_run_once(b->loop, 100); /* the calls time out within 30 s */
	}
	bench_say("%s: %u users registered in %.1f s (%u failed)", name, s.ok,
		  (bench_now_us() - t0) / 1e6, s.failed);
	if (ok && s.ok == USERS && token[0]) {
		return NULL;
	}
	snprintf(why, why_cap, "%.200s: %u of %d registrations answered 201 (last %d %.80s)",
		 b->died[0] ? b->died
		 : ok	    ? "failed"
			    : "timed out after 60 s",
		 s.ok, USERS, s.last_bad, s.last_body);
	return why;
}

struct ready_wait {
	int64_t want, ready;
};

static bool mgr_ready_done(struct bench *b, void *ud)
{
	struct ready_wait *w = ud;
	char *body = NULL;
	json_t *doc;

	if (http_do(b, "GET", b->mgr_url, "/api/status?clients=0", NULL, NULL, &body) == 200) {
		doc = json_loads(body, 0, NULL);
		w->ready =
			json_integer_value(json_object_get(json_object_get(doc, "stats"), "ready"));
		json_decref(doc);
	}
	bq_free(body);
	if (w->ready >= w->want) {
		return true;
	}
	usleep(20000);
	return false;
}

/* ---- phase 2: contacts and status, both backends --------------------------------- */

struct http_result {
	bool measured;
	double rps, p50_ms, p99_ms;
	size_t doc_len;
	uint64_t failed;
	double cpu_server, cpu_mgr, cpu_self; /* cores busy during the load */
	char note[200];
};

/* CPU seconds of pid (all its threads) from /proc/PID/stat; 0 when it is gone. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	const char *p;
	int64_t ut = 0, st = 0;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 0.0;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	/* After "(comm)": state is field 3; utime and stime are fields 14 and 15. */
	p = strrchr(buf, ')');
	for (int field = 2; p && field < 14; field++) {
		p = strchr(p + 1, ' ');
	}
	if (!p || !bench_leading_int(p + 1, &ut, NULL) || !(p = strchr(p + 1, ' ')) ||
	    !bench_leading_int(p + 1, &st, NULL)) {
		return 0.0;
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The process and its children (gunicorn's workers), one level down. */
static double tree_cpu_s(pid_t pid)
{
	char path[80], buf[1024];
	double sum;
	const char *p = buf;
	ssize_t n;
	int fd;

	if (pid <= 0) {
		return 0.0;
	}
	sum = proc_cpu_s(pid);
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return sum;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	while (*p) {
		int64_t child;

		if (bench_leading_int(p, &child, NULL) && child > 0) {
			sum += proc_cpu_s((pid_t)child);
		}
		p += strcspn(p, " ");
		p += strspn(p, " ");
	}
	return sum;
}

static double self_cpu_s(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0) {
		return 0.0;
	}
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static bool load_done(struct bench *b, void *ud)
{
	return load_finished(ud);
}

/* "1.23ms", "870.00us", "1.02s" (wrk's latency cells) in milliseconds; -1 if not that. */
static double wrk_ms(const char *cell)
{
	char *end;
	double v = strtod(cell, &end);

	if (end == cell) {
		return -1.0;
	}
	if (strncmp(end, "us", 2) == 0) {
		return v / 1000.0;
	}
	if (strncmp(end, "ms", 2) == 0) {
		return v;
	}
	if (*end == 's') {
		return v * 1000.0;
	}
	if (strncmp(end, "m", 1) == 0) {
		return v * 60000.0;
	}
	return -1.0;
}

/*
 * The load through wrk (Debian's package; one thread, CONC connections, keep-alive,
 * --latency for the percentiles): a generator much lighter than libcurl, so on this
 * 2-core machine the server, not the generator, is what runs out. Its output is read
 * from a pipe; the rows say what it said.
 */
static void measure_wrk(struct bench *b, const char *url, const char *token, struct http_result *r)
{
	char conns[16], dur[16], auth[200], out[8192];
	const char *argv[] = {b->wrk,	   "-t1", "-c", conns, "-d", dur, "--latency",
			      "--timeout", "10s", "-H", auth,  url,  NULL};
	size_t len = 0;
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	snprintf(conns, sizeof(conns), "%d", CONC);
	snprintf(dur, sizeof(dur), "%ds", HTTP_SECONDS);
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		bench_die("pipe: %s", strerror(errno));
	}
	pid = fork();
	if (pid < 0) {
		bench_die("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(pfd[1], STDOUT_FILENO);
		execv(b->wrk, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	while (len < sizeof(out) - 1 && (n = read(pfd[0], out + len, sizeof(out) - 1 - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			break;
		}
		len += (size_t)n;
	}
	out[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	for (char *l = out, *nl; l && *l; l = nl) {
		nl = strchr(l, '\n');
		if (nl) {
			*nl++ = '\0';
		}
		l += strspn(l, " \t");
		if (strncmp(l, "Requests/sec:", 13) == 0) {
			r->rps = strtod(l + 13, NULL);
			r->measured = true;
		} else if (strncmp(l, "50%", 3) == 0) {
			r->p50_ms = wrk_ms(l + 3 + strspn(l + 3, " \t"));
		} else if (strncmp(l, "99%", 3) == 0) {
			r->p99_ms = wrk_ms(l + 3 + strspn(l + 3, " \t"));
		} else if (strncmp(l, "Non-2xx or 3xx responses:", 25) == 0) {
			int64_t bad = 0;

			bench_leading_int(l + 25 + strspn(l + 25, " "), &bad, NULL);
			r->failed += (uint64_t)bad;
		} else if (strncmp(l, "Socket errors:", 14) == 0) {
			snprintf(r->note, sizeof(r->note), "; wrk: %.150s", l);
		}
	}
	if (!r->measured) {
		snprintf(r->note, sizeof(r->note), "not measured: wrk exited %d without a rate",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	} else if (r->failed) {
		size_t k = strlen(r->note);

		snprintf(r->note + k, sizeof(r->note) - k, "; %" PRIu64 " answers were not 2xx",
			 r->failed);
	}
}

static void measure_get(struct bench *b, struct bench_proc *server, const char *base,
			const char *path, const char *token, struct http_result *r)
{
	double cpu_server, cpu_mgr, cpu_self, wall;
	struct bq_http_client_config cfg;
	struct load *l;
	char *doc = NULL;
	uint64_t t0;
	int st;

	memset(r, 0, sizeof(*r));
	st = http_do(b, "GET", base, path, token, NULL, &doc);
	if (st != 200) {
		snprintf(r->note, sizeof(r->note), "not measured: one GET answered %d %.100s", st,
			 doc ? doc : "");
		bq_free(doc);
		return;
	}
	r->doc_len = strlen(doc);
	bq_free(doc);
	if (b->wrk[0]) {
		char url[300];

		snprintf(url, sizeof(url), "%s%s", base, path);
		t0 = bench_now_us();
		cpu_server = tree_cpu_s(server->pid);
		cpu_mgr = proc_cpu_s(b->mgr.pid);
		measure_wrk(b, url, token, r);
		wall = (bench_now_us() - t0) / 1e6;
		r->cpu_server = (tree_cpu_s(server->pid) - cpu_server) / wall;
		r->cpu_mgr = (proc_cpu_s(b->mgr.pid) - cpu_mgr) / wall;
		r->cpu_self = -1.0; /* wrk's own, not ours */
		return;
	}
	l = bq_calloc(1, sizeof(*l));
	if (!l) {
		bench_die("out of memory");
	}
	bq_http_client_config_defaults(&cfg);
	cfg.max_calls = (CONC + NCLI - 1) / NCLI;
	cfg.max_response = 16u << 20;
	l->b = b;
	l->bearer = token;
	snprintf(l->url, sizeof(l->url), "%s%s", base, path);
	l->lat = bq_calloc(LAT_CAP, sizeof(*l->lat));
	for (unsigned i = 0; i < NCLI; i++) {
		l->cli[i] = bq_http_client_new(b->loop, b->log, &cfg);
		if (!l->cli[i]) {
			bench_die("cannot create an HTTP client");
		}
	}
	if (!l->lat) {
		bench_die("out of memory");
	}
	t0 = bench_now_us();
	cpu_server = tree_cpu_s(server->pid);
	cpu_mgr = proc_cpu_s(b->mgr.pid);
	cpu_self = self_cpu_s();
	l->count_from_us = t0 + WARMUP_MS * 1000ull;
	l->end_us = l->count_from_us + HTTP_SECONDS * SEC;
	b->load = l;
	if (!run_until(b, load_done, l, l->end_us + 10 * SEC)) {
		bench_say("GET %s: %u requests still in flight 10 s after the end", path,
			  l->inflight);
	}
	b->load = NULL;
	wall = (bench_now_us() - t0) / 1e6;
	r->cpu_server = (tree_cpu_s(server->pid) - cpu_server) / wall;
	r->cpu_mgr = (proc_cpu_s(b->mgr.pid) - cpu_mgr) / wall;
	r->cpu_self = (self_cpu_s() - cpu_self) / wall;
	r->measured = true;
	r->rps = l->ok / (double)HTTP_SECONDS;
	r->p50_ms = bench_pct_ms(l->lat, l->n_lat, 50);
	r->p99_ms = bench_pct_ms(l->lat, l->n_lat, 99);
	r->failed = l->failed;
	if (l->failed) {
		snprintf(r->note, sizeof(r->note), "; %" PRIu64 " failed, last %d %.80s", l->failed,
			 l->last_bad, l->last_body);
	}
	l->stop = true;
	for (unsigned i = 0; i < NCLI; i++) {
		bq_http_client_free(l->cli[i]); /* calls still running report -ECANCELED */
	}
	bq_free(l->lat);
	bq_free(l);
}

static void http_rows(struct bench *b, const char *path, const char *shape,
		      const struct http_result *be, const struct http_result *fl,
		      const char *fl_missing)
{
	char what[240], gen_be[48], gen_fl[48];

	/* wrk's CPU is its own process's; the libcurl loader's is ours. */
	snprintf(gen_be, sizeof(gen_be),
		 be->cpu_self < 0 ? ", load from wrk" : ", load generator %.2f", be->cpu_self);
	snprintf(gen_fl, sizeof(gen_fl),
		 fl->cpu_self < 0 ? ", load from wrk" : ", load generator %.2f", fl->cpu_self);
	snprintf(what, sizeof(what), "GET %s (%s), %d in flight, keep-alive, %d s: blueq-backend",
		 path, shape, CONC, HTTP_SECONDS);
	if (be->measured) {
		bench_add_row(
			&b->rows, what, ">= 20x the Flask baseline",
			"%.0f requests/s, p50 %.2f ms, p99 %.2f ms (%zu-byte answer; CPU cores: "
			"backend %.2f, manager %.2f%s%s)",
			be->rps, be->p50_ms, be->p99_ms, be->doc_len, be->cpu_server, be->cpu_mgr,
			gen_be, be->note);
	} else {
		bench_add_row(&b->rows, what, ">= 20x the Flask baseline", "%s", be->note);
	}
	snprintf(what, sizeof(what),
		 "GET %s (%s), %d in flight, %d s: Flask baseline (gunicorn -w 2, sync workers)",
		 path, shape, CONC, HTTP_SECONDS);
	if (fl_missing) {
		bench_add_row(&b->rows, what, "(reference)", "%s", fl_missing);
	} else if (fl->measured) {
		bench_add_row(
			&b->rows, what, "(reference)",
			"%.0f requests/s, p50 %.2f ms, p99 %.2f ms (%zu-byte answer; CPU cores: "
			"gunicorn %.2f, manager %.2f%s%s)",
			fl->rps, fl->p50_ms, fl->p99_ms, fl->doc_len, fl->cpu_server, fl->cpu_mgr,
			gen_fl, fl->note);
	} else {
		bench_add_row(&b->rows, what, "(reference)", "%s", fl->note);
	}
	snprintf(what, sizeof(what), "GET %s: blueq-backend / Flask, requests/s (p99)", path);
	if (!fl_missing && be->measured && fl->measured && fl->rps > 0 && be->p99_ms > 0) {
		bench_add_row(&b->rows, what, ">= 20x", "%.1fx (p99 %.1fx lower)",
			      be->rps / fl->rps, fl->p99_ms / be->p99_ms);
	} else {
		bench_add_row(&b->rows, what, ">= 20x", "not measured");
	}
}

static void phase_http(struct bench *b, const char *fl_missing)
{
	struct http_result be = {0}, fl = {0};
	char shape[80];

	bench_say("HTTP: %d requests in flight over %d clients, %d s each (after %d ms warm-up)",
		  CONC, NCLI, HTTP_SECONDS, WARMUP_MS);
	snprintf(shape, sizeof(shape), "%d users", USERS);
	measure_get(b, &b->be, b->be_url, "/api/contacts", b->be_token, &be);
	if (!fl_missing) {
		measure_get(b, &b->fl, b->fl_url, "/api/contacts", b->fl_token, &fl);
	}
	http_rows(b, "/api/contacts", shape, &be, &fl, fl_missing);
	snprintf(shape, sizeof(shape), "proxied, %d sessions in the manager", USERS);
	measure_get(b, &b->be, b->be_url, "/api/bluetooth/manager/status", b->be_token, &be);
	if (!fl_missing) {
		measure_get(b, &b->fl, b->fl_url, "/api/bluetooth/manager/status", b->fl_token,
			    &fl);
	}
	http_rows(b, "/api/bluetooth/manager/status", shape, &be, &fl, fl_missing);
}

/* ---- phase 3: registration -> ready ------------------------------------------------ */

struct reg_wait {
	struct sync_call call;
};

static bool reg_done(struct bench *b, void *ud)
{
	struct reg_wait *w = ud;

	return (w->call.done && w->call.status != 201) ||
	       (w->call.done && (b->sse.ready_us || b->sse.closed));
}

static void phase_register(struct bench *b)
{
	int64_t *e2e = bq_calloc(REG_SAMPLES, sizeof(*e2e));
	int64_t *after = bq_calloc(REG_SAMPLES, sizeof(*after));
	int64_t *reg = bq_calloc(REG_SAMPLES, sizeof(*reg));
	int64_t *login = bq_calloc(LOGIN_SAMPLES, sizeof(*login));
	uint64_t end = bench_now_us() + REG_PHASE_S * SEC;
	unsigned n = 0, nl = 0, bad = 0, lost = 0, tried = 0, bad_login = 0, last_bad = 0;
	const char *rt = "p99 <= 20 ms (password hashing reported separately)";
	char url[200], body[160], what[240];

	if (!e2e || !after || !reg || !login) {
		bench_die("out of memory");
	}
	bench_say("registration -> ready: %d users one at a time, timed by the manager's event "
		  "stream",
		  REG_SAMPLES);
	snprintf(what, sizeof(what),
		 "registration -> ready: POST /api/register until the manager's event "
		 "\"session\" state=ready, %d users one at a time: p50 / p99",
		 REG_SAMPLES);
	if (!sse_open(b)) {
		bench_add_row(&b->rows, what, rt, "not measured: %s",
			      b->died[0] ? b->died : "the manager's event stream did not open");
		goto out;
	}
	snprintf(url, sizeof(url), "%s/api/register", b->be_url);
	for (unsigned i = 0; i < REG_SAMPLES && bench_now_us() < end && !b->sse.closed; i++) {
		struct reg_wait w;
		uint64_t t0;

		tried++;
		snprintf(b->sse.want, sizeof(b->sse.want), "reg%03u", i);
		b->sse.ready_us = 0;
		snprintf(body, sizeof(body), "{\"username\":\"reg%03u\",\"password\":\"%s\"}", i,
			 PASSWORD);
		t0 = bench_now_us();
		sync_start(b, &w.call, "POST", url, NULL, body);
		run_until(b, reg_done, &w, t0 + REG_WAIT_MS * 1000ull);
		sync_finish(b, &w.call);
		if (w.call.status != 201) {
			bad++;
			last_bad = (unsigned)w.call.status;
			if (bad <= 3) {
				bench_say("register reg%03u: %d %.100s", i, w.call.status,
					  w.call.body ? w.call.body : "");
			}
		} else if (!b->sse.ready_us) {
			lost++;
		} else {
			e2e[n] = (int64_t)(b->sse.ready_us - t0);
			reg[n] = (int64_t)(w.call.at_us - t0);
			after[n] = (int64_t)b->sse.ready_us - (int64_t)w.call.at_us;
			n++;
		}
		bq_free(w.call.body);
		if (b->died[0]) {
			break;
		}
	}
	b->sse.want[0] = '\0';
	if (n == 0) {
		bench_add_row(&b->rows, what, rt,
			      "not measured: %s (%u tried, %u non-201, %u never ready)",
			      b->died[0] ? b->died : "no sample", tried, bad, lost);
		goto out;
	}
	bench_add_row(&b->rows, what, rt,
		      "%.2f ms / %.2f ms (max %.2f ms; %u samples%s%s; includes Argon2id)",
		      bench_pct_ms(e2e, n, 50), bench_pct_ms(e2e, n, 99), bench_pct_ms(e2e, n, 100),
		      n, lost ? ", some not ready within 5 s" : "", bad ? ", some not 201" : "");
	bench_add_row(&b->rows,
		      "registration -> ready minus the registration's own 201 latency (the hash), "
		      "i.e. 201 -> ready: p50 / p99",
		      "p99 <= 20 ms", "%.2f ms / %.2f ms (max %.2f ms)", bench_pct_ms(after, n, 50),
		      bench_pct_ms(after, n, 99), bench_pct_ms(after, n, 100));
	bench_add_row(&b->rows,
		      "POST /api/register -> 201 (one Argon2id hash, --hash-cost interactive, "
		      "and the insert): p50 / p99",
		      "(reported separately)", "%.2f ms / %.2f ms", bench_pct_ms(reg, n, 50),
		      bench_pct_ms(reg, n, 99));
	if (bad || lost) {
		bench_say("registration: %u non-201 (last %u), %u never ready within %d ms", bad,
			  last_bad, lost, REG_WAIT_MS);
	}

	/* The hash on its own: a login is one Argon2id verify at the same cost. */
	snprintf(url, sizeof(url), "%s/api/login", b->be_url);
	for (unsigned i = 0; i < LOGIN_SAMPLES && i < n; i++) {
		struct sync_call s;
		uint64_t t0;

		snprintf(body, sizeof(body), "{\"username\":\"reg%03u\",\"password\":\"%s\"}", i,
			 PASSWORD);
		t0 = bench_now_us();
		sync_start(b, &s, "POST", url, NULL, body);
		sync_finish(b, &s);
		if (s.status == 200) {
			login[nl++] = (int64_t)(s.at_us - t0);
		} else {
			bad_login++;
		}
		bq_free(s.body);
	}
	snprintf(what, sizeof(what),
		 "POST /api/login -> 200 (one Argon2id verify: the hashing time), %u logins: p50 / "
		 "p99",
		 nl);
	if (nl) {
		bench_add_row(&b->rows, what, "(reported separately)", "%.2f ms / %.2f ms%s",
			      bench_pct_ms(login, nl, 50), bench_pct_ms(login, nl, 99),
			      bad_login ? " (some logins failed)" : "");
	} else {
		bench_add_row(&b->rows, what, "(reported separately)",
			      "not measured: every login failed");
	}
out:
	sse_close(b);
	bq_free(e2e);
	bq_free(after);
	bq_free(reg);
	bq_free(login);
}

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	struct bq_http_client_config hc;
	struct ready_wait rw = {.want = USERS};
	const char *fl_missing = NULL, *why;
	char path[PATH_MAX + 32], fl_why[512], be_why[512], header[240];
	uint64_t t_start = bench_now_us();

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: " PROG " BIN_DIR [BASELINE_DIR]   (BIN_DIR holds "
				"blueq-node, blueq-manager, blueq-backend; BASELINE_DIR the Flask "
				"app.py, default bench/baseline)\n");
		return 2;
	}
	snprintf(b->bin_dir, sizeof(b->bin_dir), "%s", argv[1]);
	if (!realpath(argc == 3 ? argv[2] : "bench/baseline", b->baseline_dir)) {
		b->baseline_dir[0] = '\0';
	}
	for (int i = 0; i < 3; i++) {
		static const char *const progs[] = {"blueq-node", "blueq-manager", "blueq-backend"};

		if (snprintf(path, sizeof(path), "%s/%s", b->bin_dir, progs[i]) >=
			    (int)sizeof(path) ||
		    access(path, X_OK) < 0) {
			fprintf(stderr, PROG ": %s/%s: not an executable\n", b->bin_dir, progs[i]);
			return 2;
		}
	}
	if (!find_on_path("wrk", b->wrk, sizeof(b->wrk))) {
		b->wrk[0] = '\0';
		bench_say(
			"wrk is not installed (bench/run.sh installs it): loading through libcurl");
	}
	if (!find_on_path("gunicorn", b->gunicorn, sizeof(b->gunicorn))) {
		fl_missing = "baseline not measured: gunicorn not installed (bench/run.sh installs "
			     "it)";
	} else if (!b->baseline_dir[0] ||
		   snprintf(path, sizeof(path), "%s/app.py", b->baseline_dir) >=
			   (int)sizeof(path) ||
		   access(path, R_OK) < 0) {
		fl_missing = "baseline not measured: no app.py in BASELINE_DIR (default "
			     "bench/baseline: run from the repository's top)";
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	snprintf(b->dir, sizeof(b->dir), "%s/bq-bbe.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(b->dir)) {
		fprintf(stderr, PROG ": mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	g_bench = b;
	bench_init(PROG, &b->failed);
	atexit(cleanup);
	b->sse.fd = -1;
	b->log = bq_log_new(PROG);
	b->loop = b->log ? bq_loop_new(NULL, b->log) : NULL;
	bq_http_client_config_defaults(&hc);
	hc.max_calls = 8;
	hc.max_response = 16u << 20;
	b->ctl = b->loop ? bq_http_client_new(b->loop, b->log, &hc) : NULL;
	if (!b->ctl) {
		bench_die("cannot create the loop or the HTTP client");
	}
	bq_log_set_level(b->log, BQ_LOG_WARN);
	bench_say("dir=%s", b->dir);

	start_odin(b);
	b->mgr_port = free_port();
	snprintf(b->mgr_url, sizeof(b->mgr_url), "http://127.0.0.1:%d", b->mgr_port);
	start_backend(b);
	start_manager(b);
	if (!fl_missing) {
		start_flask(b);
	}
	bench_say("manager %s, blueq-backend %s, Flask %s", b->mgr_url, b->be_url,
		  fl_missing ? "(not run)" : b->fl_url);

	/* Phase 1: the same names in both (blueq first: the manager connects each once). */
	why = seed_users(b, b->be_url, "blueq-backend", b->be_token, sizeof(b->be_token), be_why,
			 sizeof(be_why));
	if (why) {
		bench_die("%s", why);
	}
	if (!fl_missing) {
		fl_missing = seed_users(b, b->fl_url, "Flask baseline", b->fl_token,
					sizeof(b->fl_token), fl_why, sizeof(fl_why));
	}
	if (!run_until(b, mgr_ready_done, &rw, bench_now_us() + 20 * SEC)) {
		bench_say("only %" PRId64 " of %d sessions ready in the manager after 20 s",
			  rw.ready, USERS);
	}

	phase_http(b, fl_missing);
	if (!b->died[0]) {
		phase_register(b);
	}

	snprintf(header, sizeof(header),
		 "what (blueq-backend vs the Flask baseline; one blueq-manager, one blueq-node as "
		 "Odin over a UNIX socket; HTTP load from %s)",
		 b->wrk[0] ? "wrk -t1 -c100" : "one process through lib/http/client");
	bench_print_rows(&b->rows, header);
	printf("\n(%.0f s in all)\n", (bench_now_us() - t_start) / 1e6);
	fflush(stdout);

	cleanup();
	g_bench = NULL;
	bq_http_client_free(b->ctl);
	bq_loop_free(b->loop);
	bq_log_free(b->log);
	return 0;
}
