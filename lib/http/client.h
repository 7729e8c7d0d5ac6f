/* SPDX-License-Identifier: MIT */
/*
 * http/client: outgoing HTTP requests on the process's one event loop, through
 * libcurl's multi-socket interface: CURLMOPT_SOCKETFUNCTION registers each socket in
 * bq_loop, CURLMOPT_TIMERFUNCTION arms one bq_timer, and completed transfers are
 * collected with curl_multi_info_read. No thread of ours, no blocking call ("localhost"
 * is resolved by libcurl itself; other names use libcurl's threaded resolver).
 *
 * Contract (libuv): bq_http_client_request either fails (and cb never runs) or
 * succeeds, and then cb runs exactly once, later, from the loop: with the response,
 * with a transport error, with -ECANCELED after bq_http_call_cancel, or with
 * -ECANCELED from bq_http_client_free.
 */
#ifndef BQ_HTTP_CLIENT_H
#define BQ_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "loop/loop.h"

struct bq_http_client;
struct bq_http_call;

struct bq_http_client_config {
	uint32_t max_calls;	    /* in flight at once; request() answers -EAGAIN beyond; default 256 */
	size_t max_response;	    /* bytes of response body kept; more -> -EMSGSIZE; default 1 MiB */
	uint32_t connect_timeout_ms; /* default 5000 */
	const char *user_agent;	    /* default "blueq/<version>"; copied */
};

void bq_http_client_config_defaults(struct bq_http_client_config *cfg);

/* loop and log are borrowed and must outlive the client. cfg may be NULL (defaults). */
struct bq_http_client *bq_http_client_new(struct bq_loop *loop, struct bq_log *log,
					  const struct bq_http_client_config *cfg);
/* Cancel every call (each cb runs with -ECANCELED, from inside this call), then free. */
void bq_http_client_free(struct bq_http_client *cli);

/*
 * status: the HTTP status (100..599), or a negative errno when no response arrived:
 * -ECONNREFUSED, -ETIMEDOUT, -EHOSTUNREACH (resolve failed), -EMSGSIZE (response too
 * large), -ECANCELED, -EIO (anything else; the log has libcurl's text).
 * body: the response body, NUL-terminated for convenience (body_len excludes the NUL);
 * NULL when status < 0. Both valid during the call only.
 */
typedef void (*bq_http_response_cb)(int status, const char *body, size_t body_len,
				    void *user_data);

struct bq_http_request {
	const char *method;	   /* "GET", "POST", ...; borrowed for the call */
	const char *url;	   /* http://host:port/path?query */
	const char *bearer_token;  /* NULL: no Authorization header; never logged */
	const char *content_type;  /* default "application/json" when body is set */
	const void *body;	   /* NULL for none; copied */
	size_t body_len;
	uint32_t timeout_ms;	   /* whole transfer; 0 = 10000 */
};

/*
 * Start a request. Every pointer in req is only borrowed for the call. 0 and *out
 * (may be NULL; the call handle is valid until cb runs), or -EINVAL (bad method or
 * URL), -EAGAIN (max_calls in flight), -ENOMEM; then cb never runs.
 */
int bq_http_client_request(struct bq_http_client *cli, const struct bq_http_request *req,
			   bq_http_response_cb cb, void *user_data, struct bq_http_call **out);
/* cb runs with -ECANCELED from the loop soon after (never from inside this call). */
void bq_http_call_cancel(struct bq_http_call *call);

/* Calls in flight now. */
uint32_t bq_http_client_active(const struct bq_http_client *cli);

#endif
