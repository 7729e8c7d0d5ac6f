/* SPDX-License-Identifier: MIT */
/*
 * http/server: libmicrohttpd in external-event mode on bq_loop. The design, and why
 * each MHD call sits where it does, is in docs/internals/http.md.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/opt.h"

#define MOD "http"

/* MHD's buffer for HTTP/1.0 (unchunked) streams; chunked ones use the write buffer. */
#define STREAM_BLOCK 16384
/* Longest error reason we format; longer ones are cut (and then made valid UTF-8). */
#define REASON_MAX 1024
/* Bounds on added headers: a name is a short token, a value fits one line of a proxy. */
#define HDR_NAME_MAX 256
#define HDR_VALUE_MAX 4096
#define DEFAULT_HEADERS_MAX 32

enum req_state {
	REQ_NEW,	/* headers seen; the body is being collected */
	REQ_IN_HANDLER, /* the route's handler is running */
	REQ_PENDING,	/* the handler kept it: the connection is suspended */
	REQ_DONE,	/* a reply is queued; the owner no longer holds req */
	REQ_ABORTED,	/* the client left (or the server is freed) before the reply */
	REQ_FAILED,	/* a reply could not be queued: the connection must close */
};

struct bq_http_server {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_http_server_config cfg; /* bind_host and bearer_token cleared */
	bool auth;
	unsigned char token_hash[crypto_generichash_BYTES];
	struct MHD_Daemon *mhd;
	int epoll_fd;
	bool io_added;
	bool hook_added;
	struct bq_timer *timer;
	struct bq_timer *watch_timer; /* starts hang-up watches on long suspensions */
	uint32_t n_suspended;
	uint16_t port;
	bool need_run; /* a connection was resumed since the last MHD_run */
	bool freeing;
	struct bq_http_req *reqs; /* every live request, for free */
	struct bq_http_server_stats stats;
	char *start_err; /* while starting: where MHD's complaint goes */
	size_t start_errlen;
};

struct bq_http_req {
	struct bq_http_server *srv;
	struct MHD_Connection *conn;
	enum req_state state;
	enum bq_http_method method;
	const char *method_str; /* MHD's, lives as long as the request */
	char *path;
	const char *param; /* points into path */
	const struct bq_http_route *route;
	struct bq_buf body;
	bool too_large;
	bool suspended; /* suspended by us and not yet resumed */
	int watch_fd;	/* socket watched for hang-up while suspended, or -1 */
	uint64_t suspended_us;
	bq_http_abort_cb abort_cb;
	void *abort_ud;
	struct bq_http_stream *stream;
	uint64_t start_us;
	char *hdrs[BQ_HTTP_REQ_HEADERS_MAX]; /* "name\0value\0", for the next reply */
	unsigned n_hdrs;
	struct bq_http_req *prev, *next;
};

/*
 * Two owners: the connection (until notify-completed) and MHD's response (until its
 * free callback). The struct goes when both have let go, in whichever order.
 */
struct bq_http_stream {
	struct bq_http_server *srv;
	struct bq_http_req *req; /* NULL once the connection is gone */
	struct bq_buf buf;
	size_t head; /* bytes of buf already handed to MHD */
	bq_http_stream_closed_cb closed;
	void *ud;
	bool closing; /* server side end: flush, then end the chunked body */
	bool dead;    /* overflow or client gone: end with an error */
	bool closed_called;
	bool conn_ref;
	bool resp_ref;
};

static void srv_run(struct bq_http_server *srv);

/* ---- small helpers ------------------------------------------------------------- */

static const char *method_name(enum bq_http_method m)
{
	switch (m) {
	case BQ_HTTP_GET:
		return "GET";
	case BQ_HTTP_POST:
		return "POST";
	case BQ_HTTP_PUT:
		return "PUT";
	case BQ_HTTP_DELETE:
		return "DELETE";
	}
	return "?";
}

static bool method_parse(const char *s, enum bq_http_method *out)
{
	static const enum bq_http_method all[] = {BQ_HTTP_GET, BQ_HTTP_POST, BQ_HTTP_PUT,
						  BQ_HTTP_DELETE};

	/* HEAD is a GET whose body libmicrohttpd leaves out (RFC 9110 9.3.2). */
	if (strcmp(s, "HEAD") == 0) {
		*out = BQ_HTTP_GET;
		return true;
	}

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, method_name(all[i])) == 0) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

static uint64_t now_us(const struct bq_http_server *srv)
{
	return bq_loop_now_us(srv->loop);
}

/* ---- suspension and hang-up detection ------------------------------------------ */

static void watch_stop(struct bq_http_req *req)
{
	if (req->watch_fd >= 0) {
		bq_loop_io_remove(req->srv->loop, req->watch_fd);
		req->watch_fd = -1;
	}
}

static void conn_resume(struct bq_http_req *req)
{
	watch_stop(req);
	if (!req->suspended) {
		return;
	}
	req->suspended = false;
	req->srv->n_suspended--;
	MHD_resume_connection(req->conn);
	/* Resuming only takes effect inside MHD_run: the before-sleep hook runs it. */
	req->srv->need_run = true;
}

static void req_abort(struct bq_http_req *req)
{
	bq_http_abort_cb cb = req->abort_cb;

	if (req->state != REQ_PENDING) {
		return;
	}
	req->state = REQ_ABORTED;
	req->srv->stats.pending--;
	req->abort_cb = NULL;
	if (bq_log_enabled(req->srv->log, BQ_LOG_DEBUG, MOD)) {
		char qm[64];
		char qpath[256];

		bq_debug(req->srv->log, MOD, "msg=\"request aborted\" method=%s path=%s",
			 bq_log_quote(req->method_str, qm, sizeof(qm)),
			 bq_log_quote(req->path, qpath, sizeof(qpath)));
	}
	if (cb) {
		cb(req, req->abort_ud);
	}
}

static void client_gone(struct bq_http_req *req)
{
	if (req->stream) {
		/* The reader ends the body with an error; notify-completed runs closed. */
		req->stream->dead = true;
		conn_resume(req);
		return;
	}
	conn_resume(req);
	/* Resumed with no response, MHD calls the access handler again: MHD_NO closes. */
	req_abort(req);
}

/*
 * MHD stops watching a suspended connection, so a client that leaves while its reply
 * is deferred would go unnoticed until the reply. We watch the socket ourselves in
 * the meantime: EOF or an error means the client is gone. Bytes (a pipelined request)
 * mean it is still there; we stop watching rather than spin on a level-triggered fd.
 */
static void watch_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct bq_http_req *req = user_data;
	char c;
	ssize_t n;

	(void)loop;
	if (!(events & BQ_EV_ERROR)) {
		n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
		if (n > 0) {
			watch_stop(req);
			return;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			return;
		}
	}
	client_gone(req);
}

static int conn_fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	return ci ? ci->connect_fd : -1;
}

/*
 * Watching costs two epoll_ctl calls, as much as the rest of a deferred request: most
 * deferrals (an outbox commit) end within a millisecond or two, so the watch starts
 * only for a suspension that lasts WATCH_AFTER_MS, from one sweep timer.
 */
#define WATCH_AFTER_MS 200

static void watch_start(struct bq_http_req *req)
{
	int fd = conn_fd(req->conn);
	int rc;

	if (fd < 0) {
		return;
	}
	rc = bq_loop_io_add(req->srv->loop, fd, BQ_EV_READ, watch_cb, req);
	if (rc < 0) {
		bq_warn(req->srv->log, MOD,
			"msg=\"cannot watch suspended connection\" fd=%d err=%d", fd, rc);
		return;
	}
	req->watch_fd = fd;
}

static void watch_sweep(struct bq_timer *t, void *user_data)
{
	struct bq_http_server *srv = user_data;
	uint64_t now = now_us(srv);

	for (struct bq_http_req *req = srv->reqs; req; req = req->next) {
		if (req->suspended && req->watch_fd < 0 &&
		    now - req->suspended_us >= WATCH_AFTER_MS * 1000ull) {
			watch_start(req);
		}
	}
	if (srv->n_suspended) {
		bq_timer_start(t, WATCH_AFTER_MS / 2);
	}
}

/* Only from inside the access handler or the content reader (MHD's rule). */
static void conn_suspend(struct bq_http_req *req)
{
	struct bq_http_server *srv = req->srv;

	MHD_suspend_connection(req->conn);
	req->suspended = true;
	req->suspended_us = now_us(srv);
	srv->n_suspended++;
	if (!bq_timer_active(srv->watch_timer)) {
		bq_timer_start(srv->watch_timer, WATCH_AFTER_MS);
	}
}

/* ---- replies ------------------------------------------------------------------- */

static bool req_can_reply(const struct bq_http_req *req)
{
	return req &&
	       (req->state == REQ_NEW || req->state == REQ_IN_HANDLER || req->state == REQ_PENDING);
}

static void req_log(struct bq_http_req *req, unsigned status)
{
	char qm[64];
	char qpath[256];

	if (!bq_log_enabled(req->srv->log, BQ_LOG_DEBUG, MOD)) {
		return;
	}
	bq_debug(req->srv->log, MOD, "msg=request method=%s path=%s status=%u duration_us=%" PRIu64,
		 bq_log_quote(req->method_str, qm, sizeof(qm)),
		 bq_log_quote(req->path, qpath, sizeof(qpath)), status,
		 now_us(req->srv) - req->start_us);
}

/* Every reply ends here: the request leaves the owner's hands whatever rc is. */
static int req_finish(struct bq_http_req *req, unsigned status, int rc)
{
	struct bq_http_server *srv = req->srv;

	if (req->state == REQ_PENDING) {
		srv->stats.pending--;
	}
	req->abort_cb = NULL;
	if (rc == 0) {
		req->state = REQ_DONE;
		srv->stats.requests++;
		if (status / 100 < 6) {
			srv->stats.by_class[status / 100]++;
		}
		req_log(req, status);
	} else {
		/* The access handler answers MHD_NO on its next call: MHD closes. */
		req->state = REQ_FAILED;
		char qm[64];

		bq_warn(srv->log, MOD, "msg=\"cannot queue reply\" method=%s status=%u err=%d",
			bq_log_quote(req->method_str, qm, sizeof(qm)), status, rc);
	}
	conn_resume(req);
	return rc;
}

/* RFC 9110 token characters. */
static bool hdr_name_ok(const char *s)
{
	static const char *const ours[] = {
		MHD_HTTP_HEADER_CONTENT_TYPE, MHD_HTTP_HEADER_CONTENT_LENGTH,
		MHD_HTTP_HEADER_TRANSFER_ENCODING, MHD_HTTP_HEADER_CONNECTION};
	size_t n = 0;

	if (!s) {
		return false;
	}
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= HDR_NAME_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("!#$%&'*+-.^_`|~", c))) {
			return false;
		}
	}
	if (n == 0) {
		return false;
	}
	/* The server sets these itself; a second copy would make the reply ambiguous. */
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
		if (strcasecmp(s, ours[i]) == 0) {
			return false;
		}
	}
	return true;
}

/* No CR or LF (response splitting) and no other control character; tab is allowed. */
static bool hdr_value_ok(const char *s)
{
	size_t n = 0;

	if (!s) {
		return false;
	}
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];

		if (n >= HDR_VALUE_MAX || (c < 0x20 && c != '\t') || c == 0x7f) {
			return false;
		}
	}
	return true;
}

/* The server's defaults, then the request's own. */
static int add_headers(const struct bq_http_req *req, struct MHD_Response *resp)
{
	const char *const *d = req->srv->cfg.default_headers;

	for (; d && d[0]; d += 2) {
		if (MHD_add_response_header(resp, d[0], d[1]) != MHD_YES) {
			return -ENOMEM;
		}
	}
	for (unsigned i = 0; i < req->n_hdrs; i++) {
		const char *name = req->hdrs[i];

		if (MHD_add_response_header(resp, name, name + strlen(name) + 1) != MHD_YES) {
			return -ENOMEM;
		}
	}
	return 0;
}

static int req_queue(struct bq_http_req *req, unsigned status, struct MHD_Response *resp)
{
	enum MHD_Result r;

	if (add_headers(req, resp) < 0) {
		MHD_destroy_response(resp);
		return req_finish(req, status, -ENOMEM);
	}
	r = MHD_queue_response(req->conn, status, resp);
	MHD_destroy_response(resp);
	return req_finish(req, status, r == MHD_YES ? 0 : -EIO);
}

static struct MHD_Response *make_response(const char *content_type, const void *body, size_t len)
{
	struct MHD_Response *resp;

	/* MUST_COPY: the caller's buffer may go as soon as we return. */
	resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!resp) {
		return NULL;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				    content_type ? content_type : "application/json") != MHD_YES) {
		MHD_destroy_response(resp);
		return NULL;
	}
	return resp;
}

int bq_http_reply(struct bq_http_req *req, unsigned status, const char *content_type,
		  const void *body, size_t len)
{
	struct MHD_Response *resp;

	if (!req_can_reply(req)) {
		return -EINVAL;
	}
	if (len > 0 && !body) {
		return req_finish(req, status, -EINVAL);
	}
	resp = make_response(content_type, len ? body : "", len);
	if (!resp) {
		return req_finish(req, status, -ENOMEM);
	}
	return req_queue(req, status, resp);
}

/* Replace what cannot appear in a JSON string (invalid UTF-8) so the reply still goes. */
static void ascii_only(char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s >= 0x80) {
			*s = '?';
		}
	}
}

static char *error_json(const char *code, const char *reason)
{
	json_t *obj;
	char *out = NULL;
	size_t n;

	obj = json_pack("{s:s, s:s}", "error", reason, "code", code);
	if (!obj) {
		return NULL;
	}
	/* Sized first, so the text is ours (bq_malloc) whatever allocator jansson uses. */
	n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
	if (n > 0) {
		out = bq_malloc(n + 1);
	}
	if (out) {
		json_dumpb(obj, out, n, JSON_COMPACT);
		out[n] = '\0';
	}
	json_decref(obj);
	return out;
}

/* extra_name/extra_value: one more header (Allow, WWW-Authenticate) or NULL. */
static int reply_error_hdr(struct bq_http_req *req, unsigned status, const char *code,
			   const char *extra_name, const char *extra_value, const char *fmt,
			   va_list ap) __attribute__((format(printf, 6, 0)));

static int reply_error_hdr(struct bq_http_req *req, unsigned status, const char *code,
			   const char *extra_name, const char *extra_value, const char *fmt,
			   va_list ap)
{
	char reason[REASON_MAX];
	struct MHD_Response *resp;
	char *js;

	if (!req_can_reply(req)) {
		return -EINVAL;
	}
	vsnprintf(reason, sizeof(reason), fmt, ap);
	js = error_json(code ? code : "error", reason);
	if (!js) {
		/* A client-supplied path that is not UTF-8, or a cut multi-byte sequence. */
		ascii_only(reason);
		js = error_json(code ? code : "error", reason);
	}
	if (!js) {
		return req_finish(req, status, -ENOMEM);
	}
	resp = make_response(NULL, js, strlen(js));
	bq_free(js);
	if (!resp) {
		return req_finish(req, status, -ENOMEM);
	}
	if (extra_name && MHD_add_response_header(resp, extra_name, extra_value) != MHD_YES) {
		MHD_destroy_response(resp);
		return req_finish(req, status, -ENOMEM);
	}
	return req_queue(req, status, resp);
}

static int reply_error_x(struct bq_http_req *req, unsigned status, const char *code,
			 const char *extra_name, const char *extra_value, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static int reply_error_x(struct bq_http_req *req, unsigned status, const char *code,
			 const char *extra_name, const char *extra_value, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = reply_error_hdr(req, status, code, extra_name, extra_value, fmt, ap);
	va_end(ap);
	return rc;
}

int bq_http_reply_not_found(struct bq_http_req *req)
{
	if (!req_can_reply(req)) {
		return -EINVAL;
	}
	return reply_error_x(req, MHD_HTTP_NOT_FOUND, "not_found", NULL, NULL,
			     "no such endpoint: %s %s", req->method_str, req->path);
}

int bq_http_reply_error(struct bq_http_req *req, unsigned status, const char *code, const char *fmt,
			...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = reply_error_hdr(req, status, code, NULL, NULL, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- event streams ------------------------------------------------------------- */

static void stream_maybe_free(struct bq_http_stream *st)
{
	if (st->conn_ref || st->resp_ref) {
		return;
	}
	bq_buf_free(&st->buf);
	bq_free(st);
}

static void stream_resp_free(void *cls)
{
	struct bq_http_stream *st = cls;

	st->resp_ref = false;
	stream_maybe_free(st);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct bq_http_stream *st = cls;
	size_t avail = st->buf.len - st->head;
	size_t n;

	(void)pos;
	if (st->dead) {
		return MHD_CONTENT_READER_END_WITH_ERROR;
	}
	if (avail > 0) {
		n = avail < max ? avail : max;
		memcpy(buf, st->buf.data + st->head, n);
		st->head += n;
		if (st->head == st->buf.len) {
			st->head = 0;
			bq_buf_reset(&st->buf);
		}
		return (ssize_t)n;
	}
	if (st->closing) {
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	/*
	 * Nothing to send. Returning 0 alone would make MHD ask again on every MHD_run;
	 * suspended, the connection costs nothing until bq_http_stream_send resumes it.
	 */
	if (st->req && !st->req->suspended) {
		conn_suspend(st->req);
	}
	return 0;
}

struct bq_http_stream *bq_http_reply_stream(struct bq_http_req *req,
					    bq_http_stream_closed_cb closed, void *user_data)
{
	struct bq_http_server *srv;
	struct bq_http_stream *st;
	struct MHD_Response *resp;
	enum MHD_Result r;

	if (!req_can_reply(req)) {
		return NULL;
	}
	srv = req->srv;
	st = bq_calloc(1, sizeof(*st));
	if (!st) {
		goto fail;
	}
	st->srv = srv;
	st->closed = closed;
	st->ud = user_data;
	bq_buf_init(&st->buf, srv->cfg.max_stream_buffer);
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, st,
						 stream_resp_free);
	if (!resp) {
		bq_free(st);
		goto fail;
	}
	st->resp_ref = true;
	st->conn_ref = true; /* until the queue result is known, keep st alive */
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
		    MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Accel-Buffering", "no") != MHD_YES ||
	    add_headers(req, resp) < 0) {
		MHD_destroy_response(resp);
		st->conn_ref = false;
		stream_maybe_free(st);
		goto fail;
	}
	r = MHD_queue_response(req->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	if (r != MHD_YES) {
		st->conn_ref = false;
		stream_maybe_free(st);
		goto fail;
	}
	st->req = req;
	req->stream = st;
	/* Streams live as long as the owner wants; keep-alives are the owner's job. */
	MHD_set_connection_option(req->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	srv->stats.streams++;
	req_finish(req, MHD_HTTP_OK, 0);
	return st;

fail:
	bq_http_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
			    "cannot start event stream");
	return NULL;
}

int bq_http_stream_send(struct bq_http_stream *st, const void *data, size_t len)
{
	struct bq_http_server *srv;
	int rc;
	int fd;

	if (!st || st->closing || st->dead || !st->req) {
		return -EPIPE;
	}
	srv = st->srv;
	if (len == 0) {
		return 0;
	}
	if (len > st->buf.max - (st->buf.len - st->head)) {
		st->dead = true;
		srv->stats.stream_overflows++;
		bq_info(srv->log, MOD,
			"msg=\"event stream overflow, closing\" buffered=%zu max=%zu",
			st->buf.len - st->head, st->buf.max);
		/*
		 * A reader that takes nothing leaves MHD waiting for the socket to drain, so
		 * the reader would never see 'dead'. Shutting the socket down wakes MHD,
		 * whose next read or write fails and closes the connection.
		 */
		fd = conn_fd(st->req->conn);
		if (fd >= 0) {
			shutdown(fd, SHUT_RDWR);
		}
		conn_resume(st->req);
		return -ENOBUFS;
	}
	if (st->head > 0 && st->buf.len + len > st->buf.max) {
		memmove(st->buf.data, st->buf.data + st->head, st->buf.len - st->head);
		st->buf.len -= st->head;
		st->head = 0;
	}
	rc = bq_buf_append(&st->buf, data, len);
	if (rc < 0) {
		return rc;
	}
	conn_resume(st->req);
	return 0;
}

void bq_http_stream_close(struct bq_http_stream *st)
{
	if (!st || st->closing || st->dead || !st->req) {
		return;
	}
	st->closing = true;
	/* A client that stops reading must not hold the flush open forever. */
	MHD_set_connection_option(st->req->conn, MHD_CONNECTION_OPTION_TIMEOUT,
				  (unsigned int)st->srv->cfg.idle_timeout_s);
	conn_resume(st->req);
}

/* ---- requests ------------------------------------------------------------------ */

static void req_link(struct bq_http_server *srv, struct bq_http_req *req)
{
	req->next = srv->reqs;
	if (srv->reqs) {
		srv->reqs->prev = req;
	}
	srv->reqs = req;
}

static void req_unlink(struct bq_http_server *srv, struct bq_http_req *req)
{
	if (req->prev) {
		req->prev->next = req->next;
	} else {
		srv->reqs = req->next;
	}
	if (req->next) {
		req->next->prev = req->prev;
	}
	req->prev = req->next = NULL;
}

static struct bq_http_req *req_new(struct bq_http_server *srv, struct MHD_Connection *conn,
				   const char *url, const char *method)
{
	struct bq_http_req *req = bq_calloc(1, sizeof(*req));

	if (!req) {
		return NULL;
	}
	req->path = bq_strdup(url);
	if (!req->path) {
		bq_free(req);
		return NULL;
	}
	req->srv = srv;
	req->conn = conn;
	req->method_str = method;
	req->watch_fd = -1;
	req->start_us = now_us(srv);
	bq_buf_init(&req->body, srv->cfg.max_body);
	req_link(srv, req);
	return req;
}

static void req_free(struct bq_http_req *req)
{
	for (unsigned i = 0; i < req->n_hdrs; i++) {
		bq_free(req->hdrs[i]);
	}
	req_unlink(req->srv, req);
	bq_buf_free(&req->body);
	bq_free(req->path);
	bq_free(req);
}

/* "/a/b/" + "*" matches "/a/b/<one non-empty segment>"; anything else is exact. */
static bool route_match(const char *pattern, const char *path, const char **param)
{
	size_t plen = strlen(pattern);

	*param = NULL;
	if (plen >= 2 && pattern[plen - 1] == '*' && pattern[plen - 2] == '/') {
		const char *seg = path + plen - 1;

		if (strncmp(pattern, path, plen - 1) != 0 || *seg == '\0' || strchr(seg, '/')) {
			return false;
		}
		*param = seg;
		return true;
	}
	return strcmp(pattern, path) == 0;
}

static bool token_ok(const struct bq_http_server *srv, struct MHD_Connection *conn)
{
	static const char scheme[] = "Bearer ";
	unsigned char h[crypto_generichash_BYTES];
	const char *v;

	v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!v || strncasecmp(v, scheme, sizeof(scheme) - 1) != 0) {
		return false;
	}
	v += sizeof(scheme) - 1;
	/* Hashing first gives equal lengths, so the compare leaks neither bytes nor length. */
	crypto_generichash(h, sizeof(h), (const unsigned char *)v, strlen(v), NULL, 0);
	return sodium_memcmp(h, srv->token_hash, sizeof(h)) == 0;
}

static enum MHD_Result result_of(const struct bq_http_req *req)
{
	return req->state == REQ_FAILED ? MHD_NO : MHD_YES;
}

static int reply_too_large(struct bq_http_req *req)
{
	req->srv->stats.rejected_too_large++;
	return reply_error_x(req, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL, NULL,
			     "request body is larger than %zu bytes", req->srv->cfg.max_body);
}

/* First call (headers only): authentication, routing, the declared body size. */
static enum MHD_Result req_begin(struct bq_http_req *req)
{
	struct bq_http_server *srv = req->srv;
	bool known = method_parse(req->method_str, &req->method);
	bool path_known = false;
	char allow[64] = "";
	size_t alen = 0;
	const char *param;
	const char *clen;

	if (srv->auth &&
	    !(known && req->method == BQ_HTTP_GET && strcmp(req->path, "/health") == 0) &&
	    !token_ok(srv, req->conn)) {
		srv->stats.rejected_unauthorized++;
		reply_error_x(req, MHD_HTTP_UNAUTHORIZED, "unauthorized",
			      MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer",
			      "missing or wrong bearer token");
		return result_of(req);
	}
	for (const struct bq_http_route *r = srv->cfg.routes; r->path; r++) {
		if (!route_match(r->path, req->path, &param)) {
			continue;
		}
		path_known = true;
		if (known && r->method == req->method) {
			req->route = r;
			req->param = param;
			break;
		}
		if (!strstr(allow, method_name(r->method))) {
			int n = snprintf(allow + alen, sizeof(allow) - alen, "%s%s",
					 alen ? ", " : "", method_name(r->method));

			if (n > 0 && (size_t)n < sizeof(allow) - alen) {
				alen += (size_t)n;
			}
		}
	}
	if (!req->route && !path_known && known && req->method == BQ_HTTP_GET &&
	    srv->cfg.fallback) {
		/* No route names it: the fallback (static files) answers, found or not. */
		static const struct bq_http_route fallback_route = {BQ_HTTP_GET, "", NULL};

		req->route = &fallback_route;
		return MHD_YES;
	}
	if (!req->route) {
		if (!path_known) {
			bq_http_reply_not_found(req);
		} else {
			reply_error_x(req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
				      MHD_HTTP_HEADER_ALLOW, allow, "method not allowed: %s %s",
				      req->method_str, req->path);
		}
		return result_of(req);
	}
	/* MHD has checked the digits (bad ones got its own 400); the size is ours. */
	clen = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
					   MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (clen) {
		int64_t v;

		if (bq_opt_parse_int(clen, &v) < 0 || v < 0 || (uint64_t)v > srv->cfg.max_body) {
			/* Queued before the body: MHD skips the upload and closes after. */
			reply_too_large(req);
			return result_of(req);
		}
	}
	return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct bq_http_server *srv = cls;
	struct bq_http_req *req = *con_cls;

	(void)version;
	if (!req) {
		req = req_new(srv, conn, url, method);
		if (!req) {
			return MHD_NO;
		}
		*con_cls = req;
		return req_begin(req);
	}
	if (*upload_data_size > 0) {
		/*
		 * MHD cannot queue a reply in mid-upload, so an over-long body (chunked, no
		 * Content-Length) is read and dropped, and answered 413 when it ends.
		 */
		if (!req->too_large && req->state == REQ_NEW) {
			int rc = bq_buf_append(&req->body, upload_data, *upload_data_size);

			if (rc == -EMSGSIZE) {
				req->too_large = true;
				bq_buf_free(&req->body);
			} else if (rc < 0) {
				return MHD_NO;
			}
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	switch (req->state) {
	case REQ_NEW:
		break;
	case REQ_ABORTED:
	case REQ_FAILED:
		return MHD_NO;
	default:
		return MHD_YES;
	}
	if (req->too_large) {
		reply_too_large(req);
		return result_of(req);
	}
	req->state = REQ_IN_HANDLER;
	if (req->route->handler) {
		req->route->handler(req, srv->cfg.user_data);
	} else {
		srv->cfg.fallback(req, srv->cfg.fallback_data);
	}
	if (req->state == REQ_IN_HANDLER) {
		req->state = REQ_PENDING;
		srv->stats.pending++;
		conn_suspend(req);
	}
	return result_of(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct bq_http_server *srv = cls;
	struct bq_http_req *req = *con_cls;
	struct bq_http_stream *st;

	(void)conn;
	if (!req) {
		return;
	}
	*con_cls = NULL;
	watch_stop(req);
	/* Not expected (suspended connections are only closed by us); keep the promise. */
	req_abort(req);
	st = req->stream;
	if (st) {
		st->req = NULL;
		st->dead = true;
		if (!st->closed_called) {
			st->closed_called = true;
			srv->stats.streams--;
			bq_debug(srv->log, MOD, "msg=\"event stream closed\" toe=%d", (int)toe);
			if (st->closed) {
				st->closed(st, st->ud);
			}
		}
		st->conn_ref = false;
		stream_maybe_free(st);
	}
	req_free(req);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct bq_http_server *srv = cls;

	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		srv->stats.connections++;
	} else if (srv->stats.connections > 0) {
		srv->stats.connections--;
	}
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct bq_http_server *srv = cls;
	char line[512];
	char q[600];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
		line[--n] = '\0';
	}
	if (srv->start_err && srv->start_errlen > 0) {
		snprintf(srv->start_err, srv->start_errlen, "libmicrohttpd: %s", line);
	}
	bq_warn(srv->log, MOD, "msg=libmicrohttpd detail=%s", bq_log_quote(line, q, sizeof(q)));
}
#pragma GCC diagnostic pop

/* ---- loop glue ----------------------------------------------------------------- */

static void srv_run(struct bq_http_server *srv)
{
	MHD_UNSIGNED_LONG_LONG ms;
	int rc;

	srv->need_run = false;
	MHD_run(srv->mhd);
	if (srv->need_run) {
		/* A callback inside this run resumed a connection: run again next round. */
		ms = 0;
	} else if (MHD_get_timeout(srv->mhd, &ms) != MHD_YES) {
		bq_timer_stop(srv->timer);
		return;
	}
	rc = bq_timer_start(srv->timer, ms > UINT32_MAX ? UINT32_MAX : (uint64_t)ms);
	if (rc < 0) {
		bq_warn(srv->log, MOD, "msg=\"cannot arm timer\" err=%d", rc);
	}
}

static void io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	(void)loop;
	(void)fd;
	(void)events;
	srv_run(user_data);
}

static void timer_cb(struct bq_timer *t, void *user_data)
{
	(void)t;
	srv_run(user_data);
}

static void hook_cb(struct bq_loop *loop, void *user_data)
{
	struct bq_http_server *srv = user_data;

	(void)loop;
	if (srv->need_run) {
		srv_run(srv);
	}
}

/* ---- start / free -------------------------------------------------------------- */

void bq_http_server_config_defaults(struct bq_http_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->bind_host = "127.0.0.1";
	cfg->max_body = 65536;
	cfg->idle_timeout_s = 30;
	cfg->max_connections = 4096;
	cfg->max_stream_buffer = 262144;
}

static int make_listener(const char *host, uint16_t port, int *out_fd, uint16_t *bound, char *err,
			 size_t errlen)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int one = 1;
	int fd;
	int rc;

	if (!host || !*host || strcmp(host, "localhost") == 0) {
		host = "127.0.0.1";
	}
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		len = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		len = sizeof(*s6);
	} else {
		snprintf(err, errlen, "bad bind_host \"%s\": not a numeric IPv4 or IPv6 address",
			 host);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create tcp socket: %s", strerror(-rc));
		return rc;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
		rc = -errno;
		if (rc == -EADDRINUSE) {
			snprintf(err, errlen, "tcp port %u is already in use", port);
		} else if (rc == -EACCES) {
			snprintf(err, errlen, "tcp port %u needs privileges", port);
		} else {
			snprintf(err, errlen, "cannot listen on %s port %u: %s", host, port,
				 strerror(-rc));
		}
		close(fd);
		return rc;
	}
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
		rc = -errno;
		snprintf(err, errlen, "getsockname: %s", strerror(-rc));
		close(fd);
		return rc;
	}
	*bound = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
	*out_fd = fd;
	return 0;
}

static int check_config(const struct bq_http_server_config *cfg, char *err, size_t errlen)
{
	if (!cfg->routes) {
		snprintf(err, errlen, "http server: no routes");
		return -EINVAL;
	}
	for (const struct bq_http_route *r = cfg->routes; r->path; r++) {
		if (r->path[0] != '/' || !r->handler || (unsigned)r->method > BQ_HTTP_DELETE) {
			snprintf(err, errlen, "http server: bad route \"%s\"", r->path);
			return -EINVAL;
		}
	}
	if (cfg->default_headers) {
		size_t n = 0;

		for (const char *const *d = cfg->default_headers; d[0]; d += 2, n++) {
			if (n >= DEFAULT_HEADERS_MAX || !hdr_name_ok(d[0]) || !hdr_value_ok(d[1])) {
				snprintf(err, errlen, "http server: bad default header \"%.100s\"",
					 d[0]);
				return -EINVAL;
			}
		}
	}
	if (cfg->max_connections == 0 || cfg->idle_timeout_s == 0 || cfg->max_stream_buffer == 0) {
		snprintf(err, errlen,
			 "http server: max_connections, idle_timeout_s and max_stream_buffer "
			 "must be positive");
		return -EINVAL;
	}
	return 0;
}

/*
 * On failure MHD closes the listening socket on some paths and not on others. Close
 * it only if the number still names the same socket (same inode), so a failure can
 * neither leak it nor close a descriptor another thread just opened.
 */
static void close_if_same(int fd, const struct stat *was)
{
	struct stat now;

	if (fstat(fd, &now) == 0 && now.st_dev == was->st_dev && now.st_ino == was->st_ino) {
		close(fd);
	}
}

int bq_http_server_start(struct bq_loop *loop, struct bq_log *log,
			 const struct bq_http_server_config *cfg, struct bq_http_server **out,
			 char *err, size_t errlen)
{
	struct bq_http_server *srv;
	const union MHD_DaemonInfo *info;
	struct stat lst;
	char dummy[1];
	int lfd = -1;
	int rc;

	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (!loop || !cfg || !out) {
		snprintf(err, errlen, "http server: missing argument");
		return -EINVAL;
	}
	*out = NULL;
	rc = check_config(cfg, err, errlen);
	if (rc < 0) {
		return rc;
	}
	if (sodium_init() < 0) {
		snprintf(err, errlen, "http server: libsodium failed to initialise");
		return -EIO;
	}
	srv = bq_calloc(1, sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "http server: out of memory");
		return -ENOMEM;
	}
	srv->loop = loop;
	srv->log = log;
	srv->cfg = *cfg;
	srv->cfg.bind_host = NULL;
	srv->cfg.bearer_token = NULL;
	srv->epoll_fd = -1;
	if (cfg->bearer_token && cfg->bearer_token[0]) {
		srv->auth = true;
		crypto_generichash(srv->token_hash, sizeof(srv->token_hash),
				   (const unsigned char *)cfg->bearer_token,
				   strlen(cfg->bearer_token), NULL, 0);
	}
	srv->timer = bq_timer_new(loop, timer_cb, srv);
	srv->watch_timer = bq_timer_new(loop, watch_sweep, srv);
	if (!srv->timer || !srv->watch_timer) {
		snprintf(err, errlen, "http server: out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	rc = make_listener(cfg->bind_host, cfg->port, &lfd, &srv->port, err, errlen);
	if (rc < 0) {
		goto fail;
	}
	if (fstat(lfd, &lst) < 0) {
		rc = -errno;
		snprintf(err, errlen, "fstat: %s", strerror(-rc));
		close(lfd);
		goto fail;
	}
	srv->start_err = err;
	srv->start_errlen = errlen;
	/* The logger goes first, or MHD prints what it says before it to stderr. */
	srv->mhd = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, srv->port, NULL, NULL,
		on_access, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)cfg->idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)cfg->max_connections, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_END);
	srv->start_err = NULL;
	srv->start_errlen = 0;
	if (!srv->mhd) {
		close_if_same(lfd, &lst);
		if (!err[0]) {
			snprintf(err, errlen, "libmicrohttpd could not start");
		}
		rc = -EIO;
		goto fail;
	}
	info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		snprintf(err, errlen, "libmicrohttpd has no epoll descriptor");
		rc = -EIO;
		goto fail;
	}
	srv->epoll_fd = info->epoll_fd;
	rc = bq_loop_io_add(loop, srv->epoll_fd, BQ_EV_READ, io_cb, srv);
	if (rc < 0) {
		snprintf(err, errlen, "http server: cannot watch epoll fd: %s", strerror(-rc));
		goto fail;
	}
	srv->io_added = true;
	rc = bq_loop_before_sleep(loop, hook_cb, srv);
	if (rc < 0) {
		snprintf(err, errlen, "http server: out of memory");
		goto fail;
	}
	srv->hook_added = true;
	/* Arm the timer from MHD's first timeout (accepts wait for the fd anyway). */
	srv_run(srv);
	err[0] = '\0'; /* MHD may have warned without failing */
	bq_info(log, MOD, "msg=listening port=%u auth=%s", srv->port,
		srv->auth ? "bearer" : "none");
	*out = srv;
	return 0;

fail:
	bq_http_server_free(srv);
	return rc;
}

void bq_http_server_free(struct bq_http_server *srv)
{
	struct bq_http_req *req;

	if (!srv) {
		return;
	}
	srv->freeing = true;
	/*
	 * Callbacks first, while every request is still whole. They may reply to other
	 * pending requests or close streams; nothing they can do frees a request (only
	 * MHD does, below), so walking the list stays safe.
	 */
	for (req = srv->reqs; req; req = req->next) {
		req_abort(req);
		if (req->stream && !req->stream->closed_called) {
			struct bq_http_stream *st = req->stream;

			st->closed_called = true;
			st->dead = true;
			srv->stats.streams--;
			if (st->closed) {
				st->closed(st, st->ud);
			}
		}
	}
	/* MHD must not be stopped with suspended connections (its documented rule). */
	for (req = srv->reqs; req; req = req->next) {
		conn_resume(req);
	}
	if (srv->io_added) {
		bq_loop_io_remove(srv->loop, srv->epoll_fd);
	}
	if (srv->hook_added) {
		bq_loop_before_sleep_remove(srv->loop, hook_cb, srv);
	}
	bq_timer_free(srv->timer);
	bq_timer_free(srv->watch_timer);
	/* Closes every connection (notify-completed frees our requests) and the listener. */
	if (srv->mhd) {
		MHD_stop_daemon(srv->mhd);
	}
	while (srv->reqs) {
		req_free(srv->reqs); /* not reached unless MHD skipped a notification */
	}
	bq_free(srv);
}

uint16_t bq_http_server_port(const struct bq_http_server *srv)
{
	return srv ? srv->port : 0;
}

void bq_http_server_get_stats(const struct bq_http_server *srv, struct bq_http_server_stats *out)
{
	if (!srv) {
		memset(out, 0, sizeof(*out));
		return;
	}
	*out = srv->stats;
}

/* ---- accessors ----------------------------------------------------------------- */

enum bq_http_method bq_http_req_method(const struct bq_http_req *req)
{
	return req->method;
}

const char *bq_http_req_path(const struct bq_http_req *req)
{
	return req->path;
}

const char *bq_http_req_param(const struct bq_http_req *req)
{
	return req->param;
}

const char *bq_http_req_query(const struct bq_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *bq_http_req_header(const struct bq_http_req *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const void *bq_http_req_body(const struct bq_http_req *req, size_t *len)
{
	*len = req->body.len;
	return req->body.len ? req->body.data : NULL;
}

void *bq_http_req_user_data(const struct bq_http_req *req)
{
	return req->srv->cfg.user_data;
}

void bq_http_req_on_abort(struct bq_http_req *req, bq_http_abort_cb cb, void *user_data)
{
	req->abort_cb = cb;
	req->abort_ud = user_data;
}

int bq_http_req_peer(const struct bq_http_req *req, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci;
	const struct sockaddr *sa;
	char text[INET6_ADDRSTRLEN];
	const char *ok = NULL;

	ci = MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr) {
		return -ENOTCONN;
	}
	sa = ci->client_addr;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;

		ok = inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

		/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one client, one text.
		 */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			ok = inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], text, sizeof(text));
		} else {
			ok = inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text));
		}
	}
	if (!ok) {
		return -ENOTCONN;
	}
	if (strlen(text) >= cap) {
		return -ENOSPC;
	}
	memcpy(out, text, strlen(text) + 1);
	return 0;
}

int bq_http_req_add_header(struct bq_http_req *req, const char *name, const char *value)
{
	size_t nl, vl;
	char *h;

	if (!req_can_reply(req) || !hdr_name_ok(name) || !hdr_value_ok(value)) {
		return -EINVAL;
	}
	if (req->n_hdrs >= BQ_HTTP_REQ_HEADERS_MAX) {
		return -ENOSPC;
	}
	nl = strlen(name);
	vl = strlen(value);
	h = bq_malloc(nl + vl + 2);
	if (!h) {
		return -ENOMEM;
	}
	memcpy(h, name, nl + 1);
	memcpy(h + nl + 1, value, vl + 1);
	req->hdrs[req->n_hdrs++] = h;
	return 0;
}
