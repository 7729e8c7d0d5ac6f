/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "backend/auth.h"
#include "core/alloc.h"
#include "core/worker.h"
#include "loop/loop.h"
#include "proto/frame.h"
#include "testutil.h"

/* A real token (bytes 0..31) and its BLAKE2b-256, computed with Python's hashlib. */
#define TOK "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
#define TOK_HASH "6342b384e5d6294c5df1110132b93b97b395a2ff4cca498af637b3e06b3095dd"
#define TOK_A43 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static long long real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- usernames --------------------------------------------------------------------- */

static bool user_ok(const char *s)
{
	char why[128] = "unset";
	bool ok = bq_username_valid(s, why, sizeof(why));

	/* A refusal always says why; an acceptance says nothing. */
	if (ok) {
		ck_assert_str_eq(why, "");
		/* Every web username must also be a mesh user id. */
		ck_assert(bq_user_id_valid(s, strlen(s)));
	} else {
		ck_assert_uint_gt(strlen(why), 10);
		ck_assert_ptr_null(strchr(why, '\n'));
	}
	return ok;
}

START_TEST(test_username_rules)
{
	char why[128];
	char s[40];

	ck_assert(!user_ok("ab"));
	ck_assert(user_ok("abc"));
	memset(s, 'a', 32);
	s[32] = '\0';
	ck_assert(user_ok(s));
	s[32] = 'a';
	s[33] = '\0';
	ck_assert(!user_ok(s));
	memset(s, 'z', 39);
	s[39] = '\0';
	ck_assert(!user_ok(s));

	ck_assert(!bq_username_valid("ab", why, sizeof(why)));
	ck_assert_str_eq(why, "a username is 3 to 32 characters");
	ck_assert(!bq_username_valid("", why, sizeof(why)));
	ck_assert_str_eq(why, "a username is 3 to 32 characters");
	ck_assert(!bq_username_valid(NULL, why, sizeof(why)));
	ck_assert(!bq_username_valid("ab", NULL, 0));
	ck_assert(bq_username_valid("abc", NULL, 0));
	/* A short buffer gets a cut reason, never an overflow. */
	ck_assert(!bq_username_valid("ab", why, 4));
	ck_assert_str_eq(why, "a u");

	ck_assert(user_ok("a.b_c-d"));
	ck_assert(user_ok("9lives"));
	ck_assert(user_ok("Alice.Smith"));
	ck_assert(user_ok("x--"));
	ck_assert(!user_ok("_abc"));
	ck_assert(!user_ok(".abc"));
	ck_assert(!user_ok("-abc"));
	ck_assert(!bq_username_valid("_abc", why, sizeof(why)));
	ck_assert_str_eq(why, "a username starts with a letter or a digit");
	ck_assert(!user_ok("a b"));
	ck_assert(!user_ok("al@ce")); /* a mesh id may have '@' and ':'; a username may not */
	ck_assert(!user_ok("al:ce"));
	ck_assert(!user_ok("a/b"));
	ck_assert(!user_ok("abc\n"));
	ck_assert(!user_ok("\xc3\xa9lan"));  /* élan */
	ck_assert(!user_ok("ab\xc3\xa9"));   /* abé: 4 bytes, still refused */
	ck_assert(!user_ok("\xff\xfe\xfd")); /* not UTF-8 at all */
	ck_assert(!bq_username_valid("a b", why, sizeof(why)));
	ck_assert_ptr_nonnull(strstr(why, "may contain only"));
}
END_TEST

/* ---- passwords --------------------------------------------------------------------- */

static bool pw_ok(const char *pw, size_t len)
{
	char why[128] = "unset";
	bool ok = bq_password_acceptable(pw, len, why, sizeof(why));

	if (ok) {
		ck_assert_str_eq(why, "");
	} else {
		ck_assert_uint_gt(strlen(why), 10);
	}
	return ok;
}

#define PW(lit) pw_ok((lit), sizeof(lit) - 1)

START_TEST(test_password_rules)
{
	char *big = malloc(1026);
	char why[128];

	ck_assert(!PW("1234567"));
	ck_assert(PW("12345678"));
	ck_assert(!PW(""));
	ck_assert(!bq_password_acceptable(NULL, 8, why, sizeof(why)));
	memset(big, 'k', 1026);
	ck_assert(pw_ok(big, 1024));
	ck_assert(!pw_ok(big, 1025));
	ck_assert(!bq_password_acceptable(big, 1025, why, sizeof(why)));
	ck_assert_str_eq(why, "a password is at most 1024 bytes long");
	ck_assert(!bq_password_acceptable("short", 5, why, sizeof(why)));
	ck_assert_str_eq(why, "a password is at least 8 bytes long");
	free(big);

	/* UTF-8: multi-byte text is fine and counted in bytes. */
	ck_assert(PW("p\xc3\xa4ssw\xc3\xb6rd"));
	ck_assert(PW("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9")); /* éééé: 4 characters, 8 bytes */
	ck_assert(PW("\xf0\x9f\x94\x91\xf0\x9f\x94\x91")); /* two 4-byte emoji */
	ck_assert(!PW("abcdefg\xff"));
	ck_assert(!PW("abcdefg\xc0\xaf"));	   /* overlong '/' */
	ck_assert(!PW("abcdefg\xed\xa0\x80"));	   /* UTF-16 surrogate */
	ck_assert(!PW("abcdefg\xf4\x90\x80\x80")); /* above U+10FFFF */
	ck_assert(!PW("abcdefgh\xe2\x82"));	   /* cut sequence at the end */
	ck_assert(!PW("abcd\x80\x80\x80\x80"));	   /* stray continuation bytes */
	ck_assert(!bq_password_acceptable("abcdefg\xff", 8, why, sizeof(why)));
	ck_assert_str_eq(why, "a password must be valid UTF-8 text");
	ck_assert(!PW("abcd\0efgh"));

	/* Not only white space, of any kind. */
	ck_assert(!PW("        "));
	ck_assert(!PW(" \t\n\r \t\n\r"));
	ck_assert(!PW("\xc2\xa0\xc2\xa0\xc2\xa0\xc2\xa0"));	/* no-break spaces */
	ck_assert(!PW("\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80")); /* ideographic spaces */
	ck_assert(!bq_password_acceptable("        ", 8, why, sizeof(why)));
	ck_assert_str_eq(why, "a password cannot be only spaces");
	ck_assert(PW("       x"));
	ck_assert(PW("correct horse battery staple"));
	/* A password need not be NUL-terminated: only len bytes are read. */
	ck_assert(pw_ok("12345678XXXX\xff", 8));
}
END_TEST

/* ---- hashing through a worker and a loop ------------------------------------------- */

struct res {
	int calls;
	int err;
	bool ok;
	bool needs_rehash;
	char hash[BQ_PASSWORD_HASH_MAX];
	bool hash_null;
};

static void hash_cb(void *ud, int err, const char *hash)
{
	struct res *r = ud;

	r->calls++;
	r->err = err;
	r->hash_null = hash == NULL;
	if (hash) {
		ck_assert_uint_lt(strlen(hash), sizeof(r->hash));
		snprintf(r->hash, sizeof(r->hash), "%s", hash);
	}
}

static void verify_cb(void *ud, int err, bool ok, bool needs_rehash)
{
	struct res *r = ud;

	r->calls++;
	r->err = err;
	r->ok = ok;
	r->needs_rehash = needs_rehash;
}

static bool res_done(void *ud)
{
	return ((struct res *)ud)->calls > 0;
}

static const struct bq_auth_params min_params = {
	.opslimit = crypto_pwhash_argon2id_OPSLIMIT_MIN,
	.memlimit = crypto_pwhash_argon2id_MEMLIMIT_MIN,
};

static void do_hash(struct bq_loop *loop, struct bq_worker *w, const struct bq_auth_params *p,
		    const char *pw, struct res *r)
{
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(bq_password_hash_async(w, p, pw, strlen(pw), hash_cb, r), 0);
	ck_assert(bq_test_run_until(loop, res_done, r, 5000));
	ck_assert_int_eq(r->calls, 1);
}

static void do_verify(struct bq_loop *loop, struct bq_worker *w, const struct bq_auth_params *p,
		      const char *hash, const char *pw, struct res *r)
{
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(bq_password_verify_async(w, p, hash, pw, strlen(pw), verify_cb, r), 0);
	ck_assert(bq_test_run_until(loop, res_done, r, 5000));
	ck_assert_int_eq(r->calls, 1);
}

START_TEST(test_hash_verify_round_trip)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 2, 0, NULL);
	struct bq_auth_params p2 = min_params;
	struct res h, h2, v;
	char bad[BQ_PASSWORD_HASH_MAX];

	ck_assert_ptr_nonnull(w);
	do_hash(loop, w, &min_params, "correct horse battery staple", &h);
	ck_assert_int_eq(h.err, 0);
	ck_assert(!h.hash_null);
	ck_assert_int_eq(strncmp(h.hash, "$argon2id$v=19$m=8,t=1,p=1$", 27), 0);
	/* No plaintext in the hash, and a fresh salt every time. */
	ck_assert_ptr_null(strstr(h.hash, "horse"));
	do_hash(loop, w, &min_params, "correct horse battery staple", &h2);
	ck_assert_str_ne(h.hash, h2.hash);

	do_verify(loop, w, &min_params, h.hash, "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, 0);
	ck_assert(v.ok);
	ck_assert(!v.needs_rehash);
	do_verify(loop, w, &min_params, h2.hash, "correct horse battery staple", &v);
	ck_assert(v.ok);

	/* Wrong password: no error, ok=false. */
	do_verify(loop, w, &min_params, h.hash, "correct horse battery stapl", &v);
	ck_assert_int_eq(v.err, 0);
	ck_assert(!v.ok);
	ck_assert(!v.needs_rehash);
	do_verify(loop, w, &min_params, h.hash, "", &v);
	ck_assert_int_eq(v.err, 0);
	ck_assert(!v.ok);

	/* Other current parameters: right password, and the hash should be redone. */
	p2.opslimit = min_params.opslimit + 1;
	do_verify(loop, w, &p2, h.hash, "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, 0);
	ck_assert(v.ok);
	ck_assert(v.needs_rehash);
	/* ...but a wrong password never asks for a rehash. */
	do_verify(loop, w, &p2, h.hash, "wrong password!", &v);
	ck_assert(!v.ok);
	ck_assert(!v.needs_rehash);

	/* Damaged or foreign hash strings are errors, not wrong passwords. */
	do_verify(loop, w, &min_params, "", "correct horse battery staple", &v);
	ck_assert_int_lt(v.err, 0);
	ck_assert(!v.ok);
	do_verify(loop, w, &min_params, "not a hash at all", "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, -EINVAL);
	ck_assert(!v.ok);
	ck_assert_int_lt(snprintf(bad, sizeof(bad), "%s", h.hash), (int)sizeof(bad));
	bad[28] = '!'; /* inside the salt: not base64 */
	do_verify(loop, w, &min_params, bad, "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, -EINVAL);
	ck_assert(!v.ok);
	ck_assert(!v.needs_rehash);
	ck_assert_int_lt(snprintf(bad, sizeof(bad), "%s", h.hash), (int)sizeof(bad));
	bad[13] = 'x'; /* "$argon2id$v=1x" */
	do_verify(loop, w, &min_params, bad, "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, -EINVAL);
	ck_assert_int_lt(snprintf(bad, sizeof(bad), "$argon2i$%s", h.hash + strlen("$argon2id$")),
			 (int)sizeof(bad));
	do_verify(loop, w, &min_params, bad, "correct horse battery staple", &v);
	ck_assert_int_eq(v.err, -EINVAL);

	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_default_params)
{
	/* The production cost, once: 64 MiB, a fraction of a second. */
	struct bq_auth_params d = bq_auth_params_default();
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 0, NULL);
	struct res h, v;

	ck_assert_uint_eq(d.opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);
	ck_assert_uint_eq(d.memlimit, crypto_pwhash_MEMLIMIT_INTERACTIVE);
	do_hash(loop, w, NULL, "hunter2hunter2", &h);
	ck_assert_int_eq(h.err, 0);
	ck_assert_int_eq(strncmp(h.hash, "$argon2id$v=19$m=65536,t=2,p=1$", 31), 0);
	do_verify(loop, w, NULL, h.hash, "hunter2hunter2", &v);
	ck_assert(v.ok);
	ck_assert(!v.needs_rehash);
	/* Moving the defaults down to MIN flags every old hash for rehashing. */
	do_verify(loop, w, &min_params, h.hash, "hunter2hunter2", &v);
	ck_assert(v.ok);
	ck_assert(v.needs_rehash);
	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

START_TEST(test_async_errors)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct bq_worker *w = bq_worker_new(loop, 1, 0, NULL);
	struct bq_auth_params bad = min_params;
	struct res r;
	char big[BQ_PASSWORD_MAX + 1];
	char longhash[200];

	memset(&r, 0, sizeof(r));
	memset(big, 'p', sizeof(big));
	memset(longhash, '$', sizeof(longhash) - 1);
	longhash[sizeof(longhash) - 1] = '\0';

	ck_assert_int_eq(bq_password_hash_async(NULL, NULL, "password", 8, hash_cb, &r), -EINVAL);
	ck_assert_int_eq(bq_password_hash_async(w, NULL, NULL, 8, hash_cb, &r), -EINVAL);
	ck_assert_int_eq(bq_password_hash_async(w, NULL, "password", 8, NULL, &r), -EINVAL);
	bad.opslimit = 0;
	ck_assert_int_eq(bq_password_hash_async(w, &bad, "password", 8, hash_cb, &r), -EINVAL);
	bad = min_params;
	bad.memlimit = 1024;
	ck_assert_int_eq(bq_password_hash_async(w, &bad, "password", 8, hash_cb, &r), -EINVAL);
	ck_assert_int_eq(bq_password_verify_async(w, &bad, "x", "password", 8, verify_cb, &r),
			 -EINVAL);
	ck_assert_int_eq(bq_password_hash_async(w, &min_params, big, sizeof(big), hash_cb, &r),
			 -EMSGSIZE);
	ck_assert_int_eq(bq_password_hash_async(w, &min_params, big, BQ_PASSWORD_MAX, hash_cb, &r),
			 0);
	ck_assert(bq_test_run_until(loop, res_done, &r, 5000));
	ck_assert_int_eq(r.err, 0);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(
		bq_password_verify_async(w, &min_params, NULL, "password", 8, verify_cb, &r),
		-EINVAL);
	ck_assert_int_eq(
		bq_password_verify_async(w, &min_params, longhash, "password", 8, verify_cb, &r),
		-EINVAL);
	ck_assert_int_eq(bq_password_verify_async(w, &min_params, "$argon2id$", big, sizeof(big),
						  verify_cb, &r),
			 -EMSGSIZE);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_password_hash_async(w, &min_params, "password", 8, hash_cb, &r),
			 -ENOMEM);
	bq_alloc_fail_nth(1);
	ck_assert_int_eq(bq_password_verify_async(w, &min_params, "$argon2id$", "password", 8,
						  verify_cb, &r),
			 -ENOMEM);
	/* The second allocation is the worker's job: its failure frees ours too. */
	bq_alloc_fail_nth(2);
	ck_assert_int_eq(bq_password_hash_async(w, &min_params, "password", 8, hash_cb, &r),
			 -ENOMEM);
	bq_alloc_fail_nth(0);
	bq_loop_run_once(loop, 20);
	ck_assert_int_eq(r.calls, 0);
	bq_worker_free(w);
	bq_loop_free(loop);
}
END_TEST

/* Holds the only pool thread until bq_worker_free has taken the queue. */
struct blocker {
	struct bq_worker *w;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool open;
	bool started;
};

static void blocker_work(void *ud)
{
	struct blocker *b = ud;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&b->mu);
	while (!b->open) {
		if (pthread_cond_timedwait(&b->cv, &b->mu, &until) == ETIMEDOUT) {
			break;
		}
	}
	pthread_mutex_unlock(&b->mu);
}

static void blocker_done(void *ud, bool cancelled)
{
}

static void *opener_main(void *arg)
{
	struct blocker *b = arg;
	struct bq_worker_stats st;
	long long until = real_ms() + 5000;

	do {
		bq_worker_get_stats(b->w, &st);
		if (st.queued == 0) {
			break;
		}
		usleep(1000);
	} while (real_ms() < until);
	pthread_mutex_lock(&b->mu);
	b->open = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

START_TEST(test_cancelled_on_free)
{
	struct bq_loop *loop = bq_loop_new(NULL, NULL);
	struct blocker b = {0};
	struct res h, v;
	struct bq_worker_stats st;
	long long until = real_ms() + 5000;
	pthread_t th;

	pthread_mutex_init(&b.mu, NULL);
	pthread_cond_init(&b.cv, NULL);
	b.w = bq_worker_new(loop, 1, 0, NULL);
	ck_assert_ptr_nonnull(b.w);
	ck_assert_int_eq(bq_worker_submit(b.w, blocker_work, blocker_done, &b), 0);
	do {
		bq_worker_get_stats(b.w, &st);
		usleep(1000);
	} while (st.running == 0 && real_ms() < until);
	ck_assert_uint_eq(st.running, 1);

	memset(&h, 0, sizeof(h));
	memset(&v, 0, sizeof(v));
	ck_assert_int_eq(bq_password_hash_async(b.w, &min_params, "password", 8, hash_cb, &h), 0);
	ck_assert_int_eq(bq_password_verify_async(b.w, &min_params, "$argon2id$", "password", 8,
						  verify_cb, &v),
			 0);
	ck_assert_int_eq(pthread_create(&th, NULL, opener_main, &b), 0);
	bq_worker_free(b.w);
	ck_assert_int_eq(pthread_join(th, NULL), 0);

	ck_assert_int_eq(h.calls, 1);
	ck_assert_int_eq(h.err, -ECANCELED);
	ck_assert(h.hash_null);
	ck_assert_int_eq(v.calls, 1);
	ck_assert_int_eq(v.err, -ECANCELED);
	ck_assert(!v.ok);
	bq_loop_free(loop);
	pthread_cond_destroy(&b.cv);
	pthread_mutex_destroy(&b.mu);
}
END_TEST

/* ---- tokens ------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

START_TEST(test_token_new_unique)
{
	enum { N = 1000 };
	char(*toks)[BQ_TOKEN_LEN + 1] = calloc(N, sizeof(*toks));
	const char **sorted = calloc(N, sizeof(*sorted));

	for (int i = 0; i < N; i++) {
		memset(toks[i], 0x55, sizeof(toks[i]));
		bq_token_new(toks[i]);
		ck_assert_uint_eq(strlen(toks[i]), BQ_TOKEN_LEN);
		ck_assert_msg(bq_token_format_ok(toks[i]), "token %s", toks[i]);
		sorted[i] = toks[i];
	}
	qsort(sorted, N, sizeof(*sorted), cmp_str);
	for (int i = 1; i < N; i++) {
		ck_assert_str_ne(sorted[i - 1], sorted[i]);
	}
	free(sorted);
	free(toks);
}
END_TEST

START_TEST(test_token_format)
{
	char s[64];

	ck_assert(bq_token_format_ok(TOK));
	ck_assert(bq_token_format_ok(TOK_A43));
	ck_assert(bq_token_format_ok("abcdefghijklmnopqrstuvwxyz-_0123456789ABCDE"));
	ck_assert(!bq_token_format_ok(NULL));
	ck_assert(!bq_token_format_ok(""));
	/* 42 and 44 characters. */
	snprintf(s, sizeof(s), "%.42s", TOK);
	ck_assert(!bq_token_format_ok(s));
	snprintf(s, sizeof(s), "%sA", TOK);
	ck_assert(!bq_token_format_ok(s));
	/* With standard base64's '+' and '/', padding, a space, a dot, non-ASCII. */
	const char *bad_chars[] = {"+", "/", "=", " ", ".", "\xc3", "\n"};

	for (size_t i = 0; i < sizeof(bad_chars) / sizeof(bad_chars[0]); i++) {
		snprintf(s, sizeof(s), "%s", TOK);
		s[10] = bad_chars[i][0];
		ck_assert_msg(!bq_token_format_ok(s), "char 0x%02x accepted",
			      (unsigned char)bad_chars[i][0]);
	}
	/* Last character with its padding bits set: no 256-bit value encodes to it. */
	snprintf(s, sizeof(s), "%s", TOK_A43);
	s[42] = 'B';
	ck_assert(!bq_token_format_ok(s));
	s[42] = 'E';
	ck_assert(bq_token_format_ok(s));
	s[42] = 'D';
	ck_assert(!bq_token_format_ok(s));
}
END_TEST

START_TEST(test_token_hash)
{
	char h1[BQ_TOKEN_HASH_HEX + 1], h2[BQ_TOKEN_HASH_HEX + 1];
	char tok[BQ_TOKEN_LEN + 1], tok2[BQ_TOKEN_LEN + 1];

	bq_token_hash(TOK_A43, h1);
	ck_assert_str_eq(h1, TOK_HASH);
	bq_token_hash("", h1);
	ck_assert_str_eq(h1, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");

	bq_token_new(tok);
	bq_token_new(tok2);
	bq_token_hash(tok, h1);
	bq_token_hash(tok, h2);
	ck_assert_str_eq(h1, h2);
	ck_assert_uint_eq(strlen(h1), 64);
	for (int i = 0; i < 64; i++) {
		ck_assert(strchr("0123456789abcdef", h1[i]) != NULL);
	}
	/* Not the token itself, and another token gives another hash. */
	ck_assert_ptr_null(strstr(h1, tok));
	bq_token_hash(tok2, h2);
	ck_assert_str_ne(h1, h2);
}
END_TEST

START_TEST(test_bearer_parse)
{
	char out[64];
	char small[BQ_TOKEN_LEN];

	ck_assert(bq_bearer_parse("Bearer " TOK, out, sizeof(out)));
	ck_assert_str_eq(out, TOK);
	ck_assert(bq_bearer_parse("bearer " TOK, out, sizeof(out)));
	ck_assert_str_eq(out, TOK);
	ck_assert(bq_bearer_parse("BEARER " TOK, out, sizeof(out)));
	ck_assert(bq_bearer_parse("BeArEr " TOK, out, sizeof(out)));
	ck_assert(bq_bearer_parse("Bearer " TOK, out, BQ_TOKEN_LEN + 1));

	/* Missing. */
	memset(out, 'x', sizeof(out));
	ck_assert(!bq_bearer_parse(NULL, out, sizeof(out)));
	ck_assert_str_eq(out, "");
	ck_assert(!bq_bearer_parse("", out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer", out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer ", out, sizeof(out)));
	/* Wrong scheme. */
	ck_assert(!bq_bearer_parse("Basic " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Token " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearerx " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Beare " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse(TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer" TOK, out, sizeof(out)));
	/* Spaces. */
	ck_assert(!bq_bearer_parse("Bearer  " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse(" Bearer " TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer " TOK " ", out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer\t" TOK, out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer " TOK " " TOK, out, sizeof(out)));
	/* Bad token characters or length. */
	ck_assert(!bq_bearer_parse("Bearer " TOK "=", out, sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+", out,
				   sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh/", out,
				   sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh", out,
				   sizeof(out)));
	ck_assert(!bq_bearer_parse("Bearer AAECAwQFBgcICQoLDA0O.xAREhMUFRYXGBkaGxwdHh8", out,
				   sizeof(out)));
	ck_assert_str_eq(out, "");
	/* Too small an output buffer is a refusal, never an overflow. */
	ck_assert(!bq_bearer_parse("Bearer " TOK, small, sizeof(small)));
	ck_assert_str_eq(small, "");
	ck_assert(!bq_bearer_parse("Bearer " TOK, NULL, 0));
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("backend_auth");
	TCase *rules = tcase_create("rules");
	TCase *hash = tcase_create("hash");
	TCase *tok = tcase_create("tokens");

	tcase_add_test(rules, test_username_rules);
	tcase_add_test(rules, test_password_rules);
	suite_add_tcase(s, rules);

	tcase_add_test(hash, test_hash_verify_round_trip);
	tcase_add_test(hash, test_default_params);
	tcase_add_test(hash, test_async_errors);
	tcase_add_test(hash, test_cancelled_on_free);
	suite_add_tcase(s, hash);

	tcase_add_test(tok, test_token_new_unique);
	tcase_add_test(tok, test_token_format);
	tcase_add_test(tok, test_token_hash);
	tcase_add_test(tok, test_bearer_parse);
	suite_add_tcase(s, tok);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(auth_suite());
	int failed;

	if (sodium_init() < 0) {
		return EXIT_FAILURE;
	}
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
