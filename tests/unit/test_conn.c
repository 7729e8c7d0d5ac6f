/* SPDX-License-Identifier: MIT */
/*
 * Connections end to end on a real loop: tcp on 127.0.0.1, unix in a temp dir, and the
 * in-memory pair. Bulk transfers use tiny socket buffers so partial writes, -EAGAIN and
 * want_write are certain to happen.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "loop/loop.h"
#include "testutil.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define BULK (1024 * 1024)

static struct bq_loop *loop;
static char err[256];

static void setup(void)
{
	loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(loop);
	err[0] = '\0';
}

static void teardown(void)
{
	bq_loop_free(loop);
	loop = NULL;
}

static struct bq_addr addr_of(const char *s)
{
	struct bq_addr a;

	ck_assert_msg(bq_addr_parse(s, &a, err, sizeof(err)) == 0, "%s", err);
	return a;
}

/* ---- one end of a bulk exchange ----------------------------------------------------- */

struct side {
	struct bq_conn *c;
	const char *name;
	uint8_t seed; /* pattern of the bytes this side sends */
	size_t out_len, out_off;
	uint8_t *in; /* what arrived */
	size_t in_len, in_cap;
	bool connected, error, eof, shrink;
	int partial_writes, eagains, writable_events, readable_events;
	int after_close_events; /* must stay 0 */
	bool close_on_read;	/* close inside the READABLE callback */
	bool closed;
};

static uint8_t pattern(uint8_t seed, size_t i)
{
	return (uint8_t)(i * 131 + seed + (i >> 12));
}

static void pump_write(struct side *s)
{
	uint8_t chunk[8192];

	while (s->out_off < s->out_len) {
		size_t left = s->out_len - s->out_off;
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
		size_t half = n / 2;
		struct iovec iov[2];
		ssize_t w;
		size_t i;

		for (i = 0; i < n; i++) {
			chunk[i] = pattern(s->seed, s->out_off + i);
		}
		/* Two pieces, so writev's gathering is exercised too. */
		iov[0].iov_base = chunk;
		iov[0].iov_len = half;
		iov[1].iov_base = chunk + half;
		iov[1].iov_len = n - half;
		w = bq_conn_writev(s->c, iov, 2);
		if (w == -EAGAIN) {
			s->eagains++;
			bq_conn_want_write(s->c, true);
			return;
		}
		ck_assert_msg(w > 0, "%s: write returned %zd", s->name, w);
		if ((size_t)w < n) {
			s->partial_writes++;
		}
		s->out_off += (size_t)w;
	}
	bq_conn_want_write(s->c, false);
}

static void drain(struct side *s)
{
	for (;;) {
		uint8_t buf[3000]; /* odd size: reads do not line up with writes */
		ssize_t r = bq_conn_read(s->c, buf, sizeof(buf));

		if (r == -EAGAIN) {
			return;
		}
		if (r == 0) {
			s->eof = true;
			return;
		}
		ck_assert_msg(r > 0, "%s: read returned %zd (%s)", s->name, r,
			      bq_conn_error_text(s->c));
		ck_assert_uint_le(s->in_len + (size_t)r, s->in_cap);
		memcpy(s->in + s->in_len, buf, (size_t)r);
		s->in_len += (size_t)r;
	}
}

static void shrink_buffers(struct side *s)
{
	int small = 4096;
	int fd = bq_conn_fd(s->c);

	if (!s->shrink || fd < 0) {
		return;
	}
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
}

static void side_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	struct side *s = user_data;

	ck_assert_ptr_eq(c, s->c);
	if (s->closed) {
		s->after_close_events++;
		return;
	}
	if (events & BQ_CONN_ERROR) {
		s->error = true;
		return;
	}
	if (events & BQ_CONN_CONNECTED) {
		ck_assert(bq_conn_connected(c));
		s->connected = true;
		shrink_buffers(s);
		pump_write(s);
	}
	if (events & BQ_CONN_READABLE) {
		s->readable_events++;
		if (s->close_on_read) {
			/* Drained first: unread bytes would make the kernel send RST, not FIN. */
			drain(s);
			s->closed = true;
			bq_conn_close(c);
			return;
		}
		drain(s);
	}
	if (events & BQ_CONN_WRITABLE) {
		s->writable_events++;
		pump_write(s);
	}
}

static void side_init(struct side *s, const char *name, uint8_t seed, size_t out_len, size_t in_cap)
{
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->seed = seed;
	s->out_len = out_len;
	s->in_cap = in_cap;
	s->in = malloc(in_cap ? in_cap : 1);
	ck_assert_ptr_nonnull(s->in);
}

static void side_check_received(const struct side *s, uint8_t seed, size_t len)
{
	size_t i;

	ck_assert_uint_eq(s->in_len, len);
	for (i = 0; i < len; i++) {
		if (s->in[i] != pattern(seed, i)) {
			ck_abort_msg("%s: byte %zu is %u, expected %u", s->name, i, s->in[i],
				     pattern(seed, i));
		}
	}
}

/* The server side of a listener test: the accepted connection. */
struct server {
	struct side side;
	int accepted;
	bool free_listener_in_cb;
	struct bq_listener *l;
};

static void accept_cb(struct bq_listener *l, struct bq_conn *c, void *user_data)
{
	struct server *srv = user_data;

	srv->accepted++;
	if (srv->side.c) {
		/* Tests that accept more than one keep only the first. */
		bq_conn_close(c);
		return;
	}
	ck_assert(bq_conn_connected(c));
	srv->side.c = c;
	bq_conn_set_cb(c, side_cb, &srv->side);
	shrink_buffers(&srv->side);
	pump_write(&srv->side);
	if (srv->free_listener_in_cb) {
		bq_listener_free(l);
		srv->l = NULL;
	}
}

struct pair {
	struct side *a, *b;
};

static bool exchanged(void *user_data)
{
	struct pair *p = user_data;

	return p->a->in_len == p->a->in_cap && p->b->in_len == p->b->in_cap &&
	       p->a->out_off == p->a->out_len && p->b->out_off == p->b->out_len;
}

static bool got_eof(void *user_data)
{
	return ((struct side *)user_data)->eof;
}

static bool got_error(void *user_data)
{
	return ((struct side *)user_data)->error;
}

static bool got_connected(void *user_data)
{
	return ((struct side *)user_data)->connected;
}

static bool accepted_one(void *user_data)
{
	return ((struct server *)user_data)->accepted > 0;
}

/* Listen on addr, connect, move BULK bytes each way, close the client, see EOF. */
static void bulk_over(const char *listen_text, const char *peer_prefix)
{
	struct bq_addr la = addr_of(listen_text), ca;
	struct server srv = {0};
	struct side cli;
	struct pair p = {&cli, &srv.side};
	char text[BQ_ADDR_STRLEN];

	side_init(&cli, "client", 1, BULK, BULK);
	side_init(&srv.side, "server", 2, BULK, BULK);
	cli.shrink = srv.side.shrink = true;
	ck_assert_msg(bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err)) == 0,
		      "%s", err);
	ca = la;
	if (la.kind == BQ_ADDR_TCP) {
		ck_assert_int_gt(bq_listener_port(srv.l), 0);
		ca.port = (uint16_t)bq_listener_port(srv.l);
	}
	ck_assert_int_eq(bq_conn_connect(loop, &ca, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(cli.c);
	ck_assert(!bq_conn_connected(cli.c));
	ck_assert_int_eq(bq_conn_kind(cli.c), la.kind);
	ck_assert_int_ge(bq_conn_fd(cli.c), 0);
	bq_addr_format(&ca, text, sizeof(text));
	ck_assert_str_eq(bq_conn_peer(cli.c), text);

	ck_assert(bq_test_run_until(loop, exchanged, &p, 8000));
	ck_assert(cli.connected);
	ck_assert_int_eq(srv.accepted, 1);
	side_check_received(&cli, 2, BULK);
	side_check_received(&srv.side, 1, BULK);
	/* The tiny buffers forced the slow paths on both ends. */
	ck_assert_int_gt(cli.eagains + cli.partial_writes, 0);
	ck_assert_int_gt(srv.side.eagains + srv.side.partial_writes, 0);
	ck_assert_int_gt(cli.writable_events + srv.side.writable_events, 0);
	ck_assert_msg(strncmp(bq_conn_peer(srv.side.c), peer_prefix, strlen(peer_prefix)) == 0,
		      "peer %s", bq_conn_peer(srv.side.c));
	ck_assert_int_eq(bq_conn_error(cli.c), 0);
	ck_assert_str_eq(bq_conn_error_text(cli.c), "");

	bq_conn_close(cli.c);
	ck_assert(bq_test_run_until(loop, got_eof, &srv.side, 2000));
	ck_assert_int_eq(cli.after_close_events, 0);
	/* Writing to a peer that is gone fails with a code, never SIGPIPE. */
	{
		struct iovec iov = {.iov_base = "x", .iov_len = 1};
		ssize_t w = 0;
		int i;

		for (i = 0; i < 100 && w >= 0; i++) {
			w = bq_conn_writev(srv.side.c, &iov, 1);
			bq_loop_run_once(loop, 1);
		}
		ck_assert_int_lt(w, 0);
		ck_assert(w == -EPIPE || w == -ECONNRESET);
		ck_assert_int_eq(bq_conn_error(srv.side.c), (int)w);
		ck_assert_str_ne(bq_conn_error_text(srv.side.c), "");
	}
	bq_conn_close(srv.side.c);
	bq_listener_free(srv.l);
	free(cli.in);
	free(srv.side.in);
}

START_TEST(tcp_bulk)
{
	bulk_over("tcp://127.0.0.1:0", "tcp://127.0.0.1:");
}
END_TEST

START_TEST(unix_bulk)
{
	char path[200], text[220];
	const char *dir = bq_test_tmpdir();

	ck_assert_ptr_nonnull(dir);
	snprintf(path, sizeof(path), "%s/bulk.sock", dir);
	snprintf(text, sizeof(text), "unix:%s", path);
	bulk_over(text, "unix:");
	/* The listener removed the socket file it created. */
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);
	rmdir(dir);
}
END_TEST

START_TEST(mem_bulk)
{
	struct side a, b;
	struct pair p = {&a, &b};

	side_init(&a, "a", 1, BULK, BULK);
	side_init(&b, "b", 2, BULK, BULK);
	ck_assert_int_eq(bq_conn_mem_pair(loop, 5000, &a.c, &b.c), 0);
	bq_conn_set_cb(a.c, side_cb, &a);
	bq_conn_set_cb(b.c, side_cb, &b);
	pump_write(&a);
	pump_write(&b);
	ck_assert_int_eq(a.out_off, 5000); /* the peer's buffer holds exactly 5000 */
	ck_assert_int_eq(a.partial_writes, 1);
	ck_assert_int_eq(a.eagains, 1);
	ck_assert(bq_test_run_until(loop, exchanged, &p, 8000));
	side_check_received(&a, 2, BULK);
	side_check_received(&b, 1, BULK);
	ck_assert_int_gt(a.writable_events, 100);
	bq_conn_close(a.c);
	ck_assert(bq_test_run_until(loop, got_eof, &b, 1000));
	bq_conn_close(b.c);
	free(a.in);
	free(b.in);
}
END_TEST

/* "localhost" may resolve to ::1 first: the connect falls through to 127.0.0.1. */
START_TEST(tcp_localhost_fallback)
{
	struct bq_addr la = addr_of("tcp://127.0.0.1:0"), ca;
	struct server srv = {0};
	struct side cli;
	char s[64];

	side_init(&cli, "client", 1, 0, 0);
	side_init(&srv.side, "server", 2, 0, 0);
	ck_assert_int_eq(bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err)), 0);
	snprintf(s, sizeof(s), "tcp://localhost:%d", bq_listener_port(srv.l));
	ca = addr_of(s);
	ck_assert_int_eq(bq_conn_connect(loop, &ca, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert(bq_test_run_until(loop, got_connected, &cli, 2000));
	ck_assert(bq_test_run_until(loop, accepted_one, &srv, 2000));
	ck_assert_str_eq(bq_conn_peer(cli.c), s);
	ck_assert_int_eq(bq_conn_error(cli.c), 0);
	bq_conn_close(cli.c);
	bq_conn_close(srv.side.c);
	bq_listener_free(srv.l);
	free(cli.in);
	free(srv.side.in);
}
END_TEST

START_TEST(tcp_ipv6)
{
	struct bq_addr la = addr_of("tcp://[::1]:0");
	struct server srv = {0};
	struct side cli;
	int r;

	side_init(&cli, "client", 1, 0, 0);
	side_init(&srv.side, "server", 2, 0, 0);
	r = bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err));
	if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT) {
		/* No IPv6 loopback on this machine. */
		free(cli.in);
		free(srv.side.in);
		return;
	}
	ck_assert_msg(r == 0, "%s", err);
	la.port = (uint16_t)bq_listener_port(srv.l);
	ck_assert_int_eq(bq_conn_connect(loop, &la, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert(bq_test_run_until(loop, accepted_one, &srv, 2000));
	ck_assert(bq_test_run_until(loop, got_connected, &cli, 2000));
	ck_assert_msg(strncmp(bq_conn_peer(srv.side.c), "tcp://[::1]:", 12) == 0, "%s",
		      bq_conn_peer(srv.side.c));
	bq_conn_close(cli.c);
	bq_conn_close(srv.side.c);
	bq_listener_free(srv.l);
	free(cli.in);
	free(srv.side.in);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------------- */

static void never_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	ck_abort_msg("callback after close");
}

static void never_accept(struct bq_listener *l, struct bq_conn *c, void *user_data)
{
	bq_conn_close(c);
}

/* A port that nobody listens on: bind one, note it, close it. */
static int dead_tcp_port(void)
{
	struct bq_addr a = addr_of("tcp://127.0.0.1:0");
	struct bq_listener *l;
	int port;

	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l, err, sizeof(err)), 0);
	port = bq_listener_port(l);
	bq_listener_free(l);
	return port;
}

START_TEST(tcp_refused)
{
	struct side cli;
	struct bq_addr a;
	char s[64], want[128];
	int port = dead_tcp_port();

	snprintf(s, sizeof(s), "tcp://127.0.0.1:%d", port);
	a = addr_of(s);
	side_init(&cli, "client", 1, 0, 0);
	ck_assert_int_eq(bq_conn_connect(loop, &a, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	/* Never inline: the callback comes from the loop. */
	ck_assert(!cli.error);
	ck_assert(bq_test_run_until(loop, got_error, &cli, 2000));
	ck_assert(!cli.connected);
	ck_assert_int_eq(bq_conn_error(cli.c), -ECONNREFUSED);
	snprintf(want, sizeof(want), "connection refused by tcp://127.0.0.1:%d", port);
	ck_assert_str_eq(bq_conn_error_text(cli.c), want);
	ck_assert(!bq_conn_connected(cli.c));
	ck_assert_int_eq(bq_conn_read(cli.c, s, sizeof(s)), -ECONNREFUSED);
	bq_conn_close(cli.c);
	free(cli.in);
}
END_TEST

START_TEST(unix_refused)
{
	struct side cli;
	struct bq_addr a;
	char path[200], text[220], want[300];
	const char *dir = bq_test_tmpdir();
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	int fd;

	ck_assert_ptr_nonnull(dir);
	/* Nothing at the path at all. */
	snprintf(path, sizeof(path), "%s/none.sock", dir);
	snprintf(text, sizeof(text), "unix:%s", path);
	a = addr_of(text);
	side_init(&cli, "client", 1, 0, 0);
	ck_assert_int_eq(bq_conn_connect(loop, &a, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert(!cli.error);
	ck_assert(bq_test_run_until(loop, got_error, &cli, 2000));
	ck_assert_int_eq(bq_conn_error(cli.c), -ENOENT);
	snprintf(want, sizeof(want), "nothing listens on %s (no such file)", text);
	ck_assert_str_eq(bq_conn_error_text(cli.c), want);
	bq_conn_close(cli.c);

	/* A socket file left behind by a dead process. */
	snprintf(path, sizeof(path), "%s/stale.sock", dir);
	snprintf(text, sizeof(text), "unix:%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(un.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	close(fd);
	a = addr_of(text);
	cli.error = false;
	ck_assert_int_eq(bq_conn_connect(loop, &a, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert(bq_test_run_until(loop, got_error, &cli, 2000));
	ck_assert_int_eq(bq_conn_error(cli.c), -ECONNREFUSED);
	snprintf(want, sizeof(want), "connection refused by %s", text);
	ck_assert_str_eq(bq_conn_error_text(cli.c), want);
	bq_conn_close(cli.c);
	unlink(path);
	rmdir(dir);
	free(cli.in);
}
END_TEST

/* Closing a connect that is still in progress: no callback, ever. */
START_TEST(close_while_connecting)
{
	struct bq_addr a;
	struct bq_conn *c;
	char s[64];
	int i;

	snprintf(s, sizeof(s), "tcp://127.0.0.1:%d", dead_tcp_port());
	a = addr_of(s);
	ck_assert_int_eq(bq_conn_connect(loop, &a, never_cb, NULL, &c, err, sizeof(err)), 0);
	bq_conn_close(c);
	for (i = 0; i < 10; i++) {
		bq_loop_run_once(loop, 5);
	}
}
END_TEST

START_TEST(tcp_port_in_use)
{
	struct bq_addr a = addr_of("tcp://127.0.0.1:0");
	struct bq_listener *l1, *l2 = (void *)1;
	char want[64];

	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l1, err, sizeof(err)), 0);
	a.port = (uint16_t)bq_listener_port(l1);
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l2, err, sizeof(err)),
			 -EADDRINUSE);
	ck_assert_ptr_null(l2);
	snprintf(want, sizeof(want), "tcp port %u is already in use", (unsigned)a.port);
	ck_assert_str_eq(err, want);
	bq_listener_free(l1);
	/* Freed: the port can be taken again at once (SO_REUSEADDR). */
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l2, err, sizeof(err)), 0);
	ck_assert_int_eq(bq_listener_port(l2), a.port);
	bq_listener_free(l2);
}
END_TEST

START_TEST(unix_stale_and_live)
{
	const char *dir = bq_test_tmpdir();
	char path[200], text[220], want[300];
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	struct bq_listener *l1, *l2;
	struct bq_addr a;
	struct server srv = {0};
	struct side cli;
	int fd;

	ck_assert_ptr_nonnull(dir);
	snprintf(path, sizeof(path), "%s/odin.sock", dir);
	snprintf(text, sizeof(text), "unix:%s", path);
	a = addr_of(text);

	/* Stale: bound, never listening, its process gone. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(un.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&un, sizeof(un)), 0);
	close(fd);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_msg(bq_listener_new(loop, &a, accept_cb, &srv, &l1, err, sizeof(err)) == 0, "%s",
		      err);

	/* Live: a second listener is refused, and the first keeps its file. */
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l2, err, sizeof(err)),
			 -EADDRINUSE);
	snprintf(want, sizeof(want), "unix socket %s is already in use", path);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(access(path, F_OK), 0);

	side_init(&cli, "client", 1, 0, 0);
	side_init(&srv.side, "server", 2, 0, 0);
	ck_assert_int_eq(bq_conn_connect(loop, &a, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	ck_assert(bq_test_run_until(loop, got_connected, &cli, 2000));
	ck_assert(bq_test_run_until(loop, accepted_one, &srv, 2000));
	bq_conn_close(cli.c);
	bq_conn_close(srv.side.c);
	bq_listener_free(l1);
	ck_assert_int_eq(access(path, F_OK), -1);

	/* Not a socket: never removed. */
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l2, err, sizeof(err)),
			 -EEXIST);
	snprintf(want, sizeof(want),
		 "cannot listen on unix:%s: the path exists and is not a socket", path);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(access(path, F_OK), 0);
	unlink(path);
	rmdir(dir);
	free(cli.in);
	free(srv.side.in);
}
END_TEST

START_TEST(listener_errors)
{
	struct bq_addr a = addr_of("tcp://203.0.113.7:0"); /* TEST-NET-3: not ours */
	struct bq_listener *l;

	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l, err, sizeof(err)),
			 -EADDRNOTAVAIL);
	ck_assert_str_eq(err, "cannot listen on tcp://203.0.113.7:0: the address is not on this "
			      "machine");
	a = addr_of("unix:/nonexistent-dir-bq/x.sock");
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l, err, sizeof(err)),
			 -ENOENT);
	ck_assert_str_eq(err, "cannot listen on unix:/nonexistent-dir-bq/x.sock: No such file or "
			      "directory");
	a = addr_of("mem:x");
	ck_assert_int_eq(bq_listener_new(loop, &a, never_accept, NULL, &l, err, sizeof(err)),
			 -EOPNOTSUPP);
	ck_assert_ptr_null(l);
}
END_TEST

START_TEST(connect_errors)
{
	struct bq_addr a = addr_of("mem:x");
	struct bq_conn *c = (void *)1;

	ck_assert_int_eq(bq_conn_connect(loop, &a, never_cb, NULL, &c, err, sizeof(err)),
			 -EOPNOTSUPP);
	ck_assert_ptr_null(c);
	ck_assert_str_eq(err, "cannot connect to mem:x: in-memory connections are made with "
			      "bq_conn_mem_pair");
	a = addr_of("tcp://no-such-host.invalid:1");
	ck_assert_int_lt(bq_conn_connect(loop, &a, never_cb, NULL, &c, err, sizeof(err)), 0);
	ck_assert_ptr_null(c);
	ck_assert_msg(strncmp(err, "cannot resolve host 'no-such-host.invalid': ", 44) == 0, "%s",
		      err);
}
END_TEST

/* ---- closing from inside callbacks ----------------------------------------------------- */

START_TEST(close_inside_read_cb)
{
	struct bq_addr la = addr_of("tcp://127.0.0.1:0");
	struct server srv = {0};
	struct side cli;

	side_init(&cli, "client", 1, 10, 0);
	side_init(&srv.side, "server", 2, 0, 10);
	srv.side.close_on_read = true;
	ck_assert_int_eq(bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err)), 0);
	la.port = (uint16_t)bq_listener_port(srv.l);
	ck_assert_int_eq(bq_conn_connect(loop, &la, side_cb, &cli, &cli.c, err, sizeof(err)), 0);
	/* The server closes inside its READABLE callback; the client then reads EOF. */
	ck_assert(bq_test_run_until(loop, got_eof, &cli, 2000));
	ck_assert(srv.side.closed);
	side_check_received(&srv.side, 1, 10);
	ck_assert_int_eq(srv.side.readable_events, 1);
	ck_assert_int_eq(srv.side.after_close_events, 0);
	bq_conn_close(cli.c);
	bq_listener_free(srv.l);
	free(cli.in);
	free(srv.side.in);
}
END_TEST

static void close_on_connect_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	int *calls = user_data;

	(*calls)++;
	ck_assert_int_eq(*calls, 1);
	bq_conn_close(c);
}

START_TEST(close_inside_connect_cb)
{
	struct bq_addr la = addr_of("tcp://127.0.0.1:0");
	struct server srv = {0};
	int calls = 0, i;

	side_init(&srv.side, "server", 2, 0, 0);
	srv.free_listener_in_cb = true;
	ck_assert_int_eq(bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err)), 0);
	la.port = (uint16_t)bq_listener_port(srv.l);
	{
		struct bq_conn *c;

		ck_assert_int_eq(bq_conn_connect(loop, &la, close_on_connect_cb, &calls, &c, err,
						 sizeof(err)),
				 0);
	}
	ck_assert(bq_test_run_until(loop, accepted_one, &srv, 2000));
	/* The listener was freed inside its accept callback. */
	ck_assert_ptr_null(srv.l);
	for (i = 0; i < 10; i++) {
		bq_loop_run_once(loop, 5);
	}
	ck_assert_int_eq(calls, 1);
	bq_conn_close(srv.side.c);
	free(srv.side.in);
}
END_TEST

/* A refused connect whose callback closes the connection. */
START_TEST(close_inside_error_cb)
{
	char s[64];
	struct bq_addr a;
	struct bq_conn *c;
	int calls = 0, i;

	snprintf(s, sizeof(s), "tcp://127.0.0.1:%d", dead_tcp_port());
	a = addr_of(s);
	ck_assert_int_eq(
		bq_conn_connect(loop, &a, close_on_connect_cb, &calls, &c, err, sizeof(err)), 0);
	for (i = 0; i < 20 && calls == 0; i++) {
		bq_loop_run_once(loop, 50);
	}
	ck_assert_int_eq(calls, 1);
	for (i = 0; i < 5; i++) {
		bq_loop_run_once(loop, 5);
	}
	ck_assert_int_eq(calls, 1);
}
END_TEST

/* ---- out of descriptors -------------------------------------------------------------- */

static int first_free_fd(void)
{
	int fd = dup(0);

	close(fd);
	return fd;
}

START_TEST(accept_emfile_pauses)
{
	struct bq_addr la = addr_of("tcp://127.0.0.1:0");
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct server srv = {0};
	struct rlimit old, lim;
	int fds[2], i, calls = 0, spare;

	side_init(&srv.side, "server", 2, 0, 0);
	ck_assert_int_eq(bq_listener_new(loop, &la, accept_cb, &srv, &srv.l, err, sizeof(err)), 0);
	sin.sin_port = htons((uint16_t)bq_listener_port(srv.l));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Room for exactly two client sockets, none for accept4. */
	spare = first_free_fd();
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)spare + 2;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	for (i = 0; i < 2; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		ck_assert_int_ge(fds[i], 0);
		ck_assert_int_eq(connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	}
	/* 60 ms of loop: without the pause every round would wake for the listener. */
	for (i = 0; i < 30; i++) {
		calls += bq_loop_run_once(loop, 2);
	}
	ck_assert_int_le(calls, 2);
	ck_assert_int_eq(srv.accepted, 0);
	/* A descriptor frees up: after the pause the queued connections are taken. */
	close(fds[0]);
	close(fds[1]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert(bq_test_run_until(loop, accepted_one, &srv, 1000));
	bq_conn_close(srv.side.c);
	bq_listener_free(srv.l);
	free(srv.side.in);
}
END_TEST

/* ---- the in-memory pair ---------------------------------------------------------------- */

struct pingpong {
	struct bq_conn *a, *b;
	int a_got, b_got, rounds;
};

static void ping_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	struct pingpong *pp = user_data;
	struct iovec iov;
	char buf[16];
	ssize_t n;

	ck_assert(events & BQ_CONN_READABLE);
	n = bq_conn_read(c, buf, sizeof(buf));
	ck_assert_int_eq(n, 4);
	if (c == pp->b) {
		ck_assert_mem_eq(buf, "ping", 4);
		pp->b_got++;
		iov.iov_base = "pong";
	} else {
		ck_assert_mem_eq(buf, "pong", 4);
		pp->a_got++;
		if (pp->a_got == pp->rounds) {
			return;
		}
		iov.iov_base = "ping";
	}
	iov.iov_len = 4;
	ck_assert_int_eq(bq_conn_writev(c, &iov, 1), 4);
	ck_assert_int_eq(bq_conn_read(c, buf, sizeof(buf)), -EAGAIN);
}

static bool pingpong_done(void *user_data)
{
	struct pingpong *pp = user_data;

	return pp->a_got == pp->rounds;
}

START_TEST(mem_ping_pong)
{
	struct pingpong pp = {.rounds = 1000};
	struct iovec iov = {.iov_base = "ping", .iov_len = 4};

	ck_assert_int_eq(bq_conn_mem_pair(loop, 64, &pp.a, &pp.b), 0);
	ck_assert_int_eq(bq_conn_fd(pp.a), -1);
	ck_assert_int_eq(bq_conn_kind(pp.a), BQ_ADDR_MEM);
	ck_assert_str_eq(bq_conn_peer(pp.a), "mem:b");
	ck_assert_str_eq(bq_conn_peer(pp.b), "mem:a");
	ck_assert(bq_conn_connected(pp.a));
	bq_conn_set_cb(pp.a, ping_cb, &pp);
	bq_conn_set_cb(pp.b, ping_cb, &pp);
	ck_assert_int_eq(bq_conn_writev(pp.a, &iov, 1), 4);
	/* Not delivered inside the write. */
	ck_assert_int_eq(pp.b_got, 0);
	ck_assert(bq_test_run_until(loop, pingpong_done, &pp, 5000));
	ck_assert_int_eq(pp.b_got, 1000);
	bq_conn_close(pp.a);
	bq_conn_close(pp.b);
}
END_TEST

struct counter {
	int readable, writable, other;
};

static void count_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	struct counter *n = user_data;

	if (events & BQ_CONN_READABLE) {
		n->readable++;
	}
	if (events & BQ_CONN_WRITABLE) {
		n->writable++;
	}
	if (events & ~(unsigned)(BQ_CONN_READABLE | BQ_CONN_WRITABLE)) {
		n->other++;
	}
}

START_TEST(mem_backpressure_and_eof)
{
	struct bq_conn *a, *b;
	struct counter ca = {0}, cb = {0};
	char data[40], buf[64];
	struct iovec iov[2] = {{.iov_base = data, .iov_len = 10},
			       {.iov_base = data + 10, .iov_len = 30}};
	int i;

	for (i = 0; i < 40; i++) {
		data[i] = (char)('A' + i);
	}
	ck_assert_int_eq(bq_conn_mem_pair(loop, 0, &a, &b), -EINVAL);
	ck_assert_int_eq(bq_conn_mem_pair(loop, 16, &a, &b), 0);
	bq_conn_set_cb(a, count_cb, &ca);
	bq_conn_set_cb(b, count_cb, &cb);

	/* 40 offered, 16 fit: a partial write across the iovec boundary. */
	ck_assert_int_eq(bq_conn_writev(a, iov, 2), 16);
	ck_assert_int_eq(bq_conn_writev(a, iov, 2), -EAGAIN);
	bq_conn_want_write(a, true);
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(cb.readable, 1);
	ck_assert_int_eq(ca.writable, 0); /* still full */
	/* Level-triggered: unread data is reported again next round. */
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(cb.readable, 2);

	ck_assert_int_eq(bq_conn_read(b, buf, 10), 10);
	ck_assert_mem_eq(buf, data, 10);
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(ca.writable, 1);
	ck_assert_int_eq(
		bq_conn_writev(a, &(struct iovec){.iov_base = data + 16, .iov_len = 24}, 1), 10);
	bq_conn_want_write(a, false);
	ck_assert_int_eq(bq_conn_read(b, buf, sizeof(buf)), 16);
	ck_assert_mem_eq(buf, data + 10, 16);
	ck_assert_int_eq(bq_conn_read(b, buf, sizeof(buf)), -EAGAIN);

	/* Close a with bytes in flight: b reads them, then EOF, and its writes fail. */
	ck_assert_int_eq(bq_conn_writev(a, &(struct iovec){.iov_base = "bye", .iov_len = 3}, 1), 3);
	bq_conn_close(a);
	ck_assert_int_eq(bq_conn_read(b, buf, sizeof(buf)), 3);
	ck_assert_mem_eq(buf, "bye", 3);
	ck_assert_int_eq(bq_conn_read(b, buf, sizeof(buf)), 0);
	ck_assert_int_eq(bq_conn_writev(b, iov, 1), -EPIPE);
	ck_assert_int_eq(bq_conn_error(b), -EPIPE);
	ck_assert_str_eq(bq_conn_error_text(b), "connection closed by mem:a");
	cb.readable = 0;
	bq_loop_run_once(loop, 0);
	ck_assert_int_eq(cb.readable, 1); /* EOF is readable */
	ck_assert_int_eq(ca.other + cb.other, 0);
	bq_conn_close(b);
}
END_TEST

static void mem_close_self_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	int *calls = user_data;

	(*calls)++;
	bq_conn_close(c);
}

START_TEST(mem_close_inside_cb)
{
	struct bq_conn *a, *b;
	int calls = 0, i;
	char buf[8];

	ck_assert_int_eq(bq_conn_mem_pair(loop, 16, &a, &b), 0);
	bq_conn_set_cb(b, mem_close_self_cb, &calls);
	bq_conn_want_write(b, true); /* would repeat every round if b stayed open */
	ck_assert_int_eq(bq_conn_writev(a, &(struct iovec){.iov_base = "hi", .iov_len = 2}, 1), 2);
	for (i = 0; i < 5; i++) {
		bq_loop_run_once(loop, 0);
	}
	ck_assert_int_eq(calls, 1);
	ck_assert_int_eq(bq_conn_read(a, buf, sizeof(buf)), 0);
	bq_conn_close(a);
}
END_TEST

/* Every allocation on the set-up paths can fail: -ENOMEM, nothing leaked (LSan). */
START_TEST(alloc_failures)
{
	struct bq_addr la = addr_of("tcp://127.0.0.1:0"), ca;
	struct bq_listener *l = NULL;
	struct bq_conn *a, *b;
	int n, r, failures = 0;

	for (n = 1; n < 50; n++) {
		bq_alloc_fail_nth((unsigned long)n);
		r = bq_conn_mem_pair(loop, 16, &a, &b);
		bq_alloc_fail_nth(0);
		if (r == 0) {
			bq_conn_close(a);
			bq_conn_close(b);
			break;
		}
		ck_assert_int_eq(r, -ENOMEM);
		ck_assert_ptr_null(a);
		failures++;
	}
	ck_assert_int_gt(failures, 0);
	ck_assert_int_lt(n, 50);

	for (n = 1, failures = 0; n < 50; n++) {
		bq_alloc_fail_nth((unsigned long)n);
		r = bq_listener_new(loop, &la, never_accept, NULL, &l, err, sizeof(err));
		bq_alloc_fail_nth(0);
		if (r == 0) {
			break;
		}
		ck_assert_int_eq(r, -ENOMEM);
		ck_assert_ptr_null(l);
		failures++;
	}
	ck_assert_int_gt(failures, 0);
	ck_assert_ptr_nonnull(l);
	ca = la;
	ca.port = (uint16_t)bq_listener_port(l);

	for (n = 1, failures = 0; n < 50; n++) {
		bq_alloc_fail_nth((unsigned long)n);
		r = bq_conn_connect(loop, &ca, never_cb, NULL, &a, err, sizeof(err));
		bq_alloc_fail_nth(0);
		if (r == 0) {
			bq_conn_close(a);
			break;
		}
		ck_assert_int_eq(r, -ENOMEM);
		ck_assert_ptr_null(a);
		failures++;
	}
	ck_assert_int_gt(failures, 0);
	ck_assert_int_lt(n, 50);
	bq_listener_free(l);
}
END_TEST

static Suite *conn_suite(void)
{
	Suite *s = suite_create("conn");
	TCase *tc = tcase_create("stream");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, tcp_bulk);
	tcase_add_test(tc, unix_bulk);
	tcase_add_test(tc, mem_bulk);
	tcase_add_test(tc, tcp_localhost_fallback);
	tcase_add_test(tc, tcp_ipv6);
	tcase_add_test(tc, tcp_refused);
	tcase_add_test(tc, unix_refused);
	tcase_add_test(tc, close_while_connecting);
	tcase_add_test(tc, tcp_port_in_use);
	tcase_add_test(tc, unix_stale_and_live);
	tcase_add_test(tc, listener_errors);
	tcase_add_test(tc, connect_errors);
	tcase_add_test(tc, close_inside_read_cb);
	tcase_add_test(tc, close_inside_connect_cb);
	tcase_add_test(tc, close_inside_error_cb);
	tcase_add_test(tc, accept_emfile_pauses);
	tcase_add_test(tc, mem_ping_pong);
	tcase_add_test(tc, mem_backpressure_and_eof);
	tcase_add_test(tc, mem_close_inside_cb);
	tcase_add_test(tc, alloc_failures);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(conn_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
