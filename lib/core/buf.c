/* SPDX-License-Identifier: MIT */
#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* Small enough not to matter per session, large enough to skip the first few doublings. */
#define BUF_MIN_CAP 64

/*
 * Invariant once data is allocated: cap > len, so there is always one byte past the
 * contents for bq_buf_cstr's NUL. That byte is why cap may reach max + 1.
 */
static size_t buf_cap_limit(const struct bq_buf *b)
{
	return b->max == SIZE_MAX ? SIZE_MAX : b->max + 1;
}

/* Make room for need bytes of contents (need <= max already checked) plus the NUL slot. */
static int buf_grow(struct bq_buf *b, size_t need)
{
	size_t limit = buf_cap_limit(b);
	size_t want = need == SIZE_MAX ? SIZE_MAX : need + 1;
	size_t ncap;
	uint8_t *p;

	if (b->data && b->cap >= want) {
		return 0;
	}
	ncap = b->cap ? b->cap : BUF_MIN_CAP;
	while (ncap < want) {
		/* Doubling keeps appends amortised O(1); the clamp keeps the max honest. */
		if (ncap > limit / 2) {
			ncap = limit;
			break;
		}
		ncap *= 2;
	}
	if (ncap > limit) {
		ncap = limit;
	}
	if (ncap < want) {
		ncap = want;
	}
	p = bq_realloc(b->data, ncap);
	if (!p) {
		return -ENOMEM;
	}
	b->data = p;
	b->cap = ncap;
	return 0;
}

void bq_buf_init(struct bq_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

int bq_buf_append(struct bq_buf *b, const void *p, size_t n)
{
	int r;

	if (n > b->max - b->len) {
		return -EMSGSIZE;
	}
	if (n == 0) {
		return 0;
	}
	r = buf_grow(b, b->len + n);
	if (r < 0) {
		return r;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int bq_buf_vprintf(struct bq_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	size_t room;
	int n, r;

	/* First try in the space already there; most lines fit. */
	room = b->data ? b->cap - b->len : 0;
	va_copy(ap2, ap);
	n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap2);
	va_end(ap2);
	if (n < 0) {
		return -EINVAL;
	}
	if ((size_t)n > b->max - b->len) {
		if (b->data) {
			b->data[b->len] = '\0';
		}
		return -EMSGSIZE;
	}
	if ((size_t)n < room) {
		b->len += (size_t)n;
		return 0;
	}
	r = buf_grow(b, b->len + (size_t)n);
	if (r < 0) {
		if (b->data) {
			b->data[b->len] = '\0';
		}
		return r;
	}
	va_copy(ap2, ap);
	vsnprintf((char *)b->data + b->len, b->cap - b->len, fmt, ap2);
	va_end(ap2);
	b->len += (size_t)n;
	return 0;
}

int bq_buf_printf(struct bq_buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = bq_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

uint8_t *bq_buf_reserve(struct bq_buf *b, size_t n, int *err)
{
	int r;

	if (n > b->max - b->len) {
		*err = -EMSGSIZE;
		return NULL;
	}
	r = buf_grow(b, b->len + n);
	if (r < 0) {
		*err = r;
		return NULL;
	}
	*err = 0;
	return b->data + b->len;
}

void bq_buf_commit(struct bq_buf *b, size_t n)
{
	if (!b->data) {
		return;
	}
	/* Never move past the NUL slot, whatever the caller claims it filled. */
	if (n > b->cap - 1 - b->len) {
		n = b->cap - 1 - b->len;
	}
	b->len += n;
}

void bq_buf_consume(struct bq_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void bq_buf_reset(struct bq_buf *b)
{
	b->len = 0;
}

void bq_buf_free(struct bq_buf *b)
{
	bq_free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

const char *bq_buf_cstr(struct bq_buf *b)
{
	if (!b->data) {
		return "";
	}
	b->data[b->len] = '\0';
	return (const char *)b->data;
}
