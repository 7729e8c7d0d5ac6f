/* SPDX-License-Identifier: MIT */
/*
 * backend/auth: the secrets behind web accounts (design: docs/internals/backend-auth.md).
 *
 *   - username and password rules (pure functions, a one-line reason for people);
 *   - Argon2id password hashing and verification (libsodium crypto_pwhash_str), run on a
 *     bq_worker so the loop never blocks for the 50-500 ms a hash takes;
 *   - session tokens: 256 random bits as 43 base64url characters, of which only a
 *     BLAKE2b-256 hash is stored, and the "Authorization: Bearer" parser.
 *
 * Threading: every function is for the loop thread; the async callbacks run there too.
 * Nothing here logs a password, a token or a hash.
 */
#ifndef BQ_BACKEND_AUTH_H
#define BQ_BACKEND_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/worker.h"

#define BQ_USERNAME_MIN 3
#define BQ_USERNAME_MAX 32
#define BQ_PASSWORD_MIN 8    /* bytes */
#define BQ_PASSWORD_MAX 1024 /* bytes; bounds the copy a job holds */
/* An encoded Argon2id hash ("$argon2id$v=19$m=...") fits in this many bytes with its NUL. */
#define BQ_PASSWORD_HASH_MAX 128
#define BQ_TOKEN_LEN 43	     /* base64url characters of a 256-bit token, no padding */
#define BQ_TOKEN_HASH_HEX 64 /* hex digits of a token's BLAKE2b-256 */

/*
 * Argon2id cost. Hashes record their own cost, so changing these never locks anyone out:
 * verification reports needs_rehash for hashes made with other values.
 */
struct bq_auth_params {
	unsigned long long opslimit;
	size_t memlimit; /* bytes */
};

/* crypto_pwhash_OPSLIMIT_INTERACTIVE and crypto_pwhash_MEMLIMIT_INTERACTIVE (2, 64 MiB). */
struct bq_auth_params bq_auth_params_default(void);

/*
 * hash: the encoded hash string on success (owned by the library, valid during the call
 * only: copy it), NULL on error. err: 0, -ECANCELED (the worker was freed first) or
 * -ENOMEM (Argon2 could not get its memory).
 */
typedef void (*bq_hash_done_cb)(void *user_data, int err, const char *hash);
/*
 * err: 0, -EINVAL (hash is not an Argon2id hash string this build can read) or
 * -ECANCELED; ok and needs_rehash are false whenever err != 0. needs_rehash: the password
 * was right but the hash was made with other parameters than the ones passed: hash
 * the password again and store the new hash.
 */
typedef void (*bq_verify_done_cb)(void *user_data, int err, bool ok, bool needs_rehash);

/*
 * 3..32 characters of [A-Za-z0-9_.-], the first a letter or digit. Every valid username
 * is also a valid mesh user id (proto/frame.h bq_user_id_valid allows a wider set), so
 * a web user's name can be their mesh id. On false, why (may be NULL) gets a one-line
 * reason for the person who typed it.
 */
bool bq_username_valid(const char *s, char *why, size_t whylen);

/*
 * BQ_PASSWORD_MIN..BQ_PASSWORD_MAX bytes of valid UTF-8 (shortest form, no surrogates),
 * no NUL byte (a C string layer would cut the password there) and not only white space
 * (Unicode White_Space). pw need not be NUL-terminated. why as above.
 */
bool bq_password_acceptable(const char *pw, size_t len, char *why, size_t whylen);

/*
 * Hash pw[0..len) with Argon2id on a pool thread; cb runs on the loop thread. params
 * NULL = bq_auth_params_default(). The password is copied (the caller may wipe its own
 * copy at once) and the copy is wiped with sodium_memzero as soon as it is hashed.
 * 0, or -EINVAL (NULL arguments, params out of libsodium's range), -EMSGSIZE (len >
 * BQ_PASSWORD_MAX), -ENOMEM, or bq_worker_submit's error; on error cb never runs.
 * Policy is the caller's: call bq_password_acceptable first.
 */
int bq_password_hash_async(struct bq_worker *w, const struct bq_auth_params *params, const char *pw,
			   size_t len, bq_hash_done_cb cb, void *user_data);

/*
 * Check pw[0..len) against an encoded hash (copied) on a pool thread; cb on the loop
 * thread. params (NULL = default) are the current ones, for needs_rehash. Errors as for
 * bq_password_hash_async, plus -EINVAL when hash is NULL or too long to be a hash.
 * A password longer than BQ_PASSWORD_MAX gets -EMSGSIZE: no stored hash can match it.
 */
int bq_password_verify_async(struct bq_worker *w, const struct bq_auth_params *params,
			     const char *hash, const char *pw, size_t len, bq_verify_done_cb cb,
			     void *user_data);

/* A new session token: 256 random bits, base64url without padding, NUL-terminated. */
void bq_token_new(char out[BQ_TOKEN_LEN + 1]);

/*
 * BLAKE2b-256 of the token's characters as lowercase hex: what the database stores, so
 * a stolen database holds no usable tokens. A 256-bit random token needs no salt or slow
 * hash. Call bq_token_format_ok first: this hashes any string.
 */
void bq_token_hash(const char *token, char out_hex[BQ_TOKEN_HASH_HEX + 1]);

/*
 * Exactly BQ_TOKEN_LEN characters of [A-Za-z0-9_-] and the last one canonical (a 256-bit
 * value leaves the last character's two low bits zero), as bq_token_new makes them.
 */
bool bq_token_format_ok(const char *s);

/*
 * Parse an Authorization header value: "Bearer" (any case), exactly one space, then a
 * token that passes bq_token_format_ok, and nothing after it. On success the token is
 * written to out (cap >= BQ_TOKEN_LEN + 1) and true is returned; otherwise out is set
 * to "" when cap > 0. header may be NULL (no header: false).
 */
bool bq_bearer_parse(const char *header, char *out, size_t cap);

#endif
