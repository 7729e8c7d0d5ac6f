/* SPDX-License-Identifier: MIT */
#include "mesh/ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define MOD "ctl"
/* A users or topology answer for a large mesh is megabytes; cap what one peer can pin. */
#define CTL_OUT_MAX ((size_t)64 << 20)
#define CTL_READ_CHUNK 1024

struct ctl_conn {
	struct bq_ctl *ctl;
	struct bq_conn *conn;
	struct ctl_conn *prev, *next;
	struct bq_buf in;
	struct bq_buf out;
	bool closing; /* close once out is written */
};

struct bq_ctl {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_listener *listener;
	bq_ctl_handler_cb handler;
	void *user_data;
	struct ctl_conn *conns;
	unsigned n_conns;
};

static void conn_free(struct ctl_conn *cc)
{
	struct bq_ctl *c = cc->ctl;

	if (cc->prev) {
		cc->prev->next = cc->next;
	} else {
		c->conns = cc->next;
	}
	if (cc->next) {
		cc->next->prev = cc->prev;
	}
	c->n_conns--;
	bq_conn_close(cc->conn);
	bq_buf_free(&cc->in);
	bq_buf_free(&cc->out);
	bq_free(cc);
}

/* Write what is queued. false when the connection was freed. */
static bool conn_flush(struct ctl_conn *cc)
{
	while (cc->out.len) {
		struct iovec iov = { .iov_base = cc->out.data, .iov_len = cc->out.len };
		ssize_t n = bq_conn_writev(cc->conn, &iov, 1);

		if (n == -EAGAIN) {
			bq_conn_want_write(cc->conn, true);
			return true;
		}
		if (n < 0) {
			conn_free(cc);
			return false;
		}
		bq_buf_consume(&cc->out, (size_t)n);
	}
	bq_conn_want_write(cc->conn, false);
	if (cc->closing) {
		conn_free(cc);
		return false;
	}
	return true;
}

static void answer(struct ctl_conn *cc, const char *line)
{
	struct bq_buf reply;

	bq_buf_init(&reply, CTL_OUT_MAX);
	cc->ctl->handler(line, &reply, cc->ctl->user_data);
	if (bq_buf_append(&cc->out, reply.data ? reply.data : (const uint8_t *)"", reply.len) < 0 ||
	    bq_buf_append(&cc->out, "\n", 1) < 0) {
		/* The peer is not reading its answers: it loses the connection, not the node. */
		bq_warn(cc->ctl->log, MOD, "msg=\"control answer over the output limit; closing\"");
		bq_buf_reset(&cc->out);
		cc->closing = true;
	}
	bq_buf_free(&reply);
}

static void process_lines(struct ctl_conn *cc)
{
	size_t start = 0;

	for (size_t i = 0; i < cc->in.len && !cc->closing; i++) {
		char line[BQ_CTL_LINE_MAX + 1];
		size_t len;

		if (cc->in.data[i] != '\n') {
			continue;
		}
		len = i - start;
		if (len > 0 && cc->in.data[start + len - 1] == '\r') {
			len--;
		}
		memcpy(line, cc->in.data + start, len);
		line[len] = '\0';
		answer(cc, line);
		start = i + 1;
	}
	bq_buf_consume(&cc->in, start);
}

static void conn_read(struct ctl_conn *cc)
{
	for (;;) {
		uint8_t chunk[CTL_READ_CHUNK];
		ssize_t n = bq_conn_read(cc->conn, chunk, sizeof(chunk));

		if (n == -EAGAIN) {
			break;
		}
		if (n <= 0) {
			/* End of input: answer what is complete, then close after writing. */
			cc->closing = true;
			break;
		}
		for (ssize_t i = 0; i < n && !cc->closing; i++) {
			if (bq_buf_append(&cc->in, &chunk[i], 1) < 0) {
				static const char too_long[] =
					"{\"error\":\"command line too long\"}\n";

				bq_buf_append(&cc->out, too_long, sizeof(too_long) - 1);
				cc->closing = true;
				break;
			}
			if (chunk[i] == '\n') {
				process_lines(cc);
			}
		}
		if (cc->closing) {
			break;
		}
	}
	conn_flush(cc);
}

static void conn_cb(struct bq_conn *conn, unsigned events, void *ud)
{
	struct ctl_conn *cc = ud;

	if (events & BQ_CONN_ERROR) {
		conn_free(cc);
		return;
	}
	if (events & BQ_CONN_READABLE) {
		if (cc->closing) {
			uint8_t sink[CTL_READ_CHUNK];

			/* Input after the end is ignored, but drained so the loop settles. */
			(void)bq_conn_read(conn, sink, sizeof(sink));
		} else {
			conn_read(cc);
			return;
		}
	}
	if (events & BQ_CONN_WRITABLE) {
		conn_flush(cc);
	}
}

static void on_accept(struct bq_listener *l, struct bq_conn *conn, void *ud)
{
	struct bq_ctl *c = ud;
	struct ctl_conn *cc;

	if (c->n_conns >= BQ_CTL_CONN_MAX) {
		bq_warn(c->log, MOD, "msg=\"control connection refused: too many\" limit=%d",
			BQ_CTL_CONN_MAX);
		bq_conn_close(conn);
		return;
	}
	cc = bq_calloc(1, sizeof(*cc));
	if (!cc) {
		bq_conn_close(conn);
		return;
	}
	cc->ctl = c;
	cc->conn = conn;
	/* One line plus its newline: anything longer is refused. */
	bq_buf_init(&cc->in, BQ_CTL_LINE_MAX + 1);
	bq_buf_init(&cc->out, CTL_OUT_MAX);
	cc->next = c->conns;
	if (c->conns) {
		c->conns->prev = cc;
	}
	c->conns = cc;
	c->n_conns++;
	bq_conn_set_cb(conn, conn_cb, cc);
}

struct bq_ctl *bq_ctl_new(struct bq_loop *loop, const char *path, bq_ctl_handler_cb handler,
			  void *user_data, struct bq_log *log, char *err, size_t errlen)
{
	struct bq_ctl *c;
	struct bq_addr addr;
	char text[BQ_ADDR_PATH_MAX + 16];

	if (!path || !path[0] || strlen(path) >= BQ_ADDR_PATH_MAX) {
		snprintf(err, errlen,
			 "control socket path '%s' is empty or too long (max %d bytes)",
			 path ? path : "", BQ_ADDR_PATH_MAX - 1);
		return NULL;
	}
	snprintf(text, sizeof(text), "unix:%s", path);
	if (bq_addr_parse(text, &addr, err, errlen) < 0) {
		return NULL;
	}
	c = bq_calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->log = log;
	c->handler = handler;
	c->user_data = user_data;
	if (bq_listener_new(loop, &addr, on_accept, c, &c->listener, err, errlen) < 0) {
		bq_free(c);
		return NULL;
	}
	return c;
}

void bq_ctl_free(struct bq_ctl *c)
{
	if (!c) {
		return;
	}
	while (c->conns) {
		conn_free(c->conns);
	}
	bq_listener_free(c->listener);
	bq_free(c);
}
