/* SPDX-License-Identifier: MIT */
/*
 * conn: the public dispatch through the backend vtable, the socket backend shared by
 * tcp, unix, bt-rfcomm and bt-l2cap (they differ only in struct bq__family), and the
 * listener. Design notes: docs/internals/transport.md.
 */
#include "transport/conn_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

#define ACCEPT_BATCH 64	    /* accepts per wake-up, so one busy listener cannot starve the rest */
#define ACCEPT_PAUSE_MS 100 /* out of descriptors: stop accepting for this long */

static const char *const MOD = "transport";

/* Resolved targets of a connect in progress; freed once connected or failed. */
struct bq__connect {
	const struct bq__family *fam;
	struct bq__sockaddr t[BQ__TARGETS_MAX];
	int n;
	int next;
};

struct bq_listener {
	struct bq_loop *loop; /* borrowed */
	const struct bq__family *fam;
	int fd;
	bool watching; /* registered with the loop (off while paused) */
	bq_accept_cb cb;
	void *user_data; /* borrowed */
	struct bq_timer *pause;
	unsigned depth; /* accept callbacks on the stack */
	bool closed;	/* bq_listener_free ran inside an accept callback */
	int port;
	bool unlink_path; /* we created the UNIX socket file; remove it when freed */
	dev_t dev;
	ino_t ino;
	char path[BQ_ADDR_PATH_MAX];
	char name[BQ_ADDR_STRLEN];
};

static const struct bq__family *family_for(enum bq_addr_kind kind)
{
	switch (kind) {
	case BQ_ADDR_TCP:
		return &bq__tcp_family;
	case BQ_ADDR_UNIX:
		return &bq__unix_family;
	case BQ_ADDR_RFCOMM:
		return &bq__rfcomm_family;
	case BQ_ADDR_L2CAP:
		return &bq__l2cap_family;
	case BQ_ADDR_MEM:
		break;
	}
	return NULL;
}

/* ---- shared by every backend --------------------------------------------------------- */

void bq__conn_init(struct bq_conn *c, struct bq_loop *loop, const struct bq_conn_ops *ops,
		   enum bq_addr_kind kind)
{
	memset(c, 0, sizeof(*c));
	c->ops = ops;
	c->loop = loop;
	c->kind = kind;
	c->fd = -1;
	c->state = BQ__CONNECTED;
}

void bq__conn_set_error(struct bq_conn *c, int err, const char *fmt, ...)
{
	va_list ap;

	if (c->err) {
		return;
	}
	c->err = err;
	va_start(ap, fmt);
	vsnprintf(c->err_text, sizeof(c->err_text), fmt, ap);
	va_end(ap);
}

/*
 * The only place owner callbacks run. The depth count is the reference the dispatcher
 * holds: bq_conn_close inside the callback releases the backend at once (so nothing
 * fires afterwards) but the memory stays until the callback has returned.
 * Returns false when c is gone.
 */
bool bq__conn_dispatch(struct bq_conn *c, unsigned events)
{
	if (c->state == BQ__CLOSED || !c->cb) {
		return true;
	}
	c->depth++;
	c->cb(c, events, c->user_data);
	c->depth--;
	if (c->state == BQ__CLOSED && c->depth == 0) {
		bq_free(c);
		return false;
	}
	return true;
}

void bq_conn_set_cb(struct bq_conn *c, bq_conn_cb cb, void *user_data)
{
	c->cb = cb;
	c->user_data = user_data;
}

ssize_t bq_conn_read(struct bq_conn *c, void *buf, size_t len)
{
	return c->ops->read(c, buf, len);
}

ssize_t bq_conn_writev(struct bq_conn *c, const struct iovec *iov, int iovcnt)
{
	return c->ops->writev(c, iov, iovcnt);
}

void bq_conn_want_write(struct bq_conn *c, bool on)
{
	c->ops->want_write(c, on);
}

void bq_conn_close(struct bq_conn *c)
{
	if (!c || c->state == BQ__CLOSED) {
		return;
	}
	c->state = BQ__CLOSED;
	c->cb = NULL;
	c->ops->close(c);
	if (c->depth == 0) {
		bq_free(c);
	}
}

bool bq_conn_connected(const struct bq_conn *c)
{
	return c->state == BQ__CONNECTED;
}

int bq_conn_error(const struct bq_conn *c)
{
	return c->err;
}

const char *bq_conn_error_text(const struct bq_conn *c)
{
	return c->err_text;
}

const char *bq_conn_peer(const struct bq_conn *c)
{
	return c->peer;
}

enum bq_addr_kind bq_conn_kind(const struct bq_conn *c)
{
	return c->kind;
}

int bq_conn_fd(const struct bq_conn *c)
{
	return c->fd;
}

/* ---- socket backend ------------------------------------------------------------------ */

int bq__socket_open(const struct bq__sockaddr *t, char *err, size_t errlen)
{
	int fd = socket(t->family, t->type | SOCK_NONBLOCK | SOCK_CLOEXEC, t->protocol);
	int e;

	if (fd >= 0) {
		return fd;
	}
	e = errno;
	/* A kernel without Bluetooth (CONFIG_BT=n, or the module not loaded). */
	if (t->family == AF_BLUETOOTH &&
	    (e == EAFNOSUPPORT || e == EPROTONOSUPPORT || e == ESOCKTNOSUPPORT)) {
		snprintf(err, errlen, "%s", BQ__BT_UNAVAILABLE);
		return -EAFNOSUPPORT;
	}
	if (e == EMFILE || e == ENFILE) {
		snprintf(err, errlen, "out of file descriptors (%s)", strerror(e));
	} else {
		snprintf(err, errlen, "cannot create a socket: %s", strerror(e));
	}
	return -e;
}

/* A failed connect, named the way an operator would say it. */
static void connect_error_text(int err, const char *peer, char *out, size_t cap)
{
	switch (-err) {
	case ECONNREFUSED:
		snprintf(out, cap, "connection refused by %s", peer);
		break;
	case ETIMEDOUT:
		snprintf(out, cap, "connection to %s timed out", peer);
		break;
	case ENOENT:
		snprintf(out, cap, "nothing listens on %s (no such file)", peer);
		break;
	case EAGAIN:
		/* A UNIX listener whose backlog is full refuses at once with EAGAIN. */
		snprintf(out, cap, "%s is not accepting connections (backlog full)", peer);
		break;
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
		snprintf(out, cap, "%s is unreachable (%s)", peer, strerror(-err));
		break;
	default:
		snprintf(out, cap, "cannot connect to %s: %s", peer, strerror(-err));
		break;
	}
}

static void fd_detach(struct bq_conn *c)
{
	if (c->io_events) {
		bq_loop_io_remove(c->loop, c->fd);
		c->io_events = 0;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
}

/* READ always, WRITE only while the owner waits for room: level-triggered epoll. */
static void fd_update_events(struct bq_conn *c)
{
	unsigned want = BQ_EV_READ | (c->want_write ? BQ_EV_WRITE : 0);
	int r;

	if (c->state != BQ__CONNECTED || want == c->io_events) {
		return;
	}
	r = bq_loop_io_modify(c->loop, c->fd, want);
	if (r < 0) {
		/* Only ENOMEM is possible here; the next read or write reports trouble. */
		bq_warn(bq_loop_log(c->loop), MOD, "msg=\"epoll modify failed\" peer=%s err=%d",
			c->peer, -r);
		return;
	}
	c->io_events = want;
}

static void fd_record_io_error(struct bq_conn *c, int err)
{
	switch (-err) {
	case ECONNRESET:
		bq__conn_set_error(c, err, "connection reset by %s", c->peer);
		break;
	case EPIPE:
		bq__conn_set_error(c, err, "connection closed by %s", c->peer);
		break;
	case ETIMEDOUT:
		bq__conn_set_error(c, err, "connection to %s timed out", c->peer);
		break;
	default:
		bq__conn_set_error(c, err, "connection to %s failed: %s", c->peer, strerror(-err));
		break;
	}
}

static ssize_t fd_not_ready(const struct bq_conn *c)
{
	if (c->state == BQ__CONNECTING) {
		return -EAGAIN;
	}
	return c->err ? c->err : -ENOTCONN;
}

static ssize_t fd_read(struct bq_conn *c, void *buf, size_t len)
{
	ssize_t n;

	if (c->state != BQ__CONNECTED) {
		return fd_not_ready(c);
	}
	do {
		n = read(c->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n >= 0) {
		return n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		return -EAGAIN;
	}
	n = -errno;
	fd_record_io_error(c, (int)n);
	return n;
}

static ssize_t fd_writev(struct bq_conn *c, const struct iovec *iov, int iovcnt)
{
	struct msghdr msg = {0};
	ssize_t n;

	if (c->state != BQ__CONNECTED) {
		return fd_not_ready(c);
	}
	if (iovcnt <= 0) {
		return 0;
	}
	/* sendmsg, not writev: MSG_NOSIGNAL turns SIGPIPE into EPIPE. */
	msg.msg_iov = (struct iovec *)iov;
	msg.msg_iovlen = (size_t)(iovcnt > IOV_MAX ? IOV_MAX : iovcnt);
	do {
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n >= 0) {
		return n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		return -EAGAIN;
	}
	n = -errno;
	fd_record_io_error(c, (int)n);
	return n;
}

static void fd_want_write(struct bq_conn *c, bool on)
{
	c->want_write = on;
	fd_update_events(c);
}

static void fd_close(struct bq_conn *c)
{
	fd_detach(c);
	bq_free(c->pending);
	c->pending = NULL;
	bq_timer_free(c->notify);
	c->notify = NULL;
}

static const struct bq_conn_ops fd_ops = {
	.read = fd_read,
	.writev = fd_writev,
	.want_write = fd_want_write,
	.close = fd_close,
};

static void fd_io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data);

/*
 * Start connecting to the next untried target. Returns 0 when one is in progress, 1 when
 * every target was tried and refused (c->err says how), or a negative errno with err
 * filled when not even a socket could be made.
 */
static int connect_next(struct bq_conn *c, char *err, size_t errlen)
{
	struct bq__connect *cn = c->pending;
	bool refused = false;
	int sock_err = 0;

	while (cn->next < cn->n) {
		const struct bq__sockaddr *t = &cn->t[cn->next++];
		int fd = bq__socket_open(t, err, errlen);
		int r;

		if (fd < 0) {
			/* e.g. no IPv6 in this kernel: the next target may still work */
			sock_err = fd;
			continue;
		}
		if (cn->fam->configure) {
			cn->fam->configure(fd);
		}
		r = connect(fd, (const struct sockaddr *)&t->ss, t->len);
		/* Non-blocking: EINTR means the connect goes on in the background. */
		if (r == 0 || errno == EINPROGRESS || errno == EINTR) {
			r = bq_loop_io_add(c->loop, fd, BQ_EV_WRITE, fd_io_cb, c);
			if (r < 0) {
				close(fd);
				snprintf(err, errlen, "cannot connect to %s: cannot watch it (%s)",
					 c->peer, strerror(-r));
				return r;
			}
			c->fd = fd;
			c->io_events = BQ_EV_WRITE;
			return 0;
		}
		r = -errno;
		close(fd);
		/* The last target's reason wins: it is the one the user sees last. */
		refused = true;
		c->err = r;
		connect_error_text(r, c->peer, c->err_text, sizeof(c->err_text));
	}
	if (refused) {
		return 1;
	}
	if (sock_err) {
		return sock_err;
	}
	/* Nothing left to try: the failure already recorded in c stands. */
	return c->err ? 1 : -EINVAL;
}

static void connect_failed(struct bq_conn *c)
{
	c->state = BQ__FAILED;
	bq_free(c->pending);
	c->pending = NULL;
	bq__conn_dispatch(c, BQ_CONN_ERROR);
}

/* The socket became writable (or failed): SO_ERROR tells which. */
static void connect_finish(struct bq_conn *c)
{
	int soerr = 0, r;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
		soerr = errno;
	}
	if (soerr == 0) {
		bq_free(c->pending);
		c->pending = NULL;
		c->state = BQ__CONNECTED;
		c->err = 0;
		c->err_text[0] = '\0';
		fd_update_events(c);
		bq__conn_dispatch(c, BQ_CONN_CONNECTED);
		return;
	}
	fd_detach(c);
	c->err = -soerr;
	connect_error_text(c->err, c->peer, c->err_text, sizeof(c->err_text));
	r = connect_next(c, c->err_text, sizeof(c->err_text));
	if (r == 0) {
		return;
	}
	if (r < 0) {
		c->err = r;
	}
	connect_failed(c);
}

static void fd_io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data)
{
	struct bq_conn *c = user_data;
	unsigned out = 0;

	if (c->state == BQ__CONNECTING) {
		connect_finish(c);
		return;
	}
	if (c->state != BQ__CONNECTED) {
		return;
	}
	/* EPOLLERR/HUP: let read (and write) return the reason, as a socket would. */
	if (events & (BQ_EV_READ | BQ_EV_ERROR)) {
		out |= BQ_CONN_READABLE;
	}
	if (c->want_write && (events & (BQ_EV_WRITE | BQ_EV_ERROR))) {
		out |= BQ_CONN_WRITABLE;
	}
	if (out) {
		bq__conn_dispatch(c, out);
	}
}

/* Every target failed inside bq_conn_connect: report it from the loop, never inline. */
static void notify_cb(struct bq_timer *t, void *user_data)
{
	connect_failed(user_data);
}

int bq_conn_connect(struct bq_loop *loop, const struct bq_addr *addr, bq_conn_cb cb,
		    void *user_data, struct bq_conn **out, char *err, size_t errlen)
{
	const struct bq__family *fam = family_for(addr->kind);
	struct bq_conn *c;
	int r;

	*out = NULL;
	if (!fam) {
		snprintf(err, errlen,
			 "cannot connect to mem:%s: in-memory connections are made "
			 "with bq_conn_mem_pair",
			 addr->path);
		return -EOPNOTSUPP;
	}
	c = bq_malloc(sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	bq__conn_init(c, loop, &fd_ops, addr->kind);
	c->state = BQ__CONNECTING;
	c->cb = cb;
	c->user_data = user_data;
	bq_addr_format(addr, c->peer, sizeof(c->peer));
	c->pending = bq_calloc(1, sizeof(*c->pending));
	if (!c->pending) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto err;
	}
	c->pending->fam = fam;
	r = fam->resolve(addr, false, c->pending->t, BQ__TARGETS_MAX, err, errlen);
	if (r < 0) {
		goto err;
	}
	c->pending->n = r;
	r = connect_next(c, err, errlen);
	if (r < 0) {
		goto err;
	}
	if (r == 1) {
		c->notify = bq_timer_new(loop, notify_cb, c);
		if (!c->notify || bq_timer_start(c->notify, 0) < 0) {
			snprintf(err, errlen, "out of memory");
			r = -ENOMEM;
			goto err;
		}
	}
	*out = c;
	return 0;
err:
	fd_close(c);
	bq_free(c);
	return r;
}

/* ---- listener ------------------------------------------------------------------------ */

static void accept_io_cb(struct bq_loop *loop, int fd, unsigned events, void *user_data);

static void listener_destroy(struct bq_listener *l)
{
	struct stat st;

	if (l->watching) {
		bq_loop_io_remove(l->loop, l->fd);
		l->watching = false;
	}
	/* Remove the socket file only if it is still ours, not a successor's. */
	if (l->unlink_path && stat(l->path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino) {
		unlink(l->path);
	}
	if (l->fd >= 0) {
		close(l->fd);
	}
	bq_timer_free(l->pause);
	bq_free(l);
}

static void listener_watch(struct bq_listener *l)
{
	int r = bq_loop_io_add(l->loop, l->fd, BQ_EV_READ, accept_io_cb, l);

	if (r < 0) {
		bq_warn(bq_loop_log(l->loop), MOD,
			"msg=\"cannot watch listener, retrying\" listen=%s err=%d", l->name, -r);
		bq_timer_start(l->pause, ACCEPT_PAUSE_MS);
		return;
	}
	l->watching = true;
}

static void resume_cb(struct bq_timer *t, void *user_data)
{
	listener_watch(user_data);
}

/* A new descriptor from accept4 becomes a connected struct bq_conn. */
static struct bq_conn *accepted_conn(struct bq_listener *l, int fd, const struct sockaddr *sa,
				     socklen_t salen)
{
	struct bq_conn *c = bq_malloc(sizeof(*c));
	int r;

	if (!c) {
		return NULL;
	}
	bq__conn_init(c, l->loop, &fd_ops, l->fam->kind);
	c->fd = fd;
	if (l->fam->configure) {
		l->fam->configure(fd);
	}
	l->fam->peer_text(sa, salen, c->peer, sizeof(c->peer));
	r = bq_loop_io_add(l->loop, fd, BQ_EV_READ, fd_io_cb, c);
	if (r < 0) {
		bq_free(c);
		return NULL;
	}
	c->io_events = BQ_EV_READ;
	return c;
}

static void accept_io_cb(struct bq_loop *loop, int lfd, unsigned events, void *user_data)
{
	struct bq_listener *l = user_data;
	int i;

	for (i = 0; i < ACCEPT_BATCH && !l->closed; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct bq_conn *c;
		int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			int e = errno;

			if (e == EINTR) {
				continue;
			}
			if (e == EAGAIN || e == EWOULDBLOCK) {
				break;
			}
			if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
				/*
				 * The connection stays queued, so a level-triggered wake would
				 * spin: stop watching for a while instead.
				 */
				bq_warn(bq_loop_log(loop), MOD,
					"msg=\"accept paused\" listen=%s err=\"%s\" pause_ms=%d",
					l->name, strerror(e), ACCEPT_PAUSE_MS);
				bq_loop_io_remove(loop, lfd);
				l->watching = false;
				bq_timer_start(l->pause, ACCEPT_PAUSE_MS);
				break;
			}
			/* ECONNABORTED, EPROTO, EPERM (firewall): that one peer is gone. */
			continue;
		}
		c = accepted_conn(l, fd, (const struct sockaddr *)&ss, len);
		if (!c) {
			bq_warn(bq_loop_log(loop), MOD,
				"msg=\"dropping accepted connection\" listen=%s err=\"out of "
				"memory\"",
				l->name);
			close(fd);
			continue;
		}
		l->depth++;
		l->cb(l, c, l->user_data);
		l->depth--;
	}
	if (l->closed && l->depth == 0) {
		listener_destroy(l);
	}
}

/* The bind error as the operator needs it: what is in use, not "errno 98". */
static void listen_error_text(const struct bq_listener *l, const struct bq_addr *addr, int err,
			      char *out, size_t cap)
{
	char name[BQ_ADDR_STRLEN + 32];

	l->fam->listen_name(addr, name, sizeof(name));
	switch (-err) {
	case EADDRINUSE:
		snprintf(out, cap, "%s is already in use", name);
		break;
	case EACCES:
		snprintf(out, cap, "cannot listen on %s: permission denied", name);
		break;
	case EADDRNOTAVAIL:
		snprintf(out, cap, "cannot listen on %s: the address is not on this machine",
			 l->name);
		break;
	default:
		snprintf(out, cap, "cannot listen on %s: %s", l->name, strerror(-err));
		break;
	}
}

static int listener_bind(struct bq_listener *l, const struct bq_addr *addr,
			 const struct bq__sockaddr *t, char *err, size_t errlen)
{
	int fd = bq__socket_open(t, err, errlen);
	int one = 1, r;

	if (fd < 0) {
		return fd;
	}
	/* Restarting a daemon must not wait out TIME_WAIT of its old connections. */
	if (addr->kind == BQ_ADDR_TCP) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	if (bind(fd, (const struct sockaddr *)&t->ss, t->len) < 0 || listen(fd, SOMAXCONN) < 0) {
		r = -errno;
		close(fd);
		listen_error_text(l, addr, r, err, errlen);
		return r;
	}
	l->fd = fd;
	return 0;
}

int bq_listener_new(struct bq_loop *loop, const struct bq_addr *addr, bq_accept_cb cb,
		    void *user_data, struct bq_listener **out, char *err, size_t errlen)
{
	const struct bq__family *fam = family_for(addr->kind);
	struct bq__sockaddr t[BQ__TARGETS_MAX];
	struct bq_listener *l;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	int i, n, r = -EINVAL;

	*out = NULL;
	if (!fam) {
		snprintf(err, errlen,
			 "cannot listen on mem:%s: in-memory connections are made "
			 "with bq_conn_mem_pair",
			 addr->path);
		return -EOPNOTSUPP;
	}
	l = bq_calloc(1, sizeof(*l));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	l->loop = loop;
	l->fam = fam;
	l->fd = -1;
	l->cb = cb;
	l->user_data = user_data;
	bq_addr_format(addr, l->name, sizeof(l->name));
	n = fam->resolve(addr, true, t, BQ__TARGETS_MAX, err, errlen);
	if (n < 0) {
		r = n;
		goto err;
	}
	if (fam->prepare_listen) {
		r = fam->prepare_listen(addr, err, errlen);
		if (r < 0) {
			goto err;
		}
	}
	/* Move on only when a family is missing (no IPv6); a bind error is the answer. */
	for (i = 0; i < n; i++) {
		r = listener_bind(l, addr, &t[i], err, errlen);
		if (r != -EAFNOSUPPORT) {
			break;
		}
	}
	if (r < 0) {
		goto err;
	}
	if (addr->kind == BQ_ADDR_TCP && getsockname(l->fd, (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET) {
			l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	} else {
		l->port = addr->port;
	}
	if (addr->kind == BQ_ADDR_UNIX) {
		struct stat st;

		if (stat(addr->path, &st) == 0) {
			l->unlink_path = true;
			l->dev = st.st_dev;
			l->ino = st.st_ino;
			memcpy(l->path, addr->path, sizeof(l->path));
		}
	}
	l->pause = bq_timer_new(loop, resume_cb, l);
	if (!l->pause) {
		snprintf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto err;
	}
	r = bq_loop_io_add(loop, l->fd, BQ_EV_READ, accept_io_cb, l);
	if (r < 0) {
		snprintf(err, errlen, "cannot listen on %s: cannot watch the socket (%s)", l->name,
			 strerror(-r));
		goto err;
	}
	l->watching = true;
	*out = l;
	return 0;
err:
	listener_destroy(l);
	return r;
}

void bq_listener_free(struct bq_listener *l)
{
	if (!l || l->closed) {
		return;
	}
	if (l->depth == 0) {
		listener_destroy(l);
		return;
	}
	/* Inside our own accept callback: stop now, free when it returns. */
	l->closed = true;
	if (l->watching) {
		bq_loop_io_remove(l->loop, l->fd);
		l->watching = false;
	}
	bq_timer_stop(l->pause);
}

int bq_listener_port(const struct bq_listener *l)
{
	return l->port;
}
