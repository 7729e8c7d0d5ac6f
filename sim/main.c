/* SPDX-License-Identifier: MIT */
/*
 * blueq-sim: a mesh of real blueq-node processes with the simulator as the "air"
 * between neighbours (latency, loss, cuts), bot users, a control socket and the
 * Bluetooth address map. How to use it: docs/simulation.md.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "transport/addrmap.h"
#include "sim.h"

#define PROG "blueq-sim"
#define STARTUP_TIMEOUT_MS 10000
#define STARTUP_PROBE_MS 50
#define STOP_GRACE_MS 3000
#define CONVERGE_TIMEOUT_MS 10000
#define CONVERGE_PROBE_MS 20

static int loss_check(const char *value, char *err, size_t errlen);

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static const struct bq_opt options[] = {
	{ "nodes", 'n', BQ_OPT_INT, offsetof(struct sim_cfg, nodes), "5", 1, SIM_MAX_NODES, NULL,
	  NULL, 0, "N", "number of blueq-node processes (node 1 is Odin, D8:3A:DD:03:1E:77)" },
	{ "topology", 't', BQ_OPT_STRING, offsetof(struct sim_cfg, topology), "line", 0, 0, NULL,
	  NULL, 0, "KIND", "line, ring, grid, random, or a file of 'A B' edge lines (1-based)" },
	{ "dir", 'd', BQ_OPT_STRING, offsetof(struct sim_cfg, dir), "./data/sim", 0, 0, NULL,
	  NULL, 0, "DIR", "working directory: sockets, node logs, bot logs, network key" },
	{ "latency", 0, BQ_OPT_DURATION, offsetof(struct sim_cfg, latency_ms), "0", 0, 60000,
	  NULL, NULL, 0, "DURATION", "delay per frame per hop on the air" },
	{ "loss", 0, BQ_OPT_STRING, offsetof(struct sim_cfg, loss), "0", 0, 0, NULL, loss_check, 0,
	  "PERCENT", "frames lost on the air, 0..100 (HELLO frames are never lost)" },
	{ "seed", 0, BQ_OPT_INT, offsetof(struct sim_cfg, seed), "0", 0, INT64_MAX, NULL, NULL, 0,
	  "N", "random seed for loss and random topologies (0: time-based)" },
	{ "bot", 'b', BQ_OPT_LIST, offsetof(struct sim_cfg, bots), NULL, 0, 0, NULL, NULL, 0,
	  "NAME@NODE", "run a bot user NAME attached at node NODE (repeatable)" },
	{ "bot-echo", 0, BQ_OPT_BOOL, offsetof(struct sim_cfg, bot_echo), NULL, 0, 0, NULL, NULL,
	  0, NULL, "bots answer direct messages with \"echo: TEXT\"" },
	{ "addr-map", 0, BQ_OPT_STRING, offsetof(struct sim_cfg, addr_map), NULL, 0, 0, NULL, NULL,
	  0, "PATH", "address map to write ($BLUEQ_ADDR_MAP, else /run/blueq/sim-addrmap if "
	  "/run/blueq exists, else /tmp/blueq-sim-addrmap)" },
	{ "control", 'c', BQ_OPT_STRING, offsetof(struct sim_cfg, control), NULL, 0, 0, NULL, NULL,
	  0, "PATH", "control socket (default DIR/sim.ctl)" },
	{ "node-bin", 0, BQ_OPT_STRING, offsetof(struct sim_cfg, node_bin), NULL, 0, 0, NULL,
	  NULL, 0, "PATH", "blueq-node executable (default: next to blueq-sim)" },
	{ "announce-interval", 0, BQ_OPT_DURATION, offsetof(struct sim_cfg, announce_interval_ms),
	  NULL, 0, 0, NULL, NULL, 0, "DURATION", "passed to every node (node default if unset)" },
	{ "expiry", 0, BQ_OPT_DURATION, offsetof(struct sim_cfg, expiry_ms), NULL, 0, 0, NULL,
	  NULL, 0, "DURATION", "passed to every node (node default if unset)" },
	{ "log-level", 0, BQ_OPT_ENUM, offsetof(struct sim_cfg, log_level), "info", 0, 0,
	  log_levels, NULL, 0, "LEVEL", "the simulator's own log (stderr)" },
	{ "debug", 0, BQ_OPT_STRING, offsetof(struct sim_cfg, debug), NULL, 0, 0, NULL, NULL, 0,
	  "MODULES", "debug lines for these modules (sim,air,client,link or all)" },
	{ "node-log-level", 0, BQ_OPT_ENUM, offsetof(struct sim_cfg, node_log_level), "info", 0, 0,
	  log_levels, NULL, 0, "LEVEL", "log level passed to every node (DIR/node-N.log)" },
	{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
};

static const char synopsis[] = "[OPTIONS]\n"
			       "Starts N blueq-node processes in a topology and carries frames "
			       "between them;\ncontrol it through the control socket "
			       "(blueq-cli ctl DIR/sim.ctl status).";

int sim_parse_percent(const char *text, uint32_t *ppm)
{
	uint64_t whole = 0, frac = 0;
	int fdigits = 0;
	const char *p = text;

	if (!*p) {
		return -EINVAL;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > 100) {
			return -EINVAL;
		}
	}
	if (p == text && *p != '.') {
		return -EINVAL;
	}
	if (*p == '.') {
		p++;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (fdigits == 4) {
				return -EINVAL;
			}
			frac = frac * 10 + (uint64_t)(*p - '0');
			fdigits++;
		}
	}
	if (*p) {
		return -EINVAL;
	}
	while (fdigits++ < 4) {
		frac *= 10;
	}
	if (whole * 10000 + frac > 1000000) {
		return -EINVAL;
	}
	*ppm = (uint32_t)(whole * 10000 + frac);
	return 0;
}

static int loss_check(const char *value, char *err, size_t errlen)
{
	uint32_t ppm;

	if (sim_parse_percent(value, &ppm) < 0) {
		snprintf(err, errlen, "'%s' is not a percentage 0..100 (up to 4 decimals)", value);
		return -EINVAL;
	}
	return 0;
}

uint64_t sim_random(struct sim *s)
{
	/* xorshift64*: reproducible from --seed, good enough for loss and topologies */
	s->rng ^= s->rng >> 12;
	s->rng ^= s->rng << 25;
	s->rng ^= s->rng >> 27;
	return s->rng * 0x2545F4914F6CDD1DULL;
}

static int mkdir_p(const char *path)
{
	char buf[SIM_PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf)) {
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];

			buf[i] = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
				return -errno;
			}
			buf[i] = c;
		}
	}
	return 0;
}

static void say_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say_err(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- shutdown ---------------------------------------------------------------------- */

static void kill_timer_cb(struct bq_timer *t, void *ud)
{
	struct sim *s = ud;

	sim_reap(s);
	if (s->killed || sim_all_dead(s)) {
		bq_loop_stop(s->loop);
		return;
	}
	for (int i = 0; i < s->n_nodes; i++) {
		if (s->nodes[i].alive && s->nodes[i].pid > 0) {
			bq_warn(s->log, "sim",
				"msg=\"node did not stop in time, killing it\" node=%d",
				s->nodes[i].idx);
			kill(s->nodes[i].pid, SIGKILL);
		}
	}
	/* SIGCHLD ends the loop once all are reaped; this is the backstop. */
	s->killed = true;
	bq_timer_start(t, 1000);
}

void sim_shutdown(struct sim *s, int exit_code)
{
	if (s->stopping) {
		return;
	}
	s->stopping = true;
	s->exit_code = exit_code;
	bq_info(s->log, "sim", "msg=\"stopping\" exit_code=%d", exit_code);
	bq_timer_stop(s->startup_tick);
	bq_timer_stop(s->startup_deadline);
	bq_timer_stop(s->converge_tick);
	sim_bots_stop(s);
	for (int i = 0; i < s->n_nodes; i++) {
		sim_node_signal(s, &s->nodes[i], SIGTERM);
	}
	sim_reap(s);
	if (sim_all_dead(s)) {
		bq_loop_stop(s->loop);
		return;
	}
	bq_timer_start(s->kill_timer, STOP_GRACE_MS);
}

static void on_sigchld(struct bq_loop *loop, int signo, void *ud)
{
	struct sim *s = ud;

	sim_reap(s);
	if (s->stopping) {
		if (sim_all_dead(s)) {
			bq_loop_stop(s->loop);
		}
		return;
	}
	if (!s->ready) {
		for (int i = 0; i < s->n_nodes; i++) {
			struct sim_node *n = &s->nodes[i];

			if (!n->alive && n->starts > 0) {
				say_err("node %d (%s) exited during start-up; see %s", n->idx,
					n->name, n->log);
				sim_shutdown(s, 1);
				return;
			}
		}
	}
}

static void on_stop_signal(struct bq_loop *loop, int signo, void *ud)
{
	sim_shutdown(ud, 0);
}

/* ---- start-up ---------------------------------------------------------------------- */

static void startup_finish(struct sim *s)
{
	struct bq_addrmap_entry e[SIM_MAX_NODES];
	char targets[SIM_MAX_NODES][SIM_PATH_MAX + 8];
	char err[400];

	bq_timer_stop(s->startup_tick);
	bq_timer_stop(s->startup_deadline);
	for (int i = 0; i < s->n_nodes; i++) {
		memcpy(e[i].bdaddr, s->nodes[i].mac, BQ_BDADDR_LEN);
		snprintf(targets[i], sizeof(targets[i]), "unix:%s", s->nodes[i].sock);
		e[i].target = targets[i];
	}
	if (bq_addrmap_write(s->addr_map, e, (size_t)s->n_nodes, err, sizeof(err)) < 0) {
		say_err("%s", err);
		sim_shutdown(s, 1);
		return;
	}
	s->map_written = true;
	if (sim_bots_start(s, err, sizeof(err)) < 0) {
		say_err("%s", err);
		sim_shutdown(s, 1);
		return;
	}
	s->converge_deadline_ms = bq_loop_now_ms(s->loop) + CONVERGE_TIMEOUT_MS;
	bq_timer_start(s->converge_tick, 0);
}

struct probe {
	struct sim *s;
	struct sim_node *n;
};

static void users_done(void *ud, int err, const char *reply)
{
	struct probe *p = ud;

	p->n->probing = false;
	if (err == 0 && sim_bots_listed(p->s, reply)) {
		p->n->knows_bots = true;
	}
	bq_free(p);
}

/* Every bot attached, and every node (Odin first of all) lists every bot online. */
static bool converged(struct sim *s)
{
	bool all = sim_bots_converged(s);

	for (int i = 0; i < s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		struct probe *p;

		if (n->knows_bots) {
			continue;
		}
		all = false;
		if (n->probing || !n->alive || !(p = bq_calloc(1, sizeof(*p)))) {
			continue;
		}
		p->s = s;
		p->n = n;
		if (sim_request(s, n->ctl, "users", 1000, users_done, p) < 0) {
			bq_free(p);
			continue;
		}
		n->probing = true;
	}
	return all;
}

/*
 * "ready" means usable: the bots are attached and every node already knows every bot,
 * so a test (or blueq-cli at Odin) may message a bot at once instead of racing the
 * announces.
 */
static void converge_tick_cb(struct bq_timer *t, void *ud)
{
	struct sim *s = ud;
	bool done = converged(s);

	if (!done && bq_loop_now_ms(s->loop) < s->converge_deadline_ms) {
		bq_timer_start(t, CONVERGE_PROBE_MS);
		return;
	}
	if (!done) {
		bq_warn(s->log, "sim", "msg=\"the directory has not converged yet; ready anyway\" "
			"waited_ms=%d", CONVERGE_TIMEOUT_MS);
	}
	s->ready = true;
	bq_info(s->log, "sim", "msg=\"ready\" nodes=%d edges=%d bots=%d", s->n_nodes, s->n_edges,
		s->n_bots);
	printf(PROG ": ready nodes=%d control=%s addr-map=%s\n", s->n_nodes, s->control,
	       s->addr_map);
	fflush(stdout);
}


static void probe_done(void *ud, int err, const char *reply)
{
	struct probe *p = ud;
	struct sim *s = p->s;

	p->n->probing = false;
	if (err == 0) {
		p->n->ready = true;
	}
	bq_free(p);
	if (s->stopping || s->map_written) {
		return;
	}
	for (int i = 0; i < s->n_nodes; i++) {
		if (!s->nodes[i].ready) {
			return;
		}
	}
	startup_finish(s);
}

static void startup_tick_cb(struct bq_timer *t, void *ud)
{
	struct sim *s = ud;

	for (int i = 0; i < s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		struct probe *p;

		if (n->ready || n->probing || !n->alive) {
			continue;
		}
		p = bq_calloc(1, sizeof(*p));
		if (!p) {
			continue;
		}
		p->s = s;
		p->n = n;
		/* Any one-line answer means the node is up; "stats" is harmless. */
		if (sim_request(s, n->ctl, "stats", 1000, probe_done, p) < 0) {
			bq_free(p);
			continue;
		}
		n->probing = true;
	}
	bq_timer_start(t, STARTUP_PROBE_MS);
}

static void startup_deadline_cb(struct bq_timer *t, void *ud)
{
	struct sim *s = ud;

	for (int i = 0; i < s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];

		if (!n->ready) {
			say_err("node %d (%s) did not answer on its control socket %s within %d s; "
				"see %s",
				n->idx, n->name, n->ctl, STARTUP_TIMEOUT_MS / 1000, n->log);
		}
	}
	sim_shutdown(s, 1);
}

/* ---- set-up ------------------------------------------------------------------------ */

static int find_node_bin(struct sim *s)
{
	char self[SIM_DIR_MAX];
	ssize_t n;
	char *slash;

	if (s->cfg.node_bin) {
		snprintf(s->node_bin, sizeof(s->node_bin), "%s", s->cfg.node_bin);
	} else {
		n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0) {
			say_err("cannot find my own executable (/proc/self/exe): %s; use "
				"--node-bin",
				strerror(errno));
			return 2;
		}
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
		}
		snprintf(s->node_bin, sizeof(s->node_bin), "%s/blueq-node", self);
	}
	if (access(s->node_bin, X_OK) < 0) {
		say_err("--node-bin: %s is not an executable blueq-node (%s)", s->node_bin,
			strerror(errno));
		return 2;
	}
	return 0;
}

static int setup(struct sim *s)
{
	char err[400];
	char real[PATH_MAX];
	uint8_t key[BQ_KEY_LEN];
	int rc;

	if (sim_parse_percent(s->cfg.loss, &s->loss_ppm) < 0) {
		say_err("--loss: '%s' is not a percentage 0..100", s->cfg.loss);
		return 2;
	}
	s->latency_ms = s->cfg.latency_ms;
	s->n_nodes = (int)s->cfg.nodes;
	s->rng = s->cfg.seed ? (uint64_t)s->cfg.seed
			     : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
	if (s->rng == 0) {
		s->rng = 0x9E3779B97F4A7C15ULL;
	}
	if (sim_topology(s, s->cfg.topology, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 2;
	}
	if (sim_bots_check(s, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 2;
	}
	rc = find_node_bin(s);
	if (rc) {
		return rc;
	}
	rc = mkdir_p(s->cfg.dir);
	if (rc < 0 || !realpath(s->cfg.dir, real)) {
		say_err("--dir: cannot create %s: %s", s->cfg.dir, strerror(rc < 0 ? -rc : errno));
		return 2;
	}
	if (strlen(real) >= sizeof(s->dir)) {
		say_err("--dir: %s is too long", real);
		return 2;
	}
	memcpy(s->dir, real, strlen(real) + 1); /* length checked just above */
	if (s->cfg.control) {
		snprintf(s->control, sizeof(s->control), "%s", s->cfg.control);
	} else {
		snprintf(s->control, sizeof(s->control), "%s/sim.ctl", s->dir);
	}
	if (s->cfg.addr_map) {
		snprintf(s->addr_map, sizeof(s->addr_map), "%s", s->cfg.addr_map);
	} else {
		bq_addrmap_default_write_path(s->addr_map, sizeof(s->addr_map));
	}
	snprintf(s->key_file, sizeof(s->key_file), "%s/network.key", s->dir);
	if (bq_auth_load_or_create_key(s->key_file, key, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	s->auth = bq_auth_new(key);
	memset(key, 0, sizeof(key));
	if (!s->auth) {
		say_err("out of memory");
		return 1;
	}
	if (sim_ctl_start(s, err, sizeof(err)) < 0) {
		say_err("--control: %s (is another blueq-sim running on %s?)", err, s->dir);
		return 1;
	}
	if (sim_air_start(s, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 1;
	}
	if (sim_nodes_prepare(s, err, sizeof(err)) < 0) {
		say_err("%s", err);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sim *s = bq_calloc(1, sizeof(*s));
	char err[400];
	int rc;

	if (!s) {
		say_err("out of memory");
		return 1;
	}
	rc = bq_opt_parse(options, &s->cfg, argc, argv, PROG, synopsis, err, sizeof(err));
	if (rc != 0) {
		if (rc < 0) {
			say_err("%s", err);
		}
		bq_opt_free(options, &s->cfg);
		bq_free(s);
		return rc < 0 ? 2 : 0;
	}
	signal(SIGPIPE, SIG_IGN);
	s->log = bq_log_new(PROG);
	s->loop = s->log ? bq_loop_new(NULL, s->log) : NULL;
	if (!s->loop) {
		say_err("out of memory");
		rc = 1;
		goto out;
	}
	bq_log_set_level(s->log, (enum bq_log_level)s->cfg.log_level);
	if (s->cfg.debug && bq_log_set_debug_modules(s->log, s->cfg.debug) < 0) {
		say_err("out of memory");
		rc = 1;
		goto out;
	}
	s->startup_tick = bq_timer_new(s->loop, startup_tick_cb, s);
	s->startup_deadline = bq_timer_new(s->loop, startup_deadline_cb, s);
	s->kill_timer = bq_timer_new(s->loop, kill_timer_cb, s);
	s->converge_tick = bq_timer_new(s->loop, converge_tick_cb, s);
	if (!s->startup_tick || !s->startup_deadline || !s->kill_timer || !s->converge_tick ||
	    bq_loop_signal(s->loop, SIGCHLD, on_sigchld, s) < 0 ||
	    bq_loop_signal(s->loop, SIGTERM, on_stop_signal, s) < 0 ||
	    bq_loop_signal(s->loop, SIGINT, on_stop_signal, s) < 0) {
		say_err("cannot set up the event loop");
		rc = 1;
		goto out;
	}
	rc = setup(s);
	if (rc) {
		goto out;
	}
	for (int i = 0; i < s->n_nodes; i++) {
		if (sim_node_spawn(s, &s->nodes[i], err, sizeof(err)) < 0) {
			say_err("%s", err);
			sim_shutdown(s, 1);
			break;
		}
	}
	if (!s->stopping) {
		bq_timer_start(s->startup_tick, 0);
		bq_timer_start(s->startup_deadline, STARTUP_TIMEOUT_MS);
	}
	if (!s->stopping || !sim_all_dead(s)) {
		bq_loop_run(s->loop);
	}
	rc = s->exit_code;
	/* SIGKILL leftovers (the loop may have stopped on the grace timer). */
	for (int i = 0; i < s->n_nodes; i++) {
		if (s->nodes[i].alive) {
			sim_node_signal(s, &s->nodes[i], SIGKILL);
		}
	}
	sim_reap(s);
out:
	if (s->map_written) {
		unlink(s->addr_map);
	}
	if (s->loop) {
		sim_bots_free(s);
		sim_ctl_stop(s);
		sim_air_stop(s);
		bq_timer_free(s->startup_tick);
		bq_timer_free(s->startup_deadline);
		bq_timer_free(s->kill_timer);
		bq_timer_free(s->converge_tick);
		bq_loop_free(s->loop);
	}
	sim_nodes_free(s);
	if (s->auth) {
		bq_auth_free(s->auth);
	}
	bq_free(s->edges);
	bq_log_free(s->log);
	bq_opt_free(options, &s->cfg);
	bq_free(s);
	return rc;
}
