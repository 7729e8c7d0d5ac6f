/* SPDX-License-Identifier: MIT */
/*
 * http/server: an HTTP/1.1 JSON API server on the process's one event loop.
 *
 * libmicrohttpd runs in external-event mode with its own epoll descriptor
 * (MHD_USE_EPOLL, no internal thread): that one fd sits in bq_loop, MHD's timeout
 * drives one bq_timer, and MHD_run is called when the fd is readable, when the timer
 * fires, and from a before-sleep hook after a deferred reply resumed a connection.
 * Nothing here blocks and nothing here starts a thread.
 *
 * Routing: a fixed table of (method, path) routes. A path ending in '/' followed by
 * '*' ("/api/messages/ *" without the blank) matches any one non-empty segment after
 * the prefix, available as bq_http_req_param. Unknown path -> 404 JSON, known path
 * with another method -> 405 JSON with an Allow header (cfg.fallback, when set, gets
 * the GETs of unknown paths instead). HEAD is routed as GET and answered without the
 * body. Every error body is
 * {"error": "<reason>", "code": "<short_code>"}.
 *
 * Bodies: a request body is collected up to max_body bytes; over it (by
 * Content-Length or while streaming) the server answers 413 itself and the handler
 * never runs. A handler runs once per request, with the whole body.
 *
 * Replies: the handler either replies before returning, or keeps the request and
 * replies later from any loop callback (the connection is suspended meanwhile), e.g.
 * after the outbox committed. Every request must get exactly one reply; if the client
 * goes away first, the abort callback runs (once) and the request must not be used
 * after it returns. A reply is a complete body, or an event stream (SSE).
 *
 * Event streams: bq_http_reply_stream answers 200 text/event-stream and returns a
 * stream the owner writes to with bq_http_stream_send. Each stream buffers at most
 * max_stream_buffer bytes not yet taken by the client; a send that would exceed it
 * returns -ENOBUFS and closes the stream (a slow reader never grows memory without
 * bound; the closed callback tells the owner). Streams are exempt from the idle
 * timeout; the owner sends a comment line periodically as a keep-alive.
 *
 * Authentication: when cfg.bearer_token is set, every request except GET /health
 * needs "Authorization: Bearer <token>" (compared in constant time); otherwise 401.
 * The token is never logged.
 *
 * Extra headers: cfg.default_headers go on every response the server makes (the
 * server's own 401/404/405/413 included); bq_http_req_add_header adds one to the next
 * reply of one request (e.g. Set-Cookie, Retry-After). A request's own header does not
 * replace a default of the same name: both are sent.
 */
#ifndef BQ_HTTP_SERVER_H
#define BQ_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"

struct bq_http_server;
struct bq_http_req;
struct bq_http_stream;

/* Methods a route can name. */
enum bq_http_method {
	BQ_HTTP_GET,
	BQ_HTTP_POST,
	BQ_HTTP_PUT,
	BQ_HTTP_DELETE,
};

/*
 * The handler. It must reply (now or later) exactly once. req is owned by the server
 * and valid until the reply is made or the abort callback has run.
 */
typedef void (*bq_http_handler_cb)(struct bq_http_req *req, void *user_data);

struct bq_http_route {
	enum bq_http_method method;
	const char *path; /* exact, or a prefix ending in "/" + "*"; borrowed, must outlive */
	bq_http_handler_cb handler;
};

struct bq_http_server_config {
	const char *bind_host;	  /* numeric IPv4/IPv6 or "localhost"; default "127.0.0.1" */
	uint16_t port;		  /* 0: an ephemeral port (see bq_http_server_port) */
	size_t max_body;	  /* default 65536 */
	uint32_t idle_timeout_s;  /* idle and slow clients are closed; default 30 */
	uint32_t max_connections; /* default 4096 */
	size_t max_stream_buffer; /* per event stream, default 262144 */
	const char *bearer_token; /* NULL or "": no authentication; copied */
	const struct bq_http_route *routes; /* borrowed; ends with path == NULL */
	/*
	 * NULL, or name, value, name, value, ..., NULL: headers added to every response
	 * (security headers). Borrowed, must outlive the server; checked at start like
	 * bq_http_req_add_header's (-EINVAL), at most 32 pairs.
	 */
	const char *const *default_headers;
	void *user_data; /* passed to every handler */
	/*
	 * NULL, or the handler of a GET (or HEAD) whose path no route names, e.g. static
	 * files; it answers unknown paths itself (bq_http_reply_not_found). Called with
	 * fallback_data.
	 */
	bq_http_handler_cb fallback;
	void *fallback_data;
};

void bq_http_server_config_defaults(struct bq_http_server_config *cfg);

/*
 * Bind, listen and register with the loop. cfg is copied (routes borrowed). loop and
 * log are borrowed and must outlive the server.
 * Returns 0 and *out, or a negative errno with one line in err:
 *   -EADDRINUSE "tcp port 8001 is already in use"
 *   -EACCES     "tcp port 80 needs privileges"
 *   -EINVAL     bad bind_host or config
 *   other       libmicrohttpd could not start (the reason it gave)
 */
int bq_http_server_start(struct bq_loop *loop, struct bq_log *log,
			 const struct bq_http_server_config *cfg, struct bq_http_server **out,
			 char *err, size_t errlen);
/*
 * Close every connection and free. Pending requests get their abort callback; open
 * streams get their closed callback. NULL ok. Never from inside a handler (defer it).
 */
void bq_http_server_free(struct bq_http_server *srv);
/* The bound port (useful with port 0). */
uint16_t bq_http_server_port(const struct bq_http_server *srv);

struct bq_http_server_stats {
	uint64_t requests;		/* handled, any status */
	uint64_t by_class[6];		/* by status class: [2] = 2xx ... [5] = 5xx */
	uint32_t connections;		/* open now */
	uint32_t pending;		/* requests waiting for a deferred reply */
	uint32_t streams;		/* event streams open now */
	uint64_t stream_overflows;	/* streams closed because their buffer was full */
	uint64_t rejected_too_large;	/* 413 */
	uint64_t rejected_unauthorized; /* 401 */
};
void bq_http_server_get_stats(const struct bq_http_server *srv, struct bq_http_server_stats *out);

/* Request accessors: every string is owned by the request. */
enum bq_http_method bq_http_req_method(const struct bq_http_req *req);
/* The path without the query string, percent-decoded by libmicrohttpd. */
const char *bq_http_req_path(const struct bq_http_req *req);
/* The segment matched by a trailing "*" route, or NULL. */
const char *bq_http_req_param(const struct bq_http_req *req);
/* A query argument ("since" in ?since=42), or NULL. */
const char *bq_http_req_query(const struct bq_http_req *req, const char *name);
/* A request header (case-insensitive name), or NULL. */
const char *bq_http_req_header(const struct bq_http_req *req, const char *name);
/* The body (not NUL-terminated; body_len may be 0 and body then NULL). */
const void *bq_http_req_body(const struct bq_http_req *req, size_t *len);
/* The server's user_data, for handlers that are called later from elsewhere. */
void *bq_http_req_user_data(const struct bq_http_req *req);
/*
 * The client's IP address as numeric text ("127.0.0.1", "::1"; an IPv4-mapped IPv6
 * address is given as plain IPv4) into out (cap >= 46 always suffices). 0, -ENOTCONN
 * (no address known: not a TCP/IP client), -ENOSPC (out too small).
 */
int bq_http_req_peer(const struct bq_http_req *req, char *out, size_t cap);

/* At most this many headers added per request. */
#define BQ_HTTP_REQ_HEADERS_MAX 16
/*
 * Add a header to whatever reply is made next for req (any bq_http_reply*, streams
 * too). name and value are copied. 0; -EINVAL for a name that is not an HTTP token
 * (or is Content-Type, Content-Length, Transfer-Encoding or Connection, which the
 * server sets), a value with a control character (CR, LF, NUL, ...; tab is allowed)
 * or longer than 4096 bytes, or a request already answered; -ENOSPC past
 * BQ_HTTP_REQ_HEADERS_MAX; -ENOMEM.
 */
int bq_http_req_add_header(struct bq_http_req *req, const char *name, const char *value);

/*
 * Called at most once if the client disconnects before the reply; after it returns
 * req is gone. Set it when keeping a request for a deferred reply.
 */
typedef void (*bq_http_abort_cb)(struct bq_http_req *req, void *user_data);
void bq_http_req_on_abort(struct bq_http_req *req, bq_http_abort_cb cb, void *user_data);

/*
 * Replies. Each ends the request (req is gone after the call, whatever the result).
 * Return 0, or a negative errno if the reply could not be queued (the connection is
 * then closed). Any header values are copied.
 */
/* body: len bytes (copied); content_type NULL means "application/json". */
int bq_http_reply(struct bq_http_req *req, unsigned status, const char *content_type,
		  const void *body, size_t len);
/* The server's own 404 for req's method and path: {"error": "no such endpoint: ...",
 * "code": "not_found"}. */
int bq_http_reply_not_found(struct bq_http_req *req);
/* {"error": reason, "code": code}; reason printf-style. */
int bq_http_reply_error(struct bq_http_req *req, unsigned status, const char *code, const char *fmt,
			...) __attribute__((format(printf, 4, 5)));

/*
 * Answer 200 text/event-stream and keep the connection open. closed(stream, ud) runs
 * once when the stream ends for any reason (client gone, overflow, server freed);
 * after it returns the stream is gone. NULL on failure (req is then answered 500).
 */
typedef void (*bq_http_stream_closed_cb)(struct bq_http_stream *st, void *user_data);
struct bq_http_stream *bq_http_reply_stream(struct bq_http_req *req,
					    bq_http_stream_closed_cb closed, void *user_data);
/*
 * Queue bytes (already SSE-formatted: "event: x\ndata: {...}\n\n" or ": ping\n\n").
 * 0, -ENOBUFS (buffer full: the stream is closed, closed runs from the loop later,
 * never from inside this call), -EPIPE (already closing).
 */
int bq_http_stream_send(struct bq_http_stream *st, const void *data, size_t len);
/* End the stream from the server side; closed runs later from the loop. */
void bq_http_stream_close(struct bq_http_stream *st);

#endif
