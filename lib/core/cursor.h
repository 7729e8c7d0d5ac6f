/* SPDX-License-Identifier: MIT */
/*
 * cursor: checked reading and writing of byte buffers. Every parser in blueq reads
 * peer bytes through struct bq_cur; no protocol code does pointer arithmetic
 * (dropbear's buf_get*).
 *
 * Both cursors are small value types, meant to live on the stack, so they are not
 * opaque. Errors are sticky: after the first failure every later call fails too and
 * leaves outputs untouched, so a decoder may read a whole record and check once.
 * Multi-byte integers are big-endian (network order).
 */
#ifndef BQ_CORE_CURSOR_H
#define BQ_CORE_CURSOR_H

#include <stddef.h>
#include <stdint.h>

struct bq_cur {
	const uint8_t *data; /* borrowed, never freed by the cursor */
	size_t len;
	size_t off;
	int err; /* 0 or -EBADMSG */
};

void bq_cur_init(struct bq_cur *c, const void *data, size_t len);
/* Each returns 0, or -EBADMSG when fewer bytes remain than asked for. */
int bq_cur_u8(struct bq_cur *c, uint8_t *out);
int bq_cur_u16be(struct bq_cur *c, uint16_t *out);
int bq_cur_u32be(struct bq_cur *c, uint32_t *out);
int bq_cur_u64be(struct bq_cur *c, uint64_t *out);
int bq_cur_bytes(struct bq_cur *c, void *out, size_t n);
/* Point *out at the next n bytes inside the cursor's buffer (no copy). */
int bq_cur_ref(struct bq_cur *c, const uint8_t **out, size_t n);
int bq_cur_skip(struct bq_cur *c, size_t n);
size_t bq_cur_left(const struct bq_cur *c);
int bq_cur_error(const struct bq_cur *c);

struct bq_wcur {
	uint8_t *data; /* borrowed */
	size_t cap;
	size_t off;
	int err; /* 0 or -ENOSPC */
};

void bq_wcur_init(struct bq_wcur *w, void *data, size_t cap);
/* Each returns 0, or -ENOSPC when the buffer is too small (sticky). */
int bq_wcur_u8(struct bq_wcur *w, uint8_t v);
int bq_wcur_u16be(struct bq_wcur *w, uint16_t v);
int bq_wcur_u32be(struct bq_wcur *w, uint32_t v);
int bq_wcur_u64be(struct bq_wcur *w, uint64_t v);
int bq_wcur_bytes(struct bq_wcur *w, const void *p, size_t n);
/* Write a big-endian u16 at an earlier offset (length back-patching). */
int bq_wcur_patch_u16be(struct bq_wcur *w, size_t at, uint16_t v);
int bq_wcur_error(const struct bq_wcur *w);

#endif
