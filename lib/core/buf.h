/* SPDX-License-Identifier: MIT */
/*
 * buf: a growable byte buffer with a hard maximum (curl's dynbuf and its toobig).
 * Every buffer a peer can grow is one of these; reaching the maximum is an error
 * the caller counts, never a silent realloc.
 *
 * A value type (embedded in its owner), so not opaque.
 */
#ifndef BQ_CORE_BUF_H
#define BQ_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct bq_buf {
	uint8_t *data; /* owned; NULL until the first append */
	size_t len;    /* bytes in use, starting at data */
	size_t cap;    /* bytes allocated */
	size_t max;    /* hard limit on len */
};

void bq_buf_init(struct bq_buf *b, size_t max);
/* Returns 0, -EMSGSIZE when len would exceed max (buffer unchanged), or -ENOMEM. */
int bq_buf_append(struct bq_buf *b, const void *p, size_t n);
int bq_buf_printf(struct bq_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int bq_buf_vprintf(struct bq_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/*
 * Make room for n more bytes and return a pointer to them (for read() into the
 * buffer); commit what was filled with bq_buf_commit. NULL with *err set on failure.
 */
uint8_t *bq_buf_reserve(struct bq_buf *b, size_t n, int *err);
void bq_buf_commit(struct bq_buf *b, size_t n);
/* Drop the first n bytes (n <= len). */
void bq_buf_consume(struct bq_buf *b, size_t n);
/* Keep the memory, forget the contents. */
void bq_buf_reset(struct bq_buf *b);
/* Free the memory; the buffer can be reused after. */
void bq_buf_free(struct bq_buf *b);
/* NUL-terminated view of the contents (appends a NUL past len without counting it). */
const char *bq_buf_cstr(struct bq_buf *b);

#endif
