/* SPDX-License-Identifier: MIT */
/*
 * blueq-backend: the web backend (issue 5, first slice: accounts, automatic connection
 * of every registered user through the manager, the manager's users poll). One loop;
 * Argon2id on a worker pool; SQLite in the data directory. See docs/backend.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/notify.h"
#include "core/opt.h"
#include "http/static.h"
#include "core/proc.h"
#include "http/check.h"

#define SYNOPSIS "[OPTIONS]"

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const hash_costs[] = {"interactive", "minimum", NULL};

#define OFF(f) offsetof(struct be_opts, f)

static const struct bq_opt options[] = {
	{"port", 'p', BQ_OPT_INT, OFF(port), "5000", 0, 65535, NULL, NULL, 0, "PORT",
	 "HTTP port (0: any free port, logged)"},
	{"host", 0, BQ_OPT_STRING, OFF(host), "127.0.0.1", 0, 0, NULL, bq_http_check_listen_host, 0,
	 "ADDR", "HTTP address to listen on"},
	{"manager-url", 'm', BQ_OPT_STRING, OFF(manager_url), "http://localhost:8001", 0, 0, NULL,
	 bq_http_check_url, 0, "URL", "the client manager"},
	{"manager-token", 0, BQ_OPT_STRING, OFF(manager_token), NULL, 0, 0, NULL, NULL, 0, "TOKEN",
	 "bearer token for the manager's API (its --api-token)"},
	{"data-dir", 'd', BQ_OPT_STRING, OFF(data_dir), "./data", 0, 0, NULL, NULL, 0, "DIR",
	 "where backend.db and service.token live"},
	{"web-dir", 'w', BQ_OPT_STRING, OFF(web_dir), BQ_WEB_DIR, 0, 0, NULL, NULL, 0, "DIR",
	 "the web UI's files, served at / (loaded at start)"},
	{"admin", 0, BQ_OPT_STRING, OFF(admin), NULL, 0, 0, NULL, NULL, 0, "NAME",
	 "this username is the admin (default: the first user to register)"},
	{"hash-cost", 0, BQ_OPT_ENUM, OFF(hash_cost), "interactive", 0, 0, hash_costs, NULL, 0,
	 "COST", "Argon2id cost: interactive, or minimum (tests only: weak)"},
	{"token-ttl", 0, BQ_OPT_DURATION, OFF(token_ttl), "720h", 60000, 31536000000LL, NULL, NULL,
	 0, "DURATION", "how long a login lasts"},
	{"max-body", 0, BQ_OPT_INT, OFF(max_body), "65536", 1024, 16777216, NULL, NULL, 0, "BYTES",
	 "largest request body (413 above)"},
	{"register-rate", 0, BQ_OPT_INT, OFF(register_rate), "5", 0, 1000000, NULL, NULL, 0, "N",
	 "registrations per minute per client address (0: no limit)"},
	{"register-burst", 0, BQ_OPT_INT, OFF(register_burst), "5", 1, 1000000, NULL, NULL, 0, "N",
	 "registrations at once per client address before the rate applies"},
	{"login-rate", 0, BQ_OPT_INT, OFF(login_rate), "10", 0, 1000000, NULL, NULL, 0, "N",
	 "login attempts per minute per client address (0: no limit)"},
	{"login-burst", 0, BQ_OPT_INT, OFF(login_burst), "10", 1, 1000000, NULL, NULL, 0, "N",
	 "login attempts at once per client address before the rate applies"},
	{"log-level", 0, BQ_OPT_ENUM, OFF(log_level), "info", 0, 0, log_levels, NULL, 0, "LEVEL",
	 "error, warn, info or debug"},
	{"debug", 0, BQ_OPT_STRING, OFF(debug), NULL, 0, 0, NULL, NULL, 0, "MODULES",
	 "debug lines for these modules (http,mesh,accounts or all)"},
	{"config", 'c', BQ_OPT_CONFIG, 0, NULL, 0, 0, NULL, NULL, 0, "FILE",
	 "read 'name = value' lines from FILE first"},
	{"check-config", 'n', BQ_OPT_BOOL, OFF(check_config), "false", 0, 0, NULL, NULL, 0, NULL,
	 "validate the configuration and exit"},
	{0},
};

/* On every response: the web UI is served from here, so these cover its pages too. */
static const char *const security_headers[] = {
	"X-Content-Type-Options",
	"nosniff",
	"Content-Security-Policy",
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
	"Referrer-Policy",
	"no-referrer",
	"X-Frame-Options",
	"DENY",
	NULL,
};

static void h_health(struct bq_http_req *req, void *ud)
{
	be_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

/* Ready when the store answers a query; the manager's state is reported, not required. */
static void h_ready(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	int64_t users = 0;
	bool store = b->store && bq_bstore_user_count(b->store, &users) == 0;

	be_reply_json(req, store ? 200 : 503,
		      json_pack("{s:b, s:b, s:b}", "ready", store, "store", store,
				"manager_reachable", b->manager_reachable));
}

static void h_metrics(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct bq_http_server_stats hs;
	int64_t users = -1, pending = -1;
	struct bq_buf m;
	int rc = 0;

	bq_http_server_get_stats(b->http, &hs);
	/* A store that cannot answer shows as -1 rather than failing the whole scrape. */
	if (bq_bstore_user_count(b->store, &users) < 0) {
		users = -1;
	}
	if (bq_bstore_pending_count(b->store, &pending) < 0) {
		pending = -1;
	}
	bq_buf_init(&m, 1u << 16);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_users Live web users.\n"
			    "# TYPE blueq_backend_users gauge\nblueq_backend_users %" PRId64 "\n",
			    users);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_pending_connects Users waiting to be connected "
			    "through the manager.\n# TYPE blueq_backend_pending_connects gauge\n"
			    "blueq_backend_pending_connects %" PRId64 "\n",
			    pending);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_connects_total Connect calls to the manager.\n"
			    "# TYPE blueq_backend_connects_total counter\n"
			    "blueq_backend_connects_total{result=\"ok\"} %" PRIu64 "\n"
			    "blueq_backend_connects_total{result=\"failed\"} %" PRIu64 "\n",
			    b->connects_ok, b->connects_failed);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_events_total Events from the manager.\n"
			    "# TYPE blueq_backend_events_total counter\n"
			    "blueq_backend_events_total{result=\"applied\"} %" PRIu64 "\n"
			    "blueq_backend_events_total{result=\"repeated\"} %" PRIu64 "\n",
			    b->events_applied, b->events_repeated);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_manager_reachable 1 if the manager answered "
			    "the last call.\n# TYPE blueq_backend_manager_reachable gauge\n"
			    "blueq_backend_manager_reachable %d\n",
			    b->manager_reachable ? 1 : 0);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_streams Browser event streams open.\n"
			    "# TYPE blueq_backend_streams gauge\nblueq_backend_streams %u\n",
			    hs.streams);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_rate_limited_total Register and login attempts "
			    "refused with 429.\n# TYPE blueq_backend_rate_limited_total counter\n"
			    "blueq_backend_rate_limited_total %" PRIu64 "\n",
			    b->rate_limited);
	rc |= bq_buf_printf(&m,
			    "# HELP blueq_backend_rate_limit_addresses Client addresses in the "
			    "rate-limit table.\n# TYPE blueq_backend_rate_limit_addresses gauge\n"
			    "blueq_backend_rate_limit_addresses %zu\n",
			    be_limits_tracked(b));
	rc |= bq_buf_printf(&m, "# HELP blueq_http_requests_total HTTP requests by status "
				"class.\n# TYPE blueq_http_requests_total counter\n");
	for (int i = 1; i <= 5; i++) {
		rc |= bq_buf_printf(&m, "blueq_http_requests_total{class=\"%dxx\"} %" PRIu64 "\n",
				    i, hs.by_class[i]);
	}
	if (rc < 0) {
		bq_buf_free(&m);
		bq_http_reply_error(req, 500, "internal", "metrics too large or out of memory");
		return;
	}
	bq_http_reply(req, 200, "text/plain; version=0.0.4", m.data, m.len);
	bq_buf_free(&m);
}

static const struct bq_http_route routes[] = {
	{BQ_HTTP_POST, "/api/register", be_h_register},
	{BQ_HTTP_POST, "/api/login", be_h_login},
	{BQ_HTTP_POST, "/api/logout", be_h_logout},
	{BQ_HTTP_GET, "/api/me", be_h_me},
	{BQ_HTTP_GET, "/api/bluetooth/users", be_h_users_poll},
	{BQ_HTTP_POST, "/api/bluetooth/events", be_h_bt_events},
	{BQ_HTTP_GET, "/api/bluetooth/manager/status", be_h_bt_manager_status},
	{BQ_HTTP_GET, "/api/mesh", be_h_bt_mesh},
	{BQ_HTTP_POST, "/api/bluetooth/manager/connect/*", be_h_bt_manager_connect},
	{BQ_HTTP_POST, "/api/bluetooth/manager/disconnect/*", be_h_bt_manager_disconnect},
	{BQ_HTTP_POST, "/api/bluetooth/send", be_h_bt_send},
	{BQ_HTTP_GET, "/api/contacts", be_h_contacts},
	{BQ_HTTP_GET, "/api/messages", be_h_messages_get},
	{BQ_HTTP_POST, "/api/messages", be_h_messages_post},
	{BQ_HTTP_GET, "/api/events", be_h_events},
	{BQ_HTTP_GET, "/health", h_health},
	{BQ_HTTP_GET, "/ready", h_ready},
	{BQ_HTTP_GET, "/metrics", h_metrics},
	{0, NULL, NULL},
};

/*
 * The manager's service token: created on first start (mode 0600) for the manager to
 * read with --backend-token-file; only its hash stays in memory.
 */
static int load_service_token(struct be *b, char *err, size_t errlen)
{
	char path[4200], token[BQ_TOKEN_LEN + 2];
	int fd, rc;

	snprintf(path, sizeof(path), "%.4000s/service.token", b->o->data_dir);
	bq_token_new(token);
	rc = bq_file_write_atomic(path, token, BQ_TOKEN_LEN, 0600, false);
	if (rc < 0 && rc != -EEXIST) {
		snprintf(err, errlen, "--data-dir: cannot create %.300s: %s", path, strerror(-rc));
		return rc;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "--data-dir: cannot read %.300s: %s", path, strerror(errno));
		return -errno;
	}
	rc = bq_file_read_all(fd, token, BQ_TOKEN_LEN);
	close(fd);
	token[BQ_TOKEN_LEN] = '\0';
	if (rc < 0 || !bq_token_format_ok(token)) {
		snprintf(err, errlen, "%.300s is not a service token (delete it to make a new one)",
			 path);
		return -EINVAL;
	}
	bq_token_hash(token, b->service_hash);
	sodium_memzero(token, sizeof(token));
	return 0;
}

static void on_signal(struct bq_loop *loop, int signo, void *ud)
{
	struct be *b = ud;

	bq_info(b->log, "main", "msg=\"shutting down\" signal=%s", strsignal(signo));
	bq_loop_stop(loop);
}

/*
 * The web UI's files. The built-in default (the source tree's web/) may be absent when
 * the programs were copied elsewhere: the API still runs, with a warning; a directory
 * named with --web-dir must load.
 */
static int load_web(struct be *b, char *err, size_t errlen)
{
	char why[400];
	int rc;

	rc = bq_http_static_load(b->o->web_dir, b->log, &b->web, why, sizeof(why));
	if (rc == 0) {
		return 0;
	}
	if (rc == -ENOENT && strcmp(b->o->web_dir, BQ_WEB_DIR) == 0) {
		bq_warn(b->log, "main", "msg=\"web UI not served\" reason=\"%s\"", why);
		return 0;
	}
	snprintf(err, errlen, "--web-dir: %s", why);
	b->bad_option = true;
	return -EINVAL;
}

static int start(struct be *b, char *err, size_t errlen)
{
	struct bq_http_server_config cfg;
	char path[4200];
	int rc;

	if (mkdir(b->o->data_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "--data-dir: cannot create %.300s: %s", b->o->data_dir,
			 strerror(errno));
		return -errno;
	}
	bq_http_server_config_defaults(&cfg);
	cfg.bind_host = b->o->host;
	cfg.port = (uint16_t)b->o->port;
	cfg.max_body = (size_t)b->o->max_body;
	cfg.routes = routes;
	cfg.user_data = b;
	cfg.default_headers = security_headers;
	rc = load_web(b, err, errlen);
	if (rc < 0) {
		return rc;
	}
	if (b->web) {
		cfg.fallback = bq_http_static_serve;
		cfg.fallback_data = b->web;
	}
	/* The port first: "in use" is then the one line a person sees. */
	rc = bq_http_server_start(b->loop, b->log, &cfg, &b->http, err, errlen);
	if (rc < 0) {
		return rc;
	}
	snprintf(path, sizeof(path), "%.4000s/backend.db", b->o->data_dir);
	rc = bq_bstore_open(path, b->log, &b->store);
	if (rc < 0) {
		snprintf(err, errlen, "--data-dir: cannot open %.300s: %s", path, strerror(-rc));
		return rc;
	}
	rc = load_service_token(b, err, errlen);
	if (rc < 0) {
		return rc;
	}
	rc = be_bt_start(b, err, errlen);
	if (rc < 0) {
		return rc;
	}
	rc = be_limits_start(b, err, errlen);
	if (rc < 0) {
		return rc;
	}
	b->worker = bq_worker_new(b->loop, 2, 1024, b->log);
	if (!b->worker || be_accounts_start(b) < 0) {
		snprintf(err, errlen, "cannot start the worker threads");
		return -ENOMEM;
	}
	rc = be_mesh_start(b, err, errlen);
	if (rc < 0) {
		return rc;
	}
	if (be_bt_snapshot_start(b) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return be_chat_start(b, err, errlen);
}

int main(int argc, char **argv)
{
	struct be_opts o;
	struct be b = {0};
	char err[600];
	int rc, status = 1;

	memset(&o, 0, sizeof(o));
	rc = bq_opt_parse(options, &o, argc, argv, BE_PROG, SYNOPSIS, err, sizeof(err));
	if (rc == 1) {
		bq_opt_free(options, &o);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, BE_PROG ": %s\n", err);
		bq_opt_free(options, &o);
		return 2;
	}
	if (o.manager_url[strlen(o.manager_url) - 1] == '/') {
		o.manager_url[strlen(o.manager_url) - 1] = '\0';
	}
	if (o.check_config) {
		printf(BE_PROG ": configuration OK (http %s:%" PRId64 ", manager %s, data %s)\n",
		       o.host, o.port, o.manager_url, o.data_dir);
		bq_opt_free(options, &o);
		return 0;
	}
	b.o = &o;
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0) {
		fprintf(stderr, BE_PROG ": libsodium failed to initialise\n");
		goto out;
	}
	b.hash_params = bq_auth_params_default();
	if (o.hash_cost == 1) {
		b.hash_params.opslimit = crypto_pwhash_OPSLIMIT_MIN;
		b.hash_params.memlimit = crypto_pwhash_MEMLIMIT_MIN;
	}
	b.log = bq_log_new(BE_PROG);
	if (!b.log) {
		fprintf(stderr, BE_PROG ": out of memory\n");
		goto out;
	}
	bq_log_set_level(b.log, (enum bq_log_level)o.log_level);
	if (o.debug && bq_log_set_debug_modules(b.log, o.debug) < 0) {
		goto out;
	}
	(void)bq_proc_raise_nofile();
	b.loop = bq_loop_new(NULL, b.log);
	/* Signals before any thread, so the workers inherit the blocked mask. */
	if (!b.loop || bq_loop_signal(b.loop, SIGTERM, on_signal, &b) < 0 ||
	    bq_loop_signal(b.loop, SIGINT, on_signal, &b) < 0) {
		fprintf(stderr, BE_PROG ": cannot create the event loop\n");
		goto out;
	}
	rc = start(&b, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, BE_PROG ": %s\n", err);
		status = rc == -EADDRINUSE || rc == -EACCES || b.bad_option ? 2 : 1;
		goto out;
	}
	bq_info(b.log, "main", "msg=\"listening\" on=http://%s:%u manager=%s data=%s version=%s",
		o.host, bq_http_server_port(b.http), o.manager_url, o.data_dir, BQ_VERSION_STRING);
	/* systemd Type=notify: ready once the port is open (a no-op elsewhere). */
	bq_notify("READY=1");
	rc = bq_loop_run(b.loop);
	status = rc < 0 ? 1 : 0;
out:
	b.stopping = true;
	bq_http_server_free(b.http); /* pending requests see their abort callbacks */
	bq_worker_free(b.worker);    /* hashes still queued are cancelled */
	be_mesh_stop(&b);
	/* After the server (streams' closed callbacks) and the client (sends' callbacks). */
	be_chat_stop(&b);
	be_bt_stop(&b);
	be_limits_stop(&b);
	bq_bstore_close(b.store);
	bq_http_static_free(b.web);
	be_auth_cache_free(&b);
	bq_loop_free(b.loop);
	bq_log_free(b.log);
	bq_opt_free(options, &o);
	return status;
}
