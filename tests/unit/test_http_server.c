/* SPDX-License-Identifier: MIT */
/*
 * The HTTP server on a real loop and real loopback sockets. The loop runs on the
 * test's thread (bq_loop is single-threaded); each client is a blocking socket on a
 * second thread that writes raw HTTP/1.1 and reads until EOF, so every byte the
 * server sends is checked as a client sees it.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "core/log.h"
#include "core/opt.h"
#include "http/server.h"
#include "http/static.h"
#include "loop/loop.h"
#include "testutil.h"

#define TOKEN "s3cret-token-value"

/* ---- test state (reset by setup for every test) ----------------------------------- */

struct ctx {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_http_server *srv;
	struct bq_timer *timer;
	void (*timer_fn)(void);
	int handler_calls;
	atomic_bool handler_ran;
	struct bq_http_req *held;
	int aborts;
	struct bq_http_stream *st;
	int closed_calls;
	char logbuf[65536];
	size_t loglen;
};

static struct ctx g;

static void log_sink(void *user_data, enum bq_log_level level, const char *line)
{
	size_t n = strlen(line);

	(void)user_data;
	(void)level;
	if (g.loglen + n + 2 < sizeof(g.logbuf)) {
		memcpy(g.logbuf + g.loglen, line, n);
		g.loglen += n;
		g.logbuf[g.loglen++] = '\n';
		g.logbuf[g.loglen] = '\0';
	}
}

static void timer_cb(struct bq_timer *t, void *user_data)
{
	(void)t;
	(void)user_data;
	if (g.timer_fn) {
		g.timer_fn();
	}
}

static void setup(void)
{
	memset(&g, 0, sizeof(g));
	g.loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(g.loop);
	g.log = bq_log_new("test_http_server");
	ck_assert_ptr_nonnull(g.log);
	bq_log_set_level(g.log, BQ_LOG_DEBUG);
	bq_log_set_sink(g.log, log_sink, NULL);
	g.timer = bq_timer_new(g.loop, timer_cb, NULL);
	ck_assert_ptr_nonnull(g.timer);
}

static void teardown(void)
{
	bq_http_server_free(g.srv);
	g.srv = NULL;
	bq_timer_free(g.timer);
	bq_loop_free(g.loop);
	bq_log_free(g.log);
}

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- handlers ------------------------------------------------------------------- */

static void h_status(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_reply(req, 200, NULL, "{\"ok\":true}", 11), 0);
}

static void h_echo(struct bq_http_req *req, void *ud)
{
	size_t len;
	const void *body = bq_http_req_body(req, &len);

	ck_assert_ptr_eq(ud, &g);
	ck_assert_ptr_eq(bq_http_req_user_data(req), &g);
	ck_assert_int_eq(bq_http_req_method(req), BQ_HTTP_POST);
	g.handler_calls++;
	ck_assert_int_eq(bq_http_reply(req, 200, "application/octet-stream", body, len), 0);
}

static void h_item(struct bq_http_req *req, void *ud)
{
	json_t *obj;
	char *js;
	const char *since = bq_http_req_query(req, "since");
	const char *hdr = bq_http_req_header(req, "x-test");

	(void)ud;
	g.handler_calls++;
	obj = json_pack("{s:s, s:s?, s:s?, s:s}", "id", bq_http_req_param(req), "since", since,
			"hdr", hdr, "path", bq_http_req_path(req));
	ck_assert_ptr_nonnull(obj);
	js = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	ck_assert_int_eq(bq_http_reply(req, 200, NULL, js, strlen(js)), 0);
	free(js);
}

static void h_item_delete(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_reply_error(req, 409, "conflict", "item %s is busy",
					     bq_http_req_param(req)),
			 0);
}

static void reply_held_later(void)
{
	ck_assert_ptr_nonnull(g.held);
	ck_assert_int_eq(bq_http_reply(g.held, 202, NULL, "{\"late\":true}", 13), 0);
	g.held = NULL;
}

static void h_defer(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	g.held = req;
	g.timer_fn = reply_held_later;
	ck_assert_int_eq(bq_timer_start(g.timer, 50), 0);
	atomic_store(&g.handler_ran, true);
}

static void on_abort(struct bq_http_req *req, void *ud)
{
	ck_assert_ptr_eq(ud, &g);
	ck_assert_ptr_eq(req, g.held);
	g.aborts++;
	g.held = NULL;
}

static void h_hold(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	g.held = req;
	bq_http_req_on_abort(req, on_abort, &g);
	atomic_store(&g.handler_ran, true);
}

static void on_closed(struct bq_http_stream *st, void *ud)
{
	ck_assert_ptr_eq(ud, &g);
	ck_assert_ptr_eq(st, g.st);
	/* Sends after the end are refused, not crashes. */
	ck_assert_int_eq(bq_http_stream_send(st, ": x\n\n", 5), -EPIPE);
	g.closed_calls++;
	g.st = NULL;
}

static void send_second_event(void)
{
	ck_assert_ptr_nonnull(g.st);
	ck_assert_int_eq(bq_http_stream_send(g.st, "event: b\ndata: 2\n\n", 18), 0);
}

static void h_events(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	g.st = bq_http_reply_stream(req, on_closed, &g);
	ck_assert_ptr_nonnull(g.st);
	ck_assert_int_eq(bq_http_stream_send(g.st, "event: a\ndata: 1\n\n", 18), 0);
	g.timer_fn = send_second_event;
	ck_assert_int_eq(bq_timer_start(g.timer, 20), 0);
	atomic_store(&g.handler_ran, true);
}

static void h_events_quiet(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	g.st = bq_http_reply_stream(req, on_closed, &g);
	ck_assert_ptr_nonnull(g.st);
	atomic_store(&g.handler_ran, true);
}

static void stream_held_later(void)
{
	ck_assert_ptr_nonnull(g.held);
	g.st = bq_http_reply_stream(g.held, on_closed, &g);
	g.held = NULL;
	ck_assert_ptr_nonnull(g.st);
	ck_assert_int_eq(bq_http_stream_send(g.st, "data: late\n\n", 12), 0);
}

static void h_late_events(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	g.held = req;
	g.timer_fn = stream_held_later;
	ck_assert_int_eq(bq_timer_start(g.timer, 20), 0);
}

/* ---- peer address and added headers ---------------------------------------------- */

static void h_hdr(struct bq_http_req *req, void *ud)
{
	char peer[64];
	char small[9];
	char name[16];

	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_req_peer(req, peer, sizeof(peer)), 0);
	ck_assert_str_eq(peer, "127.0.0.1");
	/* "127.0.0.1" needs 10 bytes with its NUL. */
	ck_assert_int_eq(bq_http_req_peer(req, small, sizeof(small)), -ENOSPC);
	ck_assert_int_eq(bq_http_req_peer(req, peer, 10), 0);

	/* Response splitting and other control characters are refused. */
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A", "a\r\nSet-Cookie: evil=1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A", "a\nb"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A", "a\x01"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A", "a\x7f"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A\r\nX-B", "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X A", "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A:", "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "", "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "X-A", NULL), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, NULL, "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "content-length", "1"), -EINVAL);
	ck_assert_int_eq(bq_http_req_add_header(req, "Content-Type", "text/html"), -EINVAL);

	/* Copied: the caller's buffer may change after the call. */
	snprintf(name, sizeof(name), "X-Copied");
	ck_assert_int_eq(bq_http_req_add_header(req, name, "tab\there; ok"), 0);
	memset(name, 'z', sizeof(name) - 1);
	ck_assert_int_eq(bq_http_req_add_header(req, "Set-Cookie", "a=1; HttpOnly"), 0);
	ck_assert_int_eq(bq_http_req_add_header(req, "Set-Cookie", "b=2"), 0);
	for (int i = 3; i < BQ_HTTP_REQ_HEADERS_MAX; i++) {
		snprintf(name, sizeof(name), "X-H%d", i);
		ck_assert_int_eq(bq_http_req_add_header(req, name, "v"), 0);
	}
	ck_assert_int_eq(bq_http_req_add_header(req, "X-Seventeenth", "v"), -ENOSPC);
	ck_assert_int_eq(bq_http_reply(req, 200, NULL, "{}", 2), 0);
}

static void h_hdr_error(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_req_add_header(req, "Retry-After", "7"), 0);
	ck_assert_int_eq(bq_http_reply_error(req, 429, "rate_limited", "slow down"), 0);
}

static void h_hdr_events(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_req_add_header(req, "X-Stream", "yes"), 0);
	g.st = bq_http_reply_stream(req, on_closed, &g);
	ck_assert_ptr_nonnull(g.st);
	ck_assert_int_eq(bq_http_stream_send(g.st, "data: x\n\n", 9), 0);
}

static void h_hdr_defer(struct bq_http_req *req, void *ud)
{
	(void)ud;
	g.handler_calls++;
	ck_assert_int_eq(bq_http_req_add_header(req, "X-Later", "kept"), 0);
	g.held = req;
	g.timer_fn = reply_held_later;
	ck_assert_int_eq(bq_timer_start(g.timer, 20), 0);
}

static const struct bq_http_route routes[] = {
	{BQ_HTTP_GET, "/api/status", h_status},
	{BQ_HTTP_GET, "/health", h_status},
	{BQ_HTTP_POST, "/api/echo", h_echo},
	{BQ_HTTP_GET, "/api/items/*", h_item},
	{BQ_HTTP_DELETE, "/api/items/*", h_item_delete},
	{BQ_HTTP_GET, "/api/defer", h_defer},
	{BQ_HTTP_GET, "/api/hold", h_hold},
	{BQ_HTTP_GET, "/api/events", h_events},
	{BQ_HTTP_GET, "/api/quiet-events", h_events_quiet},
	{BQ_HTTP_GET, "/api/late-events", h_late_events},
	{BQ_HTTP_GET, "/api/hdr", h_hdr},
	{BQ_HTTP_GET, "/api/hdr-error", h_hdr_error},
	{BQ_HTTP_GET, "/api/hdr-events", h_hdr_events},
	{BQ_HTTP_GET, "/api/hdr-defer", h_hdr_defer},
	{BQ_HTTP_GET, NULL, NULL},
};

static void start_cfg(struct bq_http_server_config *cfg)
{
	char err[256];

	cfg->routes = routes;
	cfg->user_data = &g;
	ck_assert_int_eq(bq_http_server_start(g.loop, g.log, cfg, &g.srv, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(g.srv);
	ck_assert_uint_ne(bq_http_server_port(g.srv), 0);
}

static void start_default(void)
{
	struct bq_http_server_config cfg;

	bq_http_server_config_defaults(&cfg);
	start_cfg(&cfg);
}

/* ---- the client thread ---------------------------------------------------------- */

struct client {
	uint16_t port;
	const char *req;
	size_t req_len;	   /* 0: strlen(req) */
	const char *until; /* stop reading once this text arrived */
	int rcvbuf;	   /* > 0: SO_RCVBUF before connect */
	atomic_bool *go;   /* set: send, read nothing, close once *go is true */
	pthread_t th;
	atomic_bool done;
	bool eof;
	long long elapsed_ms;
	size_t len;
	char resp[256 * 1024];
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	struct sockaddr_in sa;
	struct timeval tv = {.tv_sec = 10};
	long long t0;
	size_t off = 0;
	size_t total = c->req_len ? c->req_len : (c->req ? strlen(c->req) : 0);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (c->rcvbuf > 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof(c->rcvbuf));
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(c->port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	t0 = real_ms();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		goto out;
	}
	while (off < total) {
		ssize_t n = send(fd, c->req + off, total - off, MSG_NOSIGNAL);

		if (n <= 0) {
			break;
		}
		off += (size_t)n;
	}
	if (c->go) {
		while (!atomic_load(c->go) && real_ms() - t0 < 15000) {
			usleep(1000);
		}
		close(fd);
		goto out;
	}
	for (;;) {
		ssize_t n = recv(fd, c->resp + c->len, sizeof(c->resp) - 1 - c->len, 0);

		if (n <= 0) {
			c->eof = n == 0;
			break;
		}
		c->len += (size_t)n;
		c->resp[c->len] = '\0';
		if (c->until && strstr(c->resp, c->until)) {
			break;
		}
		if (c->len == sizeof(c->resp) - 1) {
			break;
		}
	}
	c->elapsed_ms = real_ms() - t0;
	close(fd);
out:
	atomic_store(&c->done, true);
	return NULL;
}

static struct client *client_new(const char *req)
{
	struct client *c = calloc(1, sizeof(*c));

	ck_assert_ptr_nonnull(c);
	c->port = bq_http_server_port(g.srv);
	c->req = req;
	return c;
}

static void client_start(struct client *c)
{
	ck_assert_int_eq(pthread_create(&c->th, NULL, client_main, c), 0);
}

static bool client_done(void *ud)
{
	struct client *c = ud;

	return atomic_load(&c->done);
}

static void client_finish(struct client *c)
{
	ck_assert_msg(bq_test_run_until(g.loop, client_done, c, 10000), "client did not finish");
	pthread_join(c->th, NULL);
}

/* Start, run the loop until the client is done, join. */
static struct client *roundtrip(const char *req)
{
	struct client *c = client_new(req);

	client_start(c);
	client_finish(c);
	return c;
}

static int resp_status(const struct client *c)
{
	char code[4];
	int64_t v;

	ck_assert_msg(c->len > 12 && strncmp(c->resp, "HTTP/1.1 ", 9) == 0, "bad response: %s",
		      c->resp);
	memcpy(code, c->resp + 9, 3);
	code[3] = '\0';
	ck_assert_int_eq(bq_opt_parse_int(code, &v), 0);
	return (int)v;
}

static const char *resp_body(const struct client *c)
{
	const char *p = strstr(c->resp, "\r\n\r\n");

	ck_assert_ptr_nonnull(p);
	return p + 4;
}

/* The value of a response header (copied into out), or NULL. */
static const char *resp_header(const struct client *c, const char *name, char *out, size_t cap)
{
	const char *end = strstr(c->resp, "\r\n\r\n");
	const char *p = c->resp;
	size_t nlen = strlen(name);

	while ((p = strstr(p, "\r\n")) && p < end) {
		p += 2;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			const char *e = strstr(v, "\r\n");
			size_t n;

			while (*v == ' ') {
				v++;
			}
			n = (size_t)(e - v);
			ck_assert_uint_lt(n, cap);
			memcpy(out, v, n);
			out[n] = '\0';
			return out;
		}
	}
	return NULL;
}

/* Check an error body: {"error": reason, "code": code}. */
static void assert_error_body(const struct client *c, const char *reason, const char *code)
{
	json_error_t jerr;
	json_t *js = json_loads(resp_body(c), JSON_REJECT_DUPLICATES, &jerr);
	char ct[64];

	ck_assert_msg(js != NULL, "not JSON: %s", resp_body(c));
	ck_assert_uint_eq(json_object_size(js), 2);
	ck_assert_str_eq(json_string_value(json_object_get(js, "error")), reason);
	ck_assert_str_eq(json_string_value(json_object_get(js, "code")), code);
	json_decref(js);
	ck_assert_ptr_nonnull(resp_header(c, "Content-Type", ct, sizeof(ct)));
	ck_assert_str_eq(ct, "application/json");
}

static bool stats_idle(void *ud)
{
	struct bq_http_server_stats st;

	(void)ud;
	bq_http_server_get_stats(g.srv, &st);
	return st.connections == 0;
}

static bool handler_ran(void *ud)
{
	(void)ud;
	return atomic_load(&g.handler_ran);
}

/* ---- routing and bodies --------------------------------------------------------- */

START_TEST(test_get_json)
{
	struct client *c;
	struct bq_http_server_stats st;
	char v[64];

	start_default();
	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert(c->eof);
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "{\"ok\":true}");
	ck_assert_str_eq(resp_header(c, "content-type", v, sizeof(v)), "application/json");
	ck_assert_str_eq(resp_header(c, "Content-Length", v, sizeof(v)), "11");
	ck_assert_int_eq(g.handler_calls, 1);
	free(c);

	ck_assert(bq_test_run_until(g.loop, stats_idle, NULL, 3000));
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.requests, 1);
	ck_assert_uint_eq(st.by_class[2], 1);
	ck_assert_uint_eq(st.pending, 0);
	/* One debug line per request: method, path, status, duration; never headers. */
	ck_assert_ptr_nonnull(strstr(g.logbuf, "method=GET path=/api/status status=200"));
	ck_assert_ptr_nonnull(strstr(g.logbuf, "duration_us="));
	ck_assert_ptr_null(strstr(g.logbuf, "Host"));
	/* libmicrohttpd had nothing to complain about (e.g. the order of its options). */
	ck_assert_ptr_null(strstr(g.logbuf, "libmicrohttpd"));
}
END_TEST

START_TEST(test_post_echo)
{
	struct client *c;
	char v[64];

	start_default();
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 11\r\n\r\nhello world");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "hello world");
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "application/octet-stream");
	free(c);

	/* No body at all: len 0 and NULL. */
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 0\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "");
	free(c);

	/* Chunked upload is reassembled before the handler runs. */
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "hello world");
	ck_assert_int_eq(g.handler_calls, 3);
	free(c);
}
END_TEST

START_TEST(test_query_and_param)
{
	struct client *c;
	json_t *js;

	start_default();
	c = roundtrip("GET /api/items/abc%20d?since=42&x=1 HTTP/1.1\r\nHost: x\r\n"
		      "X-Test: yes\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	js = json_loads(resp_body(c), 0, NULL);
	ck_assert_ptr_nonnull(js);
	ck_assert_str_eq(json_string_value(json_object_get(js, "id")), "abc d");
	ck_assert_str_eq(json_string_value(json_object_get(js, "since")), "42");
	ck_assert_str_eq(json_string_value(json_object_get(js, "hdr")), "yes");
	ck_assert_str_eq(json_string_value(json_object_get(js, "path")), "/api/items/abc d");
	json_decref(js);
	free(c);

	/* No query: NULL. */
	c = roundtrip("GET /api/items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	js = json_loads(resp_body(c), 0, NULL);
	ck_assert_ptr_nonnull(js);
	ck_assert_str_eq(json_string_value(json_object_get(js, "id")), "7");
	ck_assert(json_is_null(json_object_get(js, "since")));
	json_decref(js);
	free(c);

	/* "*" is exactly one non-empty segment. */
	c = roundtrip("GET /api/items/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);
	c = roundtrip("GET /api/items/a/b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);
	c = roundtrip("GET /api/items HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);

	/* A handler's own error reply. */
	c = roundtrip("DELETE /api/items/9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 409);
	assert_error_body(c, "item 9 is busy", "conflict");
	free(c);
	ck_assert_int_eq(g.handler_calls, 3);
}
END_TEST

START_TEST(test_404_405)
{
	struct client *c;
	struct bq_http_server_stats st;
	char v[64];

	start_default();
	c = roundtrip("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	assert_error_body(c, "no such endpoint: GET /nope", "not_found");
	free(c);

	c = roundtrip("DELETE /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 405);
	assert_error_body(c, "method not allowed: DELETE /api/status", "method_not_allowed");
	ck_assert_str_eq(resp_header(c, "Allow", v, sizeof(v)), "GET");
	free(c);

	c = roundtrip("PUT /api/items/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 3\r\n\r\nabc");
	ck_assert_int_eq(resp_status(c), 405);
	ck_assert_str_eq(resp_header(c, "Allow", v, sizeof(v)), "GET, DELETE");
	free(c);

	/* A method no route can name is a 405 on a known path. */
	c = roundtrip("PATCH /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 405);
	assert_error_body(c, "method not allowed: PATCH /api/status", "method_not_allowed");
	free(c);

	/* A decoded path that is not UTF-8 still gets a valid JSON error. */
	c = roundtrip("GET /%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	assert_error_body(c, "no such endpoint: GET /??", "not_found");
	free(c);

	ck_assert_int_eq(g.handler_calls, 0);
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.requests, 5);
	ck_assert_uint_eq(st.by_class[4], 5);
	ck_assert_ptr_nonnull(strstr(g.logbuf, "path=/nope status=404"));
}
END_TEST

static char *big_request(const char *head, size_t body_len)
{
	size_t hl = strlen(head);
	char *r = malloc(hl + body_len + 1);

	ck_assert_ptr_nonnull(r);
	memcpy(r, head, hl);
	memset(r + hl, 'b', body_len);
	r[hl + body_len] = '\0';
	return r;
}

START_TEST(test_body_limits)
{
	struct client *c;
	struct bq_http_server_stats st;
	char head[256];
	char *req;

	start_default();

	/* Exactly max_body: accepted whole. */
	snprintf(head, sizeof(head),
		 "POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		 "Content-Length: 65536\r\n\r\n");
	req = big_request(head, 65536);
	c = roundtrip(req);
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_uint_eq(strlen(resp_body(c)), 65536);
	ck_assert_int_eq(g.handler_calls, 1);
	free(c);
	free(req);

	/* One more by Content-Length: 413 at once, before any body byte. */
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 65537\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 413);
	assert_error_body(c, "request body is larger than 65536 bytes", "too_large");
	free(c);

	/* Chunked, no Content-Length: discovered while streaming, answered at the end. */
	snprintf(head, sizeof(head),
		 "POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		 "Transfer-Encoding: chunked\r\n\r\n10001\r\n");
	req = big_request(head, 0x10001);
	{
		size_t n = strlen(req);
		char *full = malloc(n + 16);

		ck_assert_ptr_nonnull(full);
		memcpy(full, req, n);
		memcpy(full + n, "\r\n0\r\n\r\n", 8);
		free(req);
		req = full;
	}
	c = roundtrip(req);
	ck_assert_int_eq(resp_status(c), 413);
	assert_error_body(c, "request body is larger than 65536 bytes", "too_large");
	free(c);
	free(req);

	/* Malformed Content-Length: libmicrohttpd answers 400 itself. */
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 12abc\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 400);
	free(c);
	/* Beyond 64 bits: libmicrohttpd's own 413. */
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 99999999999999999999999\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 413);
	free(c);

	ck_assert_int_eq(g.handler_calls, 1);
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.rejected_too_large, 2);
}
END_TEST

START_TEST(test_small_max_body)
{
	struct bq_http_server_config cfg;
	struct client *c;

	bq_http_server_config_defaults(&cfg);
	cfg.max_body = 4;
	start_cfg(&cfg);
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 4\r\n\r\nabcd");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "abcd");
	free(c);
	c = roundtrip("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Content-Length: 5\r\n\r\nabcde");
	ck_assert_int_eq(resp_status(c), 413);
	assert_error_body(c, "request body is larger than 4 bytes", "too_large");
	free(c);
	ck_assert_int_eq(g.handler_calls, 1);
}
END_TEST

/* ---- deferred replies ----------------------------------------------------------- */

START_TEST(test_deferred_reply)
{
	struct client *c;
	struct bq_http_server_stats st;

	start_default();
	c = client_new("GET /api/defer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	client_start(c);
	ck_assert(bq_test_run_until(g.loop, handler_ran, NULL, 5000));
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.pending, 1);
	ck_assert(!atomic_load(&c->done));
	client_finish(c);
	ck_assert_int_eq(resp_status(c), 202);
	ck_assert_str_eq(resp_body(c), "{\"late\":true}");
	ck_assert_int_ge(c->elapsed_ms, 45);
	ck_assert_ptr_null(g.held);
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.by_class[2], 1);
	free(c);
}
END_TEST

START_TEST(test_client_leaves_while_deferred)
{
	struct client *c;
	struct bq_http_server_stats st;
	long long end;

	start_default();
	c = client_new("GET /api/hold HTTP/1.1\r\nHost: x\r\n\r\n");
	c->go = &g.handler_ran; /* close as soon as the handler kept the request */
	client_start(c);
	client_finish(c);
	ck_assert_int_eq(g.handler_calls, 1);
	ck_assert_msg(bq_test_run_until(g.loop, stats_idle, NULL, 5000), "connection kept");
	ck_assert_int_eq(g.aborts, 1);
	ck_assert_ptr_null(g.held);
	/* Nothing more happens: no second abort, no reply. */
	end = real_ms() + 150;
	while (real_ms() < end) {
		bq_loop_run_once(g.loop, 20);
	}
	ck_assert_int_eq(g.aborts, 1);
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.pending, 0);
	ck_assert_uint_eq(st.requests, 0);
	free(c);
}
END_TEST

/* ---- authentication ------------------------------------------------------------- */

START_TEST(test_bearer_token)
{
	struct bq_http_server_config cfg;
	struct bq_http_server_stats st;
	struct client *c;
	char v[64];

	bq_http_server_config_defaults(&cfg);
	cfg.bearer_token = TOKEN;
	start_cfg(&cfg);

	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 401);
	assert_error_body(c, "missing or wrong bearer token", "unauthorized");
	ck_assert_str_eq(resp_header(c, "WWW-Authenticate", v, sizeof(v)), "Bearer");
	free(c);

	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer s3cret-token-valuf\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 401);
	free(c);
	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer s3cret\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 401);
	free(c);
	/* Unknown paths are not revealed to an unauthenticated client. */
	c = roundtrip("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 401);
	free(c);
	ck_assert_int_eq(g.handler_calls, 0);

	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer " TOKEN "\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	free(c);
	ck_assert_int_eq(g.handler_calls, 1);

	/* GET /health is exempt. */
	c = roundtrip("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	free(c);
	ck_assert_int_eq(g.handler_calls, 2);

	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.rejected_unauthorized, 4);
	ck_assert_uint_eq(st.by_class[4], 4);
	ck_assert_uint_eq(st.by_class[2], 2);
	ck_assert_ptr_null(strstr(g.logbuf, TOKEN));
	ck_assert_ptr_null(strstr(g.logbuf, "s3cret"));
}
END_TEST

/* ---- binding -------------------------------------------------------------------- */

START_TEST(test_port_in_use)
{
	struct bq_http_server_config cfg;
	struct bq_http_server *second = (void *)1;
	char err[256];
	char want[64];
	uint16_t port;
	int rc;

	start_default();
	port = bq_http_server_port(g.srv);
	bq_http_server_config_defaults(&cfg);
	cfg.routes = routes;
	cfg.port = port;
	rc = bq_http_server_start(g.loop, g.log, &cfg, &second, err, sizeof(err));
	ck_assert_int_eq(rc, -EADDRINUSE);
	ck_assert_ptr_null(second);
	snprintf(want, sizeof(want), "tcp port %u is already in use", port);
	ck_assert_str_eq(err, want);

	/* The first one still answers. */
	{
		struct client *c = roundtrip("GET /health HTTP/1.1\r\nHost: x\r\n"
					     "Connection: close\r\n\r\n");

		ck_assert_int_eq(resp_status(c), 200);
		free(c);
	}
}
END_TEST

START_TEST(test_bind_host_and_config)
{
	struct bq_http_server_config cfg;
	struct bq_http_server *srv = NULL;
	struct bq_http_route bad[] = {{BQ_HTTP_GET, "nope", h_status}, {BQ_HTTP_GET, NULL, NULL}};
	char err[256];
	int rc;

	bq_http_server_config_defaults(&cfg);
	cfg.routes = routes;
	cfg.bind_host = "example.com";
	rc = bq_http_server_start(g.loop, g.log, &cfg, &srv, err, sizeof(err));
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_ptr_null(srv);
	ck_assert_ptr_nonnull(strstr(err, "example.com"));

	cfg.bind_host = "127.0.0.1";
	cfg.routes = bad;
	ck_assert_int_eq(bq_http_server_start(g.loop, g.log, &cfg, &srv, err, sizeof(err)),
			 -EINVAL);
	cfg.routes = NULL;
	ck_assert_int_eq(bq_http_server_start(g.loop, g.log, &cfg, &srv, err, sizeof(err)),
			 -EINVAL);
	cfg.routes = routes;
	cfg.max_connections = 0;
	ck_assert_int_eq(bq_http_server_start(g.loop, g.log, &cfg, &srv, err, sizeof(err)),
			 -EINVAL);

	/* "localhost" is 127.0.0.1, without a resolver. */
	bq_http_server_config_defaults(&cfg);
	cfg.bind_host = "localhost";
	start_cfg(&cfg);
	{
		struct client *c = roundtrip("GET /health HTTP/1.1\r\nHost: x\r\n"
					     "Connection: close\r\n\r\n");

		ck_assert_int_eq(resp_status(c), 200);
		free(c);
	}
	bq_http_server_free(NULL);
}
END_TEST

/* ---- event streams -------------------------------------------------------------- */

static bool stream_closed(void *ud)
{
	(void)ud;
	return g.closed_calls > 0;
}

START_TEST(test_sse_two_events)
{
	struct client *c;
	struct bq_http_server_stats st;
	const char *a;
	const char *b;
	char v[64];

	start_default();
	c = client_new("GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n");
	c->until = "data: 2\n\n";
	client_start(c);
	client_finish(c);
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "text/event-stream");
	ck_assert_str_eq(resp_header(c, "Cache-Control", v, sizeof(v)), "no-cache");
	ck_assert_str_eq(resp_header(c, "X-Accel-Buffering", v, sizeof(v)), "no");
	a = strstr(resp_body(c), "event: a\ndata: 1\n\n");
	b = strstr(resp_body(c), "event: b\ndata: 2\n\n");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert(a < b);
	free(c);

	/* The client went away: closed runs once, from the loop. */
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.closed_calls, 1);
	ck_assert(bq_test_run_until(g.loop, stats_idle, NULL, 3000));
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.streams, 0);
	ck_assert_uint_eq(st.by_class[2], 1);
	ck_assert_int_eq(g.closed_calls, 1);
}
END_TEST

START_TEST(test_sse_deferred_and_http10)
{
	struct client *c;
	char v[64];

	start_default();
	/* A stream answered later, from a timer, to a suspended request. */
	c = client_new("GET /api/late-events HTTP/1.1\r\nHost: x\r\n\r\n");
	c->until = "data: late\n\n";
	client_start(c);
	client_finish(c);
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "text/event-stream");
	ck_assert_ptr_nonnull(strstr(resp_body(c), "data: late\n\n"));
	free(c);
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.closed_calls, 1);

	/* HTTP/1.0: no chunking, the body is the raw event text. */
	g.closed_calls = 0;
	c = client_new("GET /api/events HTTP/1.0\r\n\r\n");
	c->until = "data: 2\n\n";
	client_start(c);
	client_finish(c);
	ck_assert_ptr_nonnull(strstr(c->resp, " 200 "));
	ck_assert_str_eq(resp_body(c), "event: a\ndata: 1\n\nevent: b\ndata: 2\n\n");
	free(c);
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.closed_calls, 1);
}
END_TEST

START_TEST(test_sse_server_close)
{
	struct client *c;

	start_default();
	c = client_new("GET /api/quiet-events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	client_start(c);
	ck_assert(bq_test_run_until(g.loop, handler_ran, NULL, 5000));
	ck_assert_int_eq(bq_http_stream_send(g.st, ": ping\n\n", 8), 0);
	bq_http_stream_close(g.st);
	/* Closing is not immediate, and later sends are refused. */
	ck_assert_int_eq(g.closed_calls, 0);
	ck_assert_int_eq(bq_http_stream_send(g.st, ": late\n\n", 8), -EPIPE);
	client_finish(c);
	ck_assert(c->eof);
	ck_assert_ptr_nonnull(strstr(resp_body(c), ": ping\n\n"));
	ck_assert_ptr_null(strstr(resp_body(c), ": late"));
	/* The chunked body was ended properly. */
	ck_assert_ptr_nonnull(strstr(resp_body(c), "\r\n0\r\n\r\n"));
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.closed_calls, 1);
	free(c);
}
END_TEST

START_TEST(test_sse_overflow)
{
	struct bq_http_server_config cfg;
	struct bq_http_server_stats st;
	struct client *c;
	atomic_bool go = false;
	char chunk[1000];
	long long end;
	int rc = 0;
	int sent = 0;

	bq_http_server_config_defaults(&cfg);
	cfg.max_stream_buffer = 4096;
	start_cfg(&cfg);
	c = client_new("GET /api/quiet-events HTTP/1.1\r\nHost: x\r\n\r\n");
	c->rcvbuf = 4096;
	c->go = &go; /* never reads */
	client_start(c);
	ck_assert(bq_test_run_until(g.loop, handler_ran, NULL, 5000));

	memset(chunk, 'x', sizeof(chunk));
	chunk[sizeof(chunk) - 2] = '\n';
	chunk[sizeof(chunk) - 1] = '\n';
	end = real_ms() + 10000;
	while (real_ms() < end) {
		rc = bq_http_stream_send(g.st, chunk, sizeof(chunk));
		if (rc != 0) {
			break;
		}
		sent++;
		bq_loop_run_once(g.loop, 0);
	}
	ck_assert_int_eq(rc, -ENOBUFS);
	ck_assert_int_gt(sent, 4);
	/* closed never runs from inside send. */
	ck_assert_int_eq(g.closed_calls, 0);
	ck_assert_int_eq(bq_http_stream_send(g.st, chunk, 10), -EPIPE);
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.closed_calls, 1);
	bq_http_server_get_stats(g.srv, &st);
	ck_assert_uint_eq(st.stream_overflows, 1);
	ck_assert_uint_eq(st.streams, 0);
	atomic_store(&go, true);
	client_finish(c);
	ck_assert(bq_test_run_until(g.loop, stats_idle, NULL, 3000));
	free(c);
}
END_TEST

/* ---- shutdown and timeouts ------------------------------------------------------ */

START_TEST(test_free_with_pending_and_stream)
{
	struct client *held;
	struct client *ev;
	long long end;

	start_default();
	held = client_new("GET /api/hold HTTP/1.1\r\nHost: x\r\n\r\n");
	client_start(held);
	ck_assert(bq_test_run_until(g.loop, handler_ran, NULL, 5000));
	atomic_store(&g.handler_ran, false);
	ev = client_new("GET /api/quiet-events HTTP/1.1\r\nHost: x\r\n\r\n");
	ev->until = "no such text";
	client_start(ev);
	ck_assert(bq_test_run_until(g.loop, handler_ran, NULL, 5000));
	ck_assert_int_eq(bq_http_stream_send(g.st, "event: a\ndata: 1\n\n", 18), 0);
	/* Let the stream's headers and first event go out. */
	end = real_ms() + 50;
	while (real_ms() < end) {
		bq_loop_run_once(g.loop, 10);
	}
	ck_assert_ptr_nonnull(g.held);
	ck_assert_ptr_nonnull(g.st);

	bq_http_server_free(g.srv);
	g.srv = NULL;
	ck_assert_int_eq(g.aborts, 1);
	ck_assert_int_eq(g.closed_calls, 1);
	ck_assert_ptr_null(g.held);
	ck_assert_ptr_null(g.st);

	/* Both clients see the connection closed. */
	end = real_ms() + 5000;
	while ((!atomic_load(&held->done) || !atomic_load(&ev->done)) && real_ms() < end) {
		usleep(1000);
	}
	ck_assert(atomic_load(&held->done));
	ck_assert(atomic_load(&ev->done));
	pthread_join(held->th, NULL);
	pthread_join(ev->th, NULL);
	ck_assert(held->eof);
	ck_assert_uint_eq(held->len, 0);
	ck_assert(ev->eof);
	ck_assert_ptr_nonnull(strstr(ev->resp, "event: a\ndata: 1\n\n"));
	ck_assert_int_eq(g.aborts, 1);
	ck_assert_int_eq(g.closed_calls, 1);
	free(held);
	free(ev);
}
END_TEST

START_TEST(test_idle_timeout)
{
	struct bq_http_server_config cfg;
	struct client *c;

	bq_http_server_config_defaults(&cfg);
	cfg.idle_timeout_s = 1;
	start_cfg(&cfg);
	c = client_new(NULL); /* connects and says nothing */
	client_start(c);
	client_finish(c);
	ck_assert(c->eof);
	ck_assert_uint_eq(c->len, 0);
	ck_assert_int_ge(c->elapsed_ms, 500);
	ck_assert_int_le(c->elapsed_ms, 3000);
	free(c);
}
END_TEST

START_TEST(test_keep_alive_two_requests)
{
	struct client *c;
	const char *second;

	start_default();
	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n"
		      "GET /api/items/2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	second = strstr(c->resp + 1, "HTTP/1.1 200");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(second, "\"id\":\"2\""));
	ck_assert_int_eq(g.handler_calls, 2);
	free(c);
}
END_TEST

/* ---- peer address, added and default headers ------------------------------------ */

/* How many times a header appears in the response head. */
static int header_count(const struct client *c, const char *name)
{
	const char *end = strstr(c->resp, "\r\n\r\n");
	const char *p = c->resp;
	size_t nlen = strlen(name);
	int n = 0;

	while ((p = strstr(p, "\r\n")) && p < end) {
		p += 2;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			n++;
		}
	}
	return n;
}

START_TEST(test_peer_and_added_headers)
{
	struct client *c;
	char v[64];

	start_default();
	c = roundtrip("GET /api/hdr HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_int_eq(g.handler_calls, 1);
	ck_assert_str_eq(resp_header(c, "X-Copied", v, sizeof(v)), "tab\there; ok");
	ck_assert_int_eq(header_count(c, "Set-Cookie"), 2);
	ck_assert_ptr_nonnull(strstr(c->resp, "\r\nSet-Cookie: a=1; HttpOnly\r\n"));
	ck_assert_ptr_nonnull(strstr(c->resp, "\r\nSet-Cookie: b=2\r\n"));
	ck_assert_str_eq(resp_header(c, "X-H3", v, sizeof(v)), "v");
	ck_assert_str_eq(resp_header(c, "X-H15", v, sizeof(v)), "v");
	ck_assert_ptr_null(resp_header(c, "X-Seventeenth", v, sizeof(v)));
	ck_assert_ptr_null(resp_header(c, "X-A", v, sizeof(v)));
	ck_assert_ptr_null(strstr(c->resp, "evil"));
	ck_assert_int_eq(header_count(c, "Content-Type"), 1);
	free(c);

	/* On an error reply, and the headers belong to one request only. */
	c = roundtrip("GET /api/hdr-error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 429);
	assert_error_body(c, "slow down", "rate_limited");
	ck_assert_str_eq(resp_header(c, "Retry-After", v, sizeof(v)), "7");
	ck_assert_int_eq(header_count(c, "Set-Cookie"), 0);
	free(c);

	/* On a deferred reply. */
	c = roundtrip("GET /api/hdr-defer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 202);
	ck_assert_str_eq(resp_header(c, "X-Later", v, sizeof(v)), "kept");
	free(c);

	/* On an event stream. */
	c = client_new("GET /api/hdr-events HTTP/1.1\r\nHost: x\r\n\r\n");
	c->until = "data: x\n\n";
	client_start(c);
	client_finish(c);
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "X-Stream", v, sizeof(v)), "yes");
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "text/event-stream");
	free(c);
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
	ck_assert_int_eq(g.handler_calls, 4);
}
END_TEST

static const char *const sec_headers[] = {
	"X-Content-Type-Options",
	"nosniff",
	"X-Frame-Options",
	"DENY",
	"Content-Security-Policy",
	"default-src 'self'; frame-ancestors 'none'",
	NULL,
};

static void assert_sec_headers(const struct client *c)
{
	char v[128];

	ck_assert_str_eq(resp_header(c, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
	ck_assert_str_eq(resp_header(c, "X-Frame-Options", v, sizeof(v)), "DENY");
	ck_assert_str_eq(resp_header(c, "Content-Security-Policy", v, sizeof(v)),
			 "default-src 'self'; frame-ancestors 'none'");
	ck_assert_int_eq(header_count(c, "X-Frame-Options"), 1);
}

START_TEST(test_default_headers)
{
	struct bq_http_server_config cfg;
	struct client *c;
	char *big;
	char v[64];

	bq_http_server_config_defaults(&cfg);
	cfg.default_headers = sec_headers;
	cfg.max_body = 16;
	cfg.bearer_token = TOKEN;
	start_cfg(&cfg);

	/* The server's own answers: 401 before routing, 404, 405, 413. */
	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 401);
	assert_sec_headers(c);
	free(c);
	c = roundtrip("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer " TOKEN "\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	assert_sec_headers(c);
	free(c);
	c = roundtrip("DELETE /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer " TOKEN "\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 405);
	assert_sec_headers(c);
	ck_assert_str_eq(resp_header(c, "Allow", v, sizeof(v)), "GET");
	free(c);
	big = big_request("POST /api/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
			  "Authorization: Bearer " TOKEN "\r\nContent-Length: 17\r\n\r\n",
			  17);
	c = roundtrip(big);
	ck_assert_int_eq(resp_status(c), 413);
	assert_sec_headers(c);
	free(c);
	free(big);

	/* A handler's 200, its error, and a request's own header next to the defaults. */
	c = roundtrip("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	assert_sec_headers(c);
	free(c);
	c = roundtrip("GET /api/hdr-error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		      "Authorization: Bearer " TOKEN "\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 429);
	assert_sec_headers(c);
	ck_assert_str_eq(resp_header(c, "Retry-After", v, sizeof(v)), "7");
	free(c);

	/* An event stream. */
	c = client_new("GET /api/hdr-events HTTP/1.1\r\nHost: x\r\n"
		       "Authorization: Bearer " TOKEN "\r\n\r\n");
	c->until = "data: x\n\n";
	client_start(c);
	client_finish(c);
	ck_assert_int_eq(resp_status(c), 200);
	assert_sec_headers(c);
	ck_assert_str_eq(resp_header(c, "X-Stream", v, sizeof(v)), "yes");
	free(c);
	ck_assert(bq_test_run_until(g.loop, stream_closed, NULL, 5000));
}
END_TEST

START_TEST(test_bad_default_headers)
{
	static const char *const crlf[] = {"X-A", "1\r\nX-B: 2", NULL};
	static const char *const no_value[] = {"X-A", NULL};
	static const char *const bad_name[] = {"X A", "1", NULL};
	static const char *const ours[] = {"Content-Length", "1", NULL};
	static const char *const empty[] = {NULL};
	const char *const *bad[] = {crlf, no_value, bad_name, ours};
	struct bq_http_server_config cfg;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bq_http_server_config_defaults(&cfg);
		cfg.routes = routes;
		cfg.default_headers = bad[i];
		ck_assert_int_eq(
			bq_http_server_start(g.loop, g.log, &cfg, &g.srv, err, sizeof(err)),
			-EINVAL);
		ck_assert_ptr_null(g.srv);
		ck_assert_ptr_nonnull(strstr(err, "bad default header"));
	}
	/* An empty list is no headers. */
	bq_http_server_config_defaults(&cfg);
	cfg.default_headers = empty;
	start_cfg(&cfg);
}
END_TEST

/* ---- static files (lib/http/static) as the server's fallback ----------------------- */

static void put_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static struct bq_http_static *web_dir(char *dir, size_t cap)
{
	struct bq_http_static *st = NULL;
	char path[512], err[256];

	snprintf(dir, cap, "%s", bq_test_tmpdir());
	put_file(dir, "index.html", "<!doctype html><title>blueq</title>");
	put_file(dir, "chat.html", "<p>chat</p>");
	put_file(dir, ".secret", "hidden");
	snprintf(path, sizeof(path), "%s/js", dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	put_file(path, "app.mjs", "export const x = 1;");
	put_file(path, "style.css", "body{}");
	put_file(path, "empty.svg", "");
	snprintf(path, sizeof(path), "%s/link.html", dir);
	ck_assert_int_eq(symlink("/etc/passwd", path), 0);
	ck_assert_int_eq(bq_http_static_load(dir, g.log, &st, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(st);
	return st;
}

static void start_with_static(struct bq_http_static *st)
{
	struct bq_http_server_config cfg;
	static const char *const sec[] = {"X-Content-Type-Options", "nosniff", NULL};

	bq_http_server_config_defaults(&cfg);
	cfg.default_headers = sec;
	cfg.fallback = bq_http_static_serve;
	cfg.fallback_data = st;
	start_cfg(&cfg);
}

START_TEST(test_static_files)
{
	char dir[256], v[128], etag[128], req[512];
	struct bq_http_static *st = web_dir(dir, sizeof(dir));
	struct client *c;

	/* index.html, chat.html, js/app.mjs, js/style.css, js/empty.svg; not the dotfile
	 * nor the link. */
	ck_assert_uint_eq(bq_http_static_count(st), 5);
	start_with_static(st);

	c = roundtrip("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "<!doctype html><title>blueq</title>");
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "text/html; charset=utf-8");
	ck_assert_str_eq(resp_header(c, "Cache-Control", v, sizeof(v)), "no-cache");
	ck_assert_str_eq(resp_header(c, "X-Content-Type-Options", v, sizeof(v)), "nosniff");
	ck_assert_ptr_nonnull(resp_header(c, "ETag", etag, sizeof(etag)));
	ck_assert_uint_eq(strlen(etag), 34); /* quoted, 128 bits in hex */
	ck_assert_int_eq(etag[0], '"');
	free(c);

	/* Revalidation: the same ETag is 304 with no body; weak and listed forms too. */
	snprintf(req, sizeof(req),
		 "GET /index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n"
		 "Connection: close\r\n\r\n",
		 etag);
	c = roundtrip(req);
	ck_assert_int_eq(resp_status(c), 304);
	ck_assert_str_eq(resp_body(c), "");
	ck_assert_str_eq(resp_header(c, "ETag", v, sizeof(v)), etag);
	free(c);
	snprintf(req, sizeof(req),
		 "GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"nope\", W/%s\r\n"
		 "Connection: close\r\n\r\n",
		 etag);
	c = roundtrip(req);
	ck_assert_int_eq(resp_status(c), 304);
	free(c);
	c = roundtrip("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"0123\"\r\n"
		      "Connection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	free(c);

	/* MIME types by extension; "/chat" finds chat.html; an empty file is served. */
	c = roundtrip("GET /js/app.mjs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)),
			 "text/javascript; charset=utf-8");
	free(c);
	c = roundtrip("GET /js/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "text/css; charset=utf-8");
	free(c);
	c = roundtrip("GET /chat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "<p>chat</p>");
	free(c);
	c = roundtrip("GET /js/empty.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "Content-Type", v, sizeof(v)), "image/svg+xml");
	ck_assert_str_eq(resp_header(c, "Content-Length", v, sizeof(v)), "0");
	free(c);

	/* HEAD: the headers with the body's length, no body. */
	c = roundtrip("HEAD /chat.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_header(c, "Content-Length", v, sizeof(v)), "11");
	ck_assert_str_eq(resp_body(c), "");
	free(c);

	/* Never loaded, so never served: dotfiles, links, traversal, unknown names. */
	c = roundtrip("GET /.secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	assert_error_body(c, "no such endpoint: GET /.secret", "not_found");
	free(c);
	c = roundtrip("GET /link.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);
	c = roundtrip("GET /js/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);
	c = roundtrip("GET /js/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404); /* no js/index.html */
	free(c);

	/* Routes come first; another method on an unknown path is still 404, not a file. */
	c = roundtrip("GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 200);
	ck_assert_str_eq(resp_body(c), "{\"ok\":true}");
	free(c);
	c = roundtrip("POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
		      "Connection: close\r\n\r\n");
	ck_assert_int_eq(resp_status(c), 404);
	free(c);
	bq_http_server_free(g.srv);
	g.srv = NULL;
	bq_http_static_free(st);
}
END_TEST

START_TEST(test_static_load_errors)
{
	struct bq_http_static *st = (void *)1;
	char dir[256], path[512], err[256];

	ck_assert_int_eq(
		bq_http_static_load("/nonexistent/blueq-web", g.log, &st, err, sizeof(err)),
		-ENOENT);
	ck_assert_ptr_null(st);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/blueq-web"));
	/* Too deep: more levels than BQ_HTTP_STATIC_DEPTH_MAX. */
	snprintf(dir, sizeof(dir), "%s", bq_test_tmpdir());
	snprintf(path, sizeof(path), "%s", dir);
	for (int i = 0; i <= BQ_HTTP_STATIC_DEPTH_MAX + 1; i++) {
		size_t n = strlen(path);

		snprintf(path + n, sizeof(path) - n, "/d");
		ck_assert_int_eq(mkdir(path, 0755), 0);
	}
	ck_assert_int_eq(bq_http_static_load(dir, g.log, &st, err, sizeof(err)), -EFBIG);
	ck_assert_ptr_nonnull(strstr(err, "deeper"));
	/* MIME fallbacks. */
	ck_assert_str_eq(bq_http_static_mime("a/b.PNG"), "image/png");
	ck_assert_str_eq(bq_http_static_mime("noext"), "application/octet-stream");
	ck_assert_str_eq(bq_http_static_mime("dir.d/noext"), "application/octet-stream");
}
END_TEST

static Suite *http_server_suite(void)
{
	Suite *s = suite_create("http_server");
	TCase *basic = tcase_create("basic");
	TCase *defer = tcase_create("deferred");
	TCase *stream = tcase_create("stream");
	TCase *life = tcase_create("lifecycle");
	TCase *all[] = {basic, defer, stream, life};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		tcase_add_checked_fixture(all[i], setup, teardown);
		tcase_set_timeout(all[i], 20);
		suite_add_tcase(s, all[i]);
	}
	tcase_add_test(basic, test_get_json);
	tcase_add_test(basic, test_post_echo);
	tcase_add_test(basic, test_query_and_param);
	tcase_add_test(basic, test_404_405);
	tcase_add_test(basic, test_body_limits);
	tcase_add_test(basic, test_small_max_body);
	tcase_add_test(basic, test_bearer_token);
	tcase_add_test(basic, test_keep_alive_two_requests);
	tcase_add_test(basic, test_peer_and_added_headers);
	tcase_add_test(basic, test_default_headers);
	tcase_add_test(life, test_bad_default_headers);
	tcase_add_test(defer, test_deferred_reply);
	tcase_add_test(defer, test_client_leaves_while_deferred);
	tcase_add_test(stream, test_sse_two_events);
	tcase_add_test(stream, test_sse_server_close);
	tcase_add_test(stream, test_sse_deferred_and_http10);
	tcase_add_test(stream, test_sse_overflow);
	tcase_add_test(life, test_port_in_use);
	tcase_add_test(life, test_bind_host_and_config);
	tcase_add_test(life, test_free_with_pending_and_stream);
	tcase_add_test(life, test_idle_timeout);
	tcase_add_test(basic, test_static_files);
	tcase_add_test(life, test_static_load_errors);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_server_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
