/* SPDX-License-Identifier: MIT */
/*
 * Byte scripts for the frame codec: for each message type the exact bytes, written by
 * hand from docs/protocol.md (not produced by the encoder), are compared with what the
 * encoder makes and decoded whole, split at every offset, and one byte at a time.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/frame.h"
#include "testutil.h"

/* Shared header pieces: msg ids 01..07 0N, Odin's and Loki's addresses, 1700000000000 ms. */
#define MID(n) "01 02 03 04 05 06 07 " #n " | "
#define ODIN "d8 3a dd 03 1e 77 | "
#define LOKI "02 00 00 00 00 02 | "
#define CLIENT "00 00 00 00 00 00 | "
#define TS "00 00 01 8b cf e5 68 00 | "
#define ALICE "05 61 6c 69 63 65 | "
#define BOB "03 62 6f 62 | "
#define NONE "00 | "
/* A user entry: bob, "Bob", home Loki, online, version 5, age 60 s. */
#define BOB_ENTRY "01 03 62 6f 62 03 42 6f 62 02 00 00 00 00 02 01 00 00 00 05 00 00 00 3c "

static const uint8_t odin[6] = { 0xd8, 0x3a, 0xdd, 0x03, 0x1e, 0x77 };
static const uint8_t loki[6] = { 0x02, 0, 0, 0, 0, 0x02 };
static const uint8_t client_origin[6];
static const uint64_t ts = 1700000000000ULL;

static uint64_t mid(unsigned n)
{
	return 0x0102030405060700ULL | n;
}

/* ---- the scripts ------------------------------------------------------------------- */

/*           len     ver type flags ttl hops attempt */
static const char hello_hex[] =
	"00 2a | 01 01 00 00 00 00 | " MID(01) ODIN TS NONE NONE "00 0a | "
	"01 | 00 00 00 03 | 04 4f 64 69 6e";
static const char attach_hex[] =
	"00 2b | 01 02 00 00 00 00 | " MID(02) CLIENT TS ALICE NONE "00 06 | "
	"05 41 6c 69 63 65";
static const char detach_hex[] =
	"00 25 | 01 03 00 00 00 00 | " MID(03) CLIENT TS ALICE NONE "00 00";
static const char scan_hex[] =
	"00 2f | 01 04 00 00 00 00 | " MID(04) CLIENT TS ALICE NONE "00 0a | "
	"00 00 00 00 00 00 00 2a | 01 00";
/* The flags byte: ONESHOT | SUMMARY, as a link that keeps no directory copy sends it. */
static const char scan_flags_hex[] =
	"00 30 | 01 04 00 00 00 00 | " MID(14) CLIENT TS ALICE NONE "00 0b | "
	"00 00 00 00 00 00 00 00 | 00 00 | 03";
/* Well framed, payload refused: flags 0 written out (not canonical), 12 bytes, bit 0x04. */
static const char scan_flags0_hex[] =
	"00 30 | 01 04 00 00 00 00 | " MID(24) CLIENT TS ALICE NONE "00 0b | "
	"00 00 00 00 00 00 00 00 | 00 00 | 00";
static const char scan_12_hex[] =
	"00 31 | 01 04 00 00 00 00 | " MID(34) CLIENT TS ALICE NONE "00 0c | "
	"00 00 00 00 00 00 00 00 | 00 00 | 03 00";
static const char scan_bit4_hex[] =
	"00 30 | 01 04 00 00 00 00 | " MID(44) CLIENT TS ALICE NONE "00 0b | "
	"00 00 00 00 00 00 00 00 | 00 00 | 07";
static const char directory_hex[] =
	"00 63 | 01 05 04 00 00 00 | " MID(05) ODIN TS NONE ALICE "00 3e | "
	"00 00 00 00 00 00 00 07 | 01 | 00 02 | " BOB_ENTRY "| "
	"02 02 00 00 00 00 02 04 4c 6f 6b 69 00 00 00 02 00 00 00 00 01 d8 3a dd 03 1e 77";
static const char announce_hex[] =
	"00 4b | 01 06 01 07 00 00 | " MID(06) LOKI TS NONE NONE "00 2b | "
	"00 00 00 09 | 01 | 04 4c 6f 6b 69 | 01 d8 3a dd 03 1e 77 | 00 01 | " BOB_ENTRY;
static const char msg_hex[] =
	"00 2e | 01 07 00 07 00 00 | " MID(07) CLIENT TS ALICE BOB "00 06 | "
	"68 69 20 62 6f 62";
static const char msg_bcast_hex[] =
	"00 2b | 01 07 01 07 00 00 | " MID(17) CLIENT TS ALICE NONE "00 06 | "
	"68 69 20 61 6c 6c";
static const char ack_hex[] =
	"00 39 | 01 08 00 07 00 00 | " MID(08) LOKI TS BOB ALICE "00 11 | "
	"01 02 03 04 05 06 07 07 | 02 | 07 6f 66 66 6c 69 6e 65";
static const char ping_hex[] =
	"00 28 | 01 09 00 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88";
static const char pong_hex[] =
	"00 28 | 01 0a 00 00 00 00 | " MID(0a) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88";
static const char error_hex[] =
	"00 33 | 01 0b 00 00 00 00 | " MID(0b) ODIN TS NONE NONE "00 13 | "
	"00 02 | 00 0f | 75 6e 6b 6e 6f 77 6e 20 74 79 70 65 20 39 39";
/* AUTH flag: the encoder reserves 16 zero bytes for bq_auth_sign. */
static const char ping_auth_hex[] =
	"00 38 | 01 09 02 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88 | 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
/* The smallest frame: no ids, no payload (34 bytes). */
static const char minimal_hex[] =
	"00 20 | 01 09 00 00 00 00 | " MID(09) ODIN TS NONE NONE "00 00";

/* ---- builders (the encoder side) and checkers (the decoder side) ------------------- */

static struct bq_frame hdr(uint8_t type, uint8_t flags, uint8_t ttl, unsigned n,
			   const uint8_t origin[6])
{
	struct bq_frame f = {
		.version = BQ_PROTO_VERSION,
		.type = type,
		.flags = flags,
		.ttl = ttl,
		.msg_id = mid(n),
		.timestamp_ms = ts,
	};

	memcpy(f.origin, origin, 6);
	return f;
}

static void check_hdr(const struct bq_frame *f, uint8_t type, uint8_t flags, uint8_t ttl,
		      unsigned n, const uint8_t origin[6], const char *src, const char *dst)
{
	ck_assert_uint_eq(f->version, 1);
	ck_assert_uint_eq(f->type, type);
	ck_assert_uint_eq(f->flags, flags);
	ck_assert_uint_eq(f->ttl, ttl);
	ck_assert_uint_eq(f->hops, 0);
	ck_assert_uint_eq(f->attempt, 0);
	ck_assert_uint_eq(f->msg_id, mid(n));
	ck_assert_mem_eq(f->origin, origin, 6);
	ck_assert_uint_eq(f->timestamp_ms, ts);
	ck_assert_uint_eq(f->src_len, strlen(src));
	ck_assert_uint_eq(f->dst_len, strlen(dst));
	if (f->src_len) {
		ck_assert_mem_eq(f->src, src, f->src_len);
	}
	if (f->dst_len) {
		ck_assert_mem_eq(f->dst, dst, f->dst_len);
	}
	ck_assert(bq_frame_type_known(f->type));
}

static int build_hello(uint8_t *buf, size_t cap)
{
	uint8_t p[64];
	struct bq_hello h = { .role = BQ_ROLE_NODE, .caps = BQ_CAP_RELAY | BQ_CAP_STORE,
			      .name = "Odin", .name_len = 4 };
	struct bq_frame f = hdr(BQ_T_HELLO, 0, 0, 1, odin);
	int n = bq_hello_encode(&h, p, sizeof(p));

	ck_assert_int_eq(n, 10);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_hello(const struct bq_frame *f)
{
	struct bq_hello h;

	check_hdr(f, BQ_T_HELLO, 0, 0, 1, odin, "", "");
	ck_assert_int_eq(bq_hello_decode(f, &h), 0);
	ck_assert_uint_eq(h.role, BQ_ROLE_NODE);
	ck_assert_uint_eq(h.caps, 3);
	ck_assert_uint_eq(h.name_len, 4);
	ck_assert_mem_eq(h.name, "Odin", 4);
	ck_assert_ptr_null(f->tag);
}

static int build_attach(uint8_t *buf, size_t cap)
{
	uint8_t p[64];
	struct bq_attach a = { .name = "Alice", .name_len = 5 };
	struct bq_frame f = hdr(BQ_T_ATTACH, 0, 0, 2, client_origin);
	int n = bq_attach_encode(&a, p, sizeof(p));

	ck_assert_int_eq(n, 6);
	f.src = "alice";
	f.src_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_attach(const struct bq_frame *f)
{
	struct bq_attach a;

	check_hdr(f, BQ_T_ATTACH, 0, 0, 2, client_origin, "alice", "");
	ck_assert_int_eq(bq_attach_decode(f, &a), 0);
	ck_assert_uint_eq(a.name_len, 5);
	ck_assert_mem_eq(a.name, "Alice", 5);
}

static int build_detach(uint8_t *buf, size_t cap)
{
	struct bq_frame f = hdr(BQ_T_DETACH, 0, 0, 3, client_origin);

	f.src = "alice";
	f.src_len = 5;
	return bq_frame_encode(&f, buf, cap);
}

static void check_detach(const struct bq_frame *f)
{
	check_hdr(f, BQ_T_DETACH, 0, 0, 3, client_origin, "alice", "");
	ck_assert_uint_eq(f->payload_len, 0);
	ck_assert_int_eq(bq_detach_decode(f), 0);
}

static int build_scan(uint8_t *buf, size_t cap)
{
	uint8_t p[16];
	struct bq_scan s = { .cursor = 42, .max_entries = 256 };
	struct bq_frame f = hdr(BQ_T_SCAN, 0, 0, 4, client_origin);
	int n = bq_scan_encode(&s, p, sizeof(p));

	ck_assert_int_eq(n, 10);
	f.src = "alice";
	f.src_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_scan(const struct bq_frame *f)
{
	struct bq_scan s;

	check_hdr(f, BQ_T_SCAN, 0, 0, 4, client_origin, "alice", "");
	ck_assert_int_eq(bq_scan_decode(f, &s), 0);
	ck_assert_uint_eq(s.cursor, 42);
	ck_assert_uint_eq(s.max_entries, 256);
}

static int build_scan_flags(uint8_t *buf, size_t cap)
{
	uint8_t p[16];
	struct bq_scan s = { .flags = BQ_SCAN_ONESHOT | BQ_SCAN_SUMMARY };
	struct bq_frame f = hdr(BQ_T_SCAN, 0, 0, 0x14, client_origin);
	int n = bq_scan_encode(&s, p, sizeof(p));

	ck_assert_int_eq(n, 11);
	f.src = "alice";
	f.src_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_scan_flags(const struct bq_frame *f)
{
	struct bq_scan s;

	check_hdr(f, BQ_T_SCAN, 0, 0, 0x14, client_origin, "alice", "");
	ck_assert_uint_eq(f->payload_len, 11);
	ck_assert_int_eq(bq_scan_decode(f, &s), 0);
	ck_assert_uint_eq(s.cursor, 0);
	ck_assert_uint_eq(s.max_entries, 0);
	ck_assert_uint_eq(s.flags, BQ_SCAN_ONESHOT | BQ_SCAN_SUMMARY);
}

/*
 * The bad SCANs are well framed (the frame codec does not look into payloads), so the
 * encoder side builds them from raw payload bytes: bq_scan_encode would not write them.
 */
static int build_scan_raw(uint8_t *buf, size_t cap, unsigned n, const char *hex)
{
	uint8_t p[16];
	struct bq_frame f = hdr(BQ_T_SCAN, 0, 0, n, client_origin);
	int len = bq_test_hex(hex, p, sizeof(p));

	ck_assert_int_gt(len, 0);
	f.src = "alice";
	f.src_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)len;
	return bq_frame_encode(&f, buf, cap);
}

static void check_scan_bad(const struct bq_frame *f, unsigned n, uint16_t plen)
{
	struct bq_scan s;

	check_hdr(f, BQ_T_SCAN, 0, 0, n, client_origin, "alice", "");
	ck_assert_uint_eq(f->payload_len, plen);
	ck_assert_int_eq(bq_scan_decode(f, &s), -EBADMSG);
}

static int build_scan_flags0(uint8_t *buf, size_t cap)
{
	uint8_t p[16];
	struct bq_scan s = { .flags = 0 };

	/* The encoder never writes a zero flags byte. */
	ck_assert_int_eq(bq_scan_encode(&s, p, sizeof(p)), 10);
	return build_scan_raw(buf, cap, 0x24, "00 00 00 00 00 00 00 00 00 00 00");
}

static void check_scan_flags0(const struct bq_frame *f)
{
	check_scan_bad(f, 0x24, 11);
}

static int build_scan_12(uint8_t *buf, size_t cap)
{
	return build_scan_raw(buf, cap, 0x34, "00 00 00 00 00 00 00 00 00 00 03 00");
}

static void check_scan_12(const struct bq_frame *f)
{
	check_scan_bad(f, 0x34, 12);
}

static int build_scan_bit4(uint8_t *buf, size_t cap)
{
	uint8_t p[16];
	struct bq_scan s = { .flags = 0x07 };

	ck_assert_int_eq(bq_scan_encode(&s, p, sizeof(p)), -EINVAL);
	return build_scan_raw(buf, cap, 0x44, "00 00 00 00 00 00 00 00 00 00 07");
}

static void check_scan_bit4(const struct bq_frame *f)
{
	check_scan_bad(f, 0x44, 11);
}

static const struct bq_dir_entry bob_entry = {
	.kind = BQ_DIR_USER, .id = "bob", .id_len = 3, .name = "Bob", .name_len = 3,
	.home = { 0x02, 0, 0, 0, 0, 0x02 }, .presence = BQ_PRES_ONLINE, .version = 5,
	.age_s = 60,
};

static const struct bq_dir_entry loki_entry = {
	.kind = BQ_DIR_NODE, .node = { 0x02, 0, 0, 0, 0, 0x02 }, .name = "Loki", .name_len = 4,
	.version = 2, .age_s = 0, .n_neigh = 1,
	.neigh = (const uint8_t *)"\xd8\x3a\xdd\x03\x1e\x77",
};

static int build_directory(uint8_t *buf, size_t cap)
{
	uint8_t p[256];
	struct bq_dirw w;
	struct bq_frame f = hdr(BQ_T_DIRECTORY, BQ_FF_MORE, 0, 5, odin);
	size_t n;

	/* The cursor is only known at the end: finish patches it in. */
	ck_assert_int_eq(bq_dirw_init_directory(&w, p, sizeof(p), 0, BQ_DIRF_SNAPSHOT), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &loki_entry), 0);
	n = bq_dirw_finish(&w, 7);
	ck_assert_uint_eq(n, 62);
	f.dst = "alice";
	f.dst_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_bob(const struct bq_dir_entry *e)
{
	ck_assert_uint_eq(e->kind, BQ_DIR_USER);
	ck_assert_uint_eq(e->id_len, 3);
	ck_assert_mem_eq(e->id, "bob", 3);
	ck_assert_uint_eq(e->name_len, 3);
	ck_assert_mem_eq(e->name, "Bob", 3);
	ck_assert_mem_eq(e->home, loki, 6);
	ck_assert_uint_eq(e->presence, BQ_PRES_ONLINE);
	ck_assert_uint_eq(e->version, 5);
	ck_assert_uint_eq(e->age_s, 60);
}

static void check_directory(const struct bq_frame *f)
{
	struct bq_directory d;
	struct bq_dir_iter it;
	struct bq_dir_entry e;

	check_hdr(f, BQ_T_DIRECTORY, BQ_FF_MORE, 0, 5, odin, "", "alice");
	ck_assert_int_eq(bq_directory_decode(f, &d), 0);
	ck_assert_uint_eq(d.next_cursor, 7);
	ck_assert_uint_eq(d.dflags, BQ_DIRF_SNAPSHOT);
	ck_assert_uint_eq(d.count, 2);
	ck_assert_uint_eq(d.entries_len, 51);
	bq_dir_iter_init(&it, d.entries, d.entries_len, d.count);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	check_bob(&e);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	ck_assert_uint_eq(e.kind, BQ_DIR_NODE);
	ck_assert_mem_eq(e.node, loki, 6);
	ck_assert_uint_eq(e.name_len, 4);
	ck_assert_mem_eq(e.name, "Loki", 4);
	ck_assert_uint_eq(e.version, 2);
	ck_assert_uint_eq(e.age_s, 0);
	ck_assert_uint_eq(e.n_neigh, 1);
	ck_assert_mem_eq(e.neigh, odin, 6);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 0);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 0);
}

static int build_announce(uint8_t *buf, size_t cap)
{
	uint8_t p[256];
	struct bq_dirw w;
	struct bq_announce a = { .seq = 9, .aflags = BQ_ANNF_FULL, .name = "Loki", .name_len = 4,
				 .n_neigh = 1, .neigh = odin };
	struct bq_frame f = hdr(BQ_T_ANNOUNCE, BQ_FF_BROADCAST, BQ_DEFAULT_TTL, 6, loki);
	size_t n;

	ck_assert_int_eq(bq_dirw_init_announce(&w, p, sizeof(p), &a), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), 0);
	n = bq_dirw_finish(&w, 0);
	ck_assert_uint_eq(n, 43);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_announce(const struct bq_frame *f)
{
	struct bq_announce a;
	struct bq_dir_iter it;
	struct bq_dir_entry e;

	check_hdr(f, BQ_T_ANNOUNCE, BQ_FF_BROADCAST, 7, 6, loki, "", "");
	ck_assert_int_eq(bq_announce_decode(f, &a), 0);
	ck_assert_uint_eq(a.seq, 9);
	ck_assert_uint_eq(a.aflags, BQ_ANNF_FULL);
	ck_assert_uint_eq(a.name_len, 4);
	ck_assert_mem_eq(a.name, "Loki", 4);
	ck_assert_uint_eq(a.n_neigh, 1);
	ck_assert_mem_eq(a.neigh, odin, 6);
	ck_assert_uint_eq(a.n_users, 1);
	ck_assert_uint_eq(a.users_len, 24);
	bq_dir_iter_init(&it, a.users, a.users_len, a.n_users);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	check_bob(&e);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 0);
}

static int build_msg(uint8_t *buf, size_t cap)
{
	uint8_t p[64];
	struct bq_msg m = { .text = "hi bob", .text_len = 6 };
	struct bq_frame f = hdr(BQ_T_MSG, 0, BQ_DEFAULT_TTL, 7, client_origin);
	int n = bq_msg_encode(&m, p, sizeof(p));

	ck_assert_int_eq(n, 6);
	f.src = "alice";
	f.src_len = 5;
	f.dst = "bob";
	f.dst_len = 3;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_msg(const struct bq_frame *f)
{
	struct bq_msg m;

	check_hdr(f, BQ_T_MSG, 0, 7, 7, client_origin, "alice", "bob");
	ck_assert_int_eq(bq_msg_decode(f, &m), 0);
	ck_assert_uint_eq(m.text_len, 6);
	ck_assert_mem_eq(m.text, "hi bob", 6);
}

static int build_msg_bcast(uint8_t *buf, size_t cap)
{
	struct bq_frame f = hdr(BQ_T_MSG, BQ_FF_BROADCAST, BQ_DEFAULT_TTL, 0x17, client_origin);

	f.src = "alice";
	f.src_len = 5;
	f.payload = (const uint8_t *)"hi all";
	f.payload_len = 6;
	return bq_frame_encode(&f, buf, cap);
}

static void check_msg_bcast(const struct bq_frame *f)
{
	struct bq_msg m;

	check_hdr(f, BQ_T_MSG, BQ_FF_BROADCAST, 7, 0x17, client_origin, "alice", "");
	ck_assert_int_eq(bq_msg_decode(f, &m), 0);
	ck_assert_uint_eq(m.text_len, 6);
	ck_assert_mem_eq(m.text, "hi all", 6);
}

static int build_ack(uint8_t *buf, size_t cap)
{
	uint8_t p[64];
	struct bq_ack a = { .acked_id = mid(7), .status = BQ_ACK_STORED, .reason = "offline",
			    .reason_len = 7 };
	struct bq_frame f = hdr(BQ_T_ACK, 0, BQ_DEFAULT_TTL, 8, loki);
	int n = bq_ack_encode(&a, p, sizeof(p));

	ck_assert_int_eq(n, 17);
	f.src = "bob";
	f.src_len = 3;
	f.dst = "alice";
	f.dst_len = 5;
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_ack(const struct bq_frame *f)
{
	struct bq_ack a;

	check_hdr(f, BQ_T_ACK, 0, 7, 8, loki, "bob", "alice");
	ck_assert_int_eq(bq_ack_decode(f, &a), 0);
	ck_assert_uint_eq(a.acked_id, mid(7));
	ck_assert_uint_eq(a.status, BQ_ACK_STORED);
	ck_assert_str_eq(bq_ack_status_name(a.status), "stored");
	ck_assert_uint_eq(a.reason_len, 7);
	ck_assert_mem_eq(a.reason, "offline", 7);
}

static int build_pingish(uint8_t *buf, size_t cap, uint8_t type, uint8_t flags, unsigned n)
{
	uint8_t p[8];
	struct bq_ping ping = { .nonce = 0x1122334455667788ULL };
	struct bq_frame f = hdr(type, flags, 0, n, odin);

	ck_assert_int_eq(bq_ping_encode(&ping, p, sizeof(p)), 8);
	f.payload = p;
	f.payload_len = 8;
	return bq_frame_encode(&f, buf, cap);
}

static int build_ping(uint8_t *buf, size_t cap)
{
	return build_pingish(buf, cap, BQ_T_PING, 0, 9);
}

static int build_pong(uint8_t *buf, size_t cap)
{
	return build_pingish(buf, cap, BQ_T_PONG, 0, 0x0a);
}

static int build_ping_auth(uint8_t *buf, size_t cap)
{
	return build_pingish(buf, cap, BQ_T_PING, BQ_FF_AUTH, 9);
}

static void check_pingish(const struct bq_frame *f, uint8_t type, uint8_t flags, unsigned n)
{
	struct bq_ping p;

	check_hdr(f, type, flags, 0, n, odin, "", "");
	ck_assert_int_eq(bq_ping_decode(f, &p), 0);
	ck_assert_uint_eq(p.nonce, 0x1122334455667788ULL);
}

static void check_ping(const struct bq_frame *f)
{
	check_pingish(f, BQ_T_PING, 0, 9);
	ck_assert_ptr_null(f->tag);
}

static void check_pong(const struct bq_frame *f)
{
	check_pingish(f, BQ_T_PONG, 0, 0x0a);
}

static void check_ping_auth(const struct bq_frame *f)
{
	static const uint8_t zero[BQ_TAG_LEN];

	check_pingish(f, BQ_T_PING, BQ_FF_AUTH, 9);
	ck_assert_ptr_nonnull(f->tag);
	ck_assert_mem_eq(f->tag, zero, BQ_TAG_LEN);
	/* The tag follows the payload directly. */
	ck_assert_ptr_eq(f->tag, f->payload + f->payload_len);
}

static int build_error(uint8_t *buf, size_t cap)
{
	uint8_t p[64];
	struct bq_error e = { .code = BQ_ERR_UNKNOWN_TYPE, .text = "unknown type 99",
			      .text_len = 15 };
	struct bq_frame f = hdr(BQ_T_ERROR, 0, 0, 0x0b, odin);
	int n = bq_error_encode(&e, p, sizeof(p));

	ck_assert_int_eq(n, 19);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	return bq_frame_encode(&f, buf, cap);
}

static void check_error(const struct bq_frame *f)
{
	struct bq_error e;

	check_hdr(f, BQ_T_ERROR, 0, 0, 0x0b, odin, "", "");
	ck_assert_int_eq(bq_error_decode(f, &e), 0);
	ck_assert_uint_eq(e.code, BQ_ERR_UNKNOWN_TYPE);
	ck_assert_uint_eq(e.text_len, 15);
	ck_assert_mem_eq(e.text, "unknown type 99", 15);
}

static int build_minimal(uint8_t *buf, size_t cap)
{
	struct bq_frame f = hdr(BQ_T_PING, 0, 0, 9, odin);

	f.version = 0; /* 0 means "this version" to the encoder */
	return bq_frame_encode(&f, buf, cap);
}

static void check_minimal(const struct bq_frame *f)
{
	struct bq_ping p;

	check_hdr(f, BQ_T_PING, 0, 0, 9, odin, "", "");
	ck_assert_uint_eq(f->payload_len, 0);
	ck_assert_int_eq(bq_ping_decode(f, &p), -EBADMSG);
}

struct script {
	const char *name;
	const char *hex;
	size_t len;
	int (*build)(uint8_t *buf, size_t cap);
	void (*check)(const struct bq_frame *f);
};

static const struct script scripts[] = {
	{ "HELLO", hello_hex, 44, build_hello, check_hello },
	{ "ATTACH", attach_hex, 45, build_attach, check_attach },
	{ "DETACH", detach_hex, 39, build_detach, check_detach },
	{ "SCAN", scan_hex, 49, build_scan, check_scan },
	{ "SCAN flags", scan_flags_hex, 50, build_scan_flags, check_scan_flags },
	{ "SCAN flags 0 (bad)", scan_flags0_hex, 50, build_scan_flags0, check_scan_flags0 },
	{ "SCAN 12 bytes (bad)", scan_12_hex, 51, build_scan_12, check_scan_12 },
	{ "SCAN unknown flag (bad)", scan_bit4_hex, 50, build_scan_bit4, check_scan_bit4 },
	{ "DIRECTORY", directory_hex, 101, build_directory, check_directory },
	{ "ANNOUNCE", announce_hex, 77, build_announce, check_announce },
	{ "MSG", msg_hex, 48, build_msg, check_msg },
	{ "MSG broadcast", msg_bcast_hex, 45, build_msg_bcast, check_msg_bcast },
	{ "ACK", ack_hex, 59, build_ack, check_ack },
	{ "PING", ping_hex, 42, build_ping, check_ping },
	{ "PONG", pong_hex, 42, build_pong, check_pong },
	{ "ERROR", error_hex, 53, build_error, check_error },
	{ "PING auth", ping_auth_hex, 58, build_ping_auth, check_ping_auth },
	{ "minimal", minimal_hex, 34, build_minimal, check_minimal },
};
#define N_SCRIPTS (sizeof(scripts) / sizeof(scripts[0]))

static size_t script_bytes(const struct script *s, uint8_t *out, size_t cap)
{
	int n = bq_test_hex(s->hex, out, cap);

	ck_assert_msg(n == (int)s->len, "%s: hex gives %d bytes, expected %zu", s->name, n,
		      s->len);
	return (size_t)n;
}

/* Decode from a heap copy of exactly len bytes, so ASan sees any read past the end. */
static int decode_exact(const uint8_t *bytes, size_t len, struct bq_frame *f, uint8_t **copy)
{
	*copy = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(*copy);
	memcpy(*copy, bytes, len);
	return bq_frame_decode(*copy, len, f);
}

/* ---- a stream receiver like the link's: accumulate, decode every whole frame ------- */

struct rx {
	uint8_t buf[2 * BQ_FRAME_MAX];
	size_t len;
	size_t frames;
	const struct script *expect[N_SCRIPTS + 1];
	size_t n_expect;
};

static void rx_feed(struct rx *r, const uint8_t *p, size_t n)
{
	size_t off = 0;

	ck_assert_uint_le(r->len + n, sizeof(r->buf));
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	for (;;) {
		struct bq_frame f;
		int rc = bq_frame_decode(r->buf + off, r->len - off, &f);

		ck_assert_int_ge(rc, 0);
		if (rc == 0) {
			break;
		}
		ck_assert_uint_lt(r->frames, r->n_expect);
		ck_assert_uint_eq((size_t)rc, r->expect[r->frames]->len);
		r->expect[r->frames]->check(&f);
		r->frames++;
		off += (size_t)rc;
	}
	memmove(r->buf, r->buf + off, r->len - off);
	r->len -= off;
}

/* ---- tests ------------------------------------------------------------------------- */

START_TEST(test_encode_matches_script)
{
	const struct script *s = &scripts[_i];
	uint8_t want[512], got[512];
	size_t n = script_bytes(s, want, sizeof(want));
	int rc = s->build(got, sizeof(got));

	ck_assert_msg(rc == (int)n, "%s: encoded %d bytes, script has %zu", s->name, rc, n);
	ck_assert_mem_eq(got, want, n);
	ck_assert_uint_eq(bq_frame_length(got, 2), n);
	/* The exact size is enough; one byte less is not. */
	ck_assert_int_eq(s->build(got, n), (int)n);
	ck_assert_int_eq(s->build(got, n - 1), -ENOSPC);
}
END_TEST

START_TEST(test_decode_whole)
{
	const struct script *s = &scripts[_i];
	uint8_t bytes[512], *copy;
	size_t n = script_bytes(s, bytes, sizeof(bytes));
	struct bq_frame f;

	ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), (int)n);
	s->check(&f);
	free(copy);
}
END_TEST

START_TEST(test_decode_every_prefix_needs_more)
{
	const struct script *s = &scripts[_i];
	uint8_t bytes[512], *copy;
	size_t n = script_bytes(s, bytes, sizeof(bytes));
	struct bq_frame f;

	for (size_t k = 0; k < n; k++) {
		ck_assert_msg(decode_exact(bytes, k, &f, &copy) == 0, "%s: prefix %zu", s->name, k);
		free(copy);
		ck_assert_uint_eq(bq_frame_length(bytes, k), k < 2 ? 0 : n);
	}
}
END_TEST

START_TEST(test_decode_split_two_chunks)
{
	const struct script *s = &scripts[_i];
	uint8_t bytes[512];
	size_t n = script_bytes(s, bytes, sizeof(bytes));
	static struct rx r;

	for (size_t k = 0; k <= n; k++) {
		memset(&r, 0, sizeof(r));
		r.expect[0] = s;
		r.n_expect = 1;
		rx_feed(&r, bytes, k);
		ck_assert_uint_eq(r.frames, k == n ? 1 : 0);
		rx_feed(&r, bytes + k, n - k);
		ck_assert_uint_eq(r.frames, 1);
		ck_assert_uint_eq(r.len, 0);
	}
}
END_TEST

START_TEST(test_decode_byte_at_a_time)
{
	const struct script *s = &scripts[_i];
	uint8_t bytes[512];
	size_t n = script_bytes(s, bytes, sizeof(bytes));
	static struct rx r;

	memset(&r, 0, sizeof(r));
	r.expect[0] = s;
	r.n_expect = 1;
	for (size_t k = 0; k < n; k++) {
		rx_feed(&r, bytes + k, 1);
		ck_assert_uint_eq(r.frames, k == n - 1 ? 1 : 0);
	}
	ck_assert_uint_eq(r.len, 0);
}
END_TEST

/* Every script back to back, delivered whole, byte by byte and in odd-sized chunks. */
START_TEST(test_back_to_back)
{
	static uint8_t all[4096];
	static struct rx r;
	size_t total = 0;
	const size_t chunks[] = { SIZE_MAX, 1, 7, 45, 100 };

	for (size_t i = 0; i < N_SCRIPTS; i++) {
		total += script_bytes(&scripts[i], all + total, sizeof(all) - total);
	}
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		memset(&r, 0, sizeof(r));
		for (size_t i = 0; i < N_SCRIPTS; i++) {
			r.expect[i] = &scripts[i];
		}
		r.n_expect = N_SCRIPTS;
		for (size_t off = 0; off < total;) {
			size_t n = total - off < chunks[c] ? total - off : chunks[c];

			rx_feed(&r, all + off, n);
			off += n;
		}
		ck_assert_uint_eq(r.frames, N_SCRIPTS);
		ck_assert_uint_eq(r.len, 0);
	}
	/* Two frames in one buffer: the first decode stops at the boundary. */
	{
		struct bq_frame f;

		ck_assert_int_eq(bq_frame_decode(all, total, &f), 44);
		check_hello(&f);
		ck_assert_int_eq(bq_frame_decode(all + 44, total - 44, &f), 45);
		check_attach(&f);
	}
}
END_TEST

/* A frame of exactly BQ_FRAME_MAX bytes: ERROR with a 16346-byte text. */
static size_t build_max_bytes(uint8_t *out)
{
	const char *head = "3f fe | 01 0b 00 00 00 00 | " MID(0b) ODIN TS NONE NONE "3f de | "
			   "00 03 | 3f da";
	int n = bq_test_hex(head, out, BQ_FRAME_MAX);

	ck_assert_int_eq(n, 38);
	memset(out + n, 'x', BQ_FRAME_MAX - (size_t)n);
	return BQ_FRAME_MAX;
}

START_TEST(test_length_limits)
{
	static uint8_t bytes[BQ_FRAME_MAX + 1], enc[BQ_FRAME_MAX + 1];
	static uint8_t text[BQ_FRAME_MAX];
	uint8_t *copy;
	struct bq_frame f;
	struct bq_error e;
	size_t n = build_max_bytes(bytes);

	/* max: decodes */
	ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), BQ_FRAME_MAX);
	ck_assert_uint_eq(f.payload_len, BQ_FRAME_MAX - BQ_FRAME_HEADER_MIN);
	ck_assert_int_eq(bq_error_decode(&f, &e), 0);
	ck_assert_uint_eq(e.code, BQ_ERR_MALFORMED);
	ck_assert_uint_eq(e.text_len, 16346);
	ck_assert_uint_eq(bq_frame_encoded_size(&f), BQ_FRAME_MAX);
	/* and the encoder makes the same bytes */
	ck_assert_int_eq(bq_frame_encode(&f, enc, sizeof(enc)), BQ_FRAME_MAX);
	ck_assert_mem_eq(enc, bytes, BQ_FRAME_MAX);
	/* max + 1 is refused by the encoder (any field growing by one) */
	memset(text, 'x', sizeof(text));
	f.payload = text;
	f.payload_len++;
	ck_assert_int_eq(bq_frame_encode(&f, enc, sizeof(enc)), -EINVAL);
	f.payload_len--;
	f.flags = BQ_FF_AUTH;
	ck_assert_int_eq(bq_frame_encode(&f, enc, sizeof(enc)), -EINVAL);
	free(copy);

	/* A length field announcing BQ_FRAME_MAX - 1 bytes: refused with only 2 bytes in. */
	bytes[0] = 0x3f;
	bytes[1] = 0xff;
	ck_assert_int_eq(decode_exact(bytes, 2, &f, &copy), -EMSGSIZE);
	free(copy);
	ck_assert_int_eq(decode_exact(bytes, 1, &f, &copy), 0);
	free(copy);
	ck_assert_uint_eq(bq_frame_length(bytes, 2), BQ_FRAME_MAX + 1);
	bytes[0] = 0xff;
	ck_assert_int_eq(bq_frame_decode(bytes, 2, &f), -EMSGSIZE);
	/* 0x3ffe with only the length in: needs more. */
	bytes[0] = 0x3f;
	bytes[1] = 0xfe;
	ck_assert_int_eq(bq_frame_decode(bytes, 2, &f), 0);
}
END_TEST

START_TEST(test_msg_text_limit)
{
	static uint8_t text[BQ_TEXT_MAX + 1], buf[BQ_FRAME_MAX], p[BQ_TEXT_MAX + 1];
	struct bq_frame f = hdr(BQ_T_MSG, BQ_FF_BROADCAST, 7, 7, client_origin), d;
	struct bq_msg m = { .text = (const char *)text, .text_len = BQ_TEXT_MAX };
	int n;

	memset(text, 'a', sizeof(text));
	f.src = "alice";
	f.src_len = 5;
	/* BQ_TEXT_MAX: fine both ways. */
	ck_assert_int_eq(bq_msg_encode(&m, p, sizeof(p)), BQ_TEXT_MAX);
	f.payload = p;
	f.payload_len = BQ_TEXT_MAX;
	n = bq_frame_encode(&f, buf, sizeof(buf));
	ck_assert_int_eq(n, BQ_FRAME_HEADER_MIN + 5 + BQ_TEXT_MAX);
	ck_assert_int_eq(bq_frame_decode(buf, (size_t)n, &d), n);
	ck_assert_int_eq(bq_msg_decode(&d, &m), 0);
	ck_assert_uint_eq(m.text_len, BQ_TEXT_MAX);
	/* BQ_TEXT_MAX + 1: both encoders refuse... */
	m.text_len = BQ_TEXT_MAX + 1;
	ck_assert_int_eq(bq_msg_encode(&m, p, sizeof(p)), -EINVAL);
	f.payload = text;
	f.payload_len = BQ_TEXT_MAX + 1;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	/* ...and a peer's frame carrying it decodes as a frame but not as a MSG. */
	f.type = BQ_T_ERROR;
	n = bq_frame_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	buf[3] = BQ_T_MSG;
	ck_assert_int_eq(bq_frame_decode(buf, (size_t)n, &d), n);
	ck_assert_int_eq(bq_msg_decode(&d, &m), -EBADMSG);
	/* empty text is a valid MSG */
	d.payload_len = 0;
	ck_assert_int_eq(bq_msg_decode(&d, &m), 0);
	ck_assert_uint_eq(m.text_len, 0);
}
END_TEST

START_TEST(test_bad_version)
{
	uint8_t bytes[64], *copy;
	size_t n = script_bytes(&scripts[0], bytes, sizeof(bytes));
	struct bq_frame f;
	const uint8_t versions[] = { 0, 2, 0xff };

	for (size_t i = 0; i < sizeof(versions); i++) {
		bytes[2] = versions[i];
		/* Still incomplete: the decoder waits for the whole frame first. */
		ck_assert_int_eq(decode_exact(bytes, n - 1, &f, &copy), 0);
		free(copy);
		ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), -EPROTONOSUPPORT);
		free(copy);
		ck_assert_uint_eq(f.version, versions[i]);
		ck_assert_uint_eq(bq_frame_length(bytes, n), n);
	}
	/* A short frame of another version is reported as a version problem. */
	bytes[0] = 0;
	bytes[1] = 1;
	bytes[2] = 2;
	ck_assert_int_eq(bq_frame_decode(bytes, 3, &f), -EPROTONOSUPPORT);
	ck_assert_uint_eq(f.version, 2);
}
END_TEST

START_TEST(test_unknown_type)
{
	uint8_t bytes[64], *copy;
	size_t n = script_bytes(&scripts[0], bytes, sizeof(bytes));
	struct bq_frame f;
	const uint8_t types[] = { 0, 12, 99, 0xff };

	for (size_t i = 0; i < sizeof(types); i++) {
		bytes[3] = types[i];
		ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), (int)n);
		ck_assert_uint_eq(f.type, types[i]);
		ck_assert_int_eq(bq_frame_type_known(f.type), 0);
		ck_assert_str_eq(bq_frame_type_name(f.type), "UNKNOWN");
		free(copy);
	}
	for (uint8_t t = BQ_T_HELLO; t <= BQ_T_MAX; t++) {
		ck_assert_int_eq(bq_frame_type_known(t), 1);
		ck_assert_str_ne(bq_frame_type_name(t), "UNKNOWN");
	}
	ck_assert_str_eq(bq_frame_type_name(BQ_T_DIRECTORY), "DIRECTORY");
	ck_assert_str_eq(bq_ack_status_name(8), "unknown");
}
END_TEST

/* Header damage: every one of these must be -EBADMSG, whole or not at all. */
static const char *const bad_frames[] = {
	/* length 0: not even a version byte */
	"00 00",
	/* length 1: a version and nothing else */
	"00 01 | 01",
	/* 33 bytes: one short of the minimal header */
	"00 1f | 01 09 00 00 00 00 | " MID(09) ODIN TS NONE NONE "00",
	/* unknown flag bits */
	"00 20 | 01 09 08 00 00 00 | " MID(09) ODIN TS NONE NONE "00 00",
	"00 20 | 01 09 80 00 00 00 | " MID(09) ODIN TS NONE NONE "00 00",
	/* src with a space */
	"00 25 | 01 03 00 00 00 00 | " MID(03) CLIENT TS "05 61 6c 20 63 65 | " NONE "00 00",
	/* dst with a slash */
	"00 2e | 01 07 00 07 00 00 | " MID(07) CLIENT TS ALICE "03 62 2f 62 | 00 06 | "
	"68 69 20 62 6f 62",
	/* dst with a NUL */
	"00 2e | 01 07 00 07 00 00 | " MID(07) CLIENT TS ALICE "03 62 00 62 | 00 06 | "
	"68 69 20 62 6f 62",
	/* broadcast with a destination */
	"00 2e | 01 07 01 07 00 00 | " MID(07) CLIENT TS ALICE BOB "00 06 | 68 69 20 62 6f 62",
	/* payload_len one more than the bytes there */
	"00 2e | 01 07 00 07 00 00 | " MID(07) CLIENT TS ALICE BOB "00 07 | 68 69 20 62 6f 62",
	/* payload_len one less: a trailing byte */
	"00 2e | 01 07 00 07 00 00 | " MID(07) CLIENT TS ALICE BOB "00 05 | 68 69 20 62 6f 62",
	/* AUTH without a tag */
	"00 28 | 01 09 02 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | 11 22 33 44 55 66 77 88",
	/* AUTH with 15 tag bytes */
	"00 37 | 01 09 02 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88 | "
	"00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
	/* AUTH with 17 tag bytes */
	"00 39 | 01 09 02 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88 | "
	"00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
	/* a tag without the AUTH flag */
	"00 38 | 01 09 00 00 00 00 | " MID(09) ODIN TS NONE NONE "00 08 | "
	"11 22 33 44 55 66 77 88 | "
	"00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00",
	/* src_len running past the end of the frame */
	"00 25 | 01 03 00 00 00 00 | " MID(03) CLIENT TS "ff 61 6c 69 63 65 | " NONE "00 00",
	/* dst_len running past the end */
	"00 25 | 01 03 00 00 00 00 | " MID(03) CLIENT TS ALICE "09 | 00 00",
	/* a version and a type, nothing more */
	"00 02 | 01 09",
};

/* src_len 65 of valid characters; dst_len 65. */
static size_t long_id_frame(uint8_t *out, size_t cap, int in_dst)
{
	size_t n = 0;
	int k = bq_test_hex("00 61 | 01 07 00 07 00 00 | " MID(07) CLIENT TS, out, cap);

	ck_assert_int_gt(k, 0);
	n = (size_t)k;
	if (in_dst) {
		out[n++] = 1;
		out[n++] = 'a';
	}
	out[n++] = 65;
	memset(out + n, 'z', 65);
	n += 65;
	if (!in_dst) {
		out[n++] = 0;
	}
	out[n++] = 0;
	out[n++] = 0;
	/* fix the length field: every byte after it */
	out[0] = (uint8_t)((n - 2) >> 8);
	out[1] = (uint8_t)(n - 2);
	return n;
}

START_TEST(test_malformed_header)
{
	uint8_t bytes[256], *copy;
	struct bq_frame f;

	for (size_t i = 0; i < sizeof(bad_frames) / sizeof(bad_frames[0]); i++) {
		int n = bq_test_hex(bad_frames[i], bytes, sizeof(bytes));

		ck_assert_int_ge(n, 2);
		ck_assert_uint_eq(bq_frame_length(bytes, (size_t)n), (size_t)n);
		ck_assert_msg(decode_exact(bytes, (size_t)n, &f, &copy) == -EBADMSG,
			      "bad frame %zu decoded", i);
		free(copy);
		/* and never before the whole frame is in */
		if (n > 2) {
			ck_assert_int_eq(decode_exact(bytes, (size_t)n - 1, &f, &copy), 0);
			free(copy);
		}
	}
	for (int in_dst = 0; in_dst <= 1; in_dst++) {
		size_t n = long_id_frame(bytes, sizeof(bytes), in_dst);

		ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), -EBADMSG);
		free(copy);
		/* 64 is the limit, so shortening the id by one makes the frame valid */
		bytes[in_dst ? 32 : 30] = 64;
		memmove(bytes + (in_dst ? 33 : 31) + 64, bytes + (in_dst ? 33 : 31) + 65,
			n - (in_dst ? 33 : 31) - 65);
		n--;
		bytes[1]--;
		ck_assert_int_eq(decode_exact(bytes, n, &f, &copy), (int)n);
		free(copy);
	}
}
END_TEST

START_TEST(test_encoder_refuses)
{
	uint8_t buf[512];
	char id65[65];
	struct bq_frame f = hdr(BQ_T_MSG, 0, 7, 7, client_origin);

	memset(id65, 'a', sizeof(id65));
	f.src = "alice";
	f.src_len = 5;
	f.flags = 0x08;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.flags = BQ_FF_BROADCAST;
	f.dst = "bob";
	f.dst_len = 3;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.flags = 0;
	ck_assert_int_gt(bq_frame_encode(&f, buf, sizeof(buf)), 0);
	f.src = id65;
	f.src_len = 65;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.src_len = 64;
	ck_assert_int_gt(bq_frame_encode(&f, buf, sizeof(buf)), 0);
	f.src = "al ce";
	f.src_len = 5;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.src = NULL;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.src_len = 0;
	f.dst = "b/b";
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.dst = "bob";
	f.payload = NULL;
	f.payload_len = 3;
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), -EINVAL);
	f.payload_len = 0;
	ck_assert_int_eq(bq_frame_encode(&f, NULL, 0), -ENOSPC);
	ck_assert_int_eq(bq_frame_encode(&f, buf, 0), -ENOSPC);
	ck_assert_int_eq(bq_frame_encode(&f, buf, sizeof(buf)), BQ_FRAME_HEADER_MIN + 3);
}
END_TEST

START_TEST(test_patch_hops)
{
	uint8_t bytes[64], before[64];
	size_t n = script_bytes(&scripts[6], bytes, sizeof(bytes));
	struct bq_frame f;

	memcpy(before, bytes, n);
	bq_frame_patch_hops(bytes, 6, 1);
	ck_assert_int_eq(bq_frame_decode(bytes, n, &f), (int)n);
	ck_assert_uint_eq(f.ttl, 6);
	ck_assert_uint_eq(f.hops, 1);
	/* only the two bytes changed */
	ck_assert_uint_eq(bytes[5], 6);
	ck_assert_uint_eq(bytes[6], 1);
	ck_assert_mem_eq(bytes, before, 5);
	ck_assert_mem_eq(bytes + 7, before + 7, n - 7);
}
END_TEST

START_TEST(test_ids_and_names)
{
	char s[80];

	ck_assert_int_eq(bq_user_id_valid("alice", 5), 1);
	ck_assert_int_eq(bq_user_id_valid("a.b_c@d:e-F9", 12), 1);
	ck_assert_int_eq(bq_user_id_valid("", 0), 0);
	ck_assert_int_eq(bq_user_id_valid(NULL, 3), 0);
	ck_assert_int_eq(bq_user_id_valid("a b", 3), 0);
	ck_assert_int_eq(bq_user_id_valid("a/b", 3), 0);
	ck_assert_int_eq(bq_user_id_valid("é", 2), 0);
	memset(s, 'x', sizeof(s));
	ck_assert_int_eq(bq_user_id_valid(s, 64), 1);
	ck_assert_int_eq(bq_user_id_valid(s, 65), 0);

	ck_assert_int_eq(bq_name_valid("Alice Smith", 11), 1);
	ck_assert_int_eq(bq_name_valid("Zoë", 4), 1);
	ck_assert_int_eq(bq_name_valid("日本", 6), 1);
	ck_assert_int_eq(bq_name_valid("\xf0\x9f\x98\x80", 4), 1); /* emoji */
	ck_assert_int_eq(bq_name_valid(s, 64), 1);
	ck_assert_int_eq(bq_name_valid(s, 65), 0);
	ck_assert_int_eq(bq_name_valid("", 0), 0);
	ck_assert_int_eq(bq_name_valid("a\tb", 3), 0);
	ck_assert_int_eq(bq_name_valid("a\nb", 3), 0);
	ck_assert_int_eq(bq_name_valid("a\x7f", 2), 0);
	ck_assert_int_eq(bq_name_valid("a\xc2\x85", 3), 0);     /* C1 NEL */
	ck_assert_int_eq(bq_name_valid("\xc3\x28", 2), 0);      /* bad continuation */
	ck_assert_int_eq(bq_name_valid("\xc0\xaf", 2), 0);      /* overlong */
	ck_assert_int_eq(bq_name_valid("\xe0\x80\xaf", 3), 0);  /* overlong */
	ck_assert_int_eq(bq_name_valid("\xed\xa0\x80", 3), 0);  /* surrogate */
	ck_assert_int_eq(bq_name_valid("\xf4\x90\x80\x80", 4), 0); /* > U+10FFFF */
	ck_assert_int_eq(bq_name_valid("\xf5\x80\x80\x80", 4), 0);
	ck_assert_int_eq(bq_name_valid("\xe6\x97", 2), 0);      /* truncated */
	ck_assert_int_eq(bq_name_valid("\x80", 1), 0);
}
END_TEST

/* ---- payload decoders -------------------------------------------------------------- */

enum dec { D_HELLO, D_ATTACH, D_DETACH, D_SCAN, D_DIR, D_ANN, D_MSG, D_ACK, D_PING, D_ERROR };

static int decode_payload(enum dec which, const uint8_t *p, size_t n)
{
	struct bq_frame f = { .payload = n ? p : NULL, .payload_len = (uint16_t)n };
	struct bq_hello h;
	struct bq_attach a;
	struct bq_scan s;
	struct bq_directory d;
	struct bq_announce an;
	struct bq_msg m;
	struct bq_ack ack;
	struct bq_ping ping;
	struct bq_error e;

	switch (which) {
	case D_HELLO:
		return bq_hello_decode(&f, &h);
	case D_ATTACH:
		return bq_attach_decode(&f, &a);
	case D_DETACH:
		return bq_detach_decode(&f);
	case D_SCAN:
		return bq_scan_decode(&f, &s);
	case D_DIR:
		return bq_directory_decode(&f, &d);
	case D_ANN:
		return bq_announce_decode(&f, &an);
	case D_MSG:
		return bq_msg_decode(&f, &m);
	case D_ACK:
		return bq_ack_decode(&f, &ack);
	case D_PING:
		return bq_ping_decode(&f, &ping);
	case D_ERROR:
		return bq_error_decode(&f, &e);
	}
	return -1;
}

struct payload_case {
	enum dec which;
	const char *hex;
	int want;
};

#define DIR_HEAD "00 00 00 00 00 00 00 07 | 01 | "
#define ANN_HEAD "00 00 00 09 | 01 | 04 4c 6f 6b 69 | 01 d8 3a dd 03 1e 77 | "
#define LOKI_ENTRY \
	"02 02 00 00 00 00 02 04 4c 6f 6b 69 00 00 00 02 00 00 00 00 01 d8 3a dd 03 1e 77 "

static const struct payload_case payload_cases[] = {
	/* HELLO */
	{ D_HELLO, "01 00 00 00 03 04 4f 64 69 6e", 0 },
	{ D_HELLO, "02 00 00 00 00 00", 0 },                  /* client, no name */
	{ D_HELLO, "", -EBADMSG },
	{ D_HELLO, "00 00 00 00 00 00", -EBADMSG },           /* role 0 */
	{ D_HELLO, "03 00 00 00 00 00", -EBADMSG },           /* role 3 */
	{ D_HELLO, "01 00 00 00 03 04 4f 64 69", -EBADMSG },  /* name cut */
	{ D_HELLO, "01 00 00 00 03 04 4f 64 69 6e 00", -EBADMSG }, /* trailing */
	{ D_HELLO, "01 00 00 00 03 01 07", -EBADMSG },        /* control char */
	{ D_HELLO, "01 00 00 00 03 02 c3 28", -EBADMSG },     /* bad UTF-8 */
	{ D_HELLO, "01 00 00 00", -EBADMSG },                 /* caps cut */
	/* ATTACH */
	{ D_ATTACH, "05 41 6c 69 63 65", 0 },
	{ D_ATTACH, "00", -EBADMSG },                         /* empty name */
	{ D_ATTACH, "", -EBADMSG },
	{ D_ATTACH, "05 41 6c 69 63", -EBADMSG },
	{ D_ATTACH, "01 41 41", -EBADMSG },
	{ D_ATTACH, "01 0a", -EBADMSG },
	/* DETACH */
	{ D_DETACH, "", 0 },
	{ D_DETACH, "00", -EBADMSG },
	/* SCAN */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00", 0 },
	{ D_SCAN, "00 00 00 00 00 00 00 00 00", -EBADMSG },
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 00", -EBADMSG }, /* flags 0 written out */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 01", 0 },        /* ONESHOT */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 02", 0 },        /* SUMMARY */
	{ D_SCAN, "00 00 00 00 00 00 00 2a 01 00 03", 0 },        /* both */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 04", -EBADMSG }, /* unknown bit */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 83", -EBADMSG }, /* unknown bit with known */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 03 00", -EBADMSG }, /* 12 bytes */
	{ D_SCAN, "00 00 00 00 00 00 00 00 00 00 00 00", -EBADMSG },
	/* DIRECTORY */
	{ D_DIR, DIR_HEAD "00 00", 0 },                       /* empty */
	{ D_DIR, DIR_HEAD "00 01 | " LOKI_ENTRY, 0 },
	{ D_DIR, "00 00 00 00 00 00 00 07 | 00 | 00 00", 0 },  /* dflags 0 */
	{ D_DIR, "00 00 00 00 00 00 00 07 | 02 | 00 00", -EBADMSG }, /* unknown dflags */
	{ D_DIR, "00 00 00 00 00 00 00 07 | 01 | 00", -EBADMSG },
	{ D_DIR, DIR_HEAD "00 00 | 00", -EBADMSG },           /* bytes after count 0 */
	{ D_DIR, DIR_HEAD "00 03 | " BOB_ENTRY LOKI_ENTRY, -EBADMSG }, /* count too big */
	{ D_DIR, DIR_HEAD "00 01 | " BOB_ENTRY LOKI_ENTRY, -EBADMSG }, /* count too small */
	{ D_DIR, DIR_HEAD "00 01 | 03 00", -EBADMSG },        /* kind 3 */
	{ D_DIR, DIR_HEAD "00 01 | 00", -EBADMSG },           /* kind 0 */
	{ D_DIR, DIR_HEAD "00 01 | 01 03 62 6f 62 03 42 6f 62 02 00 00 00 00 02 03 "
		 "00 00 00 05 00 00 00 3c", -EBADMSG },       /* presence 3 */
	{ D_DIR, DIR_HEAD "00 01 | 01 00 03 42 6f 62 02 00 00 00 00 02 01 "
		 "00 00 00 05 00 00 00 3c", -EBADMSG },       /* empty id */
	{ D_DIR, DIR_HEAD "00 01 | 01 03 62 20 62 03 42 6f 62 02 00 00 00 00 02 01 "
		 "00 00 00 05 00 00 00 3c", -EBADMSG },       /* id with a space */
	{ D_DIR, DIR_HEAD "00 01 | 01 03 62 6f 62 03 42 0a 62 02 00 00 00 00 02 01 "
		 "00 00 00 05 00 00 00 3c", -EBADMSG },       /* name with a newline */
	{ D_DIR, DIR_HEAD "00 01 | 01 03 62 6f 62 00 02 00 00 00 00 02 01 "
		 "00 00 00 05 00 00 00 3c", 0 },              /* a user without a name */
	{ D_DIR, DIR_HEAD "00 01 | 01 03 62 6f 62 03 42 6f 62 02 00 00 00 00 02 01 "
		 "00 00 00 05 00 00 00", -EBADMSG },          /* cut */
	{ D_DIR, DIR_HEAD "00 01 | 02 02 00 00 00 00 02 04 4c 6f 6b 69 00 00 00 02 "
		 "00 00 00 00 02 d8 3a dd 03 1e 77", -EBADMSG }, /* n_neigh overrun */
	/* ANNOUNCE */
	{ D_ANN, ANN_HEAD "00 01 | " BOB_ENTRY, 0 },
	{ D_ANN, "00 00 00 01 | 00 | 00 | 00 | 00 00", 0 },   /* no name, neighbours, users */
	{ D_ANN, "00 00 00 01 | 03 | 00 | 00 | 00 00", 0 },   /* FULL | REANNOUNCE */
	{ D_ANN, "00 00 00 01 | 04 | 00 | 00 | 00 00", -EBADMSG }, /* unknown aflags */
	{ D_ANN, ANN_HEAD "00 01 | " LOKI_ENTRY, -EBADMSG },  /* node entry */
	{ D_ANN, ANN_HEAD "00 02 | " BOB_ENTRY, -EBADMSG },
	{ D_ANN, ANN_HEAD "00 00 | " BOB_ENTRY, -EBADMSG },
	{ D_ANN, "00 00 00 01 | 00 | 01 1b | 00 | 00 00", -EBADMSG }, /* ESC in the name */
	{ D_ANN, "00 00 00 01 | 00 | 00 | 02 d8 3a dd 03 1e 77 | 00 00", -EBADMSG },
	{ D_ANN, "00 00 00 01 | 00 | 00 | 00 | 00", -EBADMSG },
	/* MSG */
	{ D_MSG, "", 0 },
	{ D_MSG, "68 69", 0 },
	/* ACK */
	{ D_ACK, "01 02 03 04 05 06 07 07 | 00 | 00", 0 },
	{ D_ACK, "01 02 03 04 05 06 07 07 | 07 | 00", 0 },
	{ D_ACK, "01 02 03 04 05 06 07 07 | 08 | 00", -EBADMSG },
	{ D_ACK, "01 02 03 04 05 06 07 07 | 00 | 05 61", -EBADMSG },
	{ D_ACK, "01 02 03 04 05 06 07 07 | 00 | 00 00", -EBADMSG },
	{ D_ACK, "01 02 03 04 05 06 07 07 | 00", -EBADMSG },
	/* PING / PONG */
	{ D_PING, "00 00 00 00 00 00 00", -EBADMSG },
	{ D_PING, "00 00 00 00 00 00 00 00 00", -EBADMSG },
	{ D_PING, "", -EBADMSG },
	/* ERROR */
	{ D_ERROR, "00 07 | 00 00", 0 },
	{ D_ERROR, "ff ff | 00 01 | 41", 0 },                 /* unknown codes are fine */
	{ D_ERROR, "00 02 | 00 05 | 61", -EBADMSG },
	{ D_ERROR, "00 02 | 00 00 | ff", -EBADMSG },
	{ D_ERROR, "00", -EBADMSG },
};

START_TEST(test_payload_decoders)
{
	const struct payload_case *c = &payload_cases[_i];
	uint8_t bytes[256], *copy;
	int n = bq_test_hex(c->hex, bytes, sizeof(bytes));
	int rc;

	ck_assert_int_ge(n, 0);
	copy = malloc(n ? (size_t)n : 1);
	memcpy(copy, bytes, (size_t)n);
	rc = decode_payload(c->which, copy, (size_t)n);
	ck_assert_msg(rc == c->want, "case %d (%s): got %d, want %d", _i, c->hex, rc, c->want);
	free(copy);
}
END_TEST

/* Every flags value: encode(decode(b)) == b and decode(encode(x)) == x, 10 or 11 bytes. */
START_TEST(test_scan_flags_round_trip)
{
	for (unsigned flags = 0; flags <= BQ_SCAN_KNOWN; flags++) {
		uint8_t p[16], q[16];
		struct bq_scan s = { .cursor = 0x0102030405060708ULL, .max_entries = 0x0a0b,
				     .flags = (uint8_t)flags };
		struct bq_scan d;
		struct bq_frame f = { .payload = p };
		int n = bq_scan_encode(&s, p, sizeof(p));

		ck_assert_int_eq(n, flags ? 11 : 10);
		f.payload_len = (uint16_t)n;
		ck_assert_int_eq(bq_scan_decode(&f, &d), 0);
		ck_assert_uint_eq(d.cursor, s.cursor);
		ck_assert_uint_eq(d.max_entries, s.max_entries);
		ck_assert_uint_eq(d.flags, flags);
		ck_assert_int_eq(bq_scan_encode(&d, q, sizeof(q)), n);
		ck_assert_mem_eq(p, q, (size_t)n);
	}
}
END_TEST

START_TEST(test_long_names_refused)
{
	uint8_t p[128];
	struct bq_frame f = { .payload = p };
	struct bq_hello h = { .role = 1, .name = (const char *)p + 10 };
	struct bq_attach a;

	/* HELLO name of 64 is fine, 65 not: in the decoder and the encoder. */
	memset(p, 'n', sizeof(p));
	p[0] = 1;
	memset(p + 1, 0, 4);
	p[5] = 64;
	f.payload_len = 6 + 64;
	ck_assert_int_eq(bq_hello_decode(&f, &h), 0);
	p[5] = 65;
	f.payload_len = 6 + 65;
	ck_assert_int_eq(bq_hello_decode(&f, &h), -EBADMSG);
	h.role = 1;
	h.name = (const char *)p + 10;
	h.name_len = 65;
	ck_assert_int_eq(bq_hello_encode(&h, p + 80, 40), -EINVAL);
	/* ATTACH the same */
	p[0] = 64;
	memset(p + 1, 'n', 70);
	f.payload_len = 65;
	ck_assert_int_eq(bq_attach_decode(&f, &a), 0);
	p[0] = 65;
	f.payload_len = 66;
	ck_assert_int_eq(bq_attach_decode(&f, &a), -EBADMSG);
	a.name = (const char *)p + 1;
	a.name_len = 65;
	ck_assert_int_eq(bq_attach_encode(&a, p, sizeof(p)), -EINVAL);
	a.name_len = 0;
	ck_assert_int_eq(bq_attach_encode(&a, p, sizeof(p)), -EINVAL);
}
END_TEST

START_TEST(test_payload_encoders_refuse)
{
	uint8_t p[64];
	struct bq_hello h = { .role = 0 };
	struct bq_ack a = { .status = 8 };
	struct bq_error e = { .code = 1, .text = NULL, .text_len = 3 };
	struct bq_scan s = { 0 };
	struct bq_ping ping = { 0 };

	ck_assert_int_eq(bq_hello_encode(&h, p, sizeof(p)), -EINVAL);
	h.role = BQ_ROLE_CLIENT;
	ck_assert_int_eq(bq_hello_encode(&h, p, sizeof(p)), 6);
	ck_assert_int_eq(bq_hello_encode(&h, p, 5), -ENOSPC);
	ck_assert_int_eq(bq_ack_encode(&a, p, sizeof(p)), -EINVAL);
	a.status = BQ_ACK_OK;
	ck_assert_int_eq(bq_ack_encode(&a, p, sizeof(p)), 10);
	ck_assert_int_eq(bq_ack_encode(&a, p, 9), -ENOSPC);
	ck_assert_int_eq(bq_error_encode(&e, p, sizeof(p)), -EINVAL);
	e.text_len = 0;
	ck_assert_int_eq(bq_error_encode(&e, p, sizeof(p)), 4);
	ck_assert_int_eq(bq_scan_encode(&s, p, 9), -ENOSPC);
	s.flags = BQ_SCAN_SUMMARY;
	ck_assert_int_eq(bq_scan_encode(&s, p, 10), -ENOSPC);
	ck_assert_int_eq(bq_scan_encode(&s, p, 11), 11);
	s.flags = 0x80;
	ck_assert_int_eq(bq_scan_encode(&s, p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(bq_ping_encode(&ping, p, 7), -ENOSPC);
}
END_TEST

/* ---- directory writer -------------------------------------------------------------- */

START_TEST(test_dirw_enospc_writes_nothing)
{
	uint8_t want[128], p[128];
	int n = bq_test_hex(DIR_HEAD "00 01 | " BOB_ENTRY, want, sizeof(want));
	struct bq_dirw w;
	struct bq_frame f = { 0 };
	struct bq_directory d;

	ck_assert_int_eq(n, 11 + 24);
	/* Room for the head, bob, and 26 of the 27 bytes Loki needs. */
	memset(p, 0xaa, sizeof(p));
	ck_assert_int_eq(bq_dirw_init_directory(&w, p, (size_t)n + 26, 99, BQ_DIRF_SNAPSHOT), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &loki_entry), -ENOSPC);
	for (size_t i = (size_t)n; i < sizeof(p); i++) {
		ck_assert_uint_eq(p[i], 0xaa);
	}
	ck_assert_uint_eq(bq_dirw_finish(&w, 7), (size_t)n);
	ck_assert_mem_eq(p, want, (size_t)n);
	f.payload = p;
	f.payload_len = (uint16_t)n;
	ck_assert_int_eq(bq_directory_decode(&f, &d), 0);
	ck_assert_uint_eq(d.count, 1);
	/* With one byte more Loki fits exactly. */
	ck_assert_int_eq(bq_dirw_init_directory(&w, p, (size_t)n + 27, 0, 0), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &loki_entry), 0);
	ck_assert_uint_eq(bq_dirw_finish(&w, 0), (size_t)n + 27);
}
END_TEST

START_TEST(test_dirw_refuses)
{
	uint8_t p[256];
	struct bq_dirw w;
	struct bq_dir_entry bad = bob_entry;
	struct bq_announce a = { .seq = 1, .aflags = 8 };

	ck_assert_int_eq(bq_dirw_init_directory(&w, p, 10, 0, 0), -ENOSPC);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), -EINVAL);
	ck_assert_uint_eq(bq_dirw_finish(&w, 0), 0);
	ck_assert_int_eq(bq_dirw_init_directory(&w, p, sizeof(p), 0, 2), -EINVAL);
	ck_assert_int_eq(bq_dirw_init_announce(&w, p, sizeof(p), &a), -EINVAL);
	a.aflags = 0;
	ck_assert_int_eq(bq_dirw_init_announce(&w, p, 7, &a), -ENOSPC);
	ck_assert_int_eq(bq_dirw_init_announce(&w, p, sizeof(p), &a), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &loki_entry), -EINVAL); /* users only */
	bad.presence = 3;
	ck_assert_int_eq(bq_dirw_add(&w, &bad), -EINVAL);
	bad = bob_entry;
	bad.id_len = 0;
	ck_assert_int_eq(bq_dirw_add(&w, &bad), -EINVAL);
	bad = bob_entry;
	bad.kind = 3;
	ck_assert_int_eq(bq_dirw_add(&w, &bad), -EINVAL);
	ck_assert_int_eq(bq_dirw_add(&w, &bob_entry), 0);
	ck_assert_uint_eq(bq_dirw_finish(&w, 0), 4 + 1 + 1 + 1 + 2 + 24);
}
END_TEST

/* Fill a whole frame with entries: worst-case ids, AUTH, the safe payload size. */
START_TEST(test_dirw_fills_a_frame)
{
	static uint8_t p[BQ_PAYLOAD_SAFE_MAX], buf[BQ_FRAME_MAX];
	char id[BQ_USER_ID_MAX + 1], name[BQ_NAME_MAX];
	struct bq_dirw w;
	struct bq_dir_entry e = bob_entry;
	struct bq_frame f = hdr(BQ_T_DIRECTORY, BQ_FF_AUTH, 0, 5, odin), d;
	struct bq_directory dir;
	struct bq_dir_iter it;
	size_t len;
	int added = 0, n, rc;

	memset(id, 'u', sizeof(id));
	memset(name, 'N', sizeof(name));
	e.id = id;
	e.id_len = BQ_USER_ID_MAX;
	e.name = name;
	e.name_len = BQ_NAME_MAX;
	e.version = 0;
	ck_assert_int_eq(bq_dirw_init_directory(&w, p, sizeof(p), 0, BQ_DIRF_SNAPSHOT), 0);
	while ((rc = bq_dirw_add(&w, &e)) == 0) {
		added++;
		e.version = (uint32_t)added;
	}
	ck_assert_int_eq(rc, -ENOSPC);
	len = bq_dirw_finish(&w, 1234);
	ck_assert_int_eq(added, (int)((sizeof(p) - 11) / (12 + 64 + 64 + 6)));
	f.src = id;
	f.src_len = BQ_USER_ID_MAX;
	f.dst = id;
	f.dst_len = BQ_USER_ID_MAX;
	f.payload = p;
	f.payload_len = (uint16_t)len;
	n = bq_frame_encode(&f, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_le(n, BQ_FRAME_MAX);
	ck_assert_int_eq(bq_frame_decode(buf, (size_t)n, &d), n);
	ck_assert_int_eq(bq_directory_decode(&d, &dir), 0);
	ck_assert_uint_eq(dir.count, (unsigned)added);
	ck_assert_uint_eq(dir.next_cursor, 1234);
	bq_dir_iter_init(&it, dir.entries, dir.entries_len, dir.count);
	for (int i = 0; i < added; i++) {
		ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
		ck_assert_uint_eq(e.version, (uint32_t)i);
		ck_assert_uint_eq(e.id_len, 64);
	}
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 0);
}
END_TEST

START_TEST(test_dir_iter_errors_are_sticky)
{
	uint8_t bytes[128];
	int n = bq_test_hex(BOB_ENTRY "03", bytes, sizeof(bytes));
	struct bq_dir_iter it;
	struct bq_dir_entry e;

	/* count 2, second entry of kind 3 */
	bq_dir_iter_init(&it, bytes, (size_t)n, 2);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), -EBADMSG);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), -EBADMSG);
	/* count 1 with a trailing byte: the entry, then the error */
	bq_dir_iter_init(&it, bytes, (size_t)n, 1);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), -EBADMSG);
	/* nothing at all */
	bq_dir_iter_init(&it, NULL, 0, 0);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 0);
	bq_dir_iter_init(&it, NULL, 5, 1);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), -EBADMSG);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("scripts");
	TCase *tl = tcase_create("limits");
	TCase *tp = tcase_create("payloads");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, test_encode_matches_script, 0, N_SCRIPTS);
	tcase_add_loop_test(tc, test_decode_whole, 0, N_SCRIPTS);
	tcase_add_loop_test(tc, test_decode_every_prefix_needs_more, 0, N_SCRIPTS);
	tcase_add_loop_test(tc, test_decode_split_two_chunks, 0, N_SCRIPTS);
	tcase_add_loop_test(tc, test_decode_byte_at_a_time, 0, N_SCRIPTS);
	tcase_add_test(tc, test_back_to_back);
	suite_add_tcase(s, tc);

	tcase_add_test(tl, test_length_limits);
	tcase_add_test(tl, test_msg_text_limit);
	tcase_add_test(tl, test_bad_version);
	tcase_add_test(tl, test_unknown_type);
	tcase_add_test(tl, test_malformed_header);
	tcase_add_test(tl, test_encoder_refuses);
	tcase_add_test(tl, test_patch_hops);
	tcase_add_test(tl, test_ids_and_names);
	suite_add_tcase(s, tl);

	tcase_add_loop_test(tp, test_payload_decoders, 0,
			    (int)(sizeof(payload_cases) / sizeof(payload_cases[0])));
	tcase_add_test(tp, test_scan_flags_round_trip);
	tcase_add_test(tp, test_long_names_refused);
	tcase_add_test(tp, test_payload_encoders_refuse);
	tcase_add_test(tp, test_dirw_enospc_writes_nothing);
	tcase_add_test(tp, test_dirw_refuses);
	tcase_add_test(tp, test_dirw_fills_a_frame);
	tcase_add_test(tp, test_dir_iter_errors_are_sticky);
	suite_add_tcase(s, tp);

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
