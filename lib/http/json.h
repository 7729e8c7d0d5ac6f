/* SPDX-License-Identifier: MIT */
/*
 * http/json: strict reading of JSON request bodies with jansson, field by field, so
 * every 400 names what is wrong ("field 'user_id' must be a string"), and writing of
 * JSON values into a bounded buffer.
 *
 * Strict means: the body is exactly one JSON object (no trailing data), duplicate keys
 * are refused, strings must be valid UTF-8 without NUL bytes. Unknown fields are
 * ignored, so older managers accept newer backends' requests.
 */
#ifndef BQ_HTTP_JSON_H
#define BQ_HTTP_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/buf.h"
#include "http/server.h"

/*
 * Parse body as one JSON object. 0 and *out (release with json_decref), or -EINVAL
 * with one line in err ("malformed JSON at line 1 column 9: ...", "the body must be
 * a JSON object", "the body is empty").
 */
int bq_json_parse_object(const void *body, size_t len, json_t **out, char *err, size_t errlen);

/*
 * A string field of 1..max_len bytes (min_len 0 allows ""). *out points into obj
 * (valid while obj lives), *len_out (may be NULL) gets its length.
 * 0; -ENOENT when absent and not required (outputs untouched); -EINVAL with err naming
 * the field when absent and required, of another type, too long or too short.
 */
int bq_json_get_string(const json_t *obj, const char *field, bool required, size_t min_len,
		       size_t max_len, const char **out, size_t *len_out, char *err, size_t errlen);

/*
 * An identifier field given either as a string or as a non-negative integer (web
 * backends often use numeric ids), written as text into buf (cap bytes with the NUL).
 * Same results as bq_json_get_string.
 */
int bq_json_get_id(const json_t *obj, const char *field, bool required, char *buf, size_t cap,
		   char *err, size_t errlen);

/*
 * Append the compact encoding of v to out (bounded by out's maximum). 0, -EMSGSIZE
 * when it does not fit (out is then restored to its previous length), -ENOMEM.
 */
int bq_json_dump(const json_t *v, struct bq_buf *out);

/*
 * Mesh text as a JSON string: valid UTF-8 stays, and when the bytes are not valid UTF-8
 * (the mesh does not check) every byte >= 0x80 and every NUL becomes '?', so an event or
 * an answer is always valid JSON. NULL on -ENOMEM.
 */
json_t *bq_json_text(const char *s, size_t len);

/*
 * Reply with v (stolen; NULL means out of memory: 500) encoded in at most max bytes;
 * larger: 500 "answer too large". As bq_http_reply: 0 or a negative errno.
 */
int bq_json_reply(struct bq_http_req *req, unsigned status, json_t *v, size_t max);

#endif
