/* SPDX-License-Identifier: MIT */
/*
 * backend/auth (design: docs/internals/backend-auth.md).
 *
 * A hashing job is allocated on the loop thread with everything its work needs inside
 * it (parameters, the password copy, room for the hash), so the pool thread neither
 * allocates through bq_malloc nor logs; libsodium's own allocation for Argon2's memory
 * is plain malloc and thread-safe.
 */
#include "backend/auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/utf8.h"

_Static_assert(crypto_pwhash_argon2id_STRBYTES <= BQ_PASSWORD_HASH_MAX,
	       "BQ_PASSWORD_HASH_MAX too small for an Argon2id string");
_Static_assert(sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING) ==
		       BQ_TOKEN_LEN + 1,
	       "a 256-bit token is 43 base64url characters");

#define TOKEN_BYTES 32
#define TOKEN_HASH_BYTES 32

/* ---- rules ------------------------------------------------------------------------- */

static void set_why(char *why, size_t whylen, const char *msg)
{
	if (why && whylen > 0) {
		snprintf(why, whylen, "%s", msg);
	}
}

static bool is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool bq_username_valid(const char *s, char *why, size_t whylen)
{
	size_t len = s ? strnlen(s, BQ_USERNAME_MAX + 1) : 0;

	if (len < BQ_USERNAME_MIN || len > BQ_USERNAME_MAX) {
		set_why(why, whylen, "a username is 3 to 32 characters");
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
			set_why(why, whylen,
				"a username may contain only letters a-z and A-Z, digits, '_', '.' "
				"and '-'");
			return false;
		}
	}
	if (!is_alnum((unsigned char)s[0])) {
		set_why(why, whylen, "a username starts with a letter or a digit");
		return false;
	}
	set_why(why, whylen, "");
	return true;
}

/* Unicode's White_Space property (PropList.txt), so "only spaces" means every kind. */
static bool is_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 ||
	       cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
	       cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool bq_password_acceptable(const char *pw, size_t len, char *why, size_t whylen)
{
	const unsigned char *u = (const unsigned char *)pw;
	bool only_space = true;
	size_t i = 0;

	if (!pw || len < BQ_PASSWORD_MIN) {
		set_why(why, whylen, "a password is at least 8 bytes long");
		return false;
	}
	if (len > BQ_PASSWORD_MAX) {
		set_why(why, whylen, "a password is at most 1024 bytes long");
		return false;
	}
	while (i < len) {
		uint32_t cp;
		size_t n = bq_utf8_next(u, len, i, &cp);

		if (n == 0) {
			set_why(why, whylen, "a password must be valid UTF-8 text");
			return false;
		}
		if (cp == 0) {
			set_why(why, whylen, "a password cannot contain a NUL character");
			return false;
		}
		if (!is_space(cp)) {
			only_space = false;
		}
		i += n;
	}
	if (only_space) {
		set_why(why, whylen, "a password cannot be only spaces");
		return false;
	}
	set_why(why, whylen, "");
	return true;
}

/* ---- hashing on the pool ----------------------------------------------------------- */

struct bq_auth_params bq_auth_params_default(void)
{
	struct bq_auth_params p = {
		.opslimit = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE,
		.memlimit = crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE,
	};

	return p;
}

static int params_get(const struct bq_auth_params *in, struct bq_auth_params *out)
{
	*out = in ? *in : bq_auth_params_default();
	if (out->opslimit < crypto_pwhash_argon2id_opslimit_min() ||
	    out->opslimit > crypto_pwhash_argon2id_opslimit_max() ||
	    out->memlimit < crypto_pwhash_argon2id_memlimit_min() ||
	    out->memlimit > crypto_pwhash_argon2id_memlimit_max()) {
		return -EINVAL;
	}
	return 0;
}

struct pw_job {
	struct bq_auth_params params;
	bq_hash_done_cb hash_cb;
	bq_verify_done_cb verify_cb;
	void *user_data;
	/* Written by the pool thread, read by the done callback. */
	int err;
	bool ok;
	bool needs_rehash;
	char hash[BQ_PASSWORD_HASH_MAX]; /* out for hashing, in for verifying */
	size_t pw_len;
	unsigned char pw[]; /* wiped as soon as it was used, and again before free */
};

static struct pw_job *job_new(const struct bq_auth_params *params, const char *pw, size_t len)
{
	struct pw_job *j = bq_calloc(1, sizeof(*j) + len);

	if (!j) {
		return NULL;
	}
	j->params = *params;
	j->pw_len = len;
	if (len) {
		memcpy(j->pw, pw, len);
	}
	return j;
}

static void job_free(struct pw_job *j)
{
	/* A cancelled job never ran, so its copy was not wiped yet. */
	sodium_memzero(j->pw, j->pw_len);
	sodium_memzero(j->hash, sizeof(j->hash));
	bq_free(j);
}

static void hash_work(void *ud)
{
	struct pw_job *j = ud;

	if (crypto_pwhash_argon2id_str(j->hash, (const char *)j->pw, j->pw_len, j->params.opslimit,
				       j->params.memlimit) != 0) {
		/* libsodium fails here only when Argon2 cannot allocate its memory. */
		j->err = -ENOMEM;
	}
	sodium_memzero(j->pw, j->pw_len);
}

static void hash_done(void *ud, bool cancelled)
{
	struct pw_job *j = ud;
	int err = cancelled ? -ECANCELED : j->err;

	j->hash_cb(j->user_data, err, err ? NULL : j->hash);
	job_free(j);
}

static void verify_work(void *ud)
{
	struct pw_job *j = ud;
	int nr;

	/*
	 * needs_rehash decodes the whole string (parameters, salt, hash) without the cost
	 * of hashing, so it tells a damaged hash (an error) from a wrong password (ok=false);
	 * verify alone answers -1 for both.
	 */
	nr = crypto_pwhash_argon2id_str_needs_rehash(j->hash, j->params.opslimit,
						     j->params.memlimit);
	if (nr < 0) {
		j->err = -EINVAL;
	} else if (crypto_pwhash_argon2id_str_verify(j->hash, (const char *)j->pw, j->pw_len) ==
		   0) {
		j->ok = true;
		j->needs_rehash = nr == 1;
	}
	sodium_memzero(j->pw, j->pw_len);
}

static void verify_done(void *ud, bool cancelled)
{
	struct pw_job *j = ud;
	int err = cancelled ? -ECANCELED : j->err;

	j->verify_cb(j->user_data, err, !err && j->ok, !err && j->needs_rehash);
	job_free(j);
}

static int submit(struct bq_worker *w, struct pw_job *j, bq_work_fn work, bq_work_done_cb done)
{
	int err = bq_worker_submit(w, work, done, j);

	if (err < 0) {
		job_free(j);
	}
	return err;
}

int bq_password_hash_async(struct bq_worker *w, const struct bq_auth_params *params, const char *pw,
			   size_t len, bq_hash_done_cb cb, void *user_data)
{
	struct bq_auth_params p;
	struct pw_job *j;

	if (!w || !pw || !cb || params_get(params, &p) < 0) {
		return -EINVAL;
	}
	if (len > BQ_PASSWORD_MAX) {
		return -EMSGSIZE;
	}
	if (sodium_init() < 0) {
		return -EIO;
	}
	j = job_new(&p, pw, len);
	if (!j) {
		return -ENOMEM;
	}
	j->hash_cb = cb;
	j->user_data = user_data;
	return submit(w, j, hash_work, hash_done);
}

int bq_password_verify_async(struct bq_worker *w, const struct bq_auth_params *params,
			     const char *hash, const char *pw, size_t len, bq_verify_done_cb cb,
			     void *user_data)
{
	struct bq_auth_params p;
	struct pw_job *j;
	size_t hlen;

	if (!w || !hash || !pw || !cb || params_get(params, &p) < 0) {
		return -EINVAL;
	}
	hlen = strnlen(hash, BQ_PASSWORD_HASH_MAX);
	if (hlen == BQ_PASSWORD_HASH_MAX) {
		return -EINVAL;
	}
	if (len > BQ_PASSWORD_MAX) {
		return -EMSGSIZE;
	}
	if (sodium_init() < 0) {
		return -EIO;
	}
	j = job_new(&p, pw, len);
	if (!j) {
		return -ENOMEM;
	}
	memcpy(j->hash, hash, hlen + 1);
	j->verify_cb = cb;
	j->user_data = user_data;
	return submit(w, j, verify_work, verify_done);
}

/* ---- tokens ------------------------------------------------------------------------ */

void bq_token_new(char out[BQ_TOKEN_LEN + 1])
{
	unsigned char raw[TOKEN_BYTES];
	int rc;

	/*
	 * Idempotent. randombytes initialises itself (getrandom underneath) even if this
	 * failed, and a void function has nobody to report it to.
	 */
	rc = sodium_init();
	(void)rc;
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, BQ_TOKEN_LEN + 1, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
}

void bq_token_hash(const char *token, char out_hex[BQ_TOKEN_HASH_HEX + 1])
{
	unsigned char h[TOKEN_HASH_BYTES];
	size_t len = token ? strlen(token) : 0;

	crypto_generichash(h, sizeof(h), (const unsigned char *)(token ? token : ""), len, NULL, 0);
	sodium_bin2hex(out_hex, BQ_TOKEN_HASH_HEX + 1, h, sizeof(h));
}

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') {
		return c - 'A';
	}
	if (c >= 'a' && c <= 'z') {
		return c - 'a' + 26;
	}
	if (c >= '0' && c <= '9') {
		return c - '0' + 52;
	}
	if (c == '-') {
		return 62;
	}
	if (c == '_') {
		return 63;
	}
	return -1;
}

bool bq_token_format_ok(const char *s)
{
	int v = 0;

	if (!s || strnlen(s, BQ_TOKEN_LEN + 1) != BQ_TOKEN_LEN) {
		return false;
	}
	for (size_t i = 0; i < BQ_TOKEN_LEN; i++) {
		v = b64url_value((unsigned char)s[i]);
		if (v < 0) {
			return false;
		}
	}
	/* 43 characters carry 258 bits: the last two are padding and must be zero. */
	return (v & 3) == 0;
}

bool bq_bearer_parse(const char *header, char *out, size_t cap)
{
	static const char scheme[] = "Bearer";
	const size_t slen = sizeof(scheme) - 1;

	if (out && cap > 0) {
		out[0] = '\0';
	}
	if (!header || !out || cap < BQ_TOKEN_LEN + 1) {
		return false;
	}
	if (strncasecmp(header, scheme, slen) != 0 || header[slen] != ' ') {
		return false;
	}
	/* format_ok demands exactly 43 token characters, so a second space fails too. */
	if (!bq_token_format_ok(header + slen + 1)) {
		return false;
	}
	memcpy(out, header + slen + 1, BQ_TOKEN_LEN + 1);
	return true;
}
