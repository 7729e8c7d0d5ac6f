/* SPDX-License-Identifier: MIT */
/*
 * mem: an in-memory connection pair for unit tests (BlueZ mesh-io's unit backend). It
 * behaves like a socket pair under a level-triggered loop, so code tested on it meets
 * no surprise on tcp:
 *   - a write lands in the peer's inbound buffer (at most max_buffered bytes) and the
 *     peer hears READABLE on the next loop round, through a zero-delay timer, never
 *     synchronously inside the writer's call;
 *   - a full peer buffer gives -EAGAIN; the writer hears WRITABLE (if want_write is on)
 *     once the peer has read;
 *   - events repeat every round while they hold (unread data, room while want_write);
 *   - closing one end: the other reads what is left, then 0 (EOF); its writes get -EPIPE.
 */
#include "transport/conn_impl.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"

struct mem_end {
	struct bq_conn base;   /* first: conn.c frees the whole object through it */
	struct mem_end *peer;  /* NULL once the peer closed */
	struct bq_buf in;      /* written by the peer, not yet read here; max = max_buffered */
	struct bq_timer *wake; /* delivers this end's events on the next loop round */
	bool eof;	       /* the peer closed: after in drains, reads return 0 */
};

static struct mem_end *to_mem(struct bq_conn *c)
{
	return (struct mem_end *)c;
}

static bool has_room(const struct mem_end *m)
{
	return m->in.len < m->in.max;
}

static unsigned mem_events(const struct mem_end *m)
{
	unsigned ev = 0;

	if (m->in.len > 0 || m->eof) {
		ev |= BQ_CONN_READABLE;
	}
	/* A closed peer reports writable too, so the write discovers -EPIPE. */
	if (m->base.want_write && (!m->peer || has_room(m->peer))) {
		ev |= BQ_CONN_WRITABLE;
	}
	return ev;
}

static void mem_kick(struct mem_end *m)
{
	if (m->base.state == BQ__CONNECTED && !bq_timer_active(m->wake)) {
		bq_timer_start(m->wake, 0);
	}
}

static void wake_cb(struct bq_timer *t, void *user_data)
{
	struct mem_end *m = user_data;
	unsigned ev = mem_events(m);

	if (!ev || !bq__conn_dispatch(&m->base, ev)) {
		return;
	}
	/*
	 * Level-triggered: still readable or writable means another round (the loop runs a
	 * timer re-armed with delay 0 in the next round, so this cannot spin inside one).
	 */
	if (mem_events(m)) {
		mem_kick(m);
	}
}

static ssize_t mem_read(struct bq_conn *c, void *buf, size_t len)
{
	struct mem_end *m = to_mem(c);
	size_t n;

	if (c->state != BQ__CONNECTED) {
		return -ENOTCONN;
	}
	if (m->in.len == 0) {
		return m->eof ? 0 : -EAGAIN;
	}
	n = len < m->in.len ? len : m->in.len;
	memcpy(buf, m->in.data, n);
	bq_buf_consume(&m->in, n);
	if (m->peer && m->peer->base.want_write) {
		mem_kick(m->peer);
	}
	return (ssize_t)n;
}

static ssize_t mem_writev(struct bq_conn *c, const struct iovec *iov, int iovcnt)
{
	struct mem_end *m = to_mem(c);
	struct mem_end *p = m->peer;
	size_t total = 0;
	int i;

	if (c->state != BQ__CONNECTED) {
		return -ENOTCONN;
	}
	if (!p) {
		bq__conn_set_error(c, -EPIPE, "connection closed by %s", c->peer);
		return -EPIPE;
	}
	for (i = 0; i < iovcnt; i++) {
		size_t room = p->in.max - p->in.len;
		size_t n = iov[i].iov_len < room ? iov[i].iov_len : room;
		int r;

		if (n == 0) {
			if (room == 0) {
				break;
			}
			continue;
		}
		r = bq_buf_append(&p->in, iov[i].iov_base, n);
		if (r < 0) {
			if (total == 0) {
				return r;
			}
			break;
		}
		total += n;
		if (n < iov[i].iov_len) {
			break;
		}
	}
	if (total == 0) {
		return iovcnt > 0 && p->in.len >= p->in.max ? -EAGAIN : 0;
	}
	mem_kick(p);
	return (ssize_t)total;
}

static void mem_want_write(struct bq_conn *c, bool on)
{
	struct mem_end *m = to_mem(c);

	c->want_write = on;
	if (on && (mem_events(m) & BQ_CONN_WRITABLE)) {
		mem_kick(m);
	}
}

static void mem_close(struct bq_conn *c)
{
	struct mem_end *m = to_mem(c);

	if (m->peer) {
		m->peer->peer = NULL;
		m->peer->eof = true;
		mem_kick(m->peer);
		m->peer = NULL;
	}
	bq_timer_free(m->wake);
	m->wake = NULL;
	bq_buf_free(&m->in);
}

static const struct bq_conn_ops mem_ops = {
	.read = mem_read,
	.writev = mem_writev,
	.want_write = mem_want_write,
	.close = mem_close,
};

static struct mem_end *mem_new(struct bq_loop *loop, size_t max_buffered, const char *peer)
{
	struct mem_end *m = bq_malloc(sizeof(*m));

	if (!m) {
		return NULL;
	}
	bq__conn_init(&m->base, loop, &mem_ops, BQ_ADDR_MEM);
	m->peer = NULL;
	m->eof = false;
	bq_buf_init(&m->in, max_buffered);
	memcpy(m->base.peer, peer, strlen(peer) + 1);
	m->wake = bq_timer_new(loop, wake_cb, m);
	if (!m->wake) {
		bq_free(m);
		return NULL;
	}
	return m;
}

int bq_conn_mem_pair(struct bq_loop *loop, size_t max_buffered, struct bq_conn **a,
		     struct bq_conn **b)
{
	struct mem_end *ma, *mb;

	*a = NULL;
	*b = NULL;
	if (max_buffered == 0) {
		return -EINVAL;
	}
	/* Each end is named after the other: a's peer is "mem:b". */
	ma = mem_new(loop, max_buffered, "mem:b");
	if (!ma) {
		return -ENOMEM;
	}
	mb = mem_new(loop, max_buffered, "mem:a");
	if (!mb) {
		bq_conn_close(&ma->base);
		return -ENOMEM;
	}
	ma->peer = mb;
	mb->peer = ma;
	*a = &ma->base;
	*b = &mb->base;
	return 0;
}
