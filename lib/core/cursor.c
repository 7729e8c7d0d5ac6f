/* SPDX-License-Identifier: MIT */
#include "core/cursor.h"

#include <errno.h>
#include <string.h>

void bq_cur_init(struct bq_cur *c, const void *data, size_t len)
{
	c->data = data;
	c->len = data ? len : 0;
	c->off = 0;
	c->err = 0;
}

/* The single bounds check every read goes through. */
static const uint8_t *cur_take(struct bq_cur *c, size_t n)
{
	const uint8_t *p;

	if (c->err) {
		return NULL;
	}
	if (n > c->len - c->off) {
		c->err = -EBADMSG;
		return NULL;
	}
	p = c->data + c->off;
	c->off += n;
	return p;
}

int bq_cur_u8(struct bq_cur *c, uint8_t *out)
{
	const uint8_t *p = cur_take(c, 1);

	if (!p) {
		return c->err;
	}
	*out = p[0];
	return 0;
}

int bq_cur_u16be(struct bq_cur *c, uint16_t *out)
{
	const uint8_t *p = cur_take(c, 2);

	if (!p) {
		return c->err;
	}
	*out = (uint16_t)((p[0] << 8) | p[1]);
	return 0;
}

int bq_cur_u32be(struct bq_cur *c, uint32_t *out)
{
	const uint8_t *p = cur_take(c, 4);

	if (!p) {
		return c->err;
	}
	*out = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
	return 0;
}

int bq_cur_u64be(struct bq_cur *c, uint64_t *out)
{
	const uint8_t *p = cur_take(c, 8);
	uint64_t v = 0;

	if (!p) {
		return c->err;
	}
	for (int i = 0; i < 8; i++) {
		v = (v << 8) | p[i];
	}
	*out = v;
	return 0;
}

int bq_cur_bytes(struct bq_cur *c, void *out, size_t n)
{
	const uint8_t *p = cur_take(c, n);

	if (!p) {
		return c->err;
	}
	if (n) {
		memcpy(out, p, n);
	}
	return 0;
}

int bq_cur_ref(struct bq_cur *c, const uint8_t **out, size_t n)
{
	const uint8_t *p = cur_take(c, n);

	if (!p) {
		return c->err;
	}
	*out = p;
	return 0;
}

int bq_cur_skip(struct bq_cur *c, size_t n)
{
	return cur_take(c, n) ? 0 : c->err;
}

size_t bq_cur_left(const struct bq_cur *c)
{
	return c->err ? 0 : c->len - c->off;
}

int bq_cur_error(const struct bq_cur *c)
{
	return c->err;
}

void bq_wcur_init(struct bq_wcur *w, void *data, size_t cap)
{
	w->data = data;
	w->cap = data ? cap : 0;
	w->off = 0;
	w->err = 0;
}

static uint8_t *wcur_take(struct bq_wcur *w, size_t n)
{
	uint8_t *p;

	if (w->err) {
		return NULL;
	}
	if (n > w->cap - w->off) {
		w->err = -ENOSPC;
		return NULL;
	}
	p = w->data + w->off;
	w->off += n;
	return p;
}

int bq_wcur_u8(struct bq_wcur *w, uint8_t v)
{
	uint8_t *p = wcur_take(w, 1);

	if (!p) {
		return w->err;
	}
	p[0] = v;
	return 0;
}

int bq_wcur_u16be(struct bq_wcur *w, uint16_t v)
{
	uint8_t *p = wcur_take(w, 2);

	if (!p) {
		return w->err;
	}
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return 0;
}

int bq_wcur_u32be(struct bq_wcur *w, uint32_t v)
{
	uint8_t *p = wcur_take(w, 4);

	if (!p) {
		return w->err;
	}
	for (int i = 3; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
	return 0;
}

int bq_wcur_u64be(struct bq_wcur *w, uint64_t v)
{
	uint8_t *p = wcur_take(w, 8);

	if (!p) {
		return w->err;
	}
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
	return 0;
}

int bq_wcur_bytes(struct bq_wcur *w, const void *src, size_t n)
{
	uint8_t *p = wcur_take(w, n);

	if (!p) {
		return w->err;
	}
	if (n) {
		memcpy(p, src, n);
	}
	return 0;
}

int bq_wcur_patch_u16be(struct bq_wcur *w, size_t at, uint16_t v)
{
	if (w->err) {
		return w->err;
	}
	if (at > w->off || w->off - at < 2) {
		return -EINVAL;
	}
	w->data[at] = (uint8_t)(v >> 8);
	w->data[at + 1] = (uint8_t)v;
	return 0;
}

int bq_wcur_error(const struct bq_wcur *w)
{
	return w->err;
}
