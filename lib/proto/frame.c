/* SPDX-License-Identifier: MIT */
/*
 * The wire codec. Every read of peer bytes goes through struct bq_cur; the encoders
 * refuse exactly what the decoders refuse, so decode(encode(x)) == x and the fuzz
 * target can check encode(decode(bytes)) == bytes.
 */
#include "proto/frame.h"

#include <errno.h>
#include <string.h>

#include "core/cursor.h"
#include "core/utf8.h"

/* version .. timestamp: the part of the header that has a fixed size. */
#define FIXED_LEN 28
#define OFF_TTL 5
#define OFF_HOPS 6

/* ---- validation -------------------------------------------------------------------- */

static int id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '@' || c == ':' || c == '-';
}

int bq_user_id_valid(const char *s, size_t len)
{
	if (!s || len == 0 || len > BQ_USER_ID_MAX) {
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		if (!id_char((unsigned char)s[i])) {
			return 0;
		}
	}
	return 1;
}

int bq_name_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	if (!s || len == 0 || len > BQ_NAME_MAX) {
		return 0;
	}
	while (i < len) {
		uint32_t cp;
		size_t n = bq_utf8_next(u, len, i, &cp);

		/* C0, DEL and C1 controls would break log lines and terminals. */
		if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
			return 0;
		}
		i += n;
	}
	return 1;
}

/* Optional names (node names, HELLO): empty, or a valid name. */
static int opt_name_valid(const char *s, size_t len)
{
	return len == 0 || bq_name_valid(s, len);
}

/* ---- frame header ------------------------------------------------------------------ */

int bq_frame_type_known(uint8_t type)
{
	return type >= BQ_T_HELLO && type <= BQ_T_MAX;
}

const char *bq_frame_type_name(uint8_t type)
{
	static const char *const names[] = {
		[BQ_T_HELLO] = "HELLO",
		[BQ_T_ATTACH] = "ATTACH",
		[BQ_T_DETACH] = "DETACH",
		[BQ_T_SCAN] = "SCAN",
		[BQ_T_DIRECTORY] = "DIRECTORY",
		[BQ_T_ANNOUNCE] = "ANNOUNCE",
		[BQ_T_MSG] = "MSG",
		[BQ_T_ACK] = "ACK",
		[BQ_T_PING] = "PING",
		[BQ_T_PONG] = "PONG",
		[BQ_T_ERROR] = "ERROR",
	};

	if (!bq_frame_type_known(type)) {
		return "UNKNOWN";
	}
	return names[type];
}

const char *bq_ack_status_name(uint8_t status)
{
	static const char *const names[] = {
		[BQ_ACK_DELIVERED] = "delivered",
		[BQ_ACK_ACCEPTED] = "accepted",
		[BQ_ACK_STORED] = "stored",
		[BQ_ACK_UNKNOWN_USER] = "unknown_user",
		[BQ_ACK_EXPIRED] = "expired",
		[BQ_ACK_REJECTED] = "rejected",
		[BQ_ACK_TOO_LARGE] = "too_large",
		[BQ_ACK_OK] = "ok",
	};

	if (status > BQ_ACK_OK) {
		return "unknown";
	}
	return names[status];
}

size_t bq_frame_length(const uint8_t *buf, size_t len)
{
	struct bq_cur c;
	uint16_t flen;

	bq_cur_init(&c, buf, len);
	if (bq_cur_u16be(&c, &flen) < 0) {
		return 0;
	}
	return 2 + (size_t)flen;
}

/* A user id field: empty, or a valid id (the caller has checked the length fits). */
static int id_field_ok(const char *s, uint8_t len)
{
	return len == 0 || bq_user_id_valid(s, len);
}

int bq_frame_decode(const uint8_t *buf, size_t len, struct bq_frame *out)
{
	struct bq_cur c;
	const uint8_t *src = NULL, *dst = NULL, *payload = NULL, *tag = NULL;
	uint16_t flen;
	size_t total;

	memset(out, 0, sizeof(*out));
	bq_cur_init(&c, buf, len);
	if (bq_cur_u16be(&c, &flen) < 0) {
		return 0;
	}
	/* Refuse at once: waiting for the rest would let a peer pin a big buffer. */
	if (flen > BQ_FRAME_MAX - 2) {
		return -EMSGSIZE;
	}
	total = 2 + (size_t)flen;
	if (len < total) {
		return 0;
	}
	/* From here on read only this frame, never into the next one. */
	bq_cur_init(&c, buf, total);
	bq_cur_skip(&c, 2);
	if (bq_cur_u8(&c, &out->version) < 0) {
		return -EBADMSG;
	}
	/* Checked before the size so a peer with another header layout is told why. */
	if (out->version != BQ_PROTO_VERSION) {
		return -EPROTONOSUPPORT;
	}
	if (total < BQ_FRAME_HEADER_MIN) {
		return -EBADMSG;
	}
	bq_cur_u8(&c, &out->type);
	bq_cur_u8(&c, &out->flags);
	bq_cur_u8(&c, &out->ttl);
	bq_cur_u8(&c, &out->hops);
	bq_cur_u8(&c, &out->attempt);
	bq_cur_u64be(&c, &out->msg_id);
	bq_cur_bytes(&c, out->origin, BQ_NODE_ADDR_LEN);
	bq_cur_u64be(&c, &out->timestamp_ms);
	bq_cur_u8(&c, &out->src_len);
	bq_cur_ref(&c, &src, out->src_len);
	bq_cur_u8(&c, &out->dst_len);
	bq_cur_ref(&c, &dst, out->dst_len);
	bq_cur_u16be(&c, &out->payload_len);
	bq_cur_ref(&c, &payload, out->payload_len);
	if (out->flags & BQ_FF_AUTH) {
		bq_cur_ref(&c, &tag, BQ_TAG_LEN);
	}
	if (bq_cur_error(&c) || bq_cur_left(&c) != 0) {
		return -EBADMSG;
	}
	out->src = (const char *)src;
	out->dst = (const char *)dst;
	out->payload = payload;
	out->tag = tag;
	if (out->flags & ~BQ_FF_KNOWN) {
		return -EBADMSG;
	}
	if (out->src_len > BQ_USER_ID_MAX || out->dst_len > BQ_USER_ID_MAX ||
	    !id_field_ok(out->src, out->src_len) || !id_field_ok(out->dst, out->dst_len)) {
		return -EBADMSG;
	}
	if ((out->flags & BQ_FF_BROADCAST) && out->dst_len != 0) {
		return -EBADMSG;
	}
	return (int)total;
}

size_t bq_frame_encoded_size(const struct bq_frame *f)
{
	return BQ_FRAME_HEADER_MIN + (size_t)f->src_len + f->dst_len + f->payload_len +
	       ((f->flags & BQ_FF_AUTH) ? BQ_TAG_LEN : 0);
}

static int frame_check(const struct bq_frame *f)
{
	if (f->flags & ~BQ_FF_KNOWN) {
		return -EINVAL;
	}
	if (f->src_len > BQ_USER_ID_MAX || f->dst_len > BQ_USER_ID_MAX ||
	    !id_field_ok(f->src, f->src_len) || !id_field_ok(f->dst, f->dst_len)) {
		return -EINVAL;
	}
	if ((f->flags & BQ_FF_BROADCAST) && f->dst_len != 0) {
		return -EINVAL;
	}
	if (f->payload_len && !f->payload) {
		return -EINVAL;
	}
	if (f->type == BQ_T_MSG && f->payload_len > BQ_TEXT_MAX) {
		return -EINVAL;
	}
	if (bq_frame_encoded_size(f) > BQ_FRAME_MAX) {
		return -EINVAL;
	}
	return 0;
}

int bq_frame_encode(const struct bq_frame *f, uint8_t *buf, size_t cap)
{
	static const uint8_t zero_tag[BQ_TAG_LEN];
	struct bq_wcur w;
	size_t size = bq_frame_encoded_size(f);
	int rc = frame_check(f);

	if (rc < 0) {
		return rc;
	}
	if (!buf || cap < size) {
		return -ENOSPC;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u16be(&w, (uint16_t)(size - 2));
	bq_wcur_u8(&w, f->version ? f->version : BQ_PROTO_VERSION);
	bq_wcur_u8(&w, f->type);
	bq_wcur_u8(&w, f->flags);
	bq_wcur_u8(&w, f->ttl);
	bq_wcur_u8(&w, f->hops);
	bq_wcur_u8(&w, f->attempt);
	bq_wcur_u64be(&w, f->msg_id);
	bq_wcur_bytes(&w, f->origin, BQ_NODE_ADDR_LEN);
	bq_wcur_u64be(&w, f->timestamp_ms);
	bq_wcur_u8(&w, f->src_len);
	bq_wcur_bytes(&w, f->src, f->src_len);
	bq_wcur_u8(&w, f->dst_len);
	bq_wcur_bytes(&w, f->dst, f->dst_len);
	bq_wcur_u16be(&w, f->payload_len);
	bq_wcur_bytes(&w, f->payload, f->payload_len);
	if (f->flags & BQ_FF_AUTH) {
		bq_wcur_bytes(&w, zero_tag, BQ_TAG_LEN);
	}
	if (bq_wcur_error(&w) || w.off != size) {
		return -ENOSPC;
	}
	return (int)size;
}

void bq_frame_patch_hops(uint8_t *buf, uint8_t ttl, uint8_t hops)
{
	buf[OFF_TTL] = ttl;
	buf[OFF_HOPS] = hops;
}

/* ---- payloads ---------------------------------------------------------------------- */

/* Start reading a payload; empty payloads may have a NULL pointer. */
static void payload_cur(struct bq_cur *c, const struct bq_frame *f)
{
	bq_cur_init(c, f->payload, f->payload ? f->payload_len : 0);
}

/* A decoder's last word: no read failed and nothing is left over. */
static int payload_done(const struct bq_cur *c)
{
	return (bq_cur_error(c) || bq_cur_left(c) != 0) ? -EBADMSG : 0;
}

/* An encoder's last word: the length written, or -ENOSPC. */
static int payload_len(const struct bq_wcur *w)
{
	return bq_wcur_error(w) ? -ENOSPC : (int)w->off;
}

/* Read a u8 length and point *s at that many bytes. */
static void cur_str8(struct bq_cur *c, const char **s, uint8_t *len)
{
	const uint8_t *p = NULL;

	if (bq_cur_u8(c, len) == 0 && bq_cur_ref(c, &p, *len) == 0) {
		*s = (const char *)p;
	}
}

int bq_hello_decode(const struct bq_frame *f, struct bq_hello *out)
{
	struct bq_cur c;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u8(&c, &out->role);
	bq_cur_u32be(&c, &out->caps);
	cur_str8(&c, &out->name, &out->name_len);
	if (payload_done(&c) < 0) {
		return -EBADMSG;
	}
	if ((out->role != BQ_ROLE_NODE && out->role != BQ_ROLE_CLIENT) ||
	    out->name_len > BQ_NAME_MAX || !opt_name_valid(out->name, out->name_len)) {
		return -EBADMSG;
	}
	return 0;
}

int bq_hello_encode(const struct bq_hello *h, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if ((h->role != BQ_ROLE_NODE && h->role != BQ_ROLE_CLIENT) || h->name_len > BQ_NAME_MAX ||
	    !opt_name_valid(h->name, h->name_len)) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u8(&w, h->role);
	bq_wcur_u32be(&w, h->caps);
	bq_wcur_u8(&w, h->name_len);
	bq_wcur_bytes(&w, h->name, h->name_len);
	return payload_len(&w);
}

int bq_attach_decode(const struct bq_frame *f, struct bq_attach *out)
{
	struct bq_cur c;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	cur_str8(&c, &out->name, &out->name_len);
	if (payload_done(&c) < 0 || !bq_name_valid(out->name, out->name_len)) {
		return -EBADMSG;
	}
	return 0;
}

int bq_attach_encode(const struct bq_attach *a, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if (!bq_name_valid(a->name, a->name_len)) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u8(&w, a->name_len);
	bq_wcur_bytes(&w, a->name, a->name_len);
	return payload_len(&w);
}

int bq_detach_decode(const struct bq_frame *f)
{
	return f->payload_len == 0 ? 0 : -EBADMSG;
}

int bq_scan_decode(const struct bq_frame *f, struct bq_scan *out)
{
	struct bq_cur c;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u64be(&c, &out->cursor);
	bq_cur_u16be(&c, &out->max_entries);
	if (!bq_cur_error(&c) && bq_cur_left(&c) > 0) {
		/* Present means not 0: one encoding per value keeps encode(decode(b)) == b. */
		if (bq_cur_u8(&c, &out->flags) < 0 || out->flags == 0 ||
		    (out->flags & ~BQ_SCAN_KNOWN) != 0) {
			return -EBADMSG;
		}
	}
	return payload_done(&c);
}

int bq_scan_encode(const struct bq_scan *s, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if (s->flags & ~BQ_SCAN_KNOWN) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u64be(&w, s->cursor);
	bq_wcur_u16be(&w, s->max_entries);
	if (s->flags) {
		bq_wcur_u8(&w, s->flags);
	}
	return payload_len(&w);
}

int bq_msg_decode(const struct bq_frame *f, struct bq_msg *out)
{
	struct bq_cur c;
	const uint8_t *p = NULL;

	memset(out, 0, sizeof(*out));
	if (f->payload_len > BQ_TEXT_MAX) {
		return -EBADMSG;
	}
	payload_cur(&c, f);
	bq_cur_ref(&c, &p, f->payload_len);
	if (payload_done(&c) < 0) {
		return -EBADMSG;
	}
	out->text = (const char *)p;
	out->text_len = f->payload_len;
	return 0;
}

int bq_msg_encode(const struct bq_msg *m, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if (m->text_len > BQ_TEXT_MAX || (m->text_len && !m->text)) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_bytes(&w, m->text, m->text_len);
	return payload_len(&w);
}

int bq_ack_decode(const struct bq_frame *f, struct bq_ack *out)
{
	struct bq_cur c;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u64be(&c, &out->acked_id);
	bq_cur_u8(&c, &out->status);
	cur_str8(&c, &out->reason, &out->reason_len);
	if (payload_done(&c) < 0 || out->status > BQ_ACK_OK) {
		return -EBADMSG;
	}
	return 0;
}

int bq_ack_encode(const struct bq_ack *a, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if (a->status > BQ_ACK_OK || (a->reason_len && !a->reason)) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u64be(&w, a->acked_id);
	bq_wcur_u8(&w, a->status);
	bq_wcur_u8(&w, a->reason_len);
	bq_wcur_bytes(&w, a->reason, a->reason_len);
	return payload_len(&w);
}

int bq_ping_decode(const struct bq_frame *f, struct bq_ping *out)
{
	struct bq_cur c;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u64be(&c, &out->nonce);
	return payload_done(&c);
}

int bq_ping_encode(const struct bq_ping *p, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	bq_wcur_init(&w, buf, cap);
	bq_wcur_u64be(&w, p->nonce);
	return payload_len(&w);
}

int bq_error_decode(const struct bq_frame *f, struct bq_error *out)
{
	struct bq_cur c;
	const uint8_t *p = NULL;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u16be(&c, &out->code);
	if (bq_cur_u16be(&c, &out->text_len) == 0 && bq_cur_ref(&c, &p, out->text_len) == 0) {
		out->text = (const char *)p;
	}
	return payload_done(&c);
}

int bq_error_encode(const struct bq_error *e, uint8_t *buf, size_t cap)
{
	struct bq_wcur w;

	if (e->text_len && !e->text) {
		return -EINVAL;
	}
	bq_wcur_init(&w, buf, cap);
	bq_wcur_u16be(&w, e->code);
	bq_wcur_u16be(&w, e->text_len);
	bq_wcur_bytes(&w, e->text, e->text_len);
	return payload_len(&w);
}

/* ---- directory entries ------------------------------------------------------------- */

static int entry_valid(const struct bq_dir_entry *e)
{
	if (e->name_len > BQ_NAME_MAX || !opt_name_valid(e->name, e->name_len)) {
		return 0;
	}
	switch (e->kind) {
	case BQ_DIR_USER:
		return bq_user_id_valid(e->id, e->id_len) && e->presence <= BQ_PRES_GONE;
	case BQ_DIR_NODE:
		return e->n_neigh == 0 || e->neigh != NULL;
	default:
		return 0;
	}
}

static size_t entry_size(const struct bq_dir_entry *e)
{
	if (e->kind == BQ_DIR_USER) {
		/* kind, id_len, id, name_len, name, home, presence, version, age */
		return 1 + 1 + (size_t)e->id_len + 1 + e->name_len + BQ_NODE_ADDR_LEN + 1 + 4 + 4;
	}
	/* kind, node, name_len, name, version, age, n_neigh, neighbours */
	return 1 + BQ_NODE_ADDR_LEN + 1 + (size_t)e->name_len + 4 + 4 + 1 +
	       (size_t)e->n_neigh * BQ_NODE_ADDR_LEN;
}

static int entry_read(struct bq_cur *c, struct bq_dir_entry *e)
{
	const uint8_t *neigh = NULL;

	memset(e, 0, sizeof(*e));
	if (bq_cur_u8(c, &e->kind) < 0) {
		return -EBADMSG;
	}
	if (e->kind == BQ_DIR_USER) {
		cur_str8(c, &e->id, &e->id_len);
		cur_str8(c, &e->name, &e->name_len);
		bq_cur_bytes(c, e->home, BQ_NODE_ADDR_LEN);
		bq_cur_u8(c, &e->presence);
		bq_cur_u32be(c, &e->version);
		bq_cur_u32be(c, &e->age_s);
	} else if (e->kind == BQ_DIR_NODE) {
		bq_cur_bytes(c, e->node, BQ_NODE_ADDR_LEN);
		cur_str8(c, &e->name, &e->name_len);
		bq_cur_u32be(c, &e->version);
		bq_cur_u32be(c, &e->age_s);
		if (bq_cur_u8(c, &e->n_neigh) == 0 &&
		    bq_cur_ref(c, &neigh, (size_t)e->n_neigh * BQ_NODE_ADDR_LEN) == 0) {
			e->neigh = neigh;
		}
	} else {
		return -EBADMSG;
	}
	if (bq_cur_error(c) || !entry_valid(e)) {
		return -EBADMSG;
	}
	return 0;
}

static void entry_write(struct bq_wcur *w, const struct bq_dir_entry *e)
{
	bq_wcur_u8(w, e->kind);
	if (e->kind == BQ_DIR_USER) {
		bq_wcur_u8(w, e->id_len);
		bq_wcur_bytes(w, e->id, e->id_len);
		bq_wcur_u8(w, e->name_len);
		bq_wcur_bytes(w, e->name, e->name_len);
		bq_wcur_bytes(w, e->home, BQ_NODE_ADDR_LEN);
		bq_wcur_u8(w, e->presence);
		bq_wcur_u32be(w, e->version);
		bq_wcur_u32be(w, e->age_s);
		return;
	}
	bq_wcur_bytes(w, e->node, BQ_NODE_ADDR_LEN);
	bq_wcur_u8(w, e->name_len);
	bq_wcur_bytes(w, e->name, e->name_len);
	bq_wcur_u32be(w, e->version);
	bq_wcur_u32be(w, e->age_s);
	bq_wcur_u8(w, e->n_neigh);
	bq_wcur_bytes(w, e->neigh, (size_t)e->n_neigh * BQ_NODE_ADDR_LEN);
}

void bq_dir_iter_init(struct bq_dir_iter *it, const uint8_t *entries, size_t len, uint16_t count)
{
	it->p = entries;
	it->len = entries ? len : 0;
	it->off = 0;
	it->left = count;
	it->err = 0;
}

int bq_dir_iter_next(struct bq_dir_iter *it, struct bq_dir_entry *e)
{
	struct bq_cur c;

	if (it->err) {
		return it->err;
	}
	if (it->left == 0) {
		/* Bytes after the last counted entry mean the count lied. */
		if (it->off != it->len) {
			it->err = -EBADMSG;
		}
		return it->err;
	}
	bq_cur_init(&c, it->p, it->len);
	bq_cur_skip(&c, it->off);
	if (entry_read(&c, e) < 0) {
		memset(e, 0, sizeof(*e));
		it->err = -EBADMSG;
		return it->err;
	}
	it->off = c.off;
	it->left--;
	return 1;
}

/* Walk every entry once so a decoded payload iterates without surprises. */
static int entries_check(const uint8_t *p, size_t len, uint16_t count, int users_only)
{
	struct bq_dir_iter it;
	struct bq_dir_entry e;
	int rc;

	bq_dir_iter_init(&it, p, len, count);
	while ((rc = bq_dir_iter_next(&it, &e)) == 1) {
		if (users_only && e.kind != BQ_DIR_USER) {
			return -EBADMSG;
		}
	}
	return rc;
}

int bq_directory_decode(const struct bq_frame *f, struct bq_directory *out)
{
	struct bq_cur c;
	const uint8_t *entries = NULL;
	size_t left;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u64be(&c, &out->next_cursor);
	bq_cur_u8(&c, &out->dflags);
	bq_cur_u16be(&c, &out->count);
	left = bq_cur_left(&c);
	bq_cur_ref(&c, &entries, left);
	if (bq_cur_error(&c) || (out->dflags & ~BQ_DIRF_SNAPSHOT)) {
		return -EBADMSG;
	}
	out->entries = entries;
	out->entries_len = (uint16_t)left;
	return entries_check(entries, left, out->count, 0) < 0 ? -EBADMSG : 0;
}

#define ANNF_KNOWN (BQ_ANNF_FULL | BQ_ANNF_REANNOUNCE)

int bq_announce_decode(const struct bq_frame *f, struct bq_announce *out)
{
	struct bq_cur c;
	const uint8_t *neigh = NULL, *users = NULL;
	size_t left;

	memset(out, 0, sizeof(*out));
	payload_cur(&c, f);
	bq_cur_u32be(&c, &out->seq);
	bq_cur_u8(&c, &out->aflags);
	cur_str8(&c, &out->name, &out->name_len);
	if (bq_cur_u8(&c, &out->n_neigh) == 0 &&
	    bq_cur_ref(&c, &neigh, (size_t)out->n_neigh * BQ_NODE_ADDR_LEN) == 0) {
		out->neigh = neigh;
	}
	bq_cur_u16be(&c, &out->n_users);
	left = bq_cur_left(&c);
	bq_cur_ref(&c, &users, left);
	if (bq_cur_error(&c) || (out->aflags & ~ANNF_KNOWN) || out->name_len > BQ_NAME_MAX ||
	    !opt_name_valid(out->name, out->name_len)) {
		return -EBADMSG;
	}
	out->users = users;
	out->users_len = (uint16_t)left;
	return entries_check(users, left, out->n_users, 1) < 0 ? -EBADMSG : 0;
}

/* ---- directory writer -------------------------------------------------------------- */

static void dirw_reset(struct bq_dirw *w, uint8_t *buf, size_t cap)
{
	memset(w, 0, sizeof(*w));
	w->buf = buf;
	w->cap = buf ? cap : 0;
}

/* Leave the writer unusable after a failed init: add fails, finish returns 0. */
static int dirw_fail(struct bq_dirw *w, int rc)
{
	w->kind = 0;
	w->off = 0;
	return rc;
}

int bq_dirw_init_directory(struct bq_dirw *w, uint8_t *buf, size_t cap, uint64_t next_cursor,
			   uint8_t dflags)
{
	struct bq_wcur wc;

	dirw_reset(w, buf, cap);
	if (dflags & ~BQ_DIRF_SNAPSHOT) {
		return dirw_fail(w, -EINVAL);
	}
	bq_wcur_init(&wc, w->buf, w->cap);
	bq_wcur_u64be(&wc, next_cursor);
	bq_wcur_u8(&wc, dflags);
	w->count_at = wc.off;
	bq_wcur_u16be(&wc, 0);
	if (bq_wcur_error(&wc)) {
		return dirw_fail(w, -ENOSPC);
	}
	w->off = wc.off;
	w->kind = BQ_T_DIRECTORY;
	return 0;
}

int bq_dirw_init_announce(struct bq_dirw *w, uint8_t *buf, size_t cap,
			  const struct bq_announce *hdr)
{
	struct bq_wcur wc;

	dirw_reset(w, buf, cap);
	if ((hdr->aflags & ~ANNF_KNOWN) || hdr->name_len > BQ_NAME_MAX ||
	    !opt_name_valid(hdr->name, hdr->name_len) || (hdr->n_neigh && !hdr->neigh)) {
		return dirw_fail(w, -EINVAL);
	}
	bq_wcur_init(&wc, w->buf, w->cap);
	bq_wcur_u32be(&wc, hdr->seq);
	bq_wcur_u8(&wc, hdr->aflags);
	bq_wcur_u8(&wc, hdr->name_len);
	bq_wcur_bytes(&wc, hdr->name, hdr->name_len);
	bq_wcur_u8(&wc, hdr->n_neigh);
	bq_wcur_bytes(&wc, hdr->neigh, (size_t)hdr->n_neigh * BQ_NODE_ADDR_LEN);
	w->count_at = wc.off;
	bq_wcur_u16be(&wc, 0);
	if (bq_wcur_error(&wc)) {
		return dirw_fail(w, -ENOSPC);
	}
	w->off = wc.off;
	w->kind = BQ_T_ANNOUNCE;
	return 0;
}

int bq_dirw_add(struct bq_dirw *w, const struct bq_dir_entry *e)
{
	struct bq_wcur wc;
	size_t size;

	if (w->kind != BQ_T_DIRECTORY && w->kind != BQ_T_ANNOUNCE) {
		return -EINVAL;
	}
	if (!entry_valid(e) || (w->kind == BQ_T_ANNOUNCE && e->kind != BQ_DIR_USER)) {
		return -EINVAL;
	}
	size = entry_size(e);
	if (w->count == UINT16_MAX || size > w->cap - w->off) {
		return -ENOSPC;
	}
	bq_wcur_init(&wc, w->buf, w->cap);
	wc.off = w->off;
	entry_write(&wc, e);
	if (bq_wcur_error(&wc)) {
		return -ENOSPC; /* unreachable: the size was checked above */
	}
	w->off = wc.off;
	w->count++;
	return 0;
}

size_t bq_dirw_finish(struct bq_dirw *w, uint64_t next_cursor)
{
	struct bq_wcur wc;

	if (w->kind != BQ_T_DIRECTORY && w->kind != BQ_T_ANNOUNCE) {
		return 0;
	}
	bq_wcur_init(&wc, w->buf, w->off);
	wc.off = w->off;
	bq_wcur_patch_u16be(&wc, w->count_at, w->count);
	if (w->kind == BQ_T_DIRECTORY) {
		/* The cursor leads the payload: rewrite the first 8 bytes. */
		bq_wcur_init(&wc, w->buf, 8);
		bq_wcur_u64be(&wc, next_cursor);
	}
	return w->off;
}
