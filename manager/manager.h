/* SPDX-License-Identifier: MIT */
/*
 * blueq-manager's program-internal header: the one struct the program's three files
 * share. main.c owns startup and shutdown, api.c the HTTP API, backend.c the calls to
 * the web backend (event push and user poll). The work itself is in the library:
 * lib/manager/sessions (sessions and links), lib/store/outbox (durable messages),
 * lib/manager/evqueue (events for the backend), lib/http (server, client, JSON).
 */
#ifndef BQ_MANAGER_PROGRAM_H
#define BQ_MANAGER_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/backoff.h"
#include "core/log.h"
#include "core/map.h"
#include "http/client.h"
#include "http/server.h"
#include "loop/loop.h"
#include "manager/evqueue.h"
#include "manager/sessions.h"
#include "proto/auth.h"
#include "store/outbox.h"

#define PROG "blueq-manager"
#define MGR_SSE_MAX 256	      /* event-stream clients at once */
#define MGR_UNSENT_MAX 100000 /* committed messages waiting for their session */

struct mgr_opts {
	char *odin;
	char *backend_url;
	int64_t api_port;
	char *api_host;
	char *api_token;
	char *backend_token;
	char *backend_token_file;
	char *data_dir;
	int link_mode;
	int64_t shared_links;
	char *key_file;
	uint64_t connect_timeout;
	uint64_t handshake_timeout;
	uint64_t ping_interval;
	uint64_t dead_after;
	uint64_t backoff_base;
	uint64_t backoff_cap;
	int64_t connect_rate;
	int64_t connect_burst;
	uint64_t poll_interval;
	int64_t event_queue;
	int64_t event_batch;
	int64_t max_body;
	bool sync_normal;
	int log_level;
	char *debug;
	bool check_config;
};

/* Messages by state since start, for /metrics (index: enum bq_outbox_state). */
#define MGR_MSG_STATES 6

struct mgr_unsent {
	uint64_t id;
	char user_id[BQ_USER_ID_MAX + 1];
};

/* An inbound message whose receipt waits for the backend to store its event. */
struct mgr_receipt {
	uint64_t evq_seq; /* the message event's place in the backend queue */
	uint64_t msg_id;
	char user_id[BQ_USER_ID_MAX + 1];
	char src[BQ_USER_ID_MAX + 1];
};

#define MGR_RECEIPTS_MAX 8192

struct mgr {
	const struct mgr_opts *o;
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_sessions *reg;
	struct bq_outbox *ob;
	struct bq_http_server *http;
	struct bq_http_client *cli;
	struct bq_auth *auth;
	uint64_t started_ms; /* wall clock */
	uint64_t nofile;
	char odin_transport[16];
	bool stopping;

	/* Backend: event push and the users poll (backend.c). */
	struct bq_evq *evq;
	char *backend_token; /* owned; never logged */
	struct bq_timer *push_timer, *poll_timer;
	struct bq_http_call *push_call, *poll_call;
	uint64_t push_last_seq;
	size_t push_n; /* events in the batch in flight: seqs push_last_seq - n + 1 .. last */
	/* Receipts held until the backend stored the message (ring, by evq_seq). */
	struct mgr_receipt *receipts;
	size_t receipts_head, n_receipts;
	uint64_t receipts_confirmed, receipts_unsent;
	struct bq_backoff push_backoff;
	bool backend_reachable;
	uint64_t backend_last_ok_ms;
	char backend_error[160];
	char poll_cursor[64];
	uint64_t polls, poll_failures, pushes, push_failures;
	uint64_t event_seq; /* ids of events: "<instance>-<seq>" */
	char instance[17];

	/* Event-stream clients (api.c). */
	struct bq_http_stream *sse[MGR_SSE_MAX];
	size_t n_sse;
	uint64_t sse_dropped;
	struct bq_timer *sse_ping;

	/* Committed messages that could not be handed to a session yet. */
	struct mgr_unsent *unsent; /* ring of MGR_UNSENT_MAX */
	size_t unsent_head, n_unsent;
	struct bq_timer *unsent_timer;

	/* Broadcasts in flight (hex id -> non-NULL): their ACCEPTED ends them as "broadcast". */
	struct bq_map *broadcasts;

	uint64_t msgs_by_state[MGR_MSG_STATES];
	uint64_t http_rejected_busy; /* 503 because the outbox queue was full */
};

/* api.c */
extern const struct bq_http_route mgr_routes[];
int mgr_api_start(struct mgr *m, char *err, size_t errlen);
void mgr_api_stop(struct mgr *m);
/* Send one event to every event-stream client ("event: type\ndata: json\n\n"). */
void mgr_sse_broadcast(struct mgr *m, const char *type, const char *json, size_t len);
/* Hand a committed message to its session (or remember it for a retry). */
void mgr_dispatch(struct mgr *m, uint64_t id, const char *user_id, const char *dst,
		  const void *text, size_t len);
void mgr_count_state(struct mgr *m, enum bq_outbox_state st);
/* Receipts freed room in a session's window: retry the waiting messages now. */
void mgr_unsent_kick(struct mgr *m);

/* backend.c */
int mgr_backend_start(struct mgr *m, char *err, size_t errlen);
void mgr_backend_stop(struct mgr *m);
/*
 * Queue an event for the backend and the event streams. ev is an object with at least
 * "type"; an "id" and "at" are added here. Steals the reference to ev.
 */
void mgr_event(struct mgr *m, json_t *ev);
/*
 * An inbound direct message (a first copy or a repeat) for the backend: its event is
 * queued (a repeat's too: the backend stores a message once by its id), and the
 * DELIVERED receipt is sent once the backend has answered 2xx for that event. first:
 * also to the event streams. With no backend, the receipt goes at once.
 */
void mgr_inbound(struct mgr *m, json_t *ev, const char *user_id, const char *src, uint64_t msg_id,
		 bool first);
/* Receipts are held only when there is a backend to store the messages. */
bool mgr_holds_receipts(const struct mgr *m);
/* False when no event stream is open and there is no backend: callers skip building. */
bool mgr_events_wanted(const struct mgr *m);

#endif
