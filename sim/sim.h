/* SPDX-License-Identifier: MIT */
/*
 * blueq-sim internals, shared by the program's files only (never by lib/):
 *   main.c   options, start-up, shutdown
 *   topo.c   topologies (line, ring, grid, random, file)
 *   procs.c  blueq-node processes: spawn, signal, reap, restart
 *   air.c    the "air" between neighbours: frame carrying with latency, loss, cuts
 *   bots.c   bot users (one MeshClient each) and their logs
 *   ctl.c    the control socket and the one-line request helper used to talk to nodes
 * Everything runs on one loop; struct sim owns all of it.
 */
#ifndef BQ_SIM_SIM_H
#define BQ_SIM_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "mesh/client.h"
#include "proto/auth.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define SIM_MAX_NODES 64
#define SIM_PATH_MAX 4096
#define SIM_DIR_MAX 2048 /* leaves room in SIM_PATH_MAX for file names */

struct sim_cfg {
	int64_t nodes;
	char *topology;
	char *dir;
	uint64_t latency_ms;
	char *loss;
	int64_t seed;
	struct bq_strlist bots;
	bool bot_echo;
	char *addr_map;
	char *control;
	char *node_bin;
	uint64_t announce_interval_ms;
	uint64_t expiry_ms;
	int log_level;
	char *debug; /* modules with debug lines (sim,air,client,link or all) */
	int node_log_level;
};

struct sim_node {
	int idx; /* 1-based */
	uint8_t mac[BQ_BDADDR_LEN];
	char mac_text[BQ_BDADDR_STRLEN];
	char name[32];
	char sock[SIM_PATH_MAX];
	char ctl[SIM_PATH_MAX];
	char log[SIM_PATH_MAX];
	char **argv; /* owned, NULL-terminated */
	pid_t pid;
	bool alive;
	bool ready;   /* answered on its control socket at start-up */
	bool probing; /* a start-up probe is in flight */
	bool knows_bots; /* start-up: its directory lists every bot online */
	int last_status; /* wait status of the last exit */
	uint32_t starts;
};

struct sim;
struct air_pair;

struct sim_edge {
	struct sim *sim;
	int a, b; /* a < b, 1-based; node a dials */
	bool cut;
	char sock[SIM_PATH_MAX];
	struct bq_listener *lis;
	struct air_pair *pairs;
	uint64_t carried, dropped;
	uint64_t by_type[16]; /* frames carried, by frame type (index = type, 0 = other) */
	uint32_t links; /* pairs currently open */
};

struct sim_bot;
struct ctl_conn;

struct sim {
	struct sim_cfg cfg;
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_auth *auth;
	char dir[SIM_DIR_MAX];
	char addr_map[SIM_PATH_MAX];
	char control[SIM_PATH_MAX];
	char node_bin[SIM_PATH_MAX];
	char key_file[SIM_PATH_MAX];

	struct sim_node nodes[SIM_MAX_NODES];
	int n_nodes;
	struct sim_edge *edges;
	int n_edges;

	struct sim_bot **bots;
	int n_bots;

	uint64_t latency_ms;
	uint32_t loss_ppm; /* parts per million */
	uint64_t rng;

	struct bq_listener *ctl_lis;
	struct ctl_conn *ctls;

	bool ready;       /* start-up finished */
	bool stopping;
	bool map_written;
	bool killed; /* shutdown escalated to SIGKILL */
	int exit_code;
	struct bq_timer *startup_tick;
	struct bq_timer *startup_deadline;
	struct bq_timer *kill_timer;
	struct bq_timer *converge_tick; /* after start-up: wait for the bots to see each other */
	uint64_t converge_deadline_ms;
};

/* main.c */
void sim_shutdown(struct sim *s, int exit_code);
uint64_t sim_random(struct sim *s);
/* Parse "0".."100" with up to 4 decimals into parts per million. 0 or -EINVAL. */
int sim_parse_percent(const char *text, uint32_t *ppm);

/* topo.c: fill s->edges from the --topology value. 0, or -1 with err filled. */
int sim_topology(struct sim *s, const char *spec, char *err, size_t errlen);

/* procs.c */
int sim_node_spawn(struct sim *s, struct sim_node *n, char *err, size_t errlen);
int sim_node_signal(struct sim *s, struct sim_node *n, int signo);
void sim_reap(struct sim *s);
bool sim_all_dead(const struct sim *s);
int sim_nodes_prepare(struct sim *s, char *err, size_t errlen);
void sim_nodes_free(struct sim *s);

/* air.c */
int sim_air_start(struct sim *s, char *err, size_t errlen);
void sim_air_cut(struct sim *s, struct sim_edge *e);
void sim_air_stop(struct sim *s);
struct sim_edge *sim_edge_find(struct sim *s, int a, int b);

/* bots.c */
/* Validate every --bot NAME@NODE before anything starts. */
int sim_bots_check(const struct sim *s, char *err, size_t errlen);
int sim_bots_start(struct sim *s, char *err, size_t errlen);
void sim_bots_stop(struct sim *s);
void sim_bots_free(struct sim *s);
struct sim_bot *sim_bot_find(struct sim *s, const char *name);
/* Every bot READY and seeing every bot online in its directory copy. */
bool sim_bots_converged(struct sim *s);
/* Is every bot listed online in this node's "users" JSON document? */
bool sim_bots_listed(struct sim *s, const char *users_json);
/* Reply text into out (one line, "ok ..." or "error ..."). */
void sim_bot_send(struct sim *s, struct sim_bot *b, const char *dst, const char *text, char *out,
		  size_t cap);
void sim_bot_burst(struct sim *s, struct sim_bot *b, const char *dst, int64_t count, char *out,
		   size_t cap);
/* Append the bots' status as a JSON array (a json_t *, declared void to keep jansson out). */
void *sim_bots_json(struct sim *s);
/* A bot's user id / node (for status). */
const char *sim_bot_name(const struct sim_bot *b);

/* ctl.c */
int sim_ctl_start(struct sim *s, char *err, size_t errlen);
void sim_ctl_stop(struct sim *s);
typedef void (*sim_request_cb)(void *ud, int err, const char *reply);
/*
 * Send one line to the UNIX control socket at path and call done exactly once with the
 * first reply line (err 0) or a failure (err < 0, reply = reason). 0 or a negative errno
 * (done is then not called).
 */
int sim_request(struct sim *s, const char *path, const char *line, uint32_t timeout_ms,
		sim_request_cb done, void *ud);

#endif
