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
#include "core/log.h"
#include "core/worker.h"
#include "http/client.h"
#include "http/server.h"
#include "loop/loop.h"

#define BE_PROG "blueq-backend"

struct be_opts {
	int64_t port;
	char *host;
	char *manager_url;
	char *manager_token;
	char *data_dir;
	char *admin;
	int hash_cost; /* 0 interactive, 1 minimum (tests only) */
	uint64_t token_ttl;
	int64_t max_body;
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
	struct bq_auth_params hash_params;
	char service_hash[BQ_TOKEN_HASH_HEX + 1]; /* the manager's token, hashed */
	bool stopping;

	/* Connect pushes to the manager (mesh.c). */
	struct bq_timer *push_timer;
	struct bq_backoff push_backoff;
	unsigned in_flight;
	bool manager_reachable;
	uint64_t connects_ok, connects_failed;
};

/* accounts.c */
void be_h_register(struct bq_http_req *req, void *ud);
void be_h_login(struct bq_http_req *req, void *ud);
void be_h_logout(struct bq_http_req *req, void *ud);
void be_h_me(struct bq_http_req *req, void *ud);
/* The logged-in user of a request (Authorization: Bearer), or false after a 401 reply. */
bool be_auth_user(struct be *b, struct bq_http_req *req, struct bq_buser *out);
/* Reply with a JSON value (stolen). */
void be_reply_json(struct bq_http_req *req, unsigned status, json_t *v);

/* mesh.c */
int be_mesh_start(struct be *b, char *err, size_t errlen);
void be_mesh_stop(struct be *b);
/* A user was registered: connect it through the manager now (kept until it works). */
void be_mesh_connect_soon(struct be *b);
void be_h_users_poll(struct bq_http_req *req, void *ud);

#endif
