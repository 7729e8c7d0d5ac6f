/* SPDX-License-Identifier: MIT */
#include "http/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

int bq_json_parse_object(const void *body, size_t len, json_t **out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *v;

	if (!body || len == 0) {
		snprintf(err, errlen, "the body is empty: expected a JSON object");
		return -EINVAL;
	}
	/*
	 * JSON_REJECT_DUPLICATES: {"user_id":"a","user_id":"b"} is ambiguous, refuse it.
	 * No JSON_DISABLE_EOF_CHECK: trailing bytes after the object are an error.
	 * JSON_ALLOW_NUL is not given, so "\u0000" inside a string is refused.
	 */
	v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!v) {
		snprintf(err, errlen, "malformed JSON at line %d column %d: %s", jerr.line,
			 jerr.column, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		snprintf(err, errlen, "the body must be a JSON object");
		return -EINVAL;
	}
	*out = v;
	return 0;
}

int bq_json_get_string(const json_t *obj, const char *field, bool required, size_t min_len,
		       size_t max_len, const char **out, size_t *len_out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, field);
	size_t len;

	if (!v || json_is_null(v)) {
		if (!required) {
			return -ENOENT;
		}
		snprintf(err, errlen, "missing field '%s'", field);
		return -EINVAL;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "field '%s' must be a string", field);
		return -EINVAL;
	}
	len = json_string_length(v);
	if (len < min_len) {
		snprintf(err, errlen, "field '%s' must not be empty", field);
		return -EINVAL;
	}
	if (len > max_len) {
		snprintf(err, errlen, "field '%s' is longer than %zu bytes", field, max_len);
		return -EINVAL;
	}
	*out = json_string_value(v);
	if (len_out) {
		*len_out = len;
	}
	return 0;
}

int bq_json_get_id(const json_t *obj, const char *field, bool required, char *buf, size_t cap,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, field);

	if (cap == 0) {
		return -EINVAL;
	}
	if (!v || json_is_null(v)) {
		if (!required) {
			return -ENOENT;
		}
		snprintf(err, errlen, "missing field '%s'", field);
		return -EINVAL;
	}
	if (json_is_integer(v)) {
		json_int_t n = json_integer_value(v);
		int w;

		if (n < 0) {
			snprintf(err, errlen, "field '%s' must not be negative", field);
			return -EINVAL;
		}
		w = snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, n);
		if (w < 0 || (size_t)w >= cap) {
			snprintf(err, errlen, "field '%s' is too long", field);
			return -EINVAL;
		}
		return 0;
	}
	if (!json_is_string(v)) {
		snprintf(err, errlen, "field '%s' must be a string or an integer", field);
		return -EINVAL;
	}
	if (json_string_length(v) == 0) {
		snprintf(err, errlen, "field '%s' must not be empty", field);
		return -EINVAL;
	}
	if (json_string_length(v) >= cap) {
		snprintf(err, errlen, "field '%s' is longer than %zu bytes", field, cap - 1);
		return -EINVAL;
	}
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

struct dump_ctx {
	struct bq_buf *out;
	int err;
};

static int dump_cb(const char *chunk, size_t size, void *data)
{
	struct dump_ctx *ctx = data;
	int rc = bq_buf_append(ctx->out, chunk, size);

	if (rc < 0) {
		ctx->err = rc;
		return -1;
	}
	return 0;
}

int bq_json_dump(const json_t *v, struct bq_buf *out)
{
	struct dump_ctx ctx = {.out = out, .err = 0};
	size_t before = out->len;

	if (json_dump_callback(v, dump_cb, &ctx, JSON_COMPACT | JSON_ENCODE_ANY) < 0) {
		out->len = before;
		return ctx.err ? ctx.err : -ENOMEM;
	}
	return 0;
}

json_t *bq_json_text(const char *s, size_t len)
{
	json_t *v = json_stringn(s, len);
	char *copy;

	if (v || !s) {
		return v;
	}
	copy = bq_malloc(len + 1);
	if (!copy) {
		return NULL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		copy[i] = (ch >= 0x80 || ch == 0) ? '?' : (char)ch;
	}
	v = json_stringn(copy, len);
	bq_free(copy);
	return v;
}

int bq_json_reply(struct bq_http_req *req, unsigned status, json_t *v, size_t max)
{
	struct bq_buf b;
	int rc;

	if (!v) {
		return bq_http_reply_error(req, 500, "internal", "out of memory");
	}
	bq_buf_init(&b, max);
	if (bq_json_dump(v, &b) < 0) {
		json_decref(v);
		bq_buf_free(&b);
		return bq_http_reply_error(req, 500, "internal",
					   "answer too large or out of memory");
	}
	json_decref(v);
	rc = bq_http_reply(req, status, NULL, b.data, b.len);
	bq_buf_free(&b);
	return rc;
}
