/* SPDX-License-Identifier: MIT */
/* Strict JSON request bodies: every refusal names what is wrong. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "http/json.h"

#define PARSE(s, out) bq_json_parse_object((s), strlen(s), (out), err, sizeof(err))

START_TEST(test_parse_object)
{
	char err[256];
	json_t *o = NULL;

	ck_assert_int_eq(PARSE("{\"user_id\":\"a\"}", &o), 0);
	ck_assert_ptr_nonnull(o);
	json_decref(o);
	ck_assert_int_eq(bq_json_parse_object(NULL, 0, &o, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	ck_assert_int_eq(PARSE("{\"user_id\":", &o), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "malformed JSON at line 1"));
	ck_assert_int_eq(PARSE("[1,2]", &o), -EINVAL);
	ck_assert_str_eq(err, "the body must be a JSON object");
	ck_assert_int_eq(PARSE("{\"a\":1} x", &o), -EINVAL);
	ck_assert_int_eq(PARSE("{\"a\":1,\"a\":2}", &o), -EINVAL);
	ck_assert_int_eq(PARSE("{\"a\":\"x\\u0000y\"}", &o), -EINVAL);
	/* Invalid UTF-8 inside a string. */
	ck_assert_int_eq(PARSE("{\"a\":\"\xff\"}", &o), -EINVAL);
}
END_TEST

START_TEST(test_get_string)
{
	char err[256];
	json_t *o = NULL;
	const char *s = NULL;
	size_t len = 0;

	ck_assert_int_eq(PARSE("{\"m\":\"hello\",\"n\":5,\"e\":\"\"}", &o), 0);
	ck_assert_int_eq(bq_json_get_string(o, "m", true, 1, 5, &s, &len, err, sizeof(err)), 0);
	ck_assert_str_eq(s, "hello");
	ck_assert_uint_eq(len, 5);
	ck_assert_int_eq(bq_json_get_string(o, "m", true, 1, 4, &s, &len, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "field 'm' is longer than 4 bytes");
	ck_assert_int_eq(bq_json_get_string(o, "n", true, 1, 9, &s, &len, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "field 'n' must be a string");
	ck_assert_int_eq(bq_json_get_string(o, "x", true, 1, 9, &s, &len, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "missing field 'x'");
	s = "untouched";
	ck_assert_int_eq(bq_json_get_string(o, "x", false, 1, 9, &s, NULL, err, sizeof(err)),
			 -ENOENT);
	ck_assert_str_eq(s, "untouched");
	ck_assert_int_eq(bq_json_get_string(o, "e", true, 1, 9, &s, NULL, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "field 'e' must not be empty");
	ck_assert_int_eq(bq_json_get_string(o, "e", true, 0, 9, &s, NULL, err, sizeof(err)), 0);
	json_decref(o);
}
END_TEST

START_TEST(test_get_id)
{
	char err[256], id[8];
	json_t *o = NULL;

	ck_assert_int_eq(PARSE("{\"a\":\"test123\",\"b\":42,\"c\":-1,\"d\":true,"
			       "\"e\":\"12345678\",\"f\":1.5}",
			       &o),
			 0);
	ck_assert_int_eq(bq_json_get_id(o, "a", true, id, sizeof(id), err, sizeof(err)), 0);
	ck_assert_str_eq(id, "test123");
	ck_assert_int_eq(bq_json_get_id(o, "b", true, id, sizeof(id), err, sizeof(err)), 0);
	ck_assert_str_eq(id, "42");
	ck_assert_int_eq(bq_json_get_id(o, "c", true, id, sizeof(id), err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field 'c' must not be negative");
	ck_assert_int_eq(bq_json_get_id(o, "d", true, id, sizeof(id), err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field 'd' must be a string or an integer");
	/* 8 characters do not fit 8 bytes with the NUL; 7 do. */
	ck_assert_int_eq(bq_json_get_id(o, "e", true, id, sizeof(id), err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "field 'e' is longer than 7 bytes");
	ck_assert_int_eq(bq_json_get_id(o, "f", true, id, sizeof(id), err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(bq_json_get_id(o, "z", false, id, sizeof(id), err, sizeof(err)), -ENOENT);
	ck_assert_int_eq(bq_json_get_id(o, "z", true, id, sizeof(id), err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "missing field 'z'");
	json_decref(o);
}
END_TEST

START_TEST(test_dump_bounded)
{
	struct bq_buf b;
	json_t *v = json_pack("{s:s, s:i}", "msg", "quote\" and \n newline", "n", 7);

	bq_buf_init(&b, 64);
	ck_assert_int_eq(bq_buf_append(&b, "x", 1), 0);
	ck_assert_int_eq(bq_json_dump(v, &b), 0);
	ck_assert_str_eq(bq_buf_cstr(&b), "x{\"msg\":\"quote\\\" and \\n newline\",\"n\":7}");
	bq_buf_free(&b);
	/* Too small: the buffer keeps what it had. */
	bq_buf_init(&b, 10);
	ck_assert_int_eq(bq_buf_append(&b, "abc", 3), 0);
	ck_assert_int_eq(bq_json_dump(v, &b), -EMSGSIZE);
	ck_assert_uint_eq(b.len, 3);
	bq_buf_free(&b);
	json_decref(v);
}
END_TEST

/* Mesh text: valid UTF-8 as is; otherwise every high byte and NUL becomes '?'. */
START_TEST(test_text)
{
	json_t *v = bq_json_text("caf\xc3\xa9", 5);

	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(json_string_value(v), "caf\xc3\xa9");
	json_decref(v);
	v = bq_json_text("a\xff" "b\0c", 5);
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(json_string_length(v), 5);
	ck_assert_int_eq(memcmp(json_string_value(v), "a?b?c", 5), 0);
	json_decref(v);
	v = bq_json_text("", 0);
	ck_assert_ptr_nonnull(v);
	ck_assert_str_eq(json_string_value(v), "");
	json_decref(v);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_parse_object);
	tcase_add_test(tc, test_get_string);
	tcase_add_test(tc, test_get_id);
	tcase_add_test(tc, test_dump_bounded);
	tcase_add_test(tc, test_text);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
