/* SPDX-License-Identifier: MIT */
#include "mesh/link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Input may hold one whole frame plus whatever else one read brought along. */
#define LINK_IN_MAX (BQ_FRAME_MAX + 64 * 1024)
/* Bytes read per wake-up, so one busy peer cannot starve the others. */
#define LINK_READ_BUDGET (256 * 1024)
#define LINK_READ_CHUNK (64 * 1024)
#define LINK_FLUSH_TIMEOUT_MS 1000
#define RTT_REFRESH_MS 60000 /* a busy link measures its round trip this often */

struct bq_link {
	struct bq_loop *loop;
	struct bq_conn *conn;
	struct bq_log *log;
	char *name;
	const struct bq_auth *auth;
	bool require_auth;

	struct bq_buf in;
	struct bq_buf out;

	bq_link_frame_cb on_frame;
	bq_link_close_cb on_close;
	void *user_data;
	void *data;

	struct bq_timer *heartbeat;
	struct bq_timer *flush_timer;
	uint32_t ping_interval_ms;
	uint64_t rtt_at_us; /* when the last round trip was measured (0: never) */
	uint32_t dead_after_ms;
	uint64_t last_rx_us;
	uint64_t ping_sent_us;
	uint64_t ping_nonce;

	/*
	 * Lifetime: callbacks and deferred calls hold references (refs). bq_link_free
	 * with references outstanding only marks the link; the last holder frees it.
	 */
	unsigned refs;
	bool free_pending;
	bool flush_scheduled;
	bool closing; /* no more input is processed; output may still drain */
	bool conn_closed;
	bool notified; /* on_close has been queued (exactly once) */
	int close_err;
	char close_reason[192];

	struct bq_link_stats stats;
};

static void link_conn_cb(struct bq_conn *c, unsigned events, void *ud);
static void link_finish(struct bq_link *l);

static void link_destroy(struct bq_link *l)
{
	bq_timer_free(l->heartbeat);
	bq_timer_free(l->flush_timer);
	if (l->conn) {
		bq_conn_close(l->conn);
	}
	bq_buf_free(&l->in);
	bq_buf_free(&l->out);
	bq_free(l->name);
	bq_free(l);
}

static void link_ref(struct bq_link *l)
{
	l->refs++;
}

/* Returns false when the link is gone (the caller must not touch it again). */
static bool link_unref(struct bq_link *l)
{
	l->refs--;
	if (l->refs == 0 && l->free_pending) {
		link_destroy(l);
		return false;
	}
	return !l->free_pending;
}

uint64_t bq_link_new_msg_id(void)
{
	uint64_t id = 0;

	/* 0 means "pick one" in several APIs, so never hand it out. */
	while (id == 0) {
		randombytes_buf(&id, sizeof(id));
	}
	return id;
}

static void heartbeat_cb(struct bq_timer *t, void *ud);

static void flush_timeout_cb(struct bq_timer *t, void *ud)
{
	struct bq_link *l = ud;

	/* A peer that does not read within the flush window loses the rest. */
	link_finish(l);
}

struct bq_link *bq_link_new(struct bq_loop *loop, struct bq_conn *conn,
			    const struct bq_link_config *cfg, struct bq_log *log)
{
	struct bq_link *l = bq_calloc(1, sizeof(*l));

	if (!l) {
		bq_conn_close(conn);
		return NULL;
	}
	l->loop = loop;
	l->conn = conn;
	l->log = log;
	l->name = bq_strdup(cfg->name ? cfg->name : "link");
	l->auth = cfg->auth;
	l->require_auth = cfg->require_auth;
	l->ping_interval_ms = cfg->ping_interval_ms;
	l->dead_after_ms = cfg->dead_after_ms;
	bq_buf_init(&l->in, LINK_IN_MAX);
	bq_buf_init(&l->out, cfg->max_out_bytes ? cfg->max_out_bytes : 4 * BQ_FRAME_MAX);
	l->heartbeat = bq_timer_new(loop, heartbeat_cb, l);
	l->flush_timer = bq_timer_new(loop, flush_timeout_cb, l);
	if (!l->name || !l->heartbeat || !l->flush_timer) {
		link_destroy(l);
		return NULL;
	}
	l->last_rx_us = bq_loop_now_us(loop);
	if (l->ping_interval_ms || l->dead_after_ms) {
		uint32_t first = l->ping_interval_ms ? l->ping_interval_ms : l->dead_after_ms;

		if (bq_timer_start(l->heartbeat, first) < 0) {
			link_destroy(l);
			return NULL;
		}
	}
	bq_conn_set_cb(conn, link_conn_cb, l);
	return l;
}

void bq_link_set_handlers(struct bq_link *l, bq_link_frame_cb on_frame, bq_link_close_cb on_close,
			  void *user_data)
{
	l->on_frame = on_frame;
	l->on_close = on_close;
	l->user_data = user_data;
}

void bq_link_set_require_auth(struct bq_link *l, bool on)
{
	l->require_auth = on;
}

static void notify_close_deferred(void *ud)
{
	struct bq_link *l = ud;

	if (!link_unref(l)) {
		return;
	}
	if (l->on_close) {
		l->on_close(l, l->close_err, l->close_reason, l->user_data);
	}
}

/* Close the connection now and queue the one close notification. */
static void link_finish(struct bq_link *l)
{
	if (l->conn_closed) {
		return;
	}
	l->conn_closed = true;
	l->closing = true;
	bq_timer_stop(l->heartbeat);
	bq_timer_stop(l->flush_timer);
	bq_conn_close(l->conn);
	l->conn = NULL;
	/* The buffers stay until destroy: a frame callback may still hold pointers into
	 * the input while it closes the link. */
	if (!l->notified) {
		l->notified = true;
		link_ref(l);
		if (bq_loop_defer(l->loop, notify_close_deferred, l) < 0) {
			/* Out of memory for the queue: tell the owner right now instead. */
			notify_close_deferred(l);
		}
	}
}

static void link_fail(struct bq_link *l, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void link_set_reason(struct bq_link *l, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void link_set_reason(struct bq_link *l, int err, const char *fmt, va_list ap)
{
	if (l->closing) {
		return; /* the first reason is the one that matters */
	}
	l->close_err = err;
	vsnprintf(l->close_reason, sizeof(l->close_reason), fmt, ap);
}

static void link_fail(struct bq_link *l, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	link_set_reason(l, err, fmt, ap);
	va_end(ap);
	bq_debug(l->log, "link", "link=%s msg=\"closed\" err=%d reason=\"%s\"", l->name, err,
		 l->close_reason);
	link_finish(l);
}

static int link_flush(struct bq_link *l)
{
	while (l->out.len > 0) {
		struct iovec iov = {.iov_base = l->out.data, .iov_len = l->out.len};
		ssize_t n = bq_conn_writev(l->conn, &iov, 1);

		if (n == -EAGAIN) {
			bq_conn_want_write(l->conn, true);
			return 0;
		}
		if (n < 0) {
			link_fail(l, (int)n, "write to %s failed: %s", bq_conn_peer(l->conn),
				  strerror((int)-n));
			return (int)n;
		}
		l->stats.bytes_out += (uint64_t)n;
		bq_buf_consume(&l->out, (size_t)n);
	}
	bq_conn_want_write(l->conn, false);
	if (l->closing) {
		link_finish(l);
	}
	return 0;
}

static void flush_deferred(void *ud)
{
	struct bq_link *l = ud;

	if (!link_unref(l)) {
		return;
	}
	l->flush_scheduled = false;
	if (!l->conn_closed) {
		link_flush(l);
	}
}

/* Coalesce: everything queued during this loop round leaves in one write. */
static void schedule_flush(struct bq_link *l)
{
	if (l->flush_scheduled || l->conn_closed) {
		return;
	}
	link_ref(l);
	if (bq_loop_defer(l->loop, flush_deferred, l) < 0) {
		l->refs--;
		link_flush(l);
		return;
	}
	l->flush_scheduled = true;
}

int bq_link_send_raw(struct bq_link *l, const uint8_t *frame, size_t len)
{
	int rc;

	if (l->closing) {
		return -ENOTCONN;
	}
	rc = bq_buf_append(&l->out, frame, len);
	if (rc < 0) {
		l->stats.out_dropped++;
		return rc == -EMSGSIZE ? -ENOBUFS : rc;
	}
	l->stats.frames_out++;
	schedule_flush(l);
	return 0;
}

int bq_link_send(struct bq_link *l, const struct bq_frame *f)
{
	struct bq_frame copy = *f;
	size_t need;
	uint8_t *dst;
	int rc;

	if (l->closing) {
		return -ENOTCONN;
	}
	if (l->auth) {
		copy.flags |= BQ_FF_AUTH;
	} else {
		copy.flags &= (uint8_t)~BQ_FF_AUTH;
	}
	need = bq_frame_encoded_size(&copy);
	if (need > BQ_FRAME_MAX) {
		return -EINVAL;
	}
	if (l->out.len + need > l->out.max) {
		l->stats.out_dropped++;
		return -ENOBUFS;
	}
	dst = bq_buf_reserve(&l->out, need, &rc);
	if (!dst) {
		l->stats.out_dropped++;
		return rc == -EMSGSIZE ? -ENOBUFS : rc;
	}
	rc = bq_frame_encode(&copy, dst, need);
	if (rc < 0) {
		return rc;
	}
	if (l->auth) {
		bq_auth_sign(l->auth, dst, (size_t)rc);
	}
	bq_buf_commit(&l->out, (size_t)rc);
	l->stats.frames_out++;
	schedule_flush(l);
	return 0;
}

static int send_simple(struct bq_link *l, uint8_t type, uint64_t msg_id, const uint8_t *payload,
		       uint16_t payload_len)
{
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = type,
		.ttl = 0,
		.msg_id = msg_id,
		.timestamp_ms = bq_wall_ms(),
		.payload = payload,
		.payload_len = payload_len,
	};

	return bq_link_send(l, &f);
}

int bq_link_send_error(struct bq_link *l, uint16_t code, const char *text)
{
	uint8_t payload[512];
	struct bq_error e = {
		.code = code,
		.text = text,
		.text_len = (uint16_t)strnlen(text, 400),
	};
	int n = bq_error_encode(&e, payload, sizeof(payload));

	if (n < 0) {
		return n;
	}
	return send_simple(l, BQ_T_ERROR, bq_link_new_msg_id(), payload, (uint16_t)n);
}

static void send_ping(struct bq_link *l, uint8_t type, uint64_t nonce)
{
	uint8_t payload[8];
	struct bq_ping p = {.nonce = nonce};
	int n = bq_ping_encode(&p, payload, sizeof(payload));

	if (n > 0) {
		send_simple(l, type, bq_link_new_msg_id(), payload, (uint16_t)n);
	}
}

static void heartbeat_cb(struct bq_timer *t, void *ud)
{
	struct bq_link *l = ud;
	uint64_t now = bq_loop_now_us(l->loop);
	uint64_t idle_ms = (now - l->last_rx_us) / 1000;
	uint32_t next = l->ping_interval_ms ? l->ping_interval_ms : l->dead_after_ms;

	if (l->closing) {
		return;
	}
	if (l->dead_after_ms && idle_ms >= l->dead_after_ms) {
		link_fail(l, -ETIMEDOUT, "no frame from %s for %" PRIu64 " ms", bq_link_peer(l),
			  idle_ms);
		return;
	}
	/*
	 * Idle links are pinged to stay alive; busy ones too once their round trip is
	 * RTT_REFRESH_MS old (or unknown), so the status shows a measured figure on a link
	 * that is never quiet (announces every second) at a cost of one frame a minute.
	 */
	if (l->ping_interval_ms &&
	    (idle_ms >= l->ping_interval_ms || !l->rtt_at_us ||
	     now - l->rtt_at_us >= RTT_REFRESH_MS * 1000ull)) {
		l->ping_nonce = bq_link_new_msg_id();
		l->ping_sent_us = now;
		send_ping(l, BQ_T_PING, l->ping_nonce);
	}
	bq_timer_start(t, next);
}

static void handle_control(struct bq_link *l, const struct bq_frame *f)
{
	struct bq_ping p;

	if (bq_ping_decode(f, &p) < 0) {
		return;
	}
	if (f->type == BQ_T_PING) {
		send_ping(l, BQ_T_PONG, p.nonce);
		return;
	}
	if (p.nonce == l->ping_nonce && l->ping_sent_us) {
		uint64_t rtt = bq_loop_now_us(l->loop) - l->ping_sent_us;

		l->stats.rtt_us = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
		l->rtt_at_us = bq_loop_now_us(l->loop);
		l->ping_sent_us = 0;
	}
}

/* Authentication per the header's rules; false = drop the frame. */
static bool frame_authentic(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
			    size_t len)
{
	if (f->flags & BQ_FF_AUTH) {
		if (l->auth && bq_auth_verify(l->auth, raw, len) < 0) {
			return false;
		}
		return l->auth != NULL || !l->require_auth;
	}
	return !l->require_auth;
}

/* Decode and dispatch every whole frame in the input buffer. */
static void process_input(struct bq_link *l)
{
	size_t off = 0;

	while (!l->closing && off < l->in.len) {
		struct bq_frame f;
		const uint8_t *raw = l->in.data + off;
		size_t avail = l->in.len - off;
		int n = bq_frame_decode(raw, avail, &f);
		char text[128];

		if (n == 0) {
			break;
		}
		if (n == -EMSGSIZE) {
			l->stats.oversize++;
			link_fail(l, -EMSGSIZE, "frame length %zu from %s over the limit %d",
				  bq_frame_length(raw, avail), bq_link_peer(l), BQ_FRAME_MAX);
			return;
		}
		if (n == -EPROTONOSUPPORT) {
			l->stats.version_mismatch++;
			snprintf(text, sizeof(text),
				 "protocol version mismatch: peer speaks version %u, this side "
				 "speaks version %u",
				 f.version, BQ_PROTO_VERSION);
			bq_link_send_error(l, BQ_ERR_VERSION, text);
			bq_link_close(l, true, -EPROTONOSUPPORT, text);
			return;
		}
		if (n < 0) {
			l->stats.malformed++;
			bq_link_send_error(l, BQ_ERR_MALFORMED, "malformed frame");
			bq_link_close(l, true, -EBADMSG, "malformed frame from peer");
			return;
		}
		off += (size_t)n;
		l->stats.frames_in++;
		l->last_rx_us = bq_loop_now_us(l->loop);
		if (!frame_authentic(l, &f, raw, (size_t)n)) {
			l->stats.auth_failures++;
			bq_debug(l->log, "link",
				 "link=%s msg=\"dropped frame failing authentication\" type=%u",
				 l->name, f.type);
			continue;
		}
		if (!bq_frame_type_known(f.type)) {
			l->stats.unknown_types++;
			snprintf(text, sizeof(text), "unknown frame type %u", f.type);
			bq_link_send_error(l, BQ_ERR_UNKNOWN_TYPE, text);
			continue;
		}
		if (f.type == BQ_T_PING || f.type == BQ_T_PONG) {
			handle_control(l, &f);
			continue;
		}
		if (l->on_frame) {
			link_ref(l);
			l->on_frame(l, &f, raw, (size_t)n, l->user_data);
			if (!link_unref(l) || l->conn_closed) {
				return;
			}
		}
	}
	if (!l->conn_closed) {
		bq_buf_consume(&l->in, off);
	}
}

static void link_read(struct bq_link *l)
{
	size_t budget = LINK_READ_BUDGET;

	while (budget > 0 && !l->closing) {
		int err = 0;
		uint8_t *dst = bq_buf_reserve(&l->in, LINK_READ_CHUNK, &err);
		size_t room = LINK_READ_CHUNK;
		ssize_t n;

		if (!dst) {
			/* The buffer is at its maximum: process what is there to make room. */
			room = l->in.max - l->in.len;
			if (room == 0) {
				process_input(l);
				if (l->conn_closed || l->in.max - l->in.len == 0) {
					return;
				}
				continue;
			}
			dst = bq_buf_reserve(&l->in, room, &err);
			if (!dst) {
				link_fail(l, err, "out of memory reading from %s", bq_link_peer(l));
				return;
			}
		}
		n = bq_conn_read(l->conn, dst, room);
		if (n == -EAGAIN) {
			break;
		}
		if (n == 0) {
			process_input(l);
			if (!l->conn_closed) {
				link_fail(l, -ECONNRESET, "%s closed the connection",
					  bq_link_peer(l));
			}
			return;
		}
		if (n < 0) {
			link_fail(l, (int)n, "read from %s failed: %s", bq_link_peer(l),
				  strerror((int)-n));
			return;
		}
		bq_buf_commit(&l->in, (size_t)n);
		l->stats.bytes_in += (uint64_t)n;
		budget -= (size_t)n < budget ? (size_t)n : budget;
		process_input(l);
		if (l->conn_closed) {
			return;
		}
	}
}

static void link_conn_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct bq_link *l = ud;

	link_ref(l);
	if (events & BQ_CONN_ERROR) {
		link_fail(l, bq_conn_error(c) ? bq_conn_error(c) : -EIO, "%s",
			  bq_conn_error_text(c));
		goto out;
	}
	if ((events & BQ_CONN_READABLE) && !l->closing) {
		link_read(l);
	}
	if ((events & BQ_CONN_WRITABLE) && !l->conn_closed) {
		link_flush(l);
	}
out:
	link_unref(l);
}

void bq_link_close(struct bq_link *l, bool flush, int err, const char *reason)
{
	if (l->closing) {
		return;
	}
	snprintf(l->close_reason, sizeof(l->close_reason), "%s", reason ? reason : "closed");
	l->close_err = err;
	l->closing = true;
	if (flush && l->conn && l->out.len > 0) {
		bq_timer_start(l->flush_timer, LINK_FLUSH_TIMEOUT_MS);
		schedule_flush(l);
		return;
	}
	link_finish(l);
}

void bq_link_free(struct bq_link *l)
{
	if (!l) {
		return;
	}
	l->on_frame = NULL;
	l->on_close = NULL;
	if (l->conn) {
		bq_conn_close(l->conn);
		l->conn = NULL;
		l->conn_closed = true;
		l->closing = true;
	}
	if (l->refs > 0) {
		l->free_pending = true;
		return;
	}
	link_destroy(l);
}

size_t bq_link_pending(const struct bq_link *l)
{
	return l->out.len;
}

bool bq_link_open(const struct bq_link *l)
{
	return !l->closing;
}

const char *bq_link_name(const struct bq_link *l)
{
	return l->name;
}

const char *bq_link_peer(const struct bq_link *l)
{
	return l->conn ? bq_conn_peer(l->conn) : "(closed)";
}

const struct bq_link_stats *bq_link_stats(const struct bq_link *l)
{
	return &l->stats;
}

void bq_link_set_data(struct bq_link *l, void *data)
{
	l->data = data;
}

void *bq_link_data(const struct bq_link *l)
{
	return l->data;
}
