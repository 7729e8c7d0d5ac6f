/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "core/log.h"
#include "core/opt.h"
#include "http/client.h"
#include "loop/loop.h"
#include "testutil.h"

/*
 * A tiny HTTP/1.1 server on 127.0.0.1, port from the kernel: one accept thread, one
 * thread per connection, keep-alive, canned answers chosen by path.
 */

#define SRV_MAX_CONNS 128
#define SRV_BUF 65536
#define DISCARD_MAX (4 * 1024 * 1024)
#define TEST_MAX_RESPONSE 1024
#define WAIT_MS 10000

struct srv {
	int lfd;
	uint16_t port;
	pthread_t thr;
	atomic_bool stop;
	atomic_int accepts;
	atomic_int requests;
	pthread_mutex_t mu;
	pthread_t conns[SRV_MAX_CONNS];
	int nconns;
};

struct conn_arg {
	struct srv *s;
	int fd;
};

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool send_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t w = send(fd, c, n, MSG_NOSIGNAL);

		if (w <= 0) {
			return false;
		}
		c += w;
		n -= (size_t)w;
	}
	return true;
}

static bool send_response(int fd, int status, const char *reason, const void *body, size_t len)
{
	char head[256];
	int n = snprintf(
		head, sizeof(head),
		"HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", status,
		reason, len);

	return send_all(fd, head, (size_t)n) && send_all(fd, body, len);
}

/* Wait until fd is readable or the peer left; false when the server stops or the peer left. */
static bool wait_readable(struct srv *s, int fd)
{
	while (!atomic_load(&s->stop)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, 20);

		if (r > 0) {
			return true;
		}
	}
	return false;
}

/* Sleep up to ms in 10 ms steps; false as soon as the peer closed or the server stops. */
static bool slow_wait(struct srv *s, int fd, int ms)
{
	for (int waited = 0; waited < ms; waited += 10) {
		struct pollfd p = {.fd = fd, .events = POLLRDHUP};

		if (atomic_load(&s->stop)) {
			return false;
		}
		if (poll(&p, 1, 10) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
			return false;
		}
	}
	return true;
}

/* Value of header name in the request head (NUL-terminated copy into out), "" if absent. */
static void header_get(const char *head, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = strstr(head, "\r\n");

	out[0] = '\0';
	while (p && p[2] != '\r') {
		const char *line = p + 2;
		const char *end = strstr(line, "\r\n");

		if (!end) {
			return;
		}
		if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 &&
		    line[nl] == ':') {
			const char *v = line + nl + 1;
			size_t vl;

			while (*v == ' ') {
				v++;
			}
			vl = (size_t)(end - v);
			if (vl >= cap) {
				vl = cap - 1;
			}
			memcpy(out, v, vl);
			out[vl] = '\0';
			return;
		}
		p = end;
	}
}

static void pattern_fill(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		p[i] = (char)('a' + i % 26);
	}
}

static int64_t path_number(const char *path, const char *prefix)
{
	int64_t v = -1;

	if (strncmp(path, prefix, strlen(prefix)) != 0 ||
	    bq_opt_parse_int(path + strlen(prefix), &v) < 0) {
		return -1;
	}
	return v;
}

/* Answer one request; false when the connection should close. */
static bool serve(struct srv *s, int fd, const char *method, const char *path, const char *head,
		  const char *body, size_t body_len)
{
	char big[8192];
	int64_t n;

	if (strcmp(path, "/ok") == 0 || strncmp(path, "/ok?", 4) == 0) {
		return send_response(fd, 200, "OK", "{\"ok\":true}", 11);
	}
	if (strcmp(path, "/empty") == 0) {
		return send_response(fd, 200, "OK", "", 0);
	}
	if (strcmp(path, "/echo") == 0) {
		char auth[512], ct[128], expect[64], out[4096];
		int k;

		header_get(head, "Authorization", auth, sizeof(auth));
		header_get(head, "Content-Type", ct, sizeof(ct));
		header_get(head, "Expect", expect, sizeof(expect));
		k = snprintf(out, sizeof(out),
			     "method=%s\nauth=%s\nct=%s\nexpect=%s\nbody=", method, auth, ct,
			     expect);
		if (body_len > sizeof(out) - (size_t)k) {
			return send_response(fd, 500, "Too Big", "", 0);
		}
		memcpy(out + k, body, body_len);
		return send_response(fd, 200, "OK", out, (size_t)k + body_len);
	}
	if (strcmp(path, "/big") == 0) {
		pattern_fill(big, 4096);
		return send_response(fd, 200, "OK", big, 4096);
	}
	n = path_number(path, "/size/");
	if (n >= 0 && n <= (int64_t)sizeof(big)) {
		pattern_fill(big, (size_t)n);
		return send_response(fd, 200, "OK", big, (size_t)n);
	}
	n = path_number(path, "/chunked/");
	if (n >= 0 && n <= (int64_t)sizeof(big)) {
		const char *h = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
		char line[32];

		pattern_fill(big, (size_t)n);
		if (!send_all(fd, h, strlen(h))) {
			return false;
		}
		for (int64_t off = 0; off < n; off += 100) {
			size_t c = (size_t)(n - off < 100 ? n - off : 100);
			int l = snprintf(line, sizeof(line), "%zx\r\n", c);

			if (!send_all(fd, line, (size_t)l) || !send_all(fd, big + off, c) ||
			    !send_all(fd, "\r\n", 2)) {
				return false;
			}
		}
		return send_all(fd, "0\r\n\r\n", 5);
	}
	if (strcmp(path, "/slow") == 0) {
		if (!slow_wait(s, fd, 3000)) {
			return false;
		}
		return send_response(fd, 200, "OK", "late", 4);
	}
	if (strcmp(path, "/close") == 0) {
		const char *r =
			"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye";

		send_all(fd, r, strlen(r));
		return false;
	}
	if (strcmp(path, "/status/503") == 0) {
		return send_response(fd, 503, "Service Unavailable", "unavailable", 11);
	}
	if (strcmp(path, "/garbage") == 0) {
		send_all(fd, "NOT HTTP AT ALL\r\n\r\n", 19);
		return false;
	}
	return send_response(fd, 404, "Not Found", "", 0);
}

/* Read and drop a body of body_len bytes of which have - head_len are in buf already. */
static bool discard(struct srv *s, int fd, char *buf, size_t have, size_t head_len, size_t body_len)
{
	size_t got = have - head_len;
	char tmp[16384];

	while (got < body_len) {
		ssize_t r;

		if (!wait_readable(s, fd)) {
			return false;
		}
		r = recv(fd, tmp, sizeof(tmp), 0);
		if (r <= 0) {
			return false;
		}
		got += (size_t)r;
	}
	/* Pipelining is not something libcurl does; extra bytes would be a test bug. */
	return got == body_len;
}

static void *conn_main(void *p)
{
	struct conn_arg *a = p;
	struct srv *s = a->s;
	int fd = a->fd;
	char *buf = malloc(SRV_BUF + 1);
	size_t have = 0;

	free(a);
	if (!buf) {
		close(fd);
		return NULL;
	}
	for (;;) {
		char *end;
		char method[32], path[4096], cl[32];
		size_t head_len, body_len = 0;
		const char *sp1, *sp2;
		int64_t v;
		bool keep;

		buf[have] = '\0';
		while (!(end = strstr(buf, "\r\n\r\n"))) {
			ssize_t r;

			if (have == SRV_BUF || !wait_readable(s, fd)) {
				goto out;
			}
			r = recv(fd, buf + have, SRV_BUF - have, 0);
			if (r <= 0) {
				goto out;
			}
			have += (size_t)r;
			buf[have] = '\0';
		}
		head_len = (size_t)(end - buf) + 4;
		sp1 = strchr(buf, ' ');
		sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		if (!sp1 || !sp2 || (size_t)(sp1 - buf) >= sizeof(method) ||
		    (size_t)(sp2 - sp1 - 1) >= sizeof(path)) {
			goto out;
		}
		memcpy(method, buf, (size_t)(sp1 - buf));
		method[sp1 - buf] = '\0';
		memcpy(path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
		path[sp2 - sp1 - 1] = '\0';
		/* Cut after the last header's CRLF so header_get sees every line whole. */
		end[2] = '\0';
		header_get(buf, "Content-Length", cl, sizeof(cl));
		end[2] = '\r';
		if (cl[0]) {
			if (bq_opt_parse_int(cl, &v) < 0 || v < 0 || v > DISCARD_MAX) {
				goto out;
			}
			body_len = (size_t)v;
		}
		if (body_len > SRV_BUF - head_len) {
			/* Only /discard takes bodies bigger than the buffer: counted, not kept. */
			char expect[64];

			if (strcmp(path, "/discard") != 0 ||
			    !discard(s, fd, buf, have, head_len, body_len)) {
				goto out;
			}
			header_get(buf, "Expect", expect, sizeof(expect));
			atomic_fetch_add(&s->requests, 1);
			if (!send_response(fd, 200, "OK", expect, strlen(expect))) {
				goto out;
			}
			have = 0;
			continue;
		}
		while (have < head_len + body_len) {
			ssize_t r;

			if (!wait_readable(s, fd)) {
				goto out;
			}
			r = recv(fd, buf + have, SRV_BUF - have, 0);
			if (r <= 0) {
				goto out;
			}
			have += (size_t)r;
		}
		atomic_fetch_add(&s->requests, 1);
		end[2] = '\0';
		keep = serve(s, fd, method, path, buf, buf + head_len, body_len);
		if (!keep) {
			goto out;
		}
		memmove(buf, buf + head_len + body_len, have - head_len - body_len);
		have -= head_len + body_len;
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

static void *accept_main(void *p)
{
	struct srv *s = p;

	while (!atomic_load(&s->stop)) {
		struct pollfd pf = {.fd = s->lfd, .events = POLLIN};
		struct conn_arg *a;
		int fd;

		if (poll(&pf, 1, 20) <= 0) {
			continue;
		}
		fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			continue;
		}
		atomic_fetch_add(&s->accepts, 1);
		a = malloc(sizeof(*a));
		pthread_mutex_lock(&s->mu);
		if (a && s->nconns < SRV_MAX_CONNS) {
			a->s = s;
			a->fd = fd;
			if (pthread_create(&s->conns[s->nconns], NULL, conn_main, a) == 0) {
				s->nconns++;
				a = NULL;
				fd = -1;
			}
		}
		pthread_mutex_unlock(&s->mu);
		free(a);
		if (fd >= 0) {
			close(fd);
		}
	}
	return NULL;
}

static int listen_loopback(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void srv_start(struct srv *s)
{
	memset(s, 0, sizeof(*s));
	s->lfd = listen_loopback(&s->port);
	ck_assert_int_eq(listen(s->lfd, 128), 0);
	pthread_mutex_init(&s->mu, NULL);
	ck_assert_int_eq(pthread_create(&s->thr, NULL, accept_main, s), 0);
}

static void srv_stop(struct srv *s)
{
	atomic_store(&s->stop, true);
	pthread_join(s->thr, NULL);
	for (int i = 0; i < s->nconns; i++) {
		pthread_join(s->conns[i], NULL);
	}
	close(s->lfd);
	pthread_mutex_destroy(&s->mu);
}

/* ---- fixture ----------------------------------------------------------------------- */

#define LOG_LINES 64

struct fx {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_http_client *cli;
	struct srv srv;
	char lines[LOG_LINES][1024];
	int nlines;
};

static struct fx F;

static void log_sink(void *user_data, enum bq_log_level level, const char *line)
{
	struct fx *f = user_data;

	if (f->nlines < LOG_LINES) {
		snprintf(f->lines[f->nlines++], sizeof(f->lines[0]), "%s", line);
	}
}

static void fx_start(const struct bq_http_client_config *cfg)
{
	struct bq_http_client_config def;

	memset(&F, 0, sizeof(F));
	if (!cfg) {
		bq_http_client_config_defaults(&def);
		def.max_response = TEST_MAX_RESPONSE;
		cfg = &def;
	}
	srv_start(&F.srv);
	F.log = bq_log_new("test");
	ck_assert_ptr_nonnull(F.log);
	bq_log_set_level(F.log, BQ_LOG_DEBUG);
	bq_log_set_sink(F.log, log_sink, &F);
	F.loop = bq_loop_new(NULL, F.log);
	ck_assert_ptr_nonnull(F.loop);
	F.cli = bq_http_client_new(F.loop, F.log, cfg);
	ck_assert_ptr_nonnull(F.cli);
}

static void fx_stop(void)
{
	bq_http_client_free(F.cli);
	F.cli = NULL;
	/* Let any deferred flush queued before the free run against the loop. */
	bq_loop_run_once(F.loop, 0);
	bq_loop_free(F.loop);
	bq_log_free(F.log);
	srv_stop(&F.srv);
}

static void url(char *out, size_t cap, const char *path)
{
	snprintf(out, cap, "http://127.0.0.1:%u%s", F.srv.port, path);
}

/* ---- response records -------------------------------------------------------------- */

static bool g_in_cancel;
static bool g_in_free;

struct resp {
	int calls;
	int status;
	char body[8192];
	size_t len;
	bool body_null;
	bool nul_terminated;
	bool during_cancel;
	bool during_free;
	/* Optional actions from inside the callback. */
	struct bq_http_call *cancel_other;
	struct resp *start_next; /* start GET /ok with this record */
	int start_rc;
};

static void resp_cb(int status, const char *body, size_t len, void *user_data);

static int get(const char *path, struct resp *r, struct bq_http_call **out)
{
	char u[256];
	struct bq_http_request req = {.url = u};

	url(u, sizeof(u), path);
	return bq_http_client_request(F.cli, &req, resp_cb, r, out);
}

static void resp_cb(int status, const char *body, size_t len, void *user_data)
{
	struct resp *r = user_data;

	r->calls++;
	r->status = status;
	r->body_null = body == NULL;
	r->during_cancel = g_in_cancel;
	r->during_free = g_in_free;
	if (body) {
		r->len = len;
		memcpy(r->body, body, len < sizeof(r->body) ? len : sizeof(r->body));
		r->nul_terminated = body[len] == '\0';
	}
	if (r->cancel_other) {
		bq_http_call_cancel(r->cancel_other);
	}
	if (r->start_next) {
		r->start_rc = get("/ok", r->start_next, NULL);
	}
}

static bool resp_done(void *p)
{
	return ((struct resp *)p)->calls > 0;
}

struct many {
	struct resp *r;
	int n;
};

static bool many_done(void *p)
{
	struct many *m = p;

	for (int i = 0; i < m->n; i++) {
		if (m->r[i].calls == 0) {
			return false;
		}
	}
	return true;
}

static void run_until_done(struct resp *r)
{
	ck_assert_msg(bq_test_run_until(F.loop, resp_done, r, WAIT_MS), "no callback in time");
}

/* Run the loop a little and make sure nothing more happens. */
static void settle(int ms)
{
	long long end = real_ms() + ms;

	while (real_ms() < end) {
		bq_loop_run_once(F.loop, 10);
	}
}

/* ---- tests ------------------------------------------------------------------------- */

START_TEST(test_get_ok)
{
	struct resp r = {0}, e = {0};
	struct bq_http_call *call = NULL;

	fx_start(NULL);
	ck_assert_int_eq(get("/ok", &r, &call), 0);
	ck_assert_ptr_nonnull(call);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 1);
	ck_assert_int_eq(r.calls, 0); /* never from inside request() */
	run_until_done(&r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.len, 11);
	ck_assert_mem_eq(r.body, "{\"ok\":true}", 11);
	ck_assert(r.nul_terminated);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 0);

	/* An empty body is "" with length 0, not NULL. */
	ck_assert_int_eq(get("/empty", &e, NULL), 0);
	run_until_done(&e);
	ck_assert_int_eq(e.status, 200);
	ck_assert(!e.body_null);
	ck_assert_uint_eq(e.len, 0);
	ck_assert(e.nul_terminated);

	settle(50);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(e.calls, 1);
	fx_stop();
}
END_TEST

START_TEST(test_post_body_and_bearer)
{
	static const char body[] = "{\"a\":1}\0tail\xff";
	const size_t blen = sizeof(body) - 1;
	char u[256], want[512];
	struct resp r = {0}, p = {0};
	struct bq_http_request req = {.method = "POST",
				      .url = u,
				      .bearer_token = "tok-123.abc",
				      .body = body,
				      .body_len = blen};
	int k;

	fx_start(NULL);
	url(u, sizeof(u), "/echo");
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	run_until_done(&r);
	ck_assert_int_eq(r.status, 200);
	k = snprintf(want, sizeof(want),
		     "method=POST\nauth=Bearer tok-123.abc\nct=application/json\nexpect=\nbody=");
	memcpy(want + k, body, blen);
	ck_assert_uint_eq(r.len, (size_t)k + blen);
	ck_assert_mem_eq(r.body, want, r.len);

	/* Another method with a body and its own content type; no token: no header. */
	req.method = "PUT";
	req.bearer_token = NULL;
	req.content_type = "text/plain; charset=utf-8";
	req.body = "x";
	req.body_len = 1;
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &p, NULL), 0);
	run_until_done(&p);
	ck_assert_int_eq(p.status, 200);
	k = snprintf(want, sizeof(want),
		     "method=PUT\nauth=\nct=text/plain; charset=utf-8\nexpect=\nbody=x");
	ck_assert_uint_eq(p.len, (size_t)k);
	ck_assert_mem_eq(p.body, want, p.len);

	fx_stop();
}
END_TEST

START_TEST(test_post_large_body_no_expect)
{
	/* libcurl 7.88 asks "Expect: 100-continue" for bodies over 1 MiB. */
	const size_t n = 1100 * 1024;
	char u[256];
	char *large = malloc(n);
	struct resp r = {0};
	struct bq_http_request req = {.method = "POST", .url = u, .body = large, .body_len = n};

	ck_assert_ptr_nonnull(large);
	fx_start(NULL);
	memset(large, 'z', n);
	url(u, sizeof(u), "/discard");
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	free(large); /* the body was copied */
	run_until_done(&r);
	ck_assert_int_eq(r.status, 200);
	/* The server answers with the Expect header it saw: none. */
	ck_assert_uint_eq(r.len, 0);
	ck_assert_int_eq(atomic_load(&F.srv.requests), 1);
	fx_stop();
}
END_TEST

START_TEST(test_status_passed_through)
{
	struct resp r = {0}, n = {0};

	fx_start(NULL);
	ck_assert_int_eq(get("/status/503", &r, NULL), 0);
	ck_assert_int_eq(get("/nowhere", &n, NULL), 0);
	run_until_done(&r);
	run_until_done(&n);
	ck_assert_int_eq(r.status, 503);
	ck_assert_uint_eq(r.len, 11);
	ck_assert_mem_eq(r.body, "unavailable", 11);
	ck_assert_int_eq(n.status, 404);
	fx_stop();
}
END_TEST

START_TEST(test_connection_refused)
{
	uint16_t port;
	int fd;
	char u[256];
	struct resp r = {0};
	struct bq_http_request req = {.url = u, .bearer_token = "refused-secret-token"};

	fx_start(NULL);
	/* A port that was ours a moment ago and has no listener now. */
	fd = listen_loopback(&port);
	close(fd);
	snprintf(u, sizeof(u), "http://127.0.0.1:%u/ok", port);
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	run_until_done(&r);
	ck_assert_int_eq(r.status, -ECONNREFUSED);
	ck_assert(r.body_null);
	for (int i = 0; i < F.nlines; i++) {
		ck_assert_ptr_null(strstr(F.lines[i], "refused-secret-token"));
	}
	fx_stop();
}
END_TEST

START_TEST(test_timeout)
{
	char u[256];
	struct resp r = {0};
	struct bq_http_request req = {.url = u, .timeout_ms = 200};
	long long t0, dt;

	fx_start(NULL);
	url(u, sizeof(u), "/slow");
	t0 = real_ms();
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	run_until_done(&r);
	dt = real_ms() - t0;
	ck_assert_int_eq(r.status, -ETIMEDOUT);
	ck_assert(r.body_null);
	ck_assert_int_ge(dt, 150);
	ck_assert_int_lt(dt, 2000);
	fx_stop();
}
END_TEST

START_TEST(test_response_too_large)
{
	struct resp big = {0}, at = {0}, over = {0}, ch_at = {0}, ch_over = {0};

	fx_start(NULL); /* max_response = 1024 */
	ck_assert_int_eq(get("/big", &big, NULL), 0);
	ck_assert_int_eq(get("/size/1024", &at, NULL), 0);
	ck_assert_int_eq(get("/size/1025", &over, NULL), 0);
	/* Chunked: no Content-Length, so the write callback's cap must catch it. */
	ck_assert_int_eq(get("/chunked/1024", &ch_at, NULL), 0);
	ck_assert_int_eq(get("/chunked/1025", &ch_over, NULL), 0);
	run_until_done(&big);
	run_until_done(&at);
	run_until_done(&over);
	run_until_done(&ch_at);
	run_until_done(&ch_over);
	ck_assert_int_eq(big.status, -EMSGSIZE);
	ck_assert(big.body_null);
	ck_assert_int_eq(at.status, 200);
	ck_assert_uint_eq(at.len, 1024);
	ck_assert(at.nul_terminated);
	ck_assert_int_eq(over.status, -EMSGSIZE);
	ck_assert_int_eq(ch_at.status, 200);
	ck_assert_uint_eq(ch_at.len, 1024);
	ck_assert_int_eq(ch_over.status, -EMSGSIZE);
	fx_stop();
}
END_TEST

START_TEST(test_bad_input)
{
	static const char *const bad_urls[] = {
		"",
		"ftp://127.0.0.1/x",
		"file:///etc/passwd",
		"127.0.0.1/ok",
		"http:/x",
		"http://",
		"http://exa mple/",
		"http://127.0.0.1/ok\r\nX-Injected: 1",
		"https://[::1/",
	};
	static const char *const bad_methods[] = {"", "G ET", "GET\r\n", "TOOLONGMETHODNAME1",
						  "GE(T"};
	char u[4096];
	char *longu;
	struct resp r = {0}, upper = {0}, maxlen = {0};
	struct bq_http_request req = {.url = u};
	struct bq_http_call *call = (struct bq_http_call *)&r;
	size_t n;

	fx_start(NULL);
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, NULL, &r, NULL), -EINVAL);
	ck_assert_int_eq(bq_http_client_request(F.cli, NULL, resp_cb, &r, NULL), -EINVAL);
	req.url = NULL;
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, &call), -EINVAL);
	ck_assert_ptr_null(call);
	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
		req.url = bad_urls[i];
		ck_assert_msg(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL) == -EINVAL,
			      "accepted url %s", bad_urls[i]);
	}
	req.url = u;
	url(u, sizeof(u), "/ok");
	for (size_t i = 0; i < sizeof(bad_methods) / sizeof(bad_methods[0]); i++) {
		req.method = bad_methods[i];
		ck_assert_msg(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL) == -EINVAL,
			      "accepted method %s", bad_methods[i]);
	}
	req.method = NULL;
	req.bearer_token = "abc\r\nX-Injected: 1";
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), -EINVAL);
	req.bearer_token = NULL;
	req.content_type = "text/plain\nX: y";
	req.body = "x";
	req.body_len = 1;
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), -EINVAL);
	req.content_type = NULL;
	req.body = NULL;
	req.body_len = 5; /* a length without a body */
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), -EINVAL);
	req.body_len = 0;

	/* 2048 bytes is too long; 2047 is fine. */
	longu = malloc(2100);
	ck_assert_ptr_nonnull(longu);
	url(longu, 2100, "/ok?pad=");
	n = strlen(longu);
	memset(longu + n, 'a', 2048 - n);
	longu[2048] = '\0';
	req.url = longu;
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), -EINVAL);
	longu[2047] = '\0';
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &maxlen, NULL), 0);
	free(longu);

	/* The scheme is case-insensitive. */
	snprintf(u, sizeof(u), "HTTP://127.0.0.1:%u/ok", F.srv.port);
	req.url = u;
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &upper, NULL), 0);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 2);

	run_until_done(&upper);
	run_until_done(&maxlen);
	ck_assert_int_eq(upper.status, 200);
	ck_assert_int_eq(maxlen.status, 200);
	settle(50);
	ck_assert_int_eq(r.calls, 0);
	ck_assert_int_eq(upper.calls, 1);
	ck_assert_int_eq(maxlen.calls, 1);
	fx_stop();
}
END_TEST

START_TEST(test_max_calls)
{
	struct bq_http_client_config cfg;
	struct bq_http_call *c1 = NULL, *c2 = NULL, *c3 = (struct bq_http_call *)&cfg;
	struct resp r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};

	bq_http_client_config_defaults(&cfg);
	cfg.max_calls = 2;
	fx_start(&cfg);
	ck_assert_int_eq(get("/slow", &r1, &c1), 0);
	ck_assert_int_eq(get("/slow", &r2, &c2), 0);
	ck_assert_int_eq(get("/ok", &r3, &c3), -EAGAIN);
	ck_assert_ptr_null(c3);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 2);
	bq_http_call_cancel(c1);
	bq_http_call_cancel(c2);
	/* Still counted until their callbacks ran. */
	ck_assert_int_eq(get("/ok", &r3, NULL), -EAGAIN);
	run_until_done(&r1);
	run_until_done(&r2);
	ck_assert_int_eq(r1.status, -ECANCELED);
	ck_assert_int_eq(r2.status, -ECANCELED);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 0);
	ck_assert_int_eq(get("/ok", &r4, NULL), 0);
	run_until_done(&r4);
	ck_assert_int_eq(r4.status, 200);
	settle(30);
	ck_assert_int_eq(r3.calls, 0);
	ck_assert_int_eq(r1.calls + r2.calls + r4.calls, 3);
	fx_stop();
}
END_TEST

START_TEST(test_cancel)
{
	struct bq_http_call *c = NULL, *b = NULL;
	struct resp r = {0}, a = {0}, rb = {0};

	fx_start(NULL);
	ck_assert_int_eq(get("/slow", &r, &c), 0);
	/* Let it connect and send, so the cancel hits a live transfer. */
	settle(50);
	g_in_cancel = true;
	bq_http_call_cancel(c);
	bq_http_call_cancel(c); /* a second cancel before the callback is harmless */
	g_in_cancel = false;
	ck_assert_int_eq(r.calls, 0);
	run_until_done(&r);
	ck_assert_int_eq(r.status, -ECANCELED);
	ck_assert(r.body_null);
	ck_assert(!r.during_cancel);

	/* Cancel from inside another call's callback. */
	ck_assert_int_eq(get("/slow", &rb, &b), 0);
	a.cancel_other = b;
	ck_assert_int_eq(get("/ok", &a, NULL), 0);
	run_until_done(&a);
	run_until_done(&rb);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(rb.status, -ECANCELED);
	settle(50);
	ck_assert_int_eq(r.calls, 1);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(rb.calls, 1);
	ck_assert_uint_eq(bq_http_client_active(F.cli), 0);
	fx_stop();
}
END_TEST

/* A callback that tries to start a request while the client is being freed. */
static void during_free_cb(int status, const char *body, size_t len, void *user_data)
{
	struct resp *r = user_data;

	resp_cb(status, body, len, user_data);
	r->start_rc = get("/ok", r, NULL);
}

START_TEST(test_free_in_flight)
{
	struct resp r[5];
	struct bq_http_call *c = NULL;
	char u[256];
	struct bq_http_request req = {.url = u};

	memset(r, 0, sizeof(r));
	fx_start(NULL);
	ck_assert_int_eq(get("/slow", &r[0], NULL), 0);
	ck_assert_int_eq(get("/slow", &r[1], NULL), 0);
	url(u, sizeof(u), "/slow");
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, during_free_cb, &r[2], NULL), 0);
	settle(50);
	ck_assert_int_eq(get("/ok", &r[3], NULL), 0); /* just started */
	ck_assert_int_eq(get("/slow", &r[4], &c), 0);
	bq_http_call_cancel(c); /* completion queued, not delivered yet */
	ck_assert_uint_eq(bq_http_client_active(F.cli), 5);

	g_in_free = true;
	bq_http_client_free(F.cli);
	g_in_free = false;
	F.cli = NULL;
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].status, -ECANCELED);
		ck_assert(r[i].during_free);
		ck_assert(r[i].body_null);
	}
	ck_assert_int_eq(r[2].start_rc, -ECANCELED);
	/* The deferred flush queued by the cancel runs now and must find nothing. */
	settle(30);
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(r[i].calls, 1);
	}
	fx_stop();
}
END_TEST

START_TEST(test_concurrent)
{
	enum { N = 50 };
	struct resp *r = calloc(N, sizeof(*r));
	struct many m = {r, N};
	char bodies[N][16];
	char u[256];

	ck_assert_ptr_nonnull(r);
	fx_start(NULL);
	url(u, sizeof(u), "/echo");
	for (int i = 0; i < N; i++) {
		struct bq_http_request req = {.method = "POST", .url = u, .body = bodies[i]};

		req.body_len = (size_t)snprintf(bodies[i], sizeof(bodies[i]), "n=%d", i);
		ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r[i], NULL), 0);
	}
	ck_assert_uint_eq(bq_http_client_active(F.cli), N);
	ck_assert_msg(bq_test_run_until(F.loop, many_done, &m, 15000), "not all completed");
	settle(50);
	for (int i = 0; i < N; i++) {
		char want[64];

		snprintf(want, sizeof(want), "body=n=%d", i);
		ck_assert_int_eq(r[i].calls, 1);
		ck_assert_int_eq(r[i].status, 200);
		r[i].body[r[i].len < sizeof(r[i].body) ? r[i].len : sizeof(r[i].body) - 1] = '\0';
		ck_assert_msg(strstr(r[i].body, want) != NULL, "call %d got %s", i, r[i].body);
	}
	ck_assert_uint_eq(bq_http_client_active(F.cli), 0);
	/* 50 calls over at most 16 connections. */
	ck_assert_int_le(atomic_load(&F.srv.accepts), 16);
	fx_stop();
	free(r);
}
END_TEST

START_TEST(test_request_from_callback)
{
	struct bq_http_client_config cfg;
	struct resp a = {0}, b = {0};

	bq_http_client_config_defaults(&cfg);
	cfg.max_calls = 1; /* the finishing call's slot is free inside its callback */
	fx_start(&cfg);
	a.start_next = &b;
	ck_assert_int_eq(get("/ok", &a, NULL), 0);
	run_until_done(&a);
	ck_assert_int_eq(a.start_rc, 0);
	run_until_done(&b);
	ck_assert_int_eq(a.status, 200);
	ck_assert_int_eq(b.status, 200);
	settle(30);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(b.calls, 1);
	fx_stop();
}
END_TEST

START_TEST(test_connection_reuse)
{
	struct resp r[3];

	memset(r, 0, sizeof(r));
	fx_start(NULL);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(get("/ok", &r[i], NULL), 0);
		run_until_done(&r[i]);
		ck_assert_int_eq(r[i].status, 200);
	}
	ck_assert_int_eq(atomic_load(&F.srv.requests), 3);
	ck_assert_int_eq(atomic_load(&F.srv.accepts), 1);
	fx_stop();
}
END_TEST

/* From the debug log: a socket removed by libcurl and a new one with the same number. */
static bool fd_readded(void)
{
	for (int i = 0; i < F.nlines; i++) {
		const char *p = strstr(F.lines[i], "msg=socket fd=");
		char fd[32];
		size_t n;

		if (!p || !strstr(p, "what=4")) {
			continue;
		}
		p += strlen("msg=socket ");
		n = strcspn(p, " ");
		snprintf(fd, sizeof(fd), "%.*s ", (int)n, p);
		for (int j = i + 1; j < F.nlines; j++) {
			if (strstr(F.lines[j], fd) && strstr(F.lines[j], "known=0")) {
				return true;
			}
		}
	}
	return false;
}

/*
 * Each answer closes its connection, so libcurl removes each socket and the next one
 * usually gets the same fd number: the socket callback must not see it as registered.
 */
START_TEST(test_new_socket_each_time)
{
	struct resp r[6];

	memset(r, 0, sizeof(r));
	fx_start(NULL);
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(get("/close", &r[i], NULL), 0);
		run_until_done(&r[i]);
		ck_assert_int_eq(r[i].status, 200);
		ck_assert_uint_eq(r[i].len, 3);
	}
	ck_assert_int_eq(atomic_load(&F.srv.accepts), 6);
	ck_assert_msg(fd_readded(), "no fd number came back after a REMOVE");
	fx_stop();
}
END_TEST

START_TEST(test_localhost)
{
	char u[256];
	struct resp r = {0};
	struct bq_http_request req = {.url = u};

	fx_start(NULL);
	snprintf(u, sizeof(u), "http://localhost:%u/ok", F.srv.port);
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	run_until_done(&r);
	ck_assert_int_eq(r.status, 200);
	fx_stop();
}
END_TEST

START_TEST(test_eio_logged_without_token)
{
	char u[256];
	struct resp r = {0};
	struct bq_http_request req = {.url = u, .bearer_token = "SECRET-TOKEN-XYZ"};
	bool url_logged = false;

	fx_start(NULL);
	url(u, sizeof(u), "/garbage");
	ck_assert_int_eq(bq_http_client_request(F.cli, &req, resp_cb, &r, NULL), 0);
	run_until_done(&r);
	ck_assert_int_eq(r.status, -EIO);
	for (int i = 0; i < F.nlines; i++) {
		ck_assert_ptr_null(strstr(F.lines[i], "SECRET-TOKEN-XYZ"));
		if (strstr(F.lines[i], "level=warn") && strstr(F.lines[i], "/garbage")) {
			url_logged = true;
		}
	}
	ck_assert_msg(url_logged, "no warn line with the URL");
	fx_stop();
}
END_TEST

static Suite *http_client_suite(void)
{
	Suite *s = suite_create("http_client");
	TCase *basic = tcase_create("basic");
	TCase *errors = tcase_create("errors");
	TCase *life = tcase_create("lifecycle");

	tcase_set_timeout(basic, 20);
	tcase_set_timeout(errors, 20);
	tcase_set_timeout(life, 20);
	tcase_add_test(basic, test_get_ok);
	tcase_add_test(basic, test_post_body_and_bearer);
	tcase_add_test(basic, test_post_large_body_no_expect);
	tcase_add_test(basic, test_status_passed_through);
	tcase_add_test(basic, test_connection_reuse);
	tcase_add_test(basic, test_new_socket_each_time);
	tcase_add_test(basic, test_localhost);
	suite_add_tcase(s, basic);

	tcase_add_test(errors, test_connection_refused);
	tcase_add_test(errors, test_timeout);
	tcase_add_test(errors, test_response_too_large);
	tcase_add_test(errors, test_bad_input);
	tcase_add_test(errors, test_eio_logged_without_token);
	suite_add_tcase(s, errors);

	tcase_add_test(life, test_max_calls);
	tcase_add_test(life, test_cancel);
	tcase_add_test(life, test_free_in_flight);
	tcase_add_test(life, test_concurrent);
	tcase_add_test(life, test_request_from_callback);
	suite_add_tcase(s, life);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_client_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
