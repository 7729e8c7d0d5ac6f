/* SPDX-License-Identifier: MIT */
/*
 * blueq-node: the mesh node daemon (Odin and every other node). A thin program: the
 * option table, the key file, the loop, signals, the control socket; the engine is
 * lib/mesh/node.c.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/opt.h"
#include "core/proc.h"
#include "loop/loop.h"
#include "mesh/ctl.h"
#include "mesh/node.h"
#include "proto/auth.h"
#include "transport/addr.h"

#define PROG "blueq-node"
#define SYNOPSIS "[OPTIONS]"
#define ODIN_MAC "D8:3A:DD:03:1E:77"
#define SHUTDOWN_MAX_MS 1500

struct node_opts {
	char *addr;
	char *name;
	struct bq_strlist listen;
	struct bq_strlist neighbours;
	char *key_file;
	char *control;
	int64_t ttl;
	uint64_t announce_interval;
	uint64_t expiry;
	int64_t store_max_per_user;
	uint64_t store_max_age;
	int64_t route_hold_max;
	int64_t max_clients;
	bool require_client_auth;
	uint64_t ping_interval;
	uint64_t dead_after;
	uint64_t backoff_base;
	uint64_t backoff_cap;
	int64_t dedupe_capacity;
	int log_level;
	char *debug;
	bool check_config;
};

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static int check_bdaddr(const char *value, char *err, size_t errlen)
{
	static const char want[] = "expected six hex pairs like " ODIN_MAC;
	uint8_t a[BQ_BDADDR_LEN];
	struct bq_addr parsed;
	char why[300];

	if (bq_bdaddr_parse(value, a) == 0) {
		return 0;
	}
	/* The address parser says exactly what is wrong with a would-be MAC. */
	if (bq_addr_parse(value, &parsed, why, sizeof(why)) < 0 &&
	    strncmp(why, "invalid Bluetooth address", 25) == 0) {
		snprintf(err, errlen, "%s", why);
	} else {
		snprintf(err, errlen, "invalid Bluetooth address '%s': %s", value, want);
	}
	return -EINVAL;
}

static int check_path(const char *value, char *err, size_t errlen)
{
	if (!value[0] || strlen(value) >= BQ_ADDR_PATH_MAX) {
		snprintf(err, errlen, "'%s' is empty or longer than %d bytes", value,
			 BQ_ADDR_PATH_MAX - 1);
		return -EINVAL;
	}
	return 0;
}

#define OFF(f) offsetof(struct node_opts, f)

static const struct bq_opt options[] = {
	{ "addr", 'a', BQ_OPT_STRING, OFF(addr), ODIN_MAC, 0, 0, NULL, check_bdaddr, 0, "MAC",
	  "this node's Bluetooth-style address (Odin is " ODIN_MAC ")" },
	{ "name", 'n', BQ_OPT_STRING, OFF(name), NULL, 0, 0, NULL, NULL, 0, "NAME",
	  "display name (default: Odin for Odin's address, else node-XX)" },
	{ "listen", 'l', BQ_OPT_LIST, OFF(listen), "tcp://127.0.0.1:7770", 0, 0, NULL,
	  bq_addr_check, 0, "ADDR",
	  "accept clients and neighbours here (repeatable; tcp://, unix:, bt-rfcomm://, "
	  "bt-l2cap://)" },
	{ "neighbour", 'N', BQ_OPT_LIST, OFF(neighbours), NULL, 0, 0, NULL, bq_addr_check, 0,
	  "ADDR", "dial this neighbour node and keep the link up (repeatable)" },
	{ "key-file", 'k', BQ_OPT_STRING, OFF(key_file), "./data/network.key", 0, 0, NULL, NULL, 0,
	  "PATH", "mesh network key (32 bytes, created with mode 0600 when missing)" },
	{ "control", 'c', BQ_OPT_STRING, OFF(control), NULL, 0, 0, NULL, check_path, 0, "PATH",
	  "UNIX socket answering JSON lines: stats, users, topology" },
	{ "ttl", 0, BQ_OPT_INT, OFF(ttl), "7", 1, 255, NULL, NULL, 0, "N",
	  "hops a frame from this node may travel" },
	{ "announce-interval", 0, BQ_OPT_DURATION, OFF(announce_interval), "10s", 100, 3600000,
	  NULL, NULL, 0, "DURATION", "full re-announce period (jittered by 25 %)" },
	{ "expiry", 0, BQ_OPT_DURATION, OFF(expiry), "35s", 200, 86400000, NULL, NULL, 0,
	  "DURATION", "a node not heard for this long is down and its users offline" },
	{ "store-max-per-user", 0, BQ_OPT_INT, OFF(store_max_per_user), "256", 1, 100000, NULL,
	  NULL, 0, "N", "messages held per offline user" },
	{ "store-max-age", 0, BQ_OPT_DURATION, OFF(store_max_age), "1h", 100, 604800000, NULL,
	  NULL, 0, "DURATION", "held messages expire (ACK EXPIRED) after this" },
	{ "route-hold-max", 0, BQ_OPT_INT, OFF(route_hold_max), "1024", 1, 1000000, NULL, NULL, 0,
	  "N", "frames held per unreachable destination node" },
	{ "max-clients", 0, BQ_OPT_INT, OFF(max_clients), "20000", 1, 1000000, NULL, NULL, 0, "N",
	  "client links accepted at once" },
	{ "require-client-auth", 0, BQ_OPT_BOOL, OFF(require_client_auth), "false", 0, 0, NULL,
	  NULL, 0, NULL, "clients must sign their frames with the network key too" },
	{ "ping-interval", 0, BQ_OPT_DURATION, OFF(ping_interval), "2s", 0, 3600000, NULL, NULL, 0,
	  "DURATION", "PING a link after this much silence (0: never)" },
	{ "dead-after", 0, BQ_OPT_DURATION, OFF(dead_after), "6s", 0, 3600000, NULL, NULL, 0,
	  "DURATION", "close a link silent for this long (0: never)" },
	{ "backoff-base", 0, BQ_OPT_DURATION, OFF(backoff_base), "100ms", 1, 600000, NULL, NULL, 0,
	  "DURATION", "first reconnect delay to a neighbour" },
	{ "backoff-cap", 0, BQ_OPT_DURATION, OFF(backoff_cap), "5s", 1, 3600000, NULL, NULL, 0,
	  "DURATION", "longest reconnect delay to a neighbour" },
	{ "dedupe-capacity", 0, BQ_OPT_INT, OFF(dedupe_capacity), "131072", 1024, 16777216, NULL,
	  NULL, 0, "N", "frame ids remembered for duplicate suppression" },
	{ "log-level", 0, BQ_OPT_ENUM, OFF(log_level), "info", 0, 0, log_levels, NULL, 0, "LEVEL",
	  "error, warn, info or debug" },
	{ "debug", 0, BQ_OPT_STRING, OFF(debug), NULL, 0, 0, NULL, NULL, 0, "MODULES",
	  "debug lines for these modules (node,link,ctl or all)" },
	{ "config", 0, BQ_OPT_CONFIG, 0, NULL, 0, 0, NULL, NULL, 0, "FILE",
	  "read 'name = value' lines from FILE first" },
	{ "check-config", 0, BQ_OPT_BOOL, OFF(check_config), "false", 0, 0, NULL, NULL, 0, NULL,
	  "validate the configuration and exit" },
	{ 0 }, /* end of table */
};

struct app {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_node *node;
	bool stopping;
};

static void on_signal(struct bq_loop *loop, int signo, void *ud)
{
	struct app *app = ud;

	bq_info(app->log, "main", "msg=\"shutting down\" signal=%s", strsignal(signo));
	app->stopping = true;
	bq_loop_stop(loop);
}

static void on_control(const char *line, struct bq_buf *reply, void *ud)
{
	struct app *app = ud;
	char *doc = bq_node_status_json(app->node, line);

	if (!doc) {
		bq_buf_printf(reply, "{\"error\":\"out of memory\"}");
		return;
	}
	bq_buf_append(reply, doc, strlen(doc));
	bq_free(doc);
}

/* mkdir -p for the directory part of path (mode 0700: it holds the network key). */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
	char dir[4096];
	size_t len = strlen(path);

	if (len >= sizeof(dir)) {
		snprintf(err, errlen, "path too long: %.300s...", path);
		return -ENAMETOOLONG;
	}
	memcpy(dir, path, len + 1);
	for (size_t i = 1; i < len; i++) {
		if (dir[i] != '/') {
			continue;
		}
		dir[i] = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			int e = errno;

			snprintf(err, errlen, "cannot create directory %.300s: %s", dir,
				 strerror(e));
			return -e;
		}
		dir[i] = '/';
	}
	return 0;
}

/* sd_notify("READY=1") without libsystemd: one datagram to $NOTIFY_SOCKET. */
static void notify_ready(struct bq_log *log)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const char msg[] = "READY=1";
	size_t len;
	int fd;

	if (!path || !path[0]) {
		return;
	}
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path)) {
		bq_warn(log, "main", "msg=\"NOTIFY_SOCKET ignored: not a usable socket path\"");
		return;
	}
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@') {
		sa.sun_path[0] = '\0'; /* abstract namespace */
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return;
	}
	if (sendto(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL, (const struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0) {
		bq_warn(log, "main", "msg=\"sd_notify failed\" err=\"%s\"", strerror(errno));
	}
	close(fd);
}

/* Everything the options say, turned into an engine config; false with err on a bad mix. */
static bool build_config(const struct node_opts *o, struct bq_node_config *cfg, char *name,
			 size_t name_cap, char *err, size_t errlen)
{
	uint8_t odin[BQ_BDADDR_LEN];

	bq_node_config_defaults(cfg);
	if (bq_bdaddr_parse(o->addr, cfg->addr) < 0) {
		snprintf(err, errlen, "--addr: invalid Bluetooth address '%s'", o->addr);
		return false;
	}
	bq_bdaddr_parse(ODIN_MAC, odin);
	if (o->name) {
		if (!bq_name_valid(o->name, strlen(o->name)) || strlen(o->name) == 0) {
			snprintf(err, errlen, "--name: '%s' is not a valid name (1..%d bytes, "
				 "no control characters)", o->name, BQ_NAME_MAX);
			return false;
		}
		snprintf(name, name_cap, "%s", o->name);
	} else if (memcmp(cfg->addr, odin, sizeof(odin)) == 0) {
		snprintf(name, name_cap, "Odin");
	} else {
		snprintf(name, name_cap, "node-%02X", cfg->addr[BQ_BDADDR_LEN - 1]);
	}
	if (o->expiry <= o->announce_interval) {
		snprintf(err, errlen, "--expiry: %llu ms must be longer than --announce-interval "
			 "(%llu ms)", (unsigned long long)o->expiry,
			 (unsigned long long)o->announce_interval);
		return false;
	}
	if (o->backoff_cap < o->backoff_base) {
		snprintf(err, errlen, "--backoff-cap: must not be shorter than --backoff-base");
		return false;
	}
	if (o->listen.n == 0 && o->neighbours.n == 0) {
		snprintf(err, errlen, "--listen: nothing to listen on and no neighbour to dial");
		return false;
	}
	cfg->name = name;
	cfg->listen = &o->listen;
	cfg->neighbours = &o->neighbours;
	cfg->require_client_auth = o->require_client_auth;
	cfg->ttl = (uint8_t)o->ttl;
	cfg->announce_interval_ms = (uint32_t)o->announce_interval;
	cfg->expiry_ms = (uint32_t)o->expiry;
	cfg->store_max_per_user = (uint32_t)o->store_max_per_user;
	cfg->store_max_age_ms = (uint32_t)o->store_max_age;
	cfg->route_hold_max = (uint32_t)o->route_hold_max;
	cfg->max_clients = (uint32_t)o->max_clients;
	cfg->ping_interval_ms = (uint32_t)o->ping_interval;
	cfg->dead_after_ms = (uint32_t)o->dead_after;
	cfg->backoff_base_ms = (uint32_t)o->backoff_base;
	cfg->backoff_cap_ms = (uint32_t)o->backoff_cap;
	cfg->dedupe_capacity = (size_t)o->dedupe_capacity;
	return true;
}

static void join_list(const struct bq_strlist *l, char *out, size_t cap)
{
	size_t pos = 0;

	out[0] = '\0';
	for (size_t i = 0; i < l->n && pos < cap; i++) {
		int w = snprintf(out + pos, cap - pos, "%s%s", i ? "," : "", l->v[i]);

		if (w < 0) {
			break;
		}
		pos += (size_t)w;
	}
}

/* Let the links write their last frames (offline presence), bounded in time. */
static void drain(struct app *app)
{
	uint64_t end = bq_loop_now_ms(app->loop) + SHUTDOWN_MAX_MS;

	bq_node_stop(app->node);
	while (bq_node_busy(app->node) && bq_loop_now_ms(app->loop) < end) {
		if (bq_loop_run_once(app->loop, 50) < 0) {
			break;
		}
	}
}

int main(int argc, char **argv)
{
	struct node_opts o;
	struct bq_node_config cfg;
	struct app app = { 0 };
	struct bq_auth *auth = NULL;
	struct bq_ctl *ctl = NULL;
	uint8_t key[BQ_KEY_LEN];
	char err[600], name[BQ_NAME_MAX + 1], listen[1024], tmp[64];
	uint64_t nofile;
	int rc, status = 1;

	memset(&o, 0, sizeof(o));
	rc = bq_opt_parse(options, &o, argc, argv, PROG, SYNOPSIS, err, sizeof(err));
	if (rc == 1) {
		bq_opt_free(options, &o);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		bq_opt_free(options, &o);
		return 2;
	}
	if (!build_config(&o, &cfg, name, sizeof(name), err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		bq_opt_free(options, &o);
		return 2;
	}
	if (o.check_config) {
		printf(PROG ": configuration OK (addr %s, name %s)\n", o.addr, name);
		bq_opt_free(options, &o);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": libsodium failed to initialise\n");
		bq_opt_free(options, &o);
		return 1;
	}
	app.log = bq_log_new(PROG);
	if (!app.log) {
		fprintf(stderr, PROG ": out of memory\n");
		bq_opt_free(options, &o);
		return 1;
	}
	bq_log_set_level(app.log, (enum bq_log_level)o.log_level);
	if (o.debug && bq_log_set_debug_modules(app.log, o.debug) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	nofile = bq_proc_raise_nofile();
	bq_info(app.log, "main", "msg=\"descriptor limit\" nofile=%llu",
		(unsigned long long)nofile);

	if (make_parent_dirs(o.key_file, err, sizeof(err)) < 0 ||
	    bq_auth_load_or_create_key(o.key_file, key, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": --key-file: %s\n", err);
		goto out;
	}
	auth = bq_auth_new(key);
	sodium_memzero(key, sizeof(key));
	if (!auth) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	cfg.auth = auth;

	app.loop = bq_loop_new(NULL, app.log);
	if (!app.loop) {
		fprintf(stderr, PROG ": cannot create the event loop\n");
		goto out;
	}
	app.node = bq_node_new(app.loop, &cfg, app.log, err, sizeof(err));
	if (!app.node) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	bq_node_set_nofile_limit(app.node, nofile);
	if (bq_loop_signal(app.loop, SIGTERM, on_signal, &app) < 0 ||
	    bq_loop_signal(app.loop, SIGINT, on_signal, &app) < 0) {
		fprintf(stderr, PROG ": cannot watch signals\n");
		goto out;
	}
	if (bq_node_start(app.node, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	if (o.control) {
		ctl = bq_ctl_new(app.loop, o.control, on_control, &app, app.log, err, sizeof(err));
		if (!ctl) {
			fprintf(stderr, PROG ": --control: %s\n", err);
			goto out;
		}
	}
	join_list(&o.listen, listen, sizeof(listen));
	bq_info(app.log, "main",
		"msg=\"ready\" addr=%s name=%s listen=%s neighbours=%zu control=%s", o.addr,
		bq_log_quote(name, tmp, sizeof(tmp)), listen[0] ? listen : "-", o.neighbours.n,
		o.control ? o.control : "-");
	notify_ready(app.log);

	rc = bq_loop_run(app.loop);
	if (rc < 0) {
		bq_err(app.log, "main", "msg=\"event loop failed\" err=%d", rc);
		goto out;
	}
	drain(&app);
	status = 0;
out:
	bq_ctl_free(ctl);
	bq_node_free(app.node);
	bq_loop_free(app.loop);
	bq_auth_free(auth);
	if (status == 0) {
		bq_info(app.log, "main", "msg=\"stopped\"");
	}
	bq_log_free(app.log);
	bq_opt_free(options, &o);
	return status;
}
