/* SPDX-License-Identifier: MIT */
/*
 * frame: the blueq wire protocol codec. Pure: bytes in, structs out, no I/O and no
 * allocation; decoded pointers point into the caller's buffer. Byte-level layout,
 * with examples, in docs/protocol.md.
 *
 * Every frame:
 *   off len field
 *   0   2   length        u16be, bytes that follow this field (so a frame is 2 + length)
 *   2   1   version       BQ_PROTO_VERSION
 *   3   1   type          enum bq_frame_type
 *   4   1   flags         BQ_FF_*
 *   5   1   ttl           hops left; relays decrement, 0 is not relayed
 *   6   1   hops          hops taken so far
 *   7   1   attempt       retransmission number set by the origin (0 first)
 *   8   8   msg_id        u64be, random per message, end-to-end identity
 *   16  6   origin        the node address that created the frame (00.. from clients)
 *   22  8   timestamp     u64be, Unix milliseconds at the origin
 *   30  1   src_len       0..BQ_USER_ID_MAX, then src bytes (user id)
 *   .   1   dst_len       0..BQ_USER_ID_MAX, then dst bytes (user id; 0 for broadcast)
 *   .   2   payload_len   u16be, then payload (type-specific, below)
 *   .   16  tag           only when flags & BQ_FF_AUTH: keyed BLAKE2b-128 (see auth.h)
 * The length field must match the parts exactly; anything else is malformed.
 */
#ifndef BQ_PROTO_FRAME_H
#define BQ_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define BQ_PROTO_VERSION 1
#define BQ_FRAME_MAX 16384     /* whole frame, length field included */
#define BQ_FRAME_HEADER_MIN 34 /* 2 + 28 fixed + src_len + dst_len + payload_len fields */
#define BQ_USER_ID_MAX 64
#define BQ_NAME_MAX 64
#define BQ_TEXT_MAX 4096       /* MSG payload limit (bytes of UTF-8) */
#define BQ_TAG_LEN 16
#define BQ_NODE_ADDR_LEN 6
#define BQ_DEFAULT_TTL 7
/* A payload up to this size fits in a frame whatever the ids and the tag. */
#define BQ_PAYLOAD_SAFE_MAX (BQ_FRAME_MAX - BQ_FRAME_HEADER_MIN - 2 * BQ_USER_ID_MAX - BQ_TAG_LEN)

enum bq_frame_type {
	BQ_T_HELLO = 1,
	BQ_T_ATTACH = 2,
	BQ_T_DETACH = 3,
	BQ_T_SCAN = 4,
	BQ_T_DIRECTORY = 5,
	BQ_T_ANNOUNCE = 6,
	BQ_T_MSG = 7,
	BQ_T_ACK = 8,
	BQ_T_PING = 9,
	BQ_T_PONG = 10,
	BQ_T_ERROR = 11,
};
#define BQ_T_MAX BQ_T_ERROR

enum {
	BQ_FF_BROADCAST = 1u << 0, /* dst is everyone; dst_len must be 0 */
	BQ_FF_AUTH = 1u << 1,      /* a tag follows the payload */
	BQ_FF_MORE = 1u << 2,      /* more frames of the same answer follow (DIRECTORY) */
};
#define BQ_FF_KNOWN (BQ_FF_BROADCAST | BQ_FF_AUTH | BQ_FF_MORE)

struct bq_frame {
	uint8_t version;
	uint8_t type;
	uint8_t flags;
	uint8_t ttl;
	uint8_t hops;
	uint8_t attempt;
	uint64_t msg_id;
	uint8_t origin[BQ_NODE_ADDR_LEN];
	uint64_t timestamp_ms;
	const char *src; /* not NUL-terminated; src_len bytes */
	uint8_t src_len;
	const char *dst;
	uint8_t dst_len;
	const uint8_t *payload;
	uint16_t payload_len;
	const uint8_t *tag; /* BQ_TAG_LEN bytes when flags & BQ_FF_AUTH, else NULL */
};

/*
 * Decode one frame from the start of buf (incremental: call again with more bytes).
 * Returns:
 *   > 0              bytes consumed; *out filled (pointers into buf)
 *   0                need more bytes
 *   -EMSGSIZE        the length field exceeds BQ_FRAME_MAX (as soon as 2 bytes are in)
 *   -EPROTONOSUPPORT version differs; out->version holds the peer's version and the
 *                    return of bq_frame_length(buf, len) says how much to skip
 *   -EBADMSG         malformed (lengths disagree, bad user id, unknown flag bits...)
 * An unknown type is NOT an error here (the stream stays in sync); check it with
 * bq_frame_type_known() and answer with ERROR.
 */
int bq_frame_decode(const uint8_t *buf, size_t len, struct bq_frame *out);
/* Total frame size announced by the first two bytes, or 0 if fewer than 2 are in. */
size_t bq_frame_length(const uint8_t *buf, size_t len);
int bq_frame_type_known(uint8_t type);
const char *bq_frame_type_name(uint8_t type);

/*
 * Encode f into buf (f->payload and the ids are copied). When f->flags has BQ_FF_AUTH,
 * BQ_TAG_LEN zero bytes are reserved for the tag; sign with bq_auth_sign after.
 * f->version 0 means BQ_PROTO_VERSION; f->tag is ignored. The encoder refuses what the
 * decoder would refuse (unknown flags, bad ids, a broadcast with a dst, a frame over
 * BQ_FRAME_MAX) and a MSG payload over BQ_TEXT_MAX.
 * Returns the frame's total length, -ENOSPC, or -EINVAL (field over its limit).
 */
int bq_frame_encode(const struct bq_frame *f, uint8_t *buf, size_t cap);
/* Size bq_frame_encode would produce. */
size_t bq_frame_encoded_size(const struct bq_frame *f);
/* Rewrite ttl and hops in an encoded frame in place (relays; re-sign afterwards). */
void bq_frame_patch_hops(uint8_t *buf, uint8_t ttl, uint8_t hops);

/*
 * User ids: 1..64 bytes of [A-Za-z0-9._@:-]. Names: 1..64 bytes of valid UTF-8 with no
 * control characters (C0, DEL, C1), so they go into JSON and logs unchanged.
 * Both return 1 if valid, 0 if not.
 */
int bq_user_id_valid(const char *s, size_t len);
int bq_name_valid(const char *s, size_t len);

/* ---- payloads ---- */

enum bq_role { BQ_ROLE_NODE = 1, BQ_ROLE_CLIENT = 2 };

struct bq_hello {
	uint8_t role;
	uint32_t caps; /* BQ_CAP_* */
	const char *name;
	uint8_t name_len;
};
#define BQ_CAP_RELAY (1u << 0)
#define BQ_CAP_STORE (1u << 1)
/* The node understands the SCAN flags byte (BQ_SCAN_*); never send flags without it. */
#define BQ_CAP_SCAN_FLAGS (1u << 2)

struct bq_attach {
	const char *name; /* display name */
	uint8_t name_len;
};

/*
 * SCAN payload: cursor u64be, max_entries u16be, then an optional flags byte (present
 * only when not 0: a 10-byte payload means flags 0, an 11-byte one with flags 0 is not
 * canonical and refused, so every payload re-encodes to its own bytes). Unknown flag
 * bits are refused too: a peer must not believe a flag was honoured when it was not.
 */
#define BQ_SCAN_ONESHOT 1u /* answer, but do not subscribe the link to later changes */
#define BQ_SCAN_SUMMARY 2u /* answer with one empty DIRECTORY: next_cursor = newest change */
#define BQ_SCAN_KNOWN (BQ_SCAN_ONESHOT | BQ_SCAN_SUMMARY)

struct bq_scan {
	uint64_t cursor; /* 0: full snapshot; else changes after this cursor */
	uint16_t max_entries;
	uint8_t flags; /* BQ_SCAN_*; only to a node that advertised BQ_CAP_SCAN_FLAGS */
};

enum bq_presence { BQ_PRES_OFFLINE = 0, BQ_PRES_ONLINE = 1, BQ_PRES_GONE = 2 };

enum bq_dir_kind { BQ_DIR_USER = 1, BQ_DIR_NODE = 2 };

/* One directory record: a user, or a node with its neighbour list (topology). */
struct bq_dir_entry {
	uint8_t kind;
	/* user */
	const char *id;
	uint8_t id_len;
	uint8_t home[BQ_NODE_ADDR_LEN];
	uint8_t presence;
	/* both */
	const char *name;
	uint8_t name_len;
	uint32_t version; /* per-record version at its home node; higher wins */
	uint32_t age_s;   /* seconds since the record was last confirmed */
	/* node */
	uint8_t node[BQ_NODE_ADDR_LEN];
	uint8_t n_neigh;
	const uint8_t *neigh; /* n_neigh * 6 bytes */
};

#define BQ_DIRF_SNAPSHOT 1u /* the answer starts from cursor 0 */

struct bq_directory {
	uint64_t next_cursor;
	uint8_t dflags;
	uint16_t count;
	const uint8_t *entries; /* count encoded entries; walk with bq_dir_iter */
	uint16_t entries_len;
};

#define BQ_ANNF_FULL 1u          /* periodic: lists every user homed at the origin */
#define BQ_ANNF_REANNOUNCE 2u    /* topology changed: receivers re-announce soon */

struct bq_announce {
	uint32_t seq; /* origin's announce counter */
	uint8_t aflags;
	const char *name; /* node name */
	uint8_t name_len;
	uint8_t n_neigh;
	const uint8_t *neigh; /* n_neigh * 6 */
	uint16_t n_users;
	const uint8_t *users; /* n_users encoded BQ_DIR_USER entries (home = origin) */
	uint16_t users_len;
};

enum bq_ack_status {
	BQ_ACK_DELIVERED = 0,    /* the destination user's client has it (end to end) */
	BQ_ACK_ACCEPTED = 1,     /* the first node took it ("sent") */
	BQ_ACK_STORED = 2,       /* held at the home node for an offline user */
	BQ_ACK_UNKNOWN_USER = 3,
	BQ_ACK_EXPIRED = 4,
	BQ_ACK_REJECTED = 5,
	BQ_ACK_TOO_LARGE = 6,
	BQ_ACK_OK = 7,           /* ATTACH / DETACH / SCAN accepted */
};

struct bq_ack {
	uint64_t acked_id;
	uint8_t status;
	const char *reason;
	uint8_t reason_len;
};

struct bq_ping {
	uint64_t nonce;
};

enum bq_error_code {
	BQ_ERR_VERSION = 1,
	BQ_ERR_UNKNOWN_TYPE = 2,
	BQ_ERR_MALFORMED = 3,
	BQ_ERR_AUTH = 4,
	BQ_ERR_NOT_ATTACHED = 5,
	BQ_ERR_LIMIT = 6,
	BQ_ERR_INTERNAL = 7,
};

struct bq_error {
	uint16_t code;
	const char *text;
	uint16_t text_len;
};

/* MSG: the payload is the text itself, 0..BQ_TEXT_MAX bytes. */
struct bq_msg {
	const char *text; /* points into the frame; not NUL-terminated */
	uint16_t text_len;
};

/*
 * Payload codecs. decode: 0 or -EBADMSG (every field checked; trailing bytes are an
 * error); they read f->payload only and do not look at f->type (dispatch first; PONG
 * uses bq_ping_decode). Decoded pointers point into f->payload.
 * encode: payload length written into buf, or -ENOSPC / -EINVAL.
 * DIRECTORY and ANNOUNCE payloads are built with bq_dirw_* below; their decoders also
 * walk every entry once, so a frame that decodes iterates without error.
 */
int bq_hello_decode(const struct bq_frame *f, struct bq_hello *out);
int bq_hello_encode(const struct bq_hello *h, uint8_t *buf, size_t cap);
int bq_attach_decode(const struct bq_frame *f, struct bq_attach *out);
int bq_attach_encode(const struct bq_attach *a, uint8_t *buf, size_t cap);
int bq_scan_decode(const struct bq_frame *f, struct bq_scan *out);
int bq_scan_encode(const struct bq_scan *s, uint8_t *buf, size_t cap);
int bq_directory_decode(const struct bq_frame *f, struct bq_directory *out);
int bq_announce_decode(const struct bq_frame *f, struct bq_announce *out);
int bq_ack_decode(const struct bq_frame *f, struct bq_ack *out);
int bq_ack_encode(const struct bq_ack *a, uint8_t *buf, size_t cap);
int bq_ping_decode(const struct bq_frame *f, struct bq_ping *out);
int bq_ping_encode(const struct bq_ping *p, uint8_t *buf, size_t cap);
int bq_error_decode(const struct bq_frame *f, struct bq_error *out);
int bq_error_encode(const struct bq_error *e, uint8_t *buf, size_t cap);
int bq_msg_decode(const struct bq_frame *f, struct bq_msg *out);
int bq_msg_encode(const struct bq_msg *m, uint8_t *buf, size_t cap);
/* DETACH: 0 if the payload is empty, else -EBADMSG. */
int bq_detach_decode(const struct bq_frame *f);
const char *bq_ack_status_name(uint8_t status);

/* Walk encoded directory entries (DIRECTORY entries, ANNOUNCE users). */
struct bq_dir_iter {
	const uint8_t *p; /* borrowed */
	size_t len, off;
	uint16_t left;
	int err; /* sticky: 0 or -EBADMSG */
};
void bq_dir_iter_init(struct bq_dir_iter *it, const uint8_t *entries, size_t len, uint16_t count);
/*
 * 1 with *e filled (pointers into the entries), 0 at the end, -EBADMSG if malformed
 * (or count disagrees with bytes). Errors are sticky.
 */
int bq_dir_iter_next(struct bq_dir_iter *it, struct bq_dir_entry *e);

/*
 * Build DIRECTORY and ANNOUNCE payloads entry by entry until the frame is full.
 * buf is the caller's; cap should leave room for the frame header (BQ_PAYLOAD_SAFE_MAX).
 * init: 0, -ENOSPC (cap too small for the fixed part) or -EINVAL (bad field).
 * bq_dirw_add returns 0, -EINVAL (entry invalid, or not a user entry in an ANNOUNCE),
 * or -ENOSPC when the entry does not fit (nothing written: send this payload and start
 * the next one).
 */
struct bq_dirw {
	uint8_t *buf;
	size_t cap, off;
	size_t count_at; /* where the u16 entry count lives */
	uint16_t count;
	uint8_t kind; /* BQ_T_DIRECTORY or BQ_T_ANNOUNCE */
};
int bq_dirw_init_directory(struct bq_dirw *w, uint8_t *buf, size_t cap, uint64_t next_cursor,
			   uint8_t dflags);
int bq_dirw_init_announce(struct bq_dirw *w, uint8_t *buf, size_t cap,
			  const struct bq_announce *hdr);
int bq_dirw_add(struct bq_dirw *w, const struct bq_dir_entry *e);
/* Final payload length; patches the count and, for DIRECTORY, next_cursor. */
size_t bq_dirw_finish(struct bq_dirw *w, uint64_t next_cursor);

#endif
