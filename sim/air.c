/* SPDX-License-Identifier: MIT */
/*
 * The air between neighbours. For each edge (a, b) the simulator listens on
 * DIR/air-a-b.sock; node a dials it; for every connection accepted there the simulator
 * dials node b's socket and carries frames both ways. It cuts the byte stream on frame
 * boundaries (the length prefix) so it can delay each frame by the latency and drop
 * frames at the loss rate; it never decodes more than the length and type bytes, so it
 * stays transparent to authentication tags. Cutting an edge closes its connections and
 * refuses new ones until healed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "proto/frame.h"
#include "sim.h"

#define AIR_IN_MAX (2 * BQ_FRAME_MAX)
#define AIR_OUT_MAX (8 * 1024 * 1024) /* per direction; beyond it frames are dropped */
#define AIR_READ_CHUNK 65536

struct delayed {
	struct delayed *next;
	uint64_t due_us;
	size_t len;
	uint8_t data[];
};

struct air_pair;

struct air_side {
	struct air_pair *pair;
	int dir; /* 0: node a's end (accepted), 1: node b's end (dialled) */
	struct bq_conn *conn;
	struct bq_buf in;  /* bytes read here, not yet a whole frame */
	struct bq_buf out; /* bytes to write here */
	struct delayed *q_head, *q_tail; /* frames on their way here */
	size_t q_bytes;
	struct bq_timer *timer;
};

struct air_pair {
	struct sim *s;
	struct sim_edge *e;
	struct air_pair *prev, *next;
	struct air_side side[2];
	bool closed;
};

static void pair_free_mem(void *ud)
{
	struct air_pair *p = ud;

	for (int i = 0; i < 2; i++) {
		struct air_side *sd = &p->side[i];

		while (sd->q_head) {
			struct delayed *d = sd->q_head;

			sd->q_head = d->next;
			bq_free(d);
		}
		bq_buf_free(&sd->in);
		bq_buf_free(&sd->out);
	}
	bq_free(p);
}

/* Close both ends now; the memory goes after this dispatch round. */
static void pair_close(struct air_pair *p, const char *why)
{
	struct sim_edge *e = p->e;

	if (p->closed) {
		return;
	}
	p->closed = true;
	for (int i = 0; i < 2; i++) {
		if (p->side[i].conn) {
			bq_conn_close(p->side[i].conn);
			p->side[i].conn = NULL;
		}
		bq_timer_free(p->side[i].timer);
		p->side[i].timer = NULL;
	}
	if (p->prev) {
		p->prev->next = p->next;
	} else {
		e->pairs = p->next;
	}
	if (p->next) {
		p->next->prev = p->prev;
	}
	e->links--;
	bq_debug(p->s->log, "air", "msg=\"air link closed\" edge=%d-%d why=\"%s\"", e->a, e->b,
		 why);
	if (bq_loop_defer(p->s->loop, pair_free_mem, p) < 0) {
		bq_warn(p->s->log, "air", "msg=\"leaked a closed air link (no memory)\"");
	}
}

static void side_flush(struct air_side *sd)
{
	while (sd->out.len > 0 && sd->conn) {
		struct iovec iov = { .iov_base = sd->out.data, .iov_len = sd->out.len };
		ssize_t n = bq_conn_writev(sd->conn, &iov, 1);

		if (n == -EAGAIN) {
			bq_conn_want_write(sd->conn, true);
			return;
		}
		if (n < 0) {
			pair_close(sd->pair, "write failed");
			return;
		}
		bq_buf_consume(&sd->out, (size_t)n);
	}
	if (sd->conn) {
		bq_conn_want_write(sd->conn, false);
	}
}

static void deliver_to(struct air_side *dst, const uint8_t *frame, size_t len)
{
	struct sim_edge *e = dst->pair->e;

	if (bq_buf_append(&dst->out, frame, len) < 0) {
		e->dropped++; /* the receiving node does not keep up: the air overflows */
		return;
	}
	e->carried++;
	e->by_type[frame[3] < 16 ? frame[3] : 0]++;
}

static void arm_queue(struct air_side *sd)
{
	uint64_t now = bq_loop_now_us(sd->pair->s->loop);
	uint64_t due;

	if (!sd->q_head) {
		return;
	}
	due = sd->q_head->due_us;
	bq_timer_start(sd->timer, due > now ? (due - now + 999) / 1000 : 0);
}

static void queue_timer_cb(struct bq_timer *t, void *ud)
{
	struct air_side *sd = ud;
	uint64_t now = bq_loop_now_us(sd->pair->s->loop);

	while (sd->q_head && sd->q_head->due_us <= now) {
		struct delayed *d = sd->q_head;

		sd->q_head = d->next;
		if (!sd->q_head) {
			sd->q_tail = NULL;
		}
		sd->q_bytes -= d->len;
		deliver_to(sd, d->data, d->len);
		bq_free(d);
	}
	arm_queue(sd);
	side_flush(sd);
}

/* One whole frame read from src: drop it, delay it, or pass it on. */
static void carry(struct air_side *src, const uint8_t *frame, size_t len)
{
	struct air_pair *p = src->pair;
	struct sim *s = p->s;
	struct air_side *dst = &p->side[1 - src->dir];
	struct delayed *d;

	/* HELLO always passes, so links form and loss only tests what follows. */
	if (s->loss_ppm && frame[3] != BQ_T_HELLO && sim_random(s) % 1000000 < s->loss_ppm) {
		p->e->dropped++;
		return;
	}
	if (s->latency_ms == 0 && !dst->q_head) {
		deliver_to(dst, frame, len);
		return;
	}
	if (dst->q_bytes + len > AIR_OUT_MAX) {
		p->e->dropped++;
		return;
	}
	d = bq_malloc(sizeof(*d) + len);
	if (!d) {
		p->e->dropped++;
		return;
	}
	d->next = NULL;
	d->len = len;
	d->due_us = bq_loop_now_us(s->loop) + s->latency_ms * 1000;
	memcpy(d->data, frame, len);
	if (dst->q_tail) {
		dst->q_tail->next = d;
	} else {
		dst->q_head = d;
	}
	dst->q_tail = d;
	dst->q_bytes += len;
	if (!bq_timer_active(dst->timer)) {
		arm_queue(dst);
	}
}

static void side_read(struct air_side *sd)
{
	struct air_pair *p = sd->pair;
	struct air_side *other = &p->side[1 - sd->dir];

	for (int round = 0; round < 16; round++) {
		int err = 0;
		uint8_t *buf = bq_buf_reserve(&sd->in, AIR_READ_CHUNK, &err);
		size_t room = AIR_READ_CHUNK;
		size_t off = 0;
		ssize_t n;

		if (!buf) {
			room = sd->in.max - sd->in.len;
			buf = room ? bq_buf_reserve(&sd->in, room, &err) : NULL;
			if (!buf) {
				pair_close(p, "input buffer full");
				return;
			}
		}
		n = bq_conn_read(sd->conn, buf, room);
		if (n == -EAGAIN) {
			break;
		}
		if (n <= 0) {
			pair_close(p, n == 0 ? "end of stream" : "read failed");
			return;
		}
		bq_buf_commit(&sd->in, (size_t)n);
		while (sd->in.len - off >= 2) {
			size_t flen = bq_frame_length(sd->in.data + off, sd->in.len - off);

			if (flen < BQ_FRAME_HEADER_MIN || flen > BQ_FRAME_MAX) {
				pair_close(p, "garbage on the air (bad frame length)");
				return;
			}
			if (sd->in.len - off < flen) {
				break;
			}
			carry(sd, sd->in.data + off, flen);
			off += flen;
		}
		bq_buf_consume(&sd->in, off);
	}
	side_flush(other);
}

static void side_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct air_side *sd = ud;
	struct air_pair *p = sd->pair;

	if (events & BQ_CONN_ERROR) {
		pair_close(p, bq_conn_error_text(c));
		return;
	}
	if (events & BQ_CONN_CONNECTED) {
		side_flush(sd);
		if (p->closed) {
			return;
		}
	}
	if (events & BQ_CONN_READABLE) {
		side_read(sd);
		if (p->closed) {
			return;
		}
	}
	if (events & BQ_CONN_WRITABLE) {
		side_flush(sd);
	}
}

static void on_accept(struct bq_listener *l, struct bq_conn *c, void *ud)
{
	struct sim_edge *e = ud;
	struct sim *s = e->sim;
	struct sim_node *nb = &s->nodes[e->b - 1];
	struct air_pair *p;
	struct bq_addr to;
	char spec[SIM_PATH_MAX + 8];
	char err[300];

	if (e->cut || s->stopping) {
		bq_conn_close(c); /* the edge is cut: node a's dial finds nobody there */
		return;
	}
	p = bq_calloc(1, sizeof(*p));
	if (!p) {
		bq_conn_close(c);
		return;
	}
	p->s = s;
	p->e = e;
	for (int i = 0; i < 2; i++) {
		p->side[i].pair = p;
		p->side[i].dir = i;
		bq_buf_init(&p->side[i].in, AIR_IN_MAX);
		bq_buf_init(&p->side[i].out, AIR_OUT_MAX);
		p->side[i].timer = bq_timer_new(s->loop, queue_timer_cb, &p->side[i]);
	}
	p->next = e->pairs;
	if (p->next) {
		p->next->prev = p;
	}
	e->pairs = p;
	e->links++;
	p->side[0].conn = c;
	bq_conn_set_cb(c, side_cb, &p->side[0]);
	if (!p->side[0].timer || !p->side[1].timer) {
		pair_close(p, "out of memory");
		return;
	}
	snprintf(spec, sizeof(spec), "unix:%s", nb->sock);
	if (bq_addr_parse(spec, &to, err, sizeof(err)) < 0 ||
	    bq_conn_connect(s->loop, &to, side_cb, &p->side[1], &p->side[1].conn, err,
			    sizeof(err)) < 0) {
		p->side[1].conn = NULL;
		pair_close(p, err);
		return;
	}
	bq_debug(s->log, "air", "msg=\"air link open\" edge=%d-%d", e->a, e->b);
}

int sim_air_start(struct sim *s, char *err, size_t errlen)
{
	for (int i = 0; i < s->n_edges; i++) {
		struct sim_edge *e = &s->edges[i];
		char spec[SIM_PATH_MAX + 8];
		struct bq_addr a;
		int rc;

		snprintf(e->sock, sizeof(e->sock), "%s/air-%d-%d.sock", s->dir, e->a, e->b);
		snprintf(spec, sizeof(spec), "unix:%s", e->sock);
		rc = bq_addr_parse(spec, &a, err, errlen);
		if (rc < 0) {
			return rc;
		}
		e->sim = s;
		rc = bq_listener_new(s->loop, &a, on_accept, e, &e->lis, err, errlen);
		if (rc < 0) {
			return rc;
		}
	}
	return 0;
}

void sim_air_cut(struct sim *s, struct sim_edge *e)
{
	e->cut = true;
	while (e->pairs) {
		pair_close(e->pairs, "edge cut");
	}
}

void sim_air_stop(struct sim *s)
{
	for (int i = 0; i < s->n_edges; i++) {
		struct sim_edge *e = &s->edges[i];

		while (e->pairs) {
			pair_close(e->pairs, "simulator stopping");
		}
		bq_listener_free(e->lis);
		e->lis = NULL;
	}
}

struct sim_edge *sim_edge_find(struct sim *s, int a, int b)
{
	int x = a < b ? a : b, y = a < b ? b : a;

	for (int i = 0; i < s->n_edges; i++) {
		if (s->edges[i].a == x && s->edges[i].b == y) {
			return &s->edges[i];
		}
	}
	return NULL;
}
