/* SPDX-License-Identifier: MIT */
/*
 * blueq-backend's program-internal header (issue 5, first slice): accounts and the
 * automatic connection of every registered user through the manager. main.c owns
 * start-up and shutdown, accounts.c the browser's account endpoints, mesh.c the
 * manager side (connect pushes, the users poll). See docs/backend.md.
 */
#ifndef BQ_BACKEND_PROGRAM_H
#define BQ_BACKEND_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "backend/auth.h"
#include "backend/store.h"
#include "core/backoff.h"
#include "core/map.h"
#include "core/log.h"
#include "core/worker.h"
#include "http/client.h"
#include "http/server.h"
#include "http/static.h"
#include "loop/loop.h"

#define BE_PROG "blueq-backend"

struct be_opts {
	int64_t port;
	char *host;
	char *manager_url;
	char *manager_token;
	char *data_dir;
	char *admin;
	char *web_dir;
	int hash_cost; /* 0 interactive, 1 minimum (tests only) */
	uint64_t token_ttl;
	int64_t max_body;
	int64_t register_rate, register_burst; /* per minute per address; rate 0: no limit */
	int64_t login_rate, login_burst;
	int log_level;
	char *debug;
	bool check_config;
};

struct be {
	const struct be_opts *o;
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_http_server *http;
	struct bq_http_client *cli;
	struct bq_worker *worker;
	struct bq_bstore *store;
	struct bq_http_static *web; /* NULL: no web UI (the default directory is absent) */
	struct bq_auth_params hash_params;
	char service_hash[BQ_TOKEN_HASH_HEX + 1]; /* the manager's token, hashed */
	bool stopping;
	bool bad_option;	   /* start-up failed on an option's value: exit 2 */
	struct bq_map *auth_cache; /* accounts.c: token hash -> recently checked session */
	char *decoy_hash;	   /* accounts.c: logins of unknown names are checked against it */

	/* Connect pushes to the manager (mesh.c). */
	struct bq_timer *push_timer;
	struct bq_backoff push_backoff;
	unsigned in_flight;
	bool manager_reachable;
	uint64_t connects_ok, connects_failed;

	/* bluetooth.c: user id -> struct be_bt_user, from the manager's events. */
	struct bq_map *bt_users;
	void *reads;	/* struct be_reads: cached GETs of the manager, private to bluetooth.c */
	void *snapshot; /* bluetooth.c: the manager's state, read once after a start */
	/* Bumped on every change a contact list shows (users, sessions, presence). */
	uint64_t contacts_gen;
	uint64_t events_applied, events_repeated;

	/* chat.c: browser event streams. */
	void *chat; /* struct be_chat, private to chat.c */

	/* limits.c: register/login buckets per client address. */
	void *limits; /* struct be_limits, private to limits.c */
	uint64_t rate_limited;
};

/* accounts.c */
void be_h_register(struct bq_http_req *req, void *ud);
void be_h_login(struct bq_http_req *req, void *ud);
void be_h_logout(struct bq_http_req *req, void *ud);
void be_h_me(struct bq_http_req *req, void *ud);
/*
 * The logged-in user of a request: Authorization: Bearer, else the blueq_token cookie.
 * A request other than GET authenticated by the cookie alone must say Content-Type:
 * application/json (a cross-site form cannot), else 403 cross_site. false after a
 * 401/403 reply.
 */
bool be_auth_user(struct be *b, struct bq_http_req *req, struct bq_buser *out);
/* After the worker exists: start hashing the decoy for unknown names' logins. */
int be_accounts_start(struct be *b);
/* Free the cache of checked sessions and the decoy (at exit). */
void be_auth_cache_free(struct be *b);
/* Reply with a JSON value (stolen). */
void be_reply_json(struct bq_http_req *req, unsigned status, json_t *v);

/* bluetooth.c: what the manager tells (POST /api/bluetooth/events) and the seed's
 * Bluetooth endpoints. */
struct be_bt_user {
	char state[16];	   /* the manager's session state: "ready", "backoff", ... ("" unknown) */
	char presence[16]; /* mesh presence: "online", "offline", "gone" ("" unknown) */
	char home[18];	   /* home node address, "" unknown */
	char name[BQ_BSTORE_NAME_MAX + 1];
	bool web; /* a web user of this backend (else a mesh-only user) */
};
int be_bt_start(struct be *b, char *err, size_t errlen);
void be_bt_stop(struct be *b);
/* Everything known of a user id from the manager's events, or NULL. */
const struct be_bt_user *be_bt_get(const struct be *b, const char *user_id);
/* Every user the manager reported (web and mesh), in no order. */
void be_bt_foreach(const struct be *b,
		   void (*fn)(const char *user_id, const struct be_bt_user *u, void *ud), void *ud);
void be_h_bt_events(struct bq_http_req *req, void *ud);
void be_h_bt_manager_status(struct bq_http_req *req, void *ud);
/* GET /api/mesh: the manager's directory and topology (its /api/users), cached alike. */
void be_h_bt_mesh(struct bq_http_req *req, void *ud);
/* After be_mesh_start: read the manager's sessions and directory once (retried). */
int be_bt_snapshot_start(struct be *b);
/* Something changed in the manager: the next status/mesh read asks it again. */
void be_bt_reads_stale(struct be *b);
void be_h_bt_manager_connect(struct bq_http_req *req, void *ud);
void be_h_bt_manager_disconnect(struct bq_http_req *req, void *ud);
void be_h_bt_send(struct bq_http_req *req, void *ud);
/* The manager's service token check (mesh.c); replies 401 itself. */
bool be_service_auth(struct be *b, struct bq_http_req *req);

/* chat.c: contacts, messages, live events to browsers. */
int be_chat_start(struct be *b, char *err, size_t errlen);
void be_chat_stop(struct be *b);
/*
 * Publish an event to browsers: to every logged-in stream, or only to the streams of
 * the users named (to_a, to_b; NULL for none). ev is stolen; "type" is its event name.
 */
void be_chat_publish(struct be *b, json_t *ev, const char *to_a, const char *to_b);
/* A message event from the manager: store once (by id), publish to its two sides. */
void be_chat_inbound(struct be *b, const char *msg_id, const char *from, const char *to,
		     const char *text, int64_t at_ms);
/* A delivery event: record the state (terminal states stay), publish to the sender. */
void be_chat_delivery(struct be *b, const char *msg_id, const char *state, const char *reason);
void be_h_contacts(struct bq_http_req *req, void *ud);
void be_h_messages_get(struct bq_http_req *req, void *ud);
void be_h_messages_post(struct bq_http_req *req, void *ud);
void be_h_events(struct bq_http_req *req, void *ud);

/* limits.c: rate limits on register and login, per client address. */
enum be_limit_kind {
	BE_LIMIT_REGISTER,
	BE_LIMIT_LOGIN,
	BE_LIMIT_NKINDS,
};
int be_limits_start(struct be *b, char *err, size_t errlen);
void be_limits_stop(struct be *b);
/* true: go on; false: answered (429 rate_limited with Retry-After, or 503). */
bool be_limit_check(struct be *b, struct bq_http_req *req, enum be_limit_kind kind);
/* Addresses in the table now. */
size_t be_limits_tracked(const struct be *b);

/* mesh.c */
/* How long any call to the manager may take. */
#define BE_MANAGER_TIMEOUT_MS 5000
/*
 * One call to the manager's API (its URL and token from the options, body NULL or a
 * NUL-terminated JSON text). As bq_http_client_request: 0 and cb runs once later, or a
 * negative errno and it never does.
 */
int be_manager_call(struct be *b, const char *method, const char *path, const char *body,
		    bq_http_response_cb cb, void *ud);
int be_mesh_start(struct be *b, char *err, size_t errlen);
void be_mesh_stop(struct be *b);
/* A user was registered: connect it through the manager now (kept until it works). */
void be_mesh_connect_soon(struct be *b);
void be_h_users_poll(struct bq_http_req *req, void *ud);

#endif
