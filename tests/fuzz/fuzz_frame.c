/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the frame codec: decode frames from the input as a stream (checking that every
 * prefix of the first frame asks for more bytes), run every payload decoder and the
 * directory iterator, and check that whatever decodes re-encodes to the same bytes.
 * The input is also fed to the payload decoders directly, since a fuzzer rarely
 * builds a valid header around an interesting payload. Any broken invariant aborts.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/auth.h"
#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			abort();                                                           \
		}                                                                          \
	} while (0)

/* Big enough for any payload: the raw input is also decoded as one (up to 64 KiB). */
static uint8_t out[UINT16_MAX + 1];

/* Re-encoding a payload that decoded gives back exactly its bytes. */
static void same_payload(const struct bq_frame *f, int n)
{
	CHECK(n >= 0);
	CHECK((size_t)n == f->payload_len);
	CHECK(n == 0 || memcmp(out, f->payload, (size_t)n) == 0);
}

/* Walk entries, rebuilding them with the writer w when it is given. */
static int walk_entries(const uint8_t *p, size_t len, uint16_t count, struct bq_dirw *w)
{
	struct bq_dir_iter it;
	struct bq_dir_entry e;
	int rc, seen = 0;

	bq_dir_iter_init(&it, p, len, count);
	while ((rc = bq_dir_iter_next(&it, &e)) == 1) {
		seen++;
		if (w) {
			CHECK(bq_dirw_add(w, &e) == 0);
		}
	}
	CHECK(rc == 0 || rc == -EBADMSG);
	/* errors are sticky */
	if (rc < 0) {
		CHECK(bq_dir_iter_next(&it, &e) == rc);
	}
	return rc < 0 ? rc : seen;
}

static void payloads(const struct bq_frame *f)
{
	struct bq_hello h;
	struct bq_attach a;
	struct bq_scan s;
	struct bq_directory d;
	struct bq_announce an;
	struct bq_msg m;
	struct bq_ack ack;
	struct bq_ping ping;
	struct bq_error e;
	struct bq_dirw w;

	if (bq_hello_decode(f, &h) == 0) {
		same_payload(f, bq_hello_encode(&h, out, sizeof(out)));
	}
	if (bq_attach_decode(f, &a) == 0) {
		same_payload(f, bq_attach_encode(&a, out, sizeof(out)));
	}
	if (bq_detach_decode(f) == 0) {
		CHECK(f->payload_len == 0);
	}
	if (bq_scan_decode(f, &s) == 0) {
		/* a flags byte is there only when not 0, and holds known bits only */
		CHECK((s.flags & ~BQ_SCAN_KNOWN) == 0);
		CHECK(f->payload_len == (s.flags ? 11 : 10));
		same_payload(f, bq_scan_encode(&s, out, sizeof(out)));
	}
	if (bq_msg_decode(f, &m) == 0) {
		CHECK(m.text_len <= BQ_TEXT_MAX);
		same_payload(f, bq_msg_encode(&m, out, sizeof(out)));
	}
	if (bq_ack_decode(f, &ack) == 0) {
		same_payload(f, bq_ack_encode(&ack, out, sizeof(out)));
	}
	if (bq_ping_decode(f, &ping) == 0) {
		same_payload(f, bq_ping_encode(&ping, out, sizeof(out)));
	}
	if (bq_error_decode(f, &e) == 0) {
		same_payload(f, bq_error_encode(&e, out, sizeof(out)));
	}
	if (bq_directory_decode(f, &d) == 0) {
		CHECK(bq_dirw_init_directory(&w, out, sizeof(out), 0, d.dflags) == 0);
		CHECK(walk_entries(d.entries, d.entries_len, d.count, &w) == d.count);
		same_payload(f, (int)bq_dirw_finish(&w, d.next_cursor));
	}
	if (bq_announce_decode(f, &an) == 0) {
		CHECK(bq_dirw_init_announce(&w, out, sizeof(out), &an) == 0);
		CHECK(walk_entries(an.users, an.users_len, an.n_users, &w) == an.n_users);
		same_payload(f, (int)bq_dirw_finish(&w, 0));
	}
	/* The raw payload as a list of entries, with a count that is probably wrong. */
	if (f->payload_len) {
		walk_entries(f->payload, f->payload_len, f->payload[0], NULL);
	}
}

static void whole_frame(const uint8_t *raw, size_t n, const struct bq_frame *f)
{
	static uint8_t copy[BQ_FRAME_MAX];
	static const uint8_t key[BQ_KEY_LEN] = { 1, 2, 3 };
	struct bq_frame g;
	int rc;

	CHECK(n >= BQ_FRAME_HEADER_MIN && n <= BQ_FRAME_MAX);
	CHECK(bq_frame_length(raw, n) == n);
	CHECK(bq_frame_encoded_size(f) == n);
	CHECK(f->src_len <= BQ_USER_ID_MAX && f->dst_len <= BQ_USER_ID_MAX);
	CHECK(!(f->flags & BQ_FF_AUTH) == !f->tag);
	payloads(f);

	/* encode(decode(bytes)) == bytes, the tag aside (the encoder leaves it zero) */
	rc = bq_frame_encode(f, out, sizeof(out));
	if (f->type == BQ_T_MSG && f->payload_len > BQ_TEXT_MAX) {
		CHECK(rc == -EINVAL);
	} else {
		size_t body = n - ((f->flags & BQ_FF_AUTH) ? BQ_TAG_LEN : 0);

		CHECK(rc == (int)n);
		CHECK(memcmp(out, raw, body) == 0);
		CHECK(bq_frame_decode(out, n, &g) == (int)n);
		CHECK(bq_frame_encode(f, out, n - 1) == -ENOSPC);
	}

	/* a relay's rewrite keeps the frame valid */
	memcpy(copy, raw, n);
	bq_frame_patch_hops(copy, (uint8_t)(f->ttl - 1), (uint8_t)(f->hops + 1));
	CHECK(bq_frame_decode(copy, n, &g) == (int)n);
	CHECK(g.ttl == (uint8_t)(f->ttl - 1) && g.hops == (uint8_t)(f->hops + 1));

	if (f->flags & BQ_FF_AUTH) {
		struct bq_auth *a = bq_auth_new(key);

		if (a) {
			/* a fuzzer does not forge tags; signing makes it verify */
			CHECK(bq_auth_sign(a, copy, n) == 0);
			CHECK(bq_auth_verify(a, copy, n) == 0);
			bq_auth_free(a);
		}
	}
}

/* A decoder never reports a frame before all of it is there. */
static void prefixes(const uint8_t *data, size_t size)
{
	struct bq_frame f;
	size_t total = bq_frame_length(data, size);
	size_t end = total && total < size ? total : size;
	size_t step = end > 512 ? end / 64 : 1;

	for (size_t k = 0; k < end; k += step) {
		int rc = bq_frame_decode(data, k, &f);

		CHECK(rc == 0 || (rc == -EMSGSIZE && k >= 2 && total > BQ_FRAME_MAX));
	}
	if (end) {
		int rc = bq_frame_decode(data, end - 1, &f);

		CHECK(rc == 0 || rc == -EMSGSIZE);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bq_frame f = { 0 };
	size_t off = 0;

	prefixes(data, size);
	while (off < size) {
		int n = bq_frame_decode(data + off, size - off, &f);

		if (n == -EMSGSIZE) {
			CHECK(bq_frame_length(data + off, size - off) > BQ_FRAME_MAX);
		}
		if (n == -EPROTONOSUPPORT) {
			CHECK(f.version != BQ_PROTO_VERSION);
		}
		if (n <= 0) {
			/* need more, or an error: a link would stop reading this peer here */
			break;
		}
		CHECK((size_t)n <= size - off);
		whole_frame(data + off, (size_t)n, &f);
		bq_frame_type_name(f.type);
		off += (size_t)n;
	}

	/* The whole input as a payload. */
	f = (struct bq_frame){
		.payload = data,
		.payload_len = size > UINT16_MAX ? UINT16_MAX : (uint16_t)size,
	};
	payloads(&f);
	return 0;
}
