/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

struct capture {
	int n;
	enum bq_log_level level;
	char line[4096];
};

static void capture_sink(void *user_data, enum bq_log_level level, const char *line)
{
	struct capture *c = user_data;

	c->n++;
	c->level = level;
	snprintf(c->line, sizeof(c->line), "%s", line);
}

static struct bq_log *new_captured(struct capture *c)
{
	struct bq_log *log = bq_log_new("blueq-test");

	ck_assert_ptr_nonnull(log);
	memset(c, 0, sizeof(*c));
	bq_log_set_sink(log, capture_sink, c);
	return log;
}

static void assert_matches(const char *s, const char *re)
{
	regex_t rx;

	ck_assert_int_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&rx, s, 0, NULL, 0) == 0, "'%s' does not match '%s'", s, re);
	regfree(&rx);
}

START_TEST(test_line_format)
{
	struct capture c;
	struct bq_log *log = new_captured(&c);

	bq_info(log, "node", "msg=%s user_id=%s", "attach", "alice");
	ck_assert_int_eq(c.n, 1);
	ck_assert_int_eq(c.level, BQ_LOG_INFO);
	assert_matches(c.line, "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
			       "\\.[0-9]{3}Z level=info prog=blueq-test mod=node "
			       "msg=attach user_id=alice$");
	bq_err(log, "link", "err=%d", -5);
	assert_matches(c.line, "^ts=[^ ]+ level=error prog=blueq-test mod=link err=-5$");
	bq_warn(log, NULL, "x=1");
	assert_matches(c.line, "^ts=[^ ]+ level=warn prog=blueq-test mod=- x=1$");
	/* An empty tail leaves no trailing blank. */
	bq_warn(log, "m", "%s", "");
	assert_matches(c.line, "^ts=[^ ]+ level=warn prog=blueq-test mod=m$");
	bq_log_free(log);
}
END_TEST

/* The timestamp is UTC wall time in milliseconds. */
START_TEST(test_timestamp_is_now_utc)
{
	struct capture c;
	struct bq_log *log = new_captured(&c);
	uint64_t before = bq_wall_ms(), after, ts_ms;
	struct tm tm;
	const char *end;

	bq_info(log, "t", "x=1");
	after = bq_wall_ms();
	memset(&tm, 0, sizeof(tm));
	end = strptime(c.line + 3, "%Y-%m-%dT%H:%M:%S", &tm);
	ck_assert_ptr_nonnull(end);
	ck_assert_int_eq(end[0], '.');
	ck_assert_int_eq(end[4], 'Z');
	ts_ms = (uint64_t)timegm(&tm) * 1000 + (uint64_t)((end[1] - '0') * 100 +
							   (end[2] - '0') * 10 + (end[3] - '0'));
	ck_assert_uint_ge(ts_ms, before);
	ck_assert_uint_le(ts_ms, after);
	bq_log_free(log);
}
END_TEST

START_TEST(test_levels)
{
	struct capture c;
	struct bq_log *log = new_captured(&c);

	bq_debug(log, "node", "x=1");
	ck_assert_int_eq(c.n, 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "node"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_INFO, "node"), 1);
	bq_info(log, "node", "x=1");
	bq_warn(log, "node", "x=1");
	bq_err(log, "node", "x=1");
	ck_assert_int_eq(c.n, 3);
	bq_log_set_level(log, BQ_LOG_WARN);
	bq_info(log, "node", "x=1");
	ck_assert_int_eq(c.n, 3);
	bq_warn(log, "node", "x=1");
	ck_assert_int_eq(c.n, 4);
	bq_log_set_level(log, BQ_LOG_DEBUG);
	bq_debug(log, "node", "x=2");
	ck_assert_int_eq(c.n, 5);
	assert_matches(c.line, " level=debug .* x=2$");
	bq_log_free(log);
}
END_TEST

START_TEST(test_debug_modules)
{
	struct capture c;
	struct bq_log *log = new_captured(&c);

	ck_assert_int_eq(bq_log_set_debug_modules(log, "link,node"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "node"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "link"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "loop"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "nod"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "nodes"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, NULL), 0);
	bq_debug(log, "node", "x=1");
	bq_debug(log, "loop", "x=1");
	ck_assert_int_eq(c.n, 1);
	assert_matches(c.line, " mod=node x=1$");

	ck_assert_int_eq(bq_log_set_debug_modules(log, " a , ,b,, "), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "a"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "b"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "node"), 0);

	ck_assert_int_eq(bq_log_set_debug_modules(log, "all"), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "anything"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, NULL), 1);

	ck_assert_int_eq(bq_log_set_debug_modules(log, ""), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "a"), 0);
	ck_assert_int_eq(bq_log_set_debug_modules(log, "x"), 0);
	ck_assert_int_eq(bq_log_set_debug_modules(log, NULL), 0);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "x"), 0);

	/* On allocation failure the old list stays. */
	ck_assert_int_eq(bq_log_set_debug_modules(log, "keep"), 0);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_log_set_debug_modules(log, "other"), -ENOMEM);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "keep"), 1);
	ck_assert_int_eq(bq_log_enabled(log, BQ_LOG_DEBUG, "other"), 0);
	bq_log_free(log);
}
END_TEST

START_TEST(test_null_log)
{
	ck_assert_int_eq(bq_log_enabled(NULL, BQ_LOG_ERROR, "x"), 0);
	bq_err(NULL, "x", "y=%d", 1);
	bq_log_set_level(NULL, BQ_LOG_DEBUG);
	bq_log_set_sink(NULL, NULL, NULL);
	ck_assert_int_eq(bq_log_set_debug_modules(NULL, "a"), 0);
	bq_log_free(NULL);
}
END_TEST

START_TEST(test_level_parse)
{
	enum bq_log_level l = BQ_LOG_INFO;

	ck_assert_int_eq(bq_log_level_parse("error", &l), 0);
	ck_assert_int_eq(l, BQ_LOG_ERROR);
	ck_assert_int_eq(bq_log_level_parse("warn", &l), 0);
	ck_assert_int_eq(l, BQ_LOG_WARN);
	ck_assert_int_eq(bq_log_level_parse("info", &l), 0);
	ck_assert_int_eq(l, BQ_LOG_INFO);
	ck_assert_int_eq(bq_log_level_parse("DEBUG", &l), 0);
	ck_assert_int_eq(l, BQ_LOG_DEBUG);
	ck_assert_int_eq(bq_log_level_parse("verbose", &l), -EINVAL);
	ck_assert_int_eq(bq_log_level_parse("", &l), -EINVAL);
	ck_assert_int_eq(bq_log_level_parse("info ", &l), -EINVAL);
	ck_assert_int_eq(bq_log_level_parse(NULL, &l), -EINVAL);
	ck_assert_int_eq(l, BQ_LOG_DEBUG);
}
END_TEST

START_TEST(test_truncation_and_newlines)
{
	struct capture c;
	struct bq_log *log = new_captured(&c);
	static char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	bq_info(log, "m", "v=%s", big);
	/* 2048 bytes with the newline the stderr sink adds. */
	ck_assert_uint_eq(strlen(c.line), 2047);
	ck_assert_int_eq(c.line[2046], 'x');
	/* Embedded line breaks cannot forge a second record. */
	bq_info(log, "m", "msg=%s", "a\nts=fake level=error\r");
	ck_assert_ptr_null(strchr(c.line, '\n'));
	ck_assert_ptr_null(strchr(c.line, '\r'));
	assert_matches(c.line, " msg=a ts=fake level=error$");
	/* A cut never ends inside a UTF-8 sequence. */
	{
		size_t head = strlen(c.line) - strlen(" msg=a ts=fake level=error");
		/* The second é straddles the 2047-byte limit. */
		size_t pad = 2047 - head - 4;

		memset(big, 'x', pad);
		memcpy(big + pad, "\xc3\xa9\xc3\xa9", 5);
		bq_info(log, "m", "%s", big);
		ck_assert_uint_eq(strlen(c.line), 2046);
		ck_assert_int_eq((unsigned char)c.line[2045], 0xa9);
	}
	bq_log_free(log);
}
END_TEST

/* Without a sink each line reaches stderr in one write(), newline included. */
START_TEST(test_stderr_single_write)
{
	struct bq_log *log = bq_log_new("blueq-test");
	static char big[3000], got[4096];
	int fds[2], saved;
	ssize_t n;

	ck_assert_ptr_nonnull(log);
	ck_assert_int_eq(pipe(fds), 0);
	saved = dup(STDERR_FILENO);
	ck_assert_int_eq(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
	memset(big, 'y', sizeof(big) - 1);
	bq_info(log, "m", "v=%s", big);
	bq_info(log, "m", "short=1");
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fds[1]);
	/* A pipe read returns at most one write's worth when the writes were separate... */
	n = read(fds[0], got, 2048);
	ck_assert_int_eq(n, 2048);
	ck_assert_int_eq(got[2047], '\n');
	ck_assert_int_eq(strncmp(got, "ts=", 3), 0);
	n = read(fds[0], got, sizeof(got) - 1);
	ck_assert_int_gt(n, 0);
	got[n] = '\0';
	assert_matches(got, "^ts=[^ ]+ level=info prog=blueq-test mod=m short=1\n$");
	close(fds[0]);
	bq_log_free(log);
}
END_TEST

static const char *q(const char *v, size_t cap)
{
	static char out[256];

	memset(out, '#', sizeof(out));
	return bq_log_quote(v, out, cap);
}

START_TEST(test_quote)
{
	ck_assert_str_eq(q("plain", 64), "plain");
	ck_assert_str_eq(q("http://x:5000/a?b", 64), "http://x:5000/a?b");
	ck_assert_str_eq(q("h\xc3\xa9llo", 64), "h\xc3\xa9llo");
	ck_assert_str_eq(q("", 64), "\"\"");
	ck_assert_str_eq(q(NULL, 64), "\"\"");
	ck_assert_str_eq(q("a b", 64), "\"a b\"");
	ck_assert_str_eq(q("a\"b", 64), "\"a\\\"b\"");
	ck_assert_str_eq(q("a\\b", 64), "\"a\\\\b\"");
	ck_assert_str_eq(q("k=v", 64), "\"k=v\"");
	ck_assert_str_eq(q("l1\nl2\tx", 64), "\"l1\\nl2\\tx\"");
	ck_assert_str_eq(q("\x01\x1f\x7f", 64), "\"\\x01\\x1f\\x7f\"");
	ck_assert_str_eq(q("\r", 64), "\"\\x0d\"");
}
END_TEST

/* A short output buffer still yields one well-formed token. */
START_TEST(test_quote_truncation)
{
	char out[8];

	ck_assert_str_eq(q("abcdefgh", 5), "abcd");
	ck_assert_str_eq(q("a b c d", 6), "\"a b\"");
	/* "ab\"" plus both quotes needs 6 + NUL: with one byte less the escape goes whole. */
	ck_assert_str_eq(q("ab\"cd", 7), "\"ab\\\"\"");
	ck_assert_str_eq(q("ab\"cd", 6), "\"ab\"");
	ck_assert_str_eq(q("\x01\x02", 6), "\"\"");
	ck_assert_str_eq(q("\x01\x02", 7), "\"\\x01\"");
	ck_assert_str_eq(q("\x01\x02", 10), "\"\\x01\"");
	ck_assert_str_eq(q("\x01\x02", 11), "\"\\x01\\x02\"");
	ck_assert_str_eq(q("a b", 3), "\"\"");
	ck_assert_str_eq(q("a b", 2), "");
	ck_assert_str_eq(q("a b", 1), "");
	out[0] = 'z';
	ck_assert_ptr_eq(bq_log_quote("x", out, 0), out);
	ck_assert_int_eq(out[0], 'z');
}
END_TEST

START_TEST(test_new_alloc_failure)
{
	for (unsigned long n = 1; n <= 2; n++) {
		bq_alloc_fail_nth(n);
		ck_assert_ptr_null(bq_log_new("x"));
	}
	bq_alloc_fail_nth(0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_line_format);
	tcase_add_test(tc, test_timestamp_is_now_utc);
	tcase_add_test(tc, test_levels);
	tcase_add_test(tc, test_debug_modules);
	tcase_add_test(tc, test_null_log);
	tcase_add_test(tc, test_level_parse);
	tcase_add_test(tc, test_truncation_and_newlines);
	tcase_add_test(tc, test_stderr_single_write);
	tcase_add_test(tc, test_quote);
	tcase_add_test(tc, test_quote_truncation);
	tcase_add_test(tc, test_new_alloc_failure);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
