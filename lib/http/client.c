/* SPDX-License-Identifier: MIT */
/*
 * http/client: libcurl's multi-socket interface driven by bq_loop. See
 * docs/internals/http-client.md for the wiring and the reasons behind it.
 */
#include "http/client.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"

#define MOD "http-client"

/* Matches project(VERSION) in CMakeLists.txt; the build may pass its own. */
#ifndef BQ_VERSION_STRING
#define BQ_VERSION_STRING "0.1.0"
#endif

#define DEFAULT_MAX_CALLS 256
#define DEFAULT_MAX_RESPONSE (1024 * 1024)
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_USER_AGENT "blueq/" BQ_VERSION_STRING

/* URLs we build are short; a longer one is a bug or an attack, not a request. */
#define URL_MAX 2048
#define METHOD_MAX 16
/* Header values come from our own config; the bounds only stop a runaway string. */
#define TOKEN_MAX 4096
#define CONTENT_TYPE_MAX 256
#define USER_AGENT_MAX 256
/*
 * One process talks to a handful of services; 16 open connections serve 256 calls in
 * flight (the rest wait inside libcurl for a free connection), and the cache keeps
 * them for reuse.
 */
#define MAX_CONNECTIONS 16

enum call_state {
	CALL_RUNNING,	 /* easy handle in the multi */
	CALL_DONE,	 /* result set, in the done queue, cb not run yet */
	CALL_DELIVERING, /* cb running; freed when it returns */
};

struct bq_http_call {
	struct bq_http_client *cli;
	CURL *easy;
	struct curl_slist *headers;
	struct bq_buf body;
	bq_http_response_cb cb;
	void *user_data;
	enum call_state state;
	int result;			  /* status (>= 100) or negative errno, once DONE */
	bool too_big;			  /* our write callback refused bytes past max_response */
	bool nomem;			  /* our write callback could not grow the body */
	struct bq_http_call *prev, *next; /* running list; next also links the done queue */
	char errbuf[CURL_ERROR_SIZE];
};

/* One per socket libcurl asked us to watch; libcurl hands it back as socketp. */
struct http_sock {
	int fd;
	struct http_sock *prev, *next;
};

/*
 * A queued bq_loop_defer cannot be withdrawn, so it points at this token, not at the
 * client: bq_http_client_free clears token->cli and the deferred call only frees it.
 */
struct flush_token {
	struct bq_http_client *cli;
};

struct bq_http_client {
	struct bq_loop *loop;
	struct bq_log *log;
	CURLM *multi;
	struct bq_timer *timer;	     /* libcurl's single timeout */
	struct bq_timer *done_timer; /* fallback when bq_loop_defer cannot queue */
	struct flush_token *token;   /* the queued deferred flush, or NULL */
	struct http_sock *socks;
	struct bq_http_call *running;
	struct bq_http_call *done_head, *done_tail;
	uint32_t active; /* calls whose cb has not started yet */
	uint32_t max_calls;
	size_t max_response;
	uint32_t connect_timeout_ms;
	char *user_agent;
	bool closing;
};

/* ---- process-wide libcurl initialisation ------------------------------------------ */

/*
 * curl_global_init is not thread-safe in 7.88 and must run before any other libcurl
 * call, so it runs once per process. It is never undone: curl_global_cleanup is not
 * thread-safe either, would pull OpenSSL out from under any other user in the process
 * (another client, a library we link), and at exit the OS reclaims everything anyway.
 */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- validation -------------------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
		return true;
	}
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 token: anything else could smuggle a space or a line break into the request. */
static bool method_ok(const char *m)
{
	size_t n = 0;

	for (; m[n]; n++) {
		if (n >= METHOD_MAX || !is_tchar((unsigned char)m[n])) {
			return false;
		}
	}
	return n > 0;
}

/* Visible ASCII, space and tab: no CR or LF that would start a header of its own. */
static bool header_value_ok(const char *v, size_t max)
{
	size_t n = 0;

	for (; v[n]; n++) {
		unsigned char c = (unsigned char)v[n];

		if (n >= max || (c < 0x20 && c != '\t') || c == 0x7f) {
			return false;
		}
	}
	return n > 0;
}

/* 0, -EINVAL or -ENOMEM. libcurl's own parser decides what a well-formed URL is. */
static int url_check(const char *url)
{
	size_t n;
	CURLU *u;
	CURLUcode uc;

	if (!url) {
		return -EINVAL;
	}
	n = strnlen(url, URL_MAX);
	if (n >= URL_MAX) {
		return -EINVAL;
	}
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c == 0x7f) {
			return -EINVAL;
		}
	}
	u = curl_url();
	if (!u) {
		return -ENOMEM;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	curl_url_cleanup(u);
	if (uc == CURLUE_OUT_OF_MEMORY) {
		return -ENOMEM;
	}
	return uc == CURLUE_OK ? 0 : -EINVAL;
}

/* ---- calls ------------------------------------------------------------------------- */

static void headers_free(struct curl_slist *h)
{
	/* The Authorization line is a secret; wipe our copy before it goes back to malloc. */
	for (struct curl_slist *s = h; s; s = s->next) {
		sodium_memzero(s->data, strlen(s->data));
	}
	curl_slist_free_all(h);
}

static void running_unlink(struct bq_http_client *cli, struct bq_http_call *call)
{
	if (call->prev) {
		call->prev->next = call->next;
	} else {
		cli->running = call->next;
	}
	if (call->next) {
		call->next->prev = call->prev;
	}
	call->prev = NULL;
	call->next = NULL;
}

/*
 * Take the easy handle out of the multi and drop it. Only ever called outside
 * libcurl's callbacks (libcurl forbids remove_handle from inside them). The
 * connection stays in the multi's cache when it can be reused.
 */
static void call_detach(struct bq_http_call *call)
{
	struct bq_http_client *cli = call->cli;

	if (call->easy) {
		curl_multi_remove_handle(cli->multi, call->easy);
		curl_easy_cleanup(call->easy);
		call->easy = NULL;
	}
	headers_free(call->headers);
	call->headers = NULL;
	running_unlink(cli, call);
}

static void call_free(struct bq_http_call *call)
{
	if (call->easy) {
		curl_easy_cleanup(call->easy);
	}
	headers_free(call->headers);
	bq_buf_free(&call->body);
	bq_free(call);
}

static void flush_deferred(void *user_data);
static void deliver_done(struct bq_http_client *cli);

static void schedule_flush(struct bq_http_client *cli)
{
	struct flush_token *t;

	if (cli->closing || cli->token || bq_timer_active(cli->done_timer)) {
		return;
	}
	t = bq_malloc(sizeof(*t));
	if (t) {
		t->cli = cli;
		if (bq_loop_defer(cli->loop, flush_deferred, t) == 0) {
			cli->token = t;
			return;
		}
		bq_free(t);
	}
	if (bq_timer_start(cli->done_timer, 0) < 0) {
		/* Nothing is lost: the queue is flushed at the next schedule or at free. */
		bq_err(cli->log, MOD, "msg=\"cannot schedule completions\" err=%d", -ENOMEM);
	}
}

static void done_push(struct bq_http_client *cli, struct bq_http_call *call)
{
	call->state = CALL_DONE;
	call->next = NULL;
	call->prev = NULL;
	if (cli->done_tail) {
		cli->done_tail->next = call;
	} else {
		cli->done_head = call;
	}
	cli->done_tail = call;
	schedule_flush(cli);
}

static struct bq_http_call *done_pop(struct bq_http_client *cli)
{
	struct bq_http_call *call = cli->done_head;

	if (call) {
		cli->done_head = call->next;
		if (!cli->done_head) {
			cli->done_tail = NULL;
		}
		call->next = NULL;
	}
	return call;
}

/* Run cb and free the call. The slot is released first so cb may start a new request. */
static void call_finish(struct bq_http_call *call)
{
	struct bq_http_client *cli = call->cli;
	const char *body = NULL;
	size_t len = 0;

	call->state = CALL_DELIVERING;
	cli->active--;
	if (call->result >= 0) {
		/* bq_buf keeps a NUL past len once anything was appended. */
		body = call->body.data ? (const char *)call->body.data : "";
		len = call->body.len;
	}
	call->cb(call->result, body, len, call->user_data);
	call_free(call);
}

/*
 * Deliver what is queued now; completions queued by these callbacks (a cancel, an
 * immediate failure) get a flush of their own, so a callback that keeps starting and
 * cancelling cannot keep this loop going forever.
 */
static void deliver_done(struct bq_http_client *cli)
{
	struct bq_http_call *last = cli->done_tail;
	struct bq_http_call *call;

	while ((call = done_pop(cli))) {
		bool stop = call == last;

		call_finish(call);
		if (stop) {
			break;
		}
	}
}

static void flush_deferred(void *user_data)
{
	struct flush_token *t = user_data;
	struct bq_http_client *cli = t->cli;

	bq_free(t);
	if (!cli) {
		return;
	}
	cli->token = NULL;
	deliver_done(cli);
}

static void done_timer_cb(struct bq_timer *t, void *user_data)
{
	deliver_done(user_data);
}

static void log_failure(struct bq_http_call *call, CURLcode res, const char *why)
{
	struct bq_http_client *cli = call->cli;
	char *url = NULL;
	char qurl[512];
	char qerr[CURL_ERROR_SIZE + 32];
	const char *text = call->errbuf[0] ? call->errbuf : curl_easy_strerror(res);

	curl_easy_getinfo(call->easy, CURLINFO_EFFECTIVE_URL, &url);
	bq_warn(cli->log, MOD, "msg=\"request failed\" url=%s curl=%d err=%s%s%s",
		bq_log_quote(url ? url : "", qurl, sizeof(qurl)), (int)res,
		bq_log_quote(text, qerr, sizeof(qerr)), why ? " why=" : "", why ? why : "");
}

/* The status, or the negative errno the header promises for each transport failure. */
static int call_result(struct bq_http_call *call, CURLcode res)
{
	struct bq_http_client *cli = call->cli;
	long code = 0;

	switch (res) {
	case CURLE_OK:
		curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 100 && code <= 599) {
			return (int)code;
		}
		bq_warn(cli->log, MOD, "msg=\"no usable status\" status=%ld", code);
		return -EIO;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_FILESIZE_EXCEEDED:
		/* Content-Length already said too much (CURLOPT_MAXFILESIZE). */
		return -EMSGSIZE;
	case CURLE_WRITE_ERROR:
		if (call->too_big) {
			return -EMSGSIZE;
		}
		log_failure(call, res, call->nomem ? "ENOMEM" : NULL);
		return -EIO;
	default:
		log_failure(call, res, NULL);
		return -EIO;
	}
}

/* Collect finished transfers after every socket action. */
static void collect_done(struct bq_http_client *cli)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(cli->multi, &left))) {
		char *priv = NULL;
		struct bq_http_call *call;
		CURLcode res;

		if (m->msg != CURLMSG_DONE) {
			continue;
		}
		/* m belongs to the easy handle: read it all before removing the handle. */
		res = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		call = (struct bq_http_call *)priv;
		if (!call) {
			continue;
		}
		call->result = call_result(call, res);
		if (call->result < 0) {
			bq_buf_free(&call->body);
		}
		call_detach(call);
		done_push(cli, call);
	}
	if (cli->done_head) {
		schedule_flush(cli);
	}
}

/* ---- libcurl's socket and timer callbacks ------------------------------------------ */

static void io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct bq_http_client *cli = user_data;
	int flags = 0;
	int running = 0;
	CURLMcode mc;

	if (events & BQ_EV_READ) {
		flags |= CURL_CSELECT_IN;
	}
	if (events & BQ_EV_WRITE) {
		flags |= CURL_CSELECT_OUT;
	}
	if (events & BQ_EV_ERROR) {
		flags |= CURL_CSELECT_ERR;
	}
	mc = curl_multi_socket_action(cli->multi, fd, flags, &running);
	if (mc != CURLM_OK) {
		bq_warn(cli->log, MOD, "msg=\"socket action failed\" fd=%d err=%s", fd,
			curl_multi_strerror(mc));
	}
	collect_done(cli);
}

/*
 * libcurl asked for a timeout; 0 means "as soon as you can". The timer, never this
 * function, calls back into libcurl, because libcurl calls this function from inside
 * its own calls.
 */
static void timer_cb(struct bq_timer *t, void *user_data)
{
	struct bq_http_client *cli = user_data;
	int running = 0;
	CURLMcode mc;

	mc = curl_multi_socket_action(cli->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	if (mc != CURLM_OK) {
		bq_warn(cli->log, MOD, "msg=\"timeout action failed\" err=%s",
			curl_multi_strerror(mc));
	}
	collect_done(cli);
}

/*
 * These callbacks always return 0: since 7.81 a -1 marks the whole multi handle dead,
 * which would fail every call of this client, not just the one that hit the problem.
 */
static int curl_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct bq_http_client *cli = userp;

	if (timeout_ms < 0) {
		bq_timer_stop(cli->timer);
		return 0;
	}
	if (bq_timer_start(cli->timer, (uint64_t)timeout_ms) < 0) {
		/* Any later socket action also runs libcurl's expired timers. */
		bq_err(cli->log, MOD, "msg=\"cannot arm timer\" err=%d", -ENOMEM);
	}
	return 0;
}

static struct http_sock *sock_find(struct bq_http_client *cli, int fd)
{
	for (struct http_sock *s = cli->socks; s; s = s->next) {
		if (s->fd == fd) {
			return s;
		}
	}
	return NULL;
}

static void sock_drop(struct bq_http_client *cli, struct http_sock *s)
{
	bq_loop_io_remove(cli->loop, s->fd);
	if (s->prev) {
		s->prev->next = s->next;
	} else {
		cli->socks = s->next;
	}
	if (s->next) {
		s->next->prev = s->prev;
	}
	bq_free(s);
}

static int curl_sock_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct bq_http_client *cli = userp;
	struct http_sock *s = socketp;
	unsigned events = 0;
	int r;

	bq_debug(cli->log, MOD, "msg=socket fd=%d what=%d known=%d", (int)fd, what, s != NULL);
	if (what == CURL_POLL_REMOVE) {
		/* libcurl forgets socketp now; the same fd number may come back as new. */
		if (s) {
			sock_drop(cli, s);
		}
		return 0;
	}
	if (what & CURL_POLL_IN) {
		events |= BQ_EV_READ;
	}
	if (what & CURL_POLL_OUT) {
		events |= BQ_EV_WRITE;
	}
	if (s) {
		r = bq_loop_io_modify(cli->loop, fd, events);
		if (r < 0) {
			bq_warn(cli->log, MOD, "msg=\"cannot modify socket\" fd=%d err=%d", fd, r);
		}
		return 0;
	}
	/* New to libcurl, but still ours: it closed the old one without a REMOVE. */
	s = sock_find(cli, fd);
	if (s) {
		bq_loop_io_remove(cli->loop, fd);
	} else {
		s = bq_calloc(1, sizeof(*s));
		if (!s) {
			bq_err(cli->log, MOD, "msg=\"cannot watch socket\" fd=%d err=%d", fd,
			       -ENOMEM);
			return 0;
		}
		s->fd = fd;
		s->next = cli->socks;
		if (cli->socks) {
			cli->socks->prev = s;
		}
		cli->socks = s;
	}
	r = bq_loop_io_add(cli->loop, fd, events, io_cb, cli);
	if (r < 0) {
		/* The transfer then ends at its timeout, through libcurl's timer. */
		bq_err(cli->log, MOD, "msg=\"cannot watch socket\" fd=%d err=%d", fd, r);
		sock_drop(cli, s);
		return 0;
	}
	curl_multi_assign(cli->multi, fd, s);
	return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *user_data)
{
	struct bq_http_call *call = user_data;
	size_t n = size * nmemb;
	int r = bq_buf_append(&call->body, ptr, n);

	if (r == 0) {
		return n;
	}
	if (r == -EMSGSIZE) {
		call->too_big = true;
	} else {
		call->nomem = true;
	}
	/* Anything but n aborts the transfer with CURLE_WRITE_ERROR. */
	return 0;
}

/* ---- the request ------------------------------------------------------------------- */

static int headers_build(struct bq_http_call *call, const struct bq_http_request *req,
			 const char *content_type)
{
	char line[TOKEN_MAX + 32];
	struct curl_slist *h;

	/* A body would otherwise wait for "100 Continue" from servers that never send it. */
	h = curl_slist_append(NULL, "Expect:");
	if (!h) {
		return -ENOMEM;
	}
	call->headers = h;
	if (req->body) {
		snprintf(line, sizeof(line), "Content-Type: %s", content_type);
		h = curl_slist_append(call->headers, line);
		if (!h) {
			return -ENOMEM;
		}
		call->headers = h;
	}
	if (req->bearer_token) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", req->bearer_token);
		h = curl_slist_append(call->headers, line);
		sodium_memzero(line, sizeof(line));
		if (!h) {
			return -ENOMEM;
		}
		call->headers = h;
	}
	return 0;
}

static int easy_setup(struct bq_http_call *call, const struct bq_http_request *req,
		      const char *method)
{
	struct bq_http_client *cli = call->cli;
	CURL *e = call->easy;
	long timeout = req->timeout_ms ? (long)req->timeout_ms : DEFAULT_TIMEOUT_MS;
	CURLcode rc = CURLE_OK;

/* Stop at the first failing option and keep its code. */
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK) {                                                              \
			rc = curl_easy_setopt(e, opt, val);                                        \
		}                                                                                  \
	} while (0)

	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PRIVATE, call);
	SET(CURLOPT_ERRORBUFFER, call->errbuf);
	/* Timeouts through signals would hit whatever thread; the loop has its own timers. */
	SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* A redirect would carry the bearer token to a host the caller never named. */
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	/* Targets are configured explicitly; an inherited http_proxy must not reroute them. */
	SET(CURLOPT_PROXY, "");
	SET(CURLOPT_TIMEOUT_MS, timeout);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)cli->connect_timeout_ms);
	SET(CURLOPT_USERAGENT, cli->user_agent);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, call);
	SET(CURLOPT_HTTPHEADER, call->headers);
	if (strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else {
		/* Refuse a too-long body before it starts when Content-Length tells us. */
		SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)cli->max_response);
	}
	if (strcmp(method, "GET") == 0 && !req->body) {
		SET(CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "POST") == 0 || req->body) {
		/* Size first, so the copy is binary-safe; "" keeps libcurl off stdin. */
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
		SET(CURLOPT_COPYPOSTFIELDS, req->body ? (const char *)req->body : "");
		if (strcmp(method, "POST") != 0) {
			SET(CURLOPT_CUSTOMREQUEST, method);
		}
	} else if (strcmp(method, "HEAD") != 0) {
		SET(CURLOPT_CUSTOMREQUEST, method);
	}
#undef SET
	if (rc == CURLE_OK) {
		return 0;
	}
	return rc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

int bq_http_client_request(struct bq_http_client *cli, const struct bq_http_request *req,
			   bq_http_response_cb cb, void *user_data, struct bq_http_call **out)
{
	const char *method;
	const char *content_type;
	struct bq_http_call *call;
	CURLMcode mc;
	int r;

	if (out) {
		*out = NULL;
	}
	if (!cli || !req || !cb) {
		return -EINVAL;
	}
	if (cli->closing) {
		return -ECANCELED;
	}
	method = req->method ? req->method : "GET";
	content_type = req->content_type ? req->content_type : "application/json";
	if (!method_ok(method) ||
	    (req->bearer_token && !header_value_ok(req->bearer_token, TOKEN_MAX)) ||
	    !header_value_ok(content_type, CONTENT_TYPE_MAX) || (!req->body && req->body_len) ||
	    (req->body && strcmp(method, "HEAD") == 0)) {
		return -EINVAL;
	}
	r = url_check(req->url);
	if (r < 0) {
		return r;
	}
	if (cli->active >= cli->max_calls) {
		return -EAGAIN;
	}
	call = bq_calloc(1, sizeof(*call));
	if (!call) {
		return -ENOMEM;
	}
	call->cli = cli;
	call->cb = cb;
	call->user_data = user_data;
	bq_buf_init(&call->body, cli->max_response);
	call->easy = curl_easy_init();
	if (!call->easy) {
		r = -ENOMEM;
		goto err;
	}
	r = headers_build(call, req, content_type);
	if (r < 0) {
		goto err;
	}
	r = easy_setup(call, req, method);
	if (r < 0) {
		goto err;
	}
	mc = curl_multi_add_handle(cli->multi, call->easy);
	if (mc != CURLM_OK) {
		bq_warn(cli->log, MOD, "msg=\"cannot add transfer\" err=%s",
			curl_multi_strerror(mc));
		r = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
		goto err;
	}
	call->state = CALL_RUNNING;
	call->next = cli->running;
	if (cli->running) {
		cli->running->prev = call;
	}
	cli->running = call;
	cli->active++;
	if (out) {
		*out = call;
	}
	return 0;
err:
	call_free(call);
	return r;
}

void bq_http_call_cancel(struct bq_http_call *call)
{
	if (!call) {
		return;
	}
	switch (call->state) {
	case CALL_RUNNING:
		call_detach(call);
		call->result = -ECANCELED;
		bq_buf_free(&call->body);
		done_push(call->cli, call);
		break;
	case CALL_DONE:
		/* Finished but not told yet: the caller no longer wants the answer. */
		call->result = -ECANCELED;
		bq_buf_free(&call->body);
		break;
	case CALL_DELIVERING:
		break;
	}
}

uint32_t bq_http_client_active(const struct bq_http_client *cli)
{
	return cli ? cli->active : 0;
}

/* ---- the client -------------------------------------------------------------------- */

void bq_http_client_config_defaults(struct bq_http_client_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_calls = DEFAULT_MAX_CALLS;
	cfg->max_response = DEFAULT_MAX_RESPONSE;
	cfg->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	cfg->user_agent = DEFAULT_USER_AGENT;
}

struct bq_http_client *bq_http_client_new(struct bq_loop *loop, struct bq_log *log,
					  const struct bq_http_client_config *cfg)
{
	struct bq_http_client_config def;
	struct bq_http_client *cli;
	const char *ua;
	CURLMcode mc = CURLM_OK;

	if (!loop) {
		return NULL;
	}
	bq_http_client_config_defaults(&def);
	if (!cfg) {
		cfg = &def;
	}
	ua = cfg->user_agent ? cfg->user_agent : def.user_agent;
	if (!header_value_ok(ua, USER_AGENT_MAX) ||
	    (uint64_t)cfg->max_response > (uint64_t)INT64_MAX) {
		bq_err(log, MOD, "msg=\"bad config\"");
		return NULL;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		bq_err(log, MOD, "msg=\"curl_global_init failed\" err=%s",
		       curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	cli = bq_calloc(1, sizeof(*cli));
	if (!cli) {
		return NULL;
	}
	cli->loop = loop;
	cli->log = log;
	/* Zero in a field means its default, so a partly filled config still works. */
	cli->max_calls = cfg->max_calls ? cfg->max_calls : def.max_calls;
	cli->max_response = cfg->max_response ? cfg->max_response : def.max_response;
	cli->connect_timeout_ms =
		cfg->connect_timeout_ms ? cfg->connect_timeout_ms : def.connect_timeout_ms;
	cli->user_agent = bq_strdup(ua);
	cli->timer = bq_timer_new(loop, timer_cb, cli);
	cli->done_timer = bq_timer_new(loop, done_timer_cb, cli);
	cli->multi = curl_multi_init();
	if (!cli->user_agent || !cli->timer || !cli->done_timer || !cli->multi) {
		goto err;
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_fn);
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_SOCKETDATA, cli);
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_TIMERFUNCTION, curl_timer_fn);
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_TIMERDATA, cli);
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
				       (long)MAX_CONNECTIONS);
	}
	if (mc == CURLM_OK) {
		mc = curl_multi_setopt(cli->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTIONS);
	}
	if (mc != CURLM_OK) {
		bq_err(log, MOD, "msg=\"curl_multi_setopt failed\" err=%s",
		       curl_multi_strerror(mc));
		goto err;
	}
	return cli;
err:
	if (cli->multi) {
		curl_multi_cleanup(cli->multi);
	}
	bq_timer_free(cli->done_timer);
	bq_timer_free(cli->timer);
	bq_free(cli->user_agent);
	bq_free(cli);
	return NULL;
}

/*
 * Not from inside one of this client's callbacks: deliver_done is still walking the
 * queue there (docs/internals/http-client.md).
 */
void bq_http_client_free(struct bq_http_client *cli)
{
	struct bq_http_call *call;

	if (!cli) {
		return;
	}
	/* From here request() refuses and done_push() schedules nothing. */
	cli->closing = true;
	while (cli->running) {
		call = cli->running;
		call_detach(call);
		call->result = -ECANCELED;
		bq_buf_free(&call->body);
		done_push(cli, call);
	}
	/* Finished but undelivered calls are cancelled too: the owner is going away. */
	for (call = cli->done_head; call; call = call->next) {
		call->result = -ECANCELED;
		bq_buf_free(&call->body);
	}
	while ((call = done_pop(cli))) {
		call_finish(call);
	}
	if (cli->token) {
		cli->token->cli = NULL;
		cli->token = NULL;
	}
	curl_multi_cleanup(cli->multi);
	/* Whatever libcurl closed without telling us must not stay in the loop's table. */
	while (cli->socks) {
		sock_drop(cli, cli->socks);
	}
	bq_timer_free(cli->done_timer);
	bq_timer_free(cli->timer);
	bq_free(cli->user_agent);
	bq_free(cli);
}
