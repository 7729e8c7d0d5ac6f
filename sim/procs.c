/* SPDX-License-Identifier: MIT */
/* blueq-node processes: argument vectors, spawn (fork + execv), signals, reaping. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "sim.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

static const uint8_t ODIN_MAC[BQ_BDADDR_LEN] = { 0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77 };

static int argv_push(char ***v, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int argv_push(char ***v, size_t *n, const char *fmt, ...)
{
	char buf[SIM_PATH_MAX + 64];
	char **nv;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	nv = bq_realloc(*v, (*n + 2) * sizeof(*nv));
	if (!nv) {
		return -ENOMEM;
	}
	*v = nv;
	nv[*n] = bq_strdup(buf);
	if (!nv[*n]) {
		return -ENOMEM;
	}
	(*n)++;
	nv[*n] = NULL;
	return 0;
}

static int path_fits(const char *p, char *err, size_t errlen)
{
	/* UNIX socket paths are limited by sun_path. */
	if (strlen(p) >= BQ_ADDR_PATH_MAX) {
		snprintf(err, errlen, "--dir: socket path %s is too long (UNIX sockets allow %d "
			 "bytes); use a shorter --dir", p, BQ_ADDR_PATH_MAX - 1);
		return -ENAMETOOLONG;
	}
	return 0;
}

int sim_nodes_prepare(struct sim *s, char *err, size_t errlen)
{
	for (int i = 0; i < s->n_nodes; i++) {
		struct sim_node *n = &s->nodes[i];
		char **v = NULL;
		size_t c = 0;
		int rc = 0;

		n->idx = i + 1;
		if (i == 0) {
			memcpy(n->mac, ODIN_MAC, BQ_BDADDR_LEN);
			snprintf(n->name, sizeof(n->name), "Odin");
		} else {
			static const uint8_t base[BQ_BDADDR_LEN] = { 0x02, 0, 0, 0, 0, 0 };

			memcpy(n->mac, base, BQ_BDADDR_LEN);
			n->mac[5] = (uint8_t)(i + 1);
			snprintf(n->name, sizeof(n->name), "node-%d", i + 1);
		}
		bq_bdaddr_format(n->mac, n->mac_text);
		snprintf(n->sock, sizeof(n->sock), "%s/node-%d.sock", s->dir, i + 1);
		snprintf(n->ctl, sizeof(n->ctl), "%s/node-%d.ctl", s->dir, i + 1);
		snprintf(n->log, sizeof(n->log), "%s/node-%d.log", s->dir, i + 1);
		if (path_fits(n->sock, err, errlen) < 0 || path_fits(n->ctl, err, errlen) < 0) {
			return -ENAMETOOLONG;
		}
		rc |= argv_push(&v, &c, "%s", s->node_bin);
		rc |= argv_push(&v, &c, "--addr");
		rc |= argv_push(&v, &c, "%s", n->mac_text);
		rc |= argv_push(&v, &c, "--name");
		rc |= argv_push(&v, &c, "%s", n->name);
		rc |= argv_push(&v, &c, "--listen");
		rc |= argv_push(&v, &c, "unix:%s", n->sock);
		rc |= argv_push(&v, &c, "--control");
		rc |= argv_push(&v, &c, "%s", n->ctl);
		rc |= argv_push(&v, &c, "--key-file");
		rc |= argv_push(&v, &c, "%s", s->key_file);
		rc |= argv_push(&v, &c, "--log-level");
		rc |= argv_push(&v, &c, "%s", level_names[s->cfg.node_log_level & 3]);
		for (int k = 0; k < s->n_edges; k++) {
			if (s->edges[k].a == i + 1) {
				rc |= argv_push(&v, &c, "--neighbour");
				rc |= argv_push(&v, &c, "unix:%s", s->edges[k].sock);
			}
		}
		if (s->cfg.announce_interval_ms) {
			rc |= argv_push(&v, &c, "--announce-interval");
			rc |= argv_push(&v, &c, "%" PRIu64 "ms", s->cfg.announce_interval_ms);
		}
		if (s->cfg.expiry_ms) {
			rc |= argv_push(&v, &c, "--expiry");
			rc |= argv_push(&v, &c, "%" PRIu64 "ms", s->cfg.expiry_ms);
		}
		n->argv = v;
		if (rc) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

void sim_nodes_free(struct sim *s)
{
	for (int i = 0; i < s->n_nodes; i++) {
		char **v = s->nodes[i].argv;

		for (size_t k = 0; v && v[k]; k++) {
			bq_free(v[k]);
		}
		bq_free(v);
		s->nodes[i].argv = NULL;
	}
}

/* In the child between fork and exec: only async-signal-safe calls. */
static void child_exec(const struct sim_node *n, int logfd)
{
	sigset_t none;
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

	/* The loop blocked SIGCHLD/SIGTERM/SIGINT for its signalfd; a node needs them back. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	/* If the simulator dies without cleaning up, its nodes follow. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (devnull >= 0) {
		dup2(devnull, STDIN_FILENO);
	}
	dup2(logfd, STDOUT_FILENO);
	dup2(logfd, STDERR_FILENO);
	execv(n->argv[0], n->argv);
	{
		static const char msg[] = "blueq-sim: cannot execute blueq-node\n";
		ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);

		(void)w;
	}
	_exit(127);
}

int sim_node_spawn(struct sim *s, struct sim_node *n, char *err, size_t errlen)
{
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (n->starts == 0 ? O_TRUNC : O_APPEND);
	int logfd = open(n->log, flags, 0644);
	char hdr[SIM_PATH_MAX * 2];
	pid_t pid;
	int k;

	if (logfd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", n->log, strerror(errno));
		return -errno;
	}
	k = snprintf(hdr, sizeof(hdr), "--- blueq-sim: start %u of node %d (%s %s):",
		     n->starts + 1, n->idx, n->name, n->mac_text);
	for (size_t i = 0; n->argv[i] && k > 0 && (size_t)k < sizeof(hdr); i++) {
		k += snprintf(hdr + k, sizeof(hdr) - (size_t)k, " %s", n->argv[i]);
	}
	if (k > 0 && (size_t)k < sizeof(hdr) - 1) {
		hdr[k++] = '\n';
		if (write(logfd, hdr, (size_t)k) < 0) {
			/* the log is best effort */
		}
	}
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(logfd);
		snprintf(err, errlen, "cannot start node %d: fork: %s", n->idx, strerror(e));
		return -e;
	}
	if (pid == 0) {
		child_exec(n, logfd);
	}
	close(logfd);
	n->pid = pid;
	n->alive = true;
	n->starts++;
	bq_info(s->log, "sim", "msg=\"node started\" node=%d name=%s addr=%s pid=%ld", n->idx,
		n->name, n->mac_text, (long)pid);
	return 0;
}

int sim_node_signal(struct sim *s, struct sim_node *n, int signo)
{
	if (!n->alive || n->pid <= 0) {
		return -ESRCH;
	}
	if (kill(n->pid, signo) < 0) {
		return -errno;
	}
	return 0;
}

void sim_reap(struct sim *s)
{
	for (;;) {
		int status = 0;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid <= 0) {
			return;
		}
		for (int i = 0; i < s->n_nodes; i++) {
			struct sim_node *n = &s->nodes[i];

			if (n->pid != pid) {
				continue;
			}
			n->alive = false;
			n->last_status = status;
			if (WIFSIGNALED(status)) {
				bq_info(s->log, "sim",
					"msg=\"node exited\" node=%d pid=%ld signal=%d", n->idx,
					(long)pid, WTERMSIG(status));
			} else {
				bq_info(s->log, "sim",
					"msg=\"node exited\" node=%d pid=%ld status=%d", n->idx,
					(long)pid, WEXITSTATUS(status));
			}
		}
	}
}

bool sim_all_dead(const struct sim *s)
{
	for (int i = 0; i < s->n_nodes; i++) {
		if (s->nodes[i].alive) {
			return false;
		}
	}
	return true;
}
