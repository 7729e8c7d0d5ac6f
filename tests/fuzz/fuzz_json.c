/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the manager's request-body reading: strict parsing of one JSON object, then the
 * field readers the API uses (ids as string or integer, bounded strings), then the
 * bounded writer. Invariants: a successful read is within its bounds and NUL-terminated;
 * an object that parsed dumps to text that parses again to an equal value.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			abort();                                                           \
		}                                                                          \
	} while (0)

static void read_fields(const json_t *obj)
{
	static const char *const fields[] = { "user_id", "user_name", "destination", "message" };
	char id[65], err[256];
	const char *s;
	size_t len;

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		int rc = bq_json_get_id(obj, fields[i], true, id, sizeof(id), err, sizeof(err));

		CHECK(rc == 0 || rc == -EINVAL);
		if (rc == 0) {
			CHECK(strlen(id) >= 1 && strlen(id) < sizeof(id));
		} else {
			CHECK(strlen(err) > 0 && strlen(err) < sizeof(err));
		}
		rc = bq_json_get_string(obj, fields[i], false, 1, 4096, &s, &len, err, sizeof(err));
		CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
		if (rc == 0) {
			CHECK(len >= 1 && len <= 4096 && s[len] == '\0');
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	json_t *obj = NULL, *again = NULL;
	struct bq_buf b;
	int rc = bq_json_parse_object(data, size, &obj, err, sizeof(err));

	if (rc < 0) {
		CHECK(rc == -EINVAL && strlen(err) > 0);
		return 0;
	}
	CHECK(json_is_object(obj));
	read_fields(obj);
	bq_buf_init(&b, 1u << 20);
	rc = bq_json_dump(obj, &b);
	CHECK(rc == 0 || rc == -EMSGSIZE);
	if (rc == 0) {
		CHECK(bq_json_parse_object(b.data, b.len, &again, err, sizeof(err)) == 0);
		CHECK(json_equal(obj, again));
		json_decref(again);
	}
	bq_buf_free(&b);
	json_decref(obj);
	return 0;
}
