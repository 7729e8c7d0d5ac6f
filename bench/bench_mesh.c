/* SPDX-License-Identifier: MIT */
/*
 * bench_mesh: the node's own speed, with no simulator "air" in between.
 *
 * Starts real blueq-node processes peered directly over UNIX sockets in a line
 * (node 1 - node 2 - node 3), attaches a sender at node 1 and receivers at nodes 2
 * and 3, then measures:
 *   - relay throughput: MSG frames per second from node 1 through node 2 (the relay)
 *     to node 3, with a bounded window of unsent bytes at the sender;
 *   - 1-hop latency: one message at a time, node 1 -> node 2, send to arrival
 *     (both ends live in this process, so one clock times both).
 * Prints a table beside the targets of ARCHITECTURE.md section 9. A benchmark, not a
 * test: it never fails on a slow figure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "mesh/link.h"
#include "proto/frame.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define NODES 3

struct endpoint {
	const char *user;
	struct bq_link *link;
	bool hello, attached;
	uint64_t received;
	uint64_t last_rx_id;
	uint64_t last_rx_us;
};

struct bench {
	struct bq_loop *loop;
	char dir[256]; /* short: UNIX socket paths below it must fit in 108 bytes */
	pid_t pids[NODES];
	struct endpoint sender, recv2, recv3;
	/* throughput phase */
	bool pumping;
	uint64_t to_send, sent;
	const char *target;
};

static uint64_t now_us(void)
{
	return bq_clock_now_us(bq_clock_system());
}

static void die(const char *what)
{
	fprintf(stderr, "bench_mesh: %s\n", what);
	exit(1);
}

static void spawn_node(struct bench *b, int i, const char *node_bin)
{
	char addr[32], listen[320], ctl[320], key[320], neigh[320], logpath[320];
	pid_t pid;

	snprintf(addr, sizeof(addr), i == 1 ? "D8:3A:DD:03:1E:77" : "02:00:00:00:00:%02d", i);
	snprintf(listen, sizeof(listen), "unix:%s/n%d.sock", b->dir, i);
	snprintf(ctl, sizeof(ctl), "%s/n%d.ctl", b->dir, i);
	snprintf(key, sizeof(key), "%s/network.key", b->dir);
	snprintf(neigh, sizeof(neigh), "unix:%s/n%d.sock", b->dir, i + 1);
	snprintf(logpath, sizeof(logpath), "%s/n%d.log", b->dir, i);
	pid = fork();
	if (pid < 0) {
		die("fork failed");
	}
	if (pid == 0) {
		const char *argv[24];
		int a = 0;
		int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		argv[a++] = node_bin;
		argv[a++] = "--addr";
		argv[a++] = addr;
		argv[a++] = "--listen";
		argv[a++] = listen;
		argv[a++] = "--control";
		argv[a++] = ctl;
		argv[a++] = "--key-file";
		argv[a++] = key;
		argv[a++] = "--announce-interval";
		argv[a++] = "1s";
		argv[a++] = "--log-level";
		argv[a++] = "warn";
		if (i < NODES) {
			argv[a++] = "--neighbour";
			argv[a++] = neigh;
		}
		argv[a] = NULL;
		execv(node_bin, (char *const *)argv);
		_exit(127);
	}
	b->pids[i - 1] = pid;
}

/* Blocking one-line request to a node's control socket (set-up only, before the loop runs). */
static int control_query(const char *path, const char *cmd, char *reply, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t got = 0;

	if (fd < 0) {
		return -errno;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    write(fd, cmd, strlen(cmd)) < 0 || write(fd, "\n", 1) < 0) {
		close(fd);
		return -errno;
	}
	while (got + 1 < cap) {
		ssize_t n = read(fd, reply + got, cap - 1 - got);

		if (n <= 0) {
			break;
		}
		got += (size_t)n;
		if (memchr(reply, '\n', got)) {
			break;
		}
	}
	reply[got] = '\0';
	close(fd);
	return 0;
}

static void on_frame(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
		     size_t raw_len, void *ud)
{
	struct endpoint *e = ud;

	if (f->type == BQ_T_HELLO) {
		e->hello = true;
	} else if (f->type == BQ_T_ACK) {
		struct bq_ack ack;

		if (bq_ack_decode(f, &ack) == 0 && ack.status == BQ_ACK_OK) {
			e->attached = true;
		}
	} else if (f->type == BQ_T_MSG) {
		e->received++;
		e->last_rx_id = f->msg_id;
		e->last_rx_us = now_us();
	}
}

static void on_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	fprintf(stderr, "bench_mesh: link closed: %s\n", reason);
	exit(1);
}

static bool endpoint_ready(void *ud)
{
	struct endpoint *e = ud;

	return e->hello && e->attached;
}

static bool wait_until(struct bq_loop *loop, bool (*done)(void *), void *ud, uint64_t ms)
{
	uint64_t end = now_us() + ms * 1000;

	while (!done(ud)) {
		if (now_us() > end) {
			return false;
		}
		bq_loop_run_once(loop, 20);
	}
	return true;
}

static void send_hello_attach(struct endpoint *e)
{
	uint8_t payload[128];
	struct bq_hello h = {.role = BQ_ROLE_CLIENT, .name = "bench", .name_len = 5};
	struct bq_attach at = {.name = e->user, .name_len = (uint8_t)strlen(e->user)};
	struct bq_frame f = {.version = BQ_PROTO_VERSION, .type = BQ_T_HELLO};
	int n = bq_hello_encode(&h, payload, sizeof(payload));

	f.msg_id = bq_link_new_msg_id();
	f.payload = payload;
	f.payload_len = (uint16_t)n;
	bq_link_send(e->link, &f);
	n = bq_attach_encode(&at, payload, sizeof(payload));
	f.type = BQ_T_ATTACH;
	f.msg_id = bq_link_new_msg_id();
	f.src = e->user;
	f.src_len = (uint8_t)strlen(e->user);
	f.payload_len = (uint16_t)n;
	bq_link_send(e->link, &f);
}

static void connect_endpoint(struct bench *b, struct endpoint *e, int node)
{
	char text[320], err[256];
	struct bq_addr addr;
	struct bq_conn *c;
	struct bq_link_config cfg = {.name = e->user, .max_out_bytes = 4 << 20};

	snprintf(text, sizeof(text), "unix:%s/n%d.sock", b->dir, node);
	if (bq_addr_parse(text, &addr, err, sizeof(err)) < 0) {
		die(err);
	}
	for (int tries = 0;; tries++) {
		if (bq_conn_connect(b->loop, &addr, NULL, NULL, &c, err, sizeof(err)) == 0) {
			break;
		}
		if (tries > 100) {
			die(err);
		}
		usleep(50000);
	}
	/* The link takes over the connection's callback; a unix connect completes at once
	 * or reports through the link's close path. */
	e->link = bq_link_new(b->loop, c, &cfg, NULL);
	if (!e->link) {
		die("out of memory");
	}
	bq_link_set_handlers(e->link, on_frame, on_close, e);
	send_hello_attach(e);
	if (!wait_until(b->loop, endpoint_ready, e, 5000)) {
		die("attach did not complete within 5 s (see the node logs in the bench "
		    "directory)");
	}
}

static void send_msg(struct bench *b, const char *dst, uint64_t id)
{
	static const char text[] = "benchmark payload: 32 bytes ....";
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = BQ_T_MSG,
		.ttl = BQ_DEFAULT_TTL,
		.msg_id = id,
		.timestamp_ms = bq_wall_ms(),
		.src = b->sender.user,
		.src_len = (uint8_t)strlen(b->sender.user),
		.dst = dst,
		.dst_len = (uint8_t)strlen(dst),
		.payload = (const uint8_t *)text,
		.payload_len = sizeof(text) - 1,
	};

	bq_link_send(b->sender.link, &f);
}

/* Keep at most ~256 KiB unsent at the sender: enough to fill the pipes, bounded. */
static void pump(struct bq_loop *loop, void *ud)
{
	struct bench *b = ud;

	while (b->pumping && b->sent < b->to_send && bq_link_pending(b->sender.link) < 256 * 1024) {
		send_msg(b, b->target, ++b->sent);
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool node_knows(const char *ctl, const char *user)
{
	char reply[65536];
	char needle[80];

	if (control_query(ctl, "users", reply, sizeof(reply)) < 0) {
		return false;
	}
	snprintf(needle, sizeof(needle), "\"%s\"", user);
	return strstr(reply, needle) != NULL;
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	char node_bin[PATH_MAX], ctl[320];
	uint64_t frames = 300000, samples = 2000;
	uint64_t *lat;
	uint64_t t0, t1, received0;
	double rate, p50, p99;

	signal(SIGPIPE, SIG_IGN);
	if (argc > 1) {
		snprintf(node_bin, sizeof(node_bin), "%s", argv[1]);
	} else {
		ssize_t n = readlink("/proc/self/exe", node_bin, sizeof(node_bin) - 16);

		if (n < 0) {
			die("cannot find own executable");
		}
		node_bin[n] = '\0';
		snprintf(strrchr(node_bin, '/'), 16, "/../blueq-node");
	}
	if (argc > 2) {
		int64_t v;

		if (bq_opt_parse_int(argv[2], &v) < 0 || v < 1000) {
			fprintf(stderr, "usage: bench_mesh [NODE_BIN] [FRAMES>=1000]\n");
			return 2;
		}
		frames = (uint64_t)v;
	}
	snprintf(b.dir, sizeof(b.dir), "%s/bq-bench.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(b.dir)) {
		die("mkdtemp failed");
	}
	for (int i = NODES; i >= 1; i--) {
		spawn_node(&b, i, node_bin);
		usleep(100000);
	}
	b.loop = bq_loop_new(NULL, NULL);
	b.sender.user = "bench-src";
	b.recv2.user = "bench-dst2";
	b.recv3.user = "bench-dst3";
	connect_endpoint(&b, &b.recv3, 3);
	connect_endpoint(&b, &b.recv2, 2);
	connect_endpoint(&b, &b.sender, 1);
	snprintf(ctl, sizeof(ctl), "%s/n1.ctl", b.dir);
	for (int i = 0;
	     i < 100 && !(node_knows(ctl, "bench-dst3") && node_knows(ctl, "bench-dst2")); i++) {
		bq_loop_run_once(b.loop, 100);
	}
	if (!node_knows(ctl, "bench-dst3")) {
		die("node 1 never learned about the receiver at node 3");
	}

	/* Throughput: node 1 -> node 2 (relay) -> node 3. */
	b.target = b.recv3.user;
	b.to_send = frames;
	b.pumping = true;
	bq_loop_before_sleep(b.loop, pump, &b);
	received0 = b.recv3.received;
	t0 = now_us();
	pump(b.loop, &b);
	while (b.recv3.received - received0 < frames && now_us() - t0 < 60 * 1000000ull) {
		bq_loop_run_once(b.loop, 100);
	}
	t1 = b.recv3.last_rx_us ? b.recv3.last_rx_us : now_us();
	b.pumping = false;
	rate = (double)(b.recv3.received - received0) / ((double)(t1 - t0) / 1e6);

	/* Let the queues drain before timing single messages. */
	for (int i = 0; i < 20; i++) {
		bq_loop_run_once(b.loop, 50);
	}

	/* 1-hop latency: node 1 -> node 2, one message in flight. */
	lat = calloc(samples, sizeof(*lat));
	for (uint64_t i = 0; i < samples; i++) {
		uint64_t id = 0x1000000000ull + i, start = now_us();

		send_msg(&b, b.recv2.user, id);
		while (b.recv2.last_rx_id != id && now_us() - start < 2000000) {
			bq_loop_run_once(b.loop, 10);
		}
		lat[i] = b.recv2.last_rx_id == id ? b.recv2.last_rx_us - start : 2000000;
	}
	qsort(lat, samples, sizeof(*lat), cmp_u64);
	p50 = lat[samples / 2] / 1000.0;
	p99 = lat[samples * 99 / 100] / 1000.0;

	printf("\n| what (3 blueq-node processes, direct UNIX-socket peering) | measured | target "
	       "|\n");
	printf("|---|---|---|\n");
	printf("| relay throughput, node 1 -> node 2 -> node 3 | %.0f frames/s (%" PRIu64
	       " of %" PRIu64 " delivered) | >= 100,000 frames/s |\n",
	       rate, b.recv3.received - received0, frames);
	printf("| 1-hop latency p50, client -> node 1 -> node 2 -> client | %.3f ms | <= 2 ms |\n",
	       p50);
	printf("| 1-hop latency p99 | %.3f ms | <= 10 ms |\n", p99);
	fflush(stdout);

	free(lat);
	bq_link_free(b.sender.link);
	bq_link_free(b.recv2.link);
	bq_link_free(b.recv3.link);
	bq_loop_free(b.loop);
	for (int i = 0; i < NODES; i++) {
		kill(b.pids[i], SIGTERM);
		waitpid(b.pids[i], NULL, 0);
	}
	return 0;
}
