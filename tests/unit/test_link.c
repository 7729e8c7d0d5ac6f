/* SPDX-License-Identifier: MIT */
/*
 * The framed link over an in-memory pair: frames both ways, the protocol-level error
 * rules every engine relies on, authentication, heartbeat and close semantics.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "loop/loop.h"
#include "mesh/link.h"
#include "proto/auth.h"
#include "proto/frame.h"
#include "testutil.h"
#include "transport/conn.h"

struct rx {
	int frames;
	uint8_t last_type;
	uint64_t last_id;
	char last_payload[256];
	int closed;
	int close_err;
	char reason[192];
};

static void on_frame(struct bq_link *l, const struct bq_frame *f, const uint8_t *raw,
		     size_t raw_len, void *ud)
{
	struct rx *rx = ud;

	rx->frames++;
	rx->last_type = f->type;
	rx->last_id = f->msg_id;
	snprintf(rx->last_payload, sizeof(rx->last_payload), "%.*s", (int)f->payload_len,
		 (const char *)f->payload);
}

static void on_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	struct rx *rx = ud;

	rx->closed++;
	rx->close_err = err;
	snprintf(rx->reason, sizeof(rx->reason), "%s", reason);
}

static struct bq_frame msg_frame(uint64_t id, const char *text)
{
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = BQ_T_MSG,
		.ttl = 7,
		.msg_id = id,
		.src = "alice",
		.src_len = 5,
		.dst = "bob",
		.dst_len = 3,
		.payload = (const uint8_t *)text,
		.payload_len = (uint16_t)strlen(text),
	};
	return f;
}

struct pair {
	struct bq_loop *loop;
	struct bq_link *a, *b;
	struct rx ra, rb;
};

static void pair_open(struct pair *p, const struct bq_auth *ka, const struct bq_auth *kb,
		      bool b_requires_auth)
{
	struct bq_conn *ca, *cb;
	struct bq_link_config cfg = { .name = "a" };

	memset(p, 0, sizeof(*p));
	p->loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(p->loop);
	ck_assert_int_eq(bq_conn_mem_pair(p->loop, 1 << 20, &ca, &cb), 0);
	cfg.auth = ka;
	p->a = bq_link_new(p->loop, ca, &cfg, NULL);
	cfg.name = "b";
	cfg.auth = kb;
	cfg.require_auth = b_requires_auth;
	p->b = bq_link_new(p->loop, cb, &cfg, NULL);
	ck_assert_ptr_nonnull(p->a);
	ck_assert_ptr_nonnull(p->b);
	bq_link_set_handlers(p->a, on_frame, on_close, &p->ra);
	bq_link_set_handlers(p->b, on_frame, on_close, &p->rb);
}

static void pair_close(struct pair *p)
{
	bq_link_free(p->a);
	bq_link_free(p->b);
	bq_loop_free(p->loop);
}

static bool b_has_3(void *ud)
{
	return ((struct pair *)ud)->rb.frames >= 3;
}

static bool b_closed(void *ud)
{
	return ((struct pair *)ud)->rb.closed > 0;
}

static bool a_closed(void *ud)
{
	return ((struct pair *)ud)->ra.closed > 0;
}

static bool a_got_frame(void *ud)
{
	return ((struct pair *)ud)->ra.frames > 0;
}

START_TEST(test_frames_arrive_in_order)
{
	struct pair p;
	struct bq_frame f;

	pair_open(&p, NULL, NULL, false);
	for (uint64_t id = 1; id <= 3; id++) {
		char text[16];

		snprintf(text, sizeof(text), "m%llu", (unsigned long long)id);
		f = msg_frame(id, text);
		ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	}
	ck_assert(bq_test_run_until(p.loop, b_has_3, &p, 2000));
	ck_assert_int_eq(p.rb.frames, 3);
	ck_assert_uint_eq(p.rb.last_id, 3);
	ck_assert_str_eq(p.rb.last_payload, "m3");
	ck_assert_uint_eq(bq_link_stats(p.a)->frames_out, 3);
	ck_assert_uint_eq(bq_link_stats(p.b)->frames_in, 3);
	pair_close(&p);
}
END_TEST

/* Unknown type: ERROR code 2 goes back, a counter moves, the link stays up. */
START_TEST(test_unknown_type_answered_link_stays)
{
	struct pair p;
	struct bq_frame f = msg_frame(9, "x");

	pair_open(&p, NULL, NULL, false);
	f.type = 200;
	ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	ck_assert(bq_test_run_until(p.loop, a_got_frame, &p, 2000));
	ck_assert_int_eq(p.ra.last_type, BQ_T_ERROR);
	ck_assert_uint_eq(bq_link_stats(p.b)->unknown_types, 1);
	ck_assert_int_eq(p.rb.frames, 0);
	f = msg_frame(10, "after");
	ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	bq_test_run_until(p.loop, b_closed, &p, 100);
	ck_assert(bq_link_open(p.b));
	ck_assert_int_eq(p.rb.frames, 1);
	pair_close(&p);
}
END_TEST

/* Raw bytes written straight into the pair, bypassing the encoder. */
static void write_raw(struct pair *p, const uint8_t *bytes, size_t len)
{
	ck_assert_int_eq(bq_link_send_raw(p->a, bytes, len), 0);
}

START_TEST(test_oversize_length_disconnects)
{
	struct pair p;
	/* Announces BQ_FRAME_MAX - 1 bytes after the length field: one too many. */
	uint8_t bytes[2] = { (BQ_FRAME_MAX - 1) >> 8, (BQ_FRAME_MAX - 1) & 0xff };

	pair_open(&p, NULL, NULL, false);
	write_raw(&p, bytes, sizeof(bytes));
	ck_assert(bq_test_run_until(p.loop, b_closed, &p, 2000));
	ck_assert_int_eq(p.rb.close_err, -EMSGSIZE);
	ck_assert_ptr_nonnull(strstr(p.rb.reason, "over the limit"));
	ck_assert_uint_eq(bq_link_stats(p.b)->oversize, 1);
	pair_close(&p);
}
END_TEST

START_TEST(test_version_mismatch_names_both)
{
	struct pair p;
	uint8_t buf[128];
	struct bq_frame f = msg_frame(1, "v");
	int n = bq_frame_encode(&f, buf, sizeof(buf));

	ck_assert_int_gt(n, 0);
	buf[2] = 9; /* version byte */
	pair_open(&p, NULL, NULL, false);
	write_raw(&p, buf, (size_t)n);
	ck_assert(bq_test_run_until(p.loop, b_closed, &p, 2000));
	ck_assert_int_eq(p.rb.close_err, -EPROTONOSUPPORT);
	ck_assert_ptr_nonnull(strstr(p.rb.reason, "version 9"));
	ck_assert_ptr_nonnull(strstr(p.rb.reason, "version 1"));
	/* The peer got the ERROR frame before the close. */
	ck_assert(bq_test_run_until(p.loop, a_got_frame, &p, 2000));
	ck_assert_int_eq(p.ra.last_type, BQ_T_ERROR);
	pair_close(&p);
}
END_TEST

START_TEST(test_malformed_closes)
{
	struct pair p;
	uint8_t buf[128];
	struct bq_frame f = msg_frame(1, "m");
	int n = bq_frame_encode(&f, buf, sizeof(buf));

	buf[4] = 0x80; /* an unknown flag bit */
	pair_open(&p, NULL, NULL, false);
	write_raw(&p, buf, (size_t)n);
	ck_assert(bq_test_run_until(p.loop, b_closed, &p, 2000));
	ck_assert_int_eq(p.rb.close_err, -EBADMSG);
	ck_assert_uint_eq(bq_link_stats(p.b)->malformed, 1);
	pair_close(&p);
}
END_TEST

START_TEST(test_auth_required_drops_bad_and_unsigned)
{
	uint8_t k1[BQ_KEY_LEN], k2[BQ_KEY_LEN];
	struct bq_auth *good, *bad;
	struct pair p;
	struct bq_frame f = msg_frame(1, "signed");

	memset(k1, 1, sizeof(k1));
	memset(k2, 2, sizeof(k2));
	good = bq_auth_new(k1);
	bad = bq_auth_new(k2);
	/* a signs with the wrong key: b drops and counts. */
	pair_open(&p, bad, good, true);
	ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	bq_test_run_until(p.loop, b_has_3, &p, 200);
	ck_assert_int_eq(p.rb.frames, 0);
	ck_assert_uint_eq(bq_link_stats(p.b)->auth_failures, 1);
	pair_close(&p);
	/* a does not sign at all: dropped as well. */
	pair_open(&p, NULL, good, true);
	ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	bq_test_run_until(p.loop, b_has_3, &p, 200);
	ck_assert_int_eq(p.rb.frames, 0);
	ck_assert_uint_eq(bq_link_stats(p.b)->auth_failures, 1);
	pair_close(&p);
	/* the right key: accepted. */
	pair_open(&p, good, good, true);
	ck_assert_int_eq(bq_link_send(p.a, &f), 0);
	bq_test_run_until(p.loop, b_has_3, &p, 200);
	ck_assert_int_eq(p.rb.frames, 1);
	ck_assert_str_eq(p.rb.last_payload, "signed");
	pair_close(&p);
	bq_auth_free(good);
	bq_auth_free(bad);
}
END_TEST

/* Heartbeat: a silent peer is declared dead after dead_after. */
START_TEST(test_dead_peer_times_out)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_conn *ca, *cb;
	struct bq_link_config cfg = { .name = "hb", .ping_interval_ms = 20, .dead_after_ms = 60 };
	struct bq_link *l;
	struct pair p;

	memset(&p, 0, sizeof(p));
	ck_assert_int_eq(bq_conn_mem_pair(loop, 4096, &ca, &cb), 0);
	l = bq_link_new(loop, ca, &cfg, NULL);
	bq_link_set_handlers(l, on_frame, on_close, &p.ra);
	/* cb is never read: nothing ever comes back. */
	ck_assert(bq_test_run_until(loop, a_closed, &p, 2000));
	ck_assert_int_eq(p.ra.close_err, -ETIMEDOUT);
	bq_link_free(l);
	bq_conn_close(cb);
	bq_loop_free(loop);
}
END_TEST

/* PINGs are answered by the peer's link: the round trip gets measured. */
START_TEST(test_ping_measures_rtt)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_conn *ca, *cb;
	struct bq_link_config cfg = { .name = "a", .ping_interval_ms = 10 };
	struct bq_link_config cfgb = { .name = "b" };
	struct bq_link *a, *b;
	struct rx ra = { 0 }, rb = { 0 };

	ck_assert_int_eq(bq_conn_mem_pair(loop, 4096, &ca, &cb), 0);
	a = bq_link_new(loop, ca, &cfg, NULL);
	b = bq_link_new(loop, cb, &cfgb, NULL);
	bq_link_set_handlers(a, on_frame, on_close, &ra);
	bq_link_set_handlers(b, on_frame, on_close, &rb);
	for (int i = 0; i < 100 && bq_link_stats(a)->rtt_us == 0; i++) {
		bq_loop_run_once(loop, 10);
	}
	ck_assert_uint_gt(bq_link_stats(a)->rtt_us, 0);
	/* PING and PONG never reach the engines. */
	ck_assert_int_eq(ra.frames, 0);
	ck_assert_int_eq(rb.frames, 0);
	bq_link_free(a);
	bq_link_free(b);
	bq_loop_free(loop);
}
END_TEST

/* Peer EOF closes once; the owner may free inside on_close. */
static void free_on_close(struct bq_link *l, int err, const char *reason, void *ud)
{
	int *count = ud;

	(*count)++;
	bq_link_free(l);
}

START_TEST(test_peer_close_notifies_once)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_conn *ca, *cb;
	struct bq_link_config cfg = { .name = "a" };
	struct bq_link *a;
	int closes = 0;

	ck_assert_int_eq(bq_conn_mem_pair(loop, 4096, &ca, &cb), 0);
	a = bq_link_new(loop, ca, &cfg, NULL);
	bq_link_set_handlers(a, NULL, free_on_close, &closes);
	bq_conn_close(cb);
	for (int i = 0; i < 20; i++) {
		bq_loop_run_once(loop, 5);
	}
	ck_assert_int_eq(closes, 1);
	bq_loop_free(loop);
}
END_TEST

/* A full output queue refuses more (counted) instead of growing. */
START_TEST(test_output_queue_is_bounded)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_conn *ca, *cb;
	struct bq_link_config cfg = { .name = "a", .max_out_bytes = 1000 };
	struct bq_link *a;
	struct bq_frame f = msg_frame(1, "0123456789012345678901234567890123456789");
	int accepted = 0;

	ck_assert_int_eq(bq_conn_mem_pair(loop, 4096, &ca, &cb), 0);
	a = bq_link_new(loop, ca, &cfg, NULL);
	for (int i = 0; i < 100; i++) {
		if (bq_link_send(a, &f) == 0) {
			accepted++;
		}
	}
	ck_assert_int_gt(accepted, 5);
	ck_assert_int_lt(accepted, 100);
	ck_assert_uint_eq(bq_link_stats(a)->out_dropped, (uint64_t)(100 - accepted));
	ck_assert_uint_le(bq_link_pending(a), 1000);
	bq_link_free(a);
	bq_conn_close(cb);
	bq_loop_free(loop);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("link");
	TCase *tc = tcase_create("link");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_frames_arrive_in_order);
	tcase_add_test(tc, test_unknown_type_answered_link_stays);
	tcase_add_test(tc, test_oversize_length_disconnects);
	tcase_add_test(tc, test_version_mismatch_names_both);
	tcase_add_test(tc, test_malformed_closes);
	tcase_add_test(tc, test_auth_required_drops_bad_and_unsigned);
	tcase_add_test(tc, test_dead_peer_times_out);
	tcase_add_test(tc, test_ping_measures_rtt);
	tcase_add_test(tc, test_peer_close_notifies_once);
	tcase_add_test(tc, test_output_queue_is_bounded);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
