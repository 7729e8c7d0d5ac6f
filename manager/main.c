/* SPDX-License-Identifier: MIT */
/*
 * blueq-manager: the client manager. One MeshClient session per web user, connected
 * through Odin; the seed's command line
 *     blueq-manager [ODIN_MAC] [BACKEND_URL] [API_PORT]
 * with the defaults D8:3A:DD:03:1E:77 http://localhost:5000 8001, plus named options
 * and a config file from the same option table. Wiring only: see manager.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/notify.h"
#include "core/opt.h"
#include "core/proc.h"
#include "http/check.h"
#include "http/json.h"
#include "manager.h"
#include "transport/addr.h"

#define SYNOPSIS "[ODIN_MAC] [BACKEND_URL] [API_PORT]"
#define ODIN_MAC "D8:3A:DD:03:1E:77"
#define SHUTDOWN_MAX_MS 1500
#define TOKEN_MAX 512

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const link_modes[] = {"dedicated", "shared", NULL};

/* Empty is allowed here: no backend, so no push and no poll. */
static int check_backend_url(const char *value, char *err, size_t errlen)
{
	return value[0] ? bq_http_check_url(value, err, errlen) : 0;
}

static int check_odin(const char *value, char *err, size_t errlen)
{
	struct bq_addr a;
	char why[300];

	if (bq_addr_parse(value, &a, why, sizeof(why)) == 0) {
		return 0;
	}
	snprintf(err, errlen,
		 "%s (expected a Bluetooth address like " ODIN_MAC
		 ", bt-rfcomm://MAC/CH, bt-l2cap://MAC/PSM, tcp://host:port or unix:/path)",
		 why);
	return -EINVAL;
}

#define OFF(f) offsetof(struct mgr_opts, f)

static const struct bq_opt options[] = {
	{"odin", 0, BQ_OPT_STRING, OFF(odin), ODIN_MAC, 0, 0, NULL, check_odin, 1, "ODIN_MAC",
	 "Odin's address: a MAC (found in the simulator's address map when simulated), "
	 "bt-rfcomm://, bt-l2cap://, tcp:// or unix:"},
	{"backend-url", 0, BQ_OPT_STRING, OFF(backend_url), "http://localhost:5000", 0, 0, NULL,
	 check_backend_url, 2, "BACKEND_URL",
	 "the web backend (events are pushed, users polled); "
	 "empty for none"},
	{"api-port", 'p', BQ_OPT_INT, OFF(api_port), "8001", 0, 65535, NULL, NULL, 3, "API_PORT",
	 "HTTP API port (0: any free port, logged)"},
	{"api-host", 0, BQ_OPT_STRING, OFF(api_host), "127.0.0.1", 0, 0, NULL,
	 bq_http_check_listen_host, 0, "ADDR",
	 "HTTP API address; other than loopback only with --api-token"},
	{"api-token", 0, BQ_OPT_STRING, OFF(api_token), NULL, 0, 0, NULL, NULL, 0, "TOKEN",
	 "require 'Authorization: Bearer TOKEN' on the API (except /health)"},
	{"backend-token", 0, BQ_OPT_STRING, OFF(backend_token), NULL, 0, 0, NULL, NULL, 0, "TOKEN",
	 "bearer token for calls to the backend"},
	{"backend-token-file", 0, BQ_OPT_STRING, OFF(backend_token_file), NULL, 0, 0, NULL, NULL, 0,
	 "PATH",
	 "read the backend token from this file (its first line); default: "
	 "DATA_DIR/service.token when it exists (the backend's, on the same data directory)"},
	{"data-dir", 'd', BQ_OPT_STRING, OFF(data_dir), "./data", 0, 0, NULL, NULL, 0, "DIR",
	 "where the outbox database lives (manager-outbox.db)"},
	{"link-mode", 'm', BQ_OPT_ENUM, OFF(link_mode), "dedicated", 0, 0, link_modes, NULL, 0,
	 "MODE", "dedicated (a link per user) or shared (a small pool of links)"},
	{"shared-links", 0, BQ_OPT_INT, OFF(shared_links), "4", 1, 64, NULL, NULL, 0, "N",
	 "links in the pool in shared mode"},
	{"key-file", 0, BQ_OPT_STRING, OFF(key_file), NULL, 0, 0, NULL, NULL, 0, "PATH",
	 "mesh network key to sign frames with (needed if Odin requires client auth)"},
	{"connect-timeout", 0, BQ_OPT_DURATION, OFF(connect_timeout), "10s", 100, 600000, NULL,
	 NULL, 0, "DURATION", "give up a connect attempt after this"},
	{"handshake-timeout", 0, BQ_OPT_DURATION, OFF(handshake_timeout), "5s", 100, 600000, NULL,
	 NULL, 0, "DURATION", "HELLO, ATTACH and SCAN must progress within this"},
	{"ping-interval", 0, BQ_OPT_DURATION, OFF(ping_interval), "5s", 0, 3600000, NULL, NULL, 0,
	 "DURATION", "heartbeat on idle links (0: none)"},
	{"dead-after", 0, BQ_OPT_DURATION, OFF(dead_after), "15s", 0, 3600000, NULL, NULL, 0,
	 "DURATION", "a link silent this long is dead"},
	{"backoff-base", 0, BQ_OPT_DURATION, OFF(backoff_base), "100ms", 1, 600000, NULL, NULL, 0,
	 "DURATION", "first reconnect delay"},
	{"backoff-cap", 0, BQ_OPT_DURATION, OFF(backoff_cap), "30s", 1, 3600000, NULL, NULL, 0,
	 "DURATION", "longest reconnect delay"},
	{"connect-rate", 0, BQ_OPT_INT, OFF(connect_rate), "2500", 0, 1000000, NULL, NULL, 0, "N",
	 "dials per second to Odin, all links together (0: unbounded)"},
	{"connect-burst", 0, BQ_OPT_INT, OFF(connect_burst), "100", 1, 1000000, NULL, NULL, 0, "N",
	 "dials allowed at once before the rate applies"},
	{"poll-interval", 0, BQ_OPT_DURATION, OFF(poll_interval), "10s", 0, 86400000, NULL, NULL, 0,
	 "DURATION", "poll the backend's users this often (0: only at start)"},
	{"event-queue", 0, BQ_OPT_INT, OFF(event_queue), "10000", 10, 10000000, NULL, NULL, 0, "N",
	 "events kept for the backend while it is away (oldest dropped, counted)"},
	{"event-batch", 0, BQ_OPT_INT, OFF(event_batch), "100", 1, 10000, NULL, NULL, 0, "N",
	 "events per POST to the backend"},
	{"max-body", 0, BQ_OPT_INT, OFF(max_body), "65536", 1024, 16777216, NULL, NULL, 0, "BYTES",
	 "largest request body (413 above)"},
	{"sync-normal", 0, BQ_OPT_BOOL, OFF(sync_normal), "false", 0, 0, NULL, NULL, 0, NULL,
	 "outbox commits survive a crash of the manager but not of the machine (faster)"},
	{"log-level", 0, BQ_OPT_ENUM, OFF(log_level), "info", 0, 0, log_levels, NULL, 0, "LEVEL",
	 "error, warn, info or debug"},
	{"debug", 0, BQ_OPT_STRING, OFF(debug), NULL, 0, 0, NULL, NULL, 0, "MODULES",
	 "debug lines for these modules (api,backend,sessions,client,http,outbox or all)"},
	{"config", 'c', BQ_OPT_CONFIG, 0, NULL, 0, 0, NULL, NULL, 0, "FILE",
	 "read 'name = value' lines from FILE first"},
	{"check-config", 'n', BQ_OPT_BOOL, OFF(check_config), "false", 0, 0, NULL, NULL, 0, NULL,
	 "validate the configuration and exit"},
	{0}, /* end of table */
};

static bool is_loopback_host(const char *h)
{
	return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

static bool validate(const struct mgr_opts *o, char *err, size_t errlen)
{
	if (!is_loopback_host(o->api_host) && !(o->api_token && o->api_token[0])) {
		snprintf(err, errlen,
			 "--api-host: listening on %s (not loopback) needs --api-token",
			 o->api_host);
		return false;
	}
	if (o->api_token && (strlen(o->api_token) < 16 || strlen(o->api_token) > TOKEN_MAX)) {
		snprintf(err, errlen, "--api-token: must be 16..%d characters", TOKEN_MAX);
		return false;
	}
	if (o->backoff_cap < o->backoff_base) {
		snprintf(err, errlen, "--backoff-cap: must not be shorter than --backoff-base");
		return false;
	}
	if (!o->data_dir[0]) {
		snprintf(err, errlen, "--data-dir: must not be empty");
		return false;
	}
	return true;
}

/* The first line of a small file, without its newline. */
static int read_token_file(const char *path, char **out, char *err, size_t errlen)
{
	char buf[TOKEN_MAX + 2];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f) {
		int e = errno;

		snprintf(err, errlen, "--backend-token-file: cannot open %s: %s", path,
			 strerror(e));
		return -e;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!buf[0]) {
		snprintf(err, errlen, "--backend-token-file: %s is empty", path);
		return -EINVAL;
	}
	*out = bq_strdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return *out ? 0 : -ENOMEM;
}

/* ---- session callbacks: events for the backend and the streams, message states ---- */

static void on_state(struct bq_session *s, enum bq_session_state from, enum bq_session_state to,
		     int err, const char *reason, void *ud)
{
	struct mgr *m = ud;
	struct bq_session_info in;

	bq_session_info(s, &in);
	mgr_event(m, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:i}", "type", "session", "user_id",
			       in.user_id, "user_name", in.user_name, "state",
			       bq_session_state_name(to), "from", bq_session_state_name(from),
			       "reason", reason, "err", err));
}

static json_t *message_event(struct bq_session *s, const char *src, const char *dst,
			     uint64_t msg_id, const void *text, size_t len)
{
	char hex[BQ_OUTBOX_ID_LEN + 1];

	bq_outbox_id_format(msg_id, hex);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", "message", "message_id", hex,
			 "user_id", bq_session_user_id(s), "from", src, "to",
			 dst ? dst : BQ_OUTBOX_BROADCAST_DEST, "text", bq_json_text(text, len));
}

static void on_message(struct bq_session *s, const char *src, const char *dst, uint64_t msg_id,
		       const void *text, size_t len, void *ud)
{
	struct mgr *m = ud;
	json_t *ev = message_event(s, src, dst, msg_id, text, len);

	if (!dst) {
		mgr_event(m, ev); /* a broadcast: no receipt to hold */
		return;
	}
	mgr_inbound(m, ev, bq_session_user_id(s), src, msg_id, true);
}

/* The sender has no receipt yet: queue the event again (the backend stores it once). */
static void on_message_repeat(struct bq_session *s, const char *src, const char *dst,
			      uint64_t msg_id, const void *text, size_t len, void *ud)
{
	struct mgr *m = ud;

	mgr_inbound(m, message_event(s, src, dst, msg_id, text, len), bq_session_user_id(s), src,
		    msg_id, false);
}

static void on_ack(struct bq_session *s, uint64_t msg_id, uint8_t status, const char *reason,
		   void *ud)
{
	struct mgr *m = ud;
	const char *user = bq_session_user_id(s);
	char hex[BQ_OUTBOX_ID_LEN + 1], why[300];
	enum bq_outbox_state st;
	bool broadcast;

	bq_outbox_id_format(msg_id, hex);
	broadcast = bq_map_get(m->broadcasts, hex, BQ_OUTBOX_ID_LEN) != NULL;
	switch (status) {
	case BQ_ACK_ACCEPTED:
		st = broadcast ? BQ_OUTBOX_BROADCAST : BQ_OUTBOX_SENT;
		if (broadcast) {
			bq_map_remove(m->broadcasts, hex, BQ_OUTBOX_ID_LEN);
		}
		reason = NULL;
		break;
	case BQ_ACK_DELIVERED:
		st = BQ_OUTBOX_DELIVERED;
		reason = NULL;
		break;
	case BQ_ACK_STORED:
		/* Still "sent": the home node holds it until the user returns. */
		mgr_event(m, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type", "delivery",
				       "message_id", hex, "user_id", user, "state", "sent", "label",
				       "sent", "reason", "held for an offline user"));
		return;
	default:
		st = BQ_OUTBOX_FAILED;
		bq_map_remove(m->broadcasts, hex, BQ_OUTBOX_ID_LEN);
		snprintf(why, sizeof(why), "%s%s%s", bq_ack_status_name(status),
			 reason && reason[0] ? ": " : "", reason ? reason : "");
		reason = why;
		break;
	}
	if (bq_outbox_set_state(m->ob, msg_id, st, reason) < 0) {
		bq_warn(m->log, "api", "msg=\"state not recorded\" id=%s state=%s", hex,
			bq_outbox_state_name(st));
	}
	if (st != BQ_OUTBOX_SENT) {
		mgr_unsent_kick(m); /* a settled message freed a place in the window */
	}
	mgr_count_state(m, st);
	if (!mgr_events_wanted(m)) {
		return;
	}
	mgr_event(m, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?}", "type", "delivery", "message_id",
			       hex, "user_id", user, "state", bq_outbox_state_name(st), "label",
			       bq_outbox_state_label(st), "reason", reason));
}

static void on_directory(const struct bq_dir_entry *e, void *ud)
{
	struct mgr *m = ud;
	char addr[18];

	if (e->kind != BQ_DIR_USER) {
		return; /* topology changes are read from /api/users when wanted */
	}
	bq_bdaddr_format(e->home, addr);
	mgr_event(m, json_pack("{s:s, s:s#, s:s#, s:s, s:s}", "type", "directory", "user_id", e->id,
			       (int)e->id_len, "user_name", e->name, (int)e->name_len, "home", addr,
			       "presence",
			       e->presence == BQ_PRES_ONLINE ? "online"
			       : e->presence == BQ_PRES_GONE ? "gone"
							     : "offline"));
}

/* ---- startup: resend what the last run committed but did not finish ---- */

static int resend_one(void *ud, const struct bq_outbox_msg *msg)
{
	struct mgr *m = ud;
	int rc;

	/* The sender's session may not exist yet in this run: create it (name = id until
	 * the backend's poll or a connect names it). */
	rc = bq_sessions_connect(m->reg, msg->user_id, NULL, NULL);
	if (rc < 0 && rc != -EALREADY) {
		bq_outbox_set_state(m->ob, msg->id, BQ_OUTBOX_FAILED,
				    "the sender cannot go on the mesh");
		return 0;
	}
	mgr_dispatch(m, msg->id, msg->user_id, msg->destination, msg->body, msg->body_len);
	return 0;
}

static void on_signal(struct bq_loop *loop, int signo, void *ud)
{
	struct mgr *m = ud;

	bq_info(m->log, "main", "msg=\"shutting down\" signal=%s", strsignal(signo));
	bq_loop_stop(loop);
}

static void drain_sessions(struct mgr *m)
{
	uint64_t end = bq_loop_now_ms(m->loop) + SHUTDOWN_MAX_MS;

	bq_sessions_stop(m->reg);
	while (bq_sessions_busy(m->reg) && bq_loop_now_ms(m->loop) < end) {
		if (bq_loop_run_once(m->loop, 50) < 0) {
			break;
		}
	}
}

static int open_outbox(struct mgr *m, char *err, size_t errlen)
{
	struct bq_outbox_opts oo = {.sync_normal = m->o->sync_normal};
	char path[4096];
	int rc;

	if (snprintf(path, sizeof(path), "%s/manager-outbox.db", m->o->data_dir) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "--data-dir: path too long");
		return -ENAMETOOLONG;
	}
	rc = bq_outbox_open(path, m->loop, m->log, &oo, &m->ob);
	if (rc < 0) {
		snprintf(err, errlen, "--data-dir: cannot open the outbox %.400s: %s", path,
			 strerror(-rc));
	}
	return rc;
}

static int make_sessions(struct mgr *m, char *err, size_t errlen)
{
	static const struct bq_sessions_cbs cbs = {
		.state = on_state,
		.message = on_message,
		.message_repeat = on_message_repeat,
		.ack = on_ack,
		.directory = on_directory,
	};
	const struct mgr_opts *o = m->o;
	struct bq_sessions_config cfg;
	uint8_t key[BQ_KEY_LEN];
	char why[300];

	bq_sessions_config_defaults(&cfg);
	if (bq_addr_parse(o->odin, &cfg.odin, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "ODIN_MAC: %s", why);
		return -EINVAL;
	}
	snprintf(m->odin_transport, sizeof(m->odin_transport), "%s",
		 bq_addr_kind_name(cfg.odin.kind));
	if (o->key_file) {
		struct stat sb;

		if (stat(o->key_file, &sb) < 0) {
			snprintf(err, errlen, "--key-file: %s: %s", o->key_file, strerror(errno));
			return -ENOENT;
		}
		if (bq_auth_load_or_create_key(o->key_file, key, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "--key-file: %s", why);
			return -EINVAL;
		}
		m->auth = bq_auth_new(key);
		sodium_memzero(key, sizeof(key));
		if (!m->auth) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		cfg.auth = m->auth;
	}
	cfg.mode = (enum bq_link_mode)o->link_mode;
	cfg.shared_links = (uint32_t)o->shared_links;
	cfg.connect_timeout_ms = (uint32_t)o->connect_timeout;
	cfg.handshake_timeout_ms = (uint32_t)o->handshake_timeout;
	cfg.ping_interval_ms = (uint32_t)o->ping_interval;
	cfg.dead_after_ms = (uint32_t)o->dead_after;
	cfg.backoff_base_ms = (uint32_t)o->backoff_base;
	cfg.backoff_cap_ms = (uint32_t)o->backoff_cap;
	cfg.connect_rate = (uint32_t)o->connect_rate;
	cfg.connect_burst = (uint32_t)o->connect_burst;
	/* A receipt says the message is stored where it goes: with a backend, there. */
	cfg.hold_receipts = o->backend_url && o->backend_url[0];
	m->reg = bq_sessions_new(m->loop, &cfg, &cbs, m, NULL, m->log, err, errlen);
	return m->reg ? 0 : -ENOMEM;
}

int main(int argc, char **argv)
{
	struct mgr_opts o;
	struct mgr m = {0};
	char err[600];
	uint8_t rnd[8];
	long resent;
	int rc, status = 1;

	memset(&o, 0, sizeof(o));
	rc = bq_opt_parse(options, &o, argc, argv, PROG, SYNOPSIS, err, sizeof(err));
	if (rc == 1) {
		bq_opt_free(options, &o);
		return 0;
	}
	if (rc < 0 || !validate(&o, err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		bq_opt_free(options, &o);
		return 2;
	}
	/* Strip one trailing '/' so paths can be appended. */
	if (o.backend_url[0] && o.backend_url[strlen(o.backend_url) - 1] == '/') {
		o.backend_url[strlen(o.backend_url) - 1] = '\0';
	}
	if (o.check_config) {
		printf(PROG ": configuration OK (odin %s, backend %s, api %s:%" PRId64
			    ", %s links)\n",
		       o.odin, o.backend_url[0] ? o.backend_url : "none", o.api_host, o.api_port,
		       link_modes[o.link_mode]);
		bq_opt_free(options, &o);
		return 0;
	}
	m.o = &o;
	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": libsodium failed to initialise\n");
		goto out;
	}
	m.log = bq_log_new(PROG);
	if (!m.log) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	bq_log_set_level(m.log, (enum bq_log_level)o.log_level);
	if (o.debug && bq_log_set_debug_modules(m.log, o.debug) < 0) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}
	if (o.backend_token) {
		m.backend_token = bq_strdup(o.backend_token);
	} else if (o.backend_token_file &&
		   read_token_file(o.backend_token_file, &m.backend_token, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	} else if (!o.backend_token_file) {
		/*
		 * The backend writes its service token into its data directory; with both
		 * programs on the same one (./data by default) the original's command line
		 * then works as written, with no token option.
		 */
		char path[4200];

		snprintf(path, sizeof(path), "%.4000s/service.token", o.data_dir);
		if (access(path, F_OK) == 0) {
			if (read_token_file(path, &m.backend_token, err, sizeof(err)) < 0) {
				fprintf(stderr, PROG ": %s\n", err);
				goto out;
			}
			bq_info(m.log, "main", "msg=\"backend token read\" from=\"%s\"", path);
		}
	}
	/*
	 * glibc gives freed memory back to the kernel eagerly (trim, and mmap for blocks
	 * over 128 KiB): with the outbox's writer thread freeing SQLite's buffers after
	 * every batch, that was a madvise with a TLB shootdown across both CPUs many times a
	 * second (30 % of the manager's time in a send burst). Keep up to 64 MiB.
	 */
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	mallopt(M_MMAP_THRESHOLD, 4 << 20);
	m.nofile = bq_proc_raise_nofile();
	m.started_ms = bq_wall_ms();
	randombytes_buf(rnd, sizeof(rnd));
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(m.instance + 2 * i, 3, "%02x", rnd[i]);
	}
	m.broadcasts = bq_map_new();
	m.loop = bq_loop_new(NULL, m.log);
	if (!m.loop || !m.broadcasts) {
		fprintf(stderr, PROG ": cannot create the event loop\n");
		goto out;
	}
	/* Signals first: the outbox's writer thread must inherit the blocked mask. */
	if (bq_loop_signal(m.loop, SIGTERM, on_signal, &m) < 0 ||
	    bq_loop_signal(m.loop, SIGINT, on_signal, &m) < 0) {
		fprintf(stderr, PROG ": cannot watch signals\n");
		goto out;
	}
	if (make_sessions(&m, err, sizeof(err)) < 0 ||
	    mgr_backend_start(&m, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	/* The port first: "in use" must be the one line a person sees, nothing before it. */
	rc = mgr_api_start(&m, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		status = rc == -EADDRINUSE || rc == -EACCES ? 2 : 1;
		goto out;
	}
	if (open_outbox(&m, err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		goto out;
	}
	resent = bq_outbox_pending(m.ob, resend_one, &m);
	bq_info(m.log, "main",
		"msg=\"listening\" on=http://%s:%u odin=%s backend=%s mode=%s nofile=%" PRIu64
		" resent=%ld version=%s",
		o.api_host, bq_http_server_port(m.http), o.odin,
		o.backend_url[0] ? o.backend_url : "none", link_modes[o.link_mode], m.nofile,
		resent, BQ_VERSION_STRING);
	/* systemd Type=notify: ready once the port is open (a no-op elsewhere). */
	bq_notify("READY=1");
	rc = bq_loop_run(m.loop);
	if (rc < 0) {
		bq_err(m.log, "main", "msg=\"event loop failed\" err=\"%s\"", strerror(-rc));
	}
	m.stopping = true;
	status = rc < 0 ? 1 : 0;
out:
	m.stopping = true;
	mgr_api_stop(&m);
	if (m.reg) {
		drain_sessions(&m);
	}
	/* Before the backend queue goes: closing runs the last commit callbacks. */
	bq_outbox_close(m.ob);
	m.ob = NULL;
	mgr_backend_stop(&m);
	bq_sessions_free(m.reg);
	bq_auth_free(m.auth);
	bq_map_free(m.broadcasts);
	if (m.backend_token) {
		sodium_memzero(m.backend_token, strlen(m.backend_token));
		bq_free(m.backend_token);
	}
	bq_loop_free(m.loop);
	bq_log_free(m.log);
	bq_opt_free(options, &o);
	return status;
}
