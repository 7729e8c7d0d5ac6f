/* SPDX-License-Identifier: MIT */
/*
 * Accounts: register, log in, log out, who am I. Passwords are hashed with Argon2id on
 * the worker pool (lib/backend/auth), so the loop answers other requests meanwhile;
 * tokens are 256-bit random, given to the browser once and stored only as a hash.
 *
 * The token travels as Authorization: Bearer, or as the HttpOnly SameSite=Strict cookie
 * blueq_token that register and login set (a browser's EventSource cannot send
 * headers). A cookie goes with every request the browser makes, whoever asked for it,
 * so a state-changing request authenticated by the cookie alone must carry Content-Type:
 * application/json: an HTML form on another site cannot send that type, and a script
 * there cannot either without a CORS preflight, which this backend never grants.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "backend.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "http/json.h"

#define REPLY_MAX (1u << 20)
#define COOKIE_NAME "blueq_token"

enum token_src {
	TOK_NONE,	/* neither header nor cookie */
	TOK_BAD_HEADER, /* an Authorization header that is not a well-formed bearer token */
	TOK_HEADER,
	TOK_COOKIE,
};

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The blueq_token cookie of a Cookie header ("a=1; blueq_token=...; b=2"), if one is
 * well-formed: the first such wins (a browser sends the most specific path first).
 */
static bool cookie_token(const char *hdr, char out[BQ_TOKEN_LEN + 1])
{
	static const char name[] = COOKIE_NAME;
	const size_t name_len = sizeof(name) - 1;
	const char *p = hdr;

	out[0] = '\0';
	if (!hdr) {
		return false;
	}
	while (*p) {
		const char *end = strchr(p, ';');
		const char *eq, *val;
		size_t nlen, vlen;

		if (!end) {
			end = p + strlen(p);
		}
		while (p < end && blank(*p)) {
			p++;
		}
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq) {
			nlen = (size_t)(eq - p);
			while (nlen > 0 && blank(p[nlen - 1])) {
				nlen--;
			}
			val = eq + 1;
			while (val < end && blank(*val)) {
				val++;
			}
			vlen = (size_t)(end - val);
			while (vlen > 0 && blank(val[vlen - 1])) {
				vlen--;
			}
			/* RFC 6265 allows the value in double quotes. */
			if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
				val++;
				vlen -= 2;
			}
			if (nlen == name_len && memcmp(p, name, nlen) == 0 &&
			    vlen == BQ_TOKEN_LEN) {
				memcpy(out, val, vlen);
				out[vlen] = '\0';
				if (bq_token_format_ok(out)) {
					return true;
				}
				out[0] = '\0';
			}
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

/* The header first; the cookie only when there is no Authorization header at all. */
static enum token_src request_token(struct bq_http_req *req, char token[BQ_TOKEN_LEN + 1])
{
	const char *auth = bq_http_req_header(req, "Authorization");

	if (auth) {
		return bq_bearer_parse(auth, token, BQ_TOKEN_LEN + 1) ? TOK_HEADER : TOK_BAD_HEADER;
	}
	return cookie_token(bq_http_req_header(req, "Cookie"), token) ? TOK_COOKIE : TOK_NONE;
}

/* "application/json", any case, optionally followed by parameters ("; charset=utf-8"). */
static bool json_content_type(const char *ct)
{
	static const char want[] = "application/json";

	if (!ct) {
		return false;
	}
	while (blank(*ct)) {
		ct++;
	}
	if (strncasecmp(ct, want, sizeof(want) - 1) != 0) {
		return false;
	}
	ct += sizeof(want) - 1;
	while (blank(*ct)) {
		ct++;
	}
	return *ct == '\0' || *ct == ';';
}

/* A cookie-only request that changes state must prove it is not a cross-site form. */
static bool cross_site_ok(struct bq_http_req *req, enum token_src src)
{
	if (src != TOK_COOKIE || bq_http_req_method(req) == BQ_HTTP_GET ||
	    json_content_type(bq_http_req_header(req, "Content-Type"))) {
		return true;
	}
	bq_http_reply_error(req, 403, "cross_site",
			    "a request authenticated by the cookie must be sent with "
			    "Content-Type: application/json");
	return false;
}

/*
 * A browser that says the request comes from another site (Sec-Fetch-Site) may not
 * register or log in: that would be "login CSRF", logging the victim into an account the
 * attacker controls. curl and other non-browser clients send no such header.
 */
static bool from_other_site(struct bq_http_req *req)
{
	const char *sfs = bq_http_req_header(req, "Sec-Fetch-Site");

	if (sfs && strcasecmp(sfs, "cross-site") == 0) {
		bq_http_reply_error(req, 403, "cross_site",
				    "registering or logging in from another site is refused");
		return true;
	}
	return false;
}

static void set_cookie(struct bq_http_req *req, const char *token, uint64_t max_age_s)
{
	char v[BQ_TOKEN_LEN + 128];

	snprintf(v, sizeof(v),
		 COOKIE_NAME "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%" PRIu64, token,
		 max_age_s);
	bq_http_req_add_header(req, "Set-Cookie", v);
}

void be_reply_json(struct bq_http_req *req, unsigned status, json_t *v)
{
	bq_json_reply(req, status, v, REPLY_MAX);
}

static json_t *user_json(const struct bq_buser *u)
{
	return json_pack("{s:s, s:s, s:b, s:I}", "id", u->id, "username", u->username, "admin",
			 u->is_admin, "created", (json_int_t)u->created_ms);
}

/* A new login session for u: the token goes to the browser, its hash to the store. */
static int new_session(struct be *b, const struct bq_buser *u, char token[BQ_TOKEN_LEN + 1])
{
	char hash[BQ_TOKEN_HASH_HEX + 1];
	int64_t now = (int64_t)bq_wall_ms();

	bq_token_new(token);
	bq_token_hash(token, hash);
	return bq_bstore_session_add(b->store, hash, u->id, now, now + (int64_t)b->o->token_ttl);
}

static void reply_session(struct be *b, struct bq_http_req *req, unsigned status,
			  const struct bq_buser *u)
{
	char token[BQ_TOKEN_LEN + 1];
	int rc = new_session(b, u, token);

	if (rc < 0) {
		bq_http_reply_error(req, 500, "store_error", "cannot start a session: %s",
				    strerror(-rc));
		return;
	}
	set_cookie(req, token, b->o->token_ttl / 1000);
	be_reply_json(req, status, json_pack("{s:o, s:s}", "user", user_json(u), "token", token));
}

/* The body's username and password, checked; replies 400 itself. */
static bool credentials(struct bq_http_req *req, json_t **obj, const char **name, const char **pw,
			size_t *pwlen)
{
	char err[300];
	size_t len;
	const void *body = bq_http_req_body(req, &len);

	if (bq_json_parse_object(body, len, obj, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return false;
	}
	if (bq_json_get_string(*obj, "username", true, 1, BQ_BSTORE_NAME_MAX, name, NULL, err,
			       sizeof(err)) < 0 ||
	    bq_json_get_string(*obj, "password", true, 1, 4096, pw, pwlen, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_field", "%s", err);
		return false;
	}
	return true;
}

struct acct_ctx {
	struct be *b;
	struct bq_http_req *req; /* NULL once the client went away */
	struct bq_buser user;	 /* login: the user being checked */
	char username[BQ_BSTORE_NAME_MAX + 1];
	bool unknown; /* login of a name nobody has: checked against the decoy, always 401 */
};

static void acct_abort(struct bq_http_req *req, void *ud)
{
	struct acct_ctx *c = ud;

	c->req = NULL;
}

static void registered(void *ud, int err, const char *hash)
{
	struct acct_ctx *c = ud;
	struct be *b = c->b;
	struct bq_buser u;
	unsigned flags;
	bool first = false;
	int rc;

	if (err < 0) {
		if (c->req) {
			bq_http_reply_error(c->req, 503, "busy", "cannot hash the password: %s",
					    strerror(-err));
		}
		goto out;
	}
	/* The configured admin, or (none configured) whoever registers first. */
	if (b->o->admin && b->o->admin[0]) {
		flags = strcasecmp(b->o->admin, c->username) == 0 ? BQ_BSTORE_ADMIN : 0;
	} else {
		flags = BQ_BSTORE_ADMIN_IF_FIRST;
	}
	rc = bq_bstore_user_create(b->store, c->username, hash, flags, (int64_t)bq_wall_ms(), &u,
				   &first);
	if (rc == -EEXIST) {
		if (c->req) {
			bq_http_reply_error(c->req, 409, "name_taken", "the username '%s' is taken",
					    c->username);
		}
		goto out;
	}
	if (rc < 0) {
		if (c->req) {
			bq_http_reply_error(c->req, 500, "store_error",
					    "cannot create the user: %s", strerror(-rc));
		}
		goto out;
	}
	bq_info(b->log, "accounts", "msg=\"registered\" user=%s admin=%d", u.username, u.is_admin);
	b->contacts_gen++;
	/* The headline path: connect the new user through the manager now, kept until done. */
	rc = bq_bstore_pending_upsert(b->store, u.id, u.username, (int64_t)bq_wall_ms());
	if (rc < 0) {
		bq_warn(b->log, "accounts", "msg=\"connect not queued\" user=%s err=%d", u.username,
			rc);
	} else {
		be_mesh_connect_soon(b);
	}
	if (c->req) {
		reply_session(b, c->req, 201, &u);
	}
out:
	bq_free(c);
}

void be_h_register(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	json_t *obj = NULL;
	const char *name, *pw;
	size_t pwlen;
	char why[200];
	struct bq_buser existing;
	struct acct_ctx *c;
	int rc;

	if (from_other_site(req) || !be_limit_check(b, req, BE_LIMIT_REGISTER)) {
		return;
	}
	if (!credentials(req, &obj, &name, &pw, &pwlen)) {
		goto out;
	}
	if (!bq_username_valid(name, why, sizeof(why))) {
		bq_http_reply_error(req, 400, "bad_username", "%s", why);
		goto out;
	}
	if (!bq_password_acceptable(pw, pwlen, why, sizeof(why))) {
		bq_http_reply_error(req, 400, "bad_password", "%s", why);
		goto out;
	}
	/* Refuse a taken name before spending a hash on it (create checks again). */
	if (bq_bstore_user_get_by_name(b->store, name, &existing) == 0) {
		bq_http_reply_error(req, 409, "name_taken", "the username '%s' is taken", name);
		goto out;
	}
	c = bq_calloc(1, sizeof(*c));
	if (!c) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	c->b = b;
	c->req = req;
	snprintf(c->username, sizeof(c->username), "%s", name);
	rc = bq_password_hash_async(b->worker, &b->hash_params, pw, pwlen, registered, c);
	if (rc < 0) {
		bq_free(c);
		bq_http_reply_error(req, 503, "busy", "cannot hash the password now: %s",
				    strerror(-rc));
		goto out;
	}
	bq_http_req_on_abort(req, acct_abort, c);
out:
	json_decref(obj);
}

static void logged_in(void *ud, int err, bool ok, bool needs_rehash)
{
	struct acct_ctx *c = ud;

	if (c->req) {
		if (err < 0 && err != -EINVAL) {
			bq_http_reply_error(c->req, 503, "busy", "cannot check the password: %s",
					    strerror(-err));
		} else if (!ok || c->unknown) {
			bq_http_reply_error(c->req, 401, "bad_credentials",
					    "wrong username or password");
		} else {
			reply_session(c->b, c->req, 200, &c->user);
		}
	}
	(void)needs_rehash; /* rehashing on login comes with the cost option's use */
	bq_free(c);
}

void be_h_login(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	json_t *obj = NULL;
	const char *name, *pw;
	size_t pwlen;
	struct acct_ctx *c = NULL;
	int rc;

	if (from_other_site(req) || !be_limit_check(b, req, BE_LIMIT_LOGIN)) {
		return;
	}
	if (!credentials(req, &obj, &name, &pw, &pwlen)) {
		goto out;
	}
	c = bq_calloc(1, sizeof(*c));
	if (!c) {
		bq_http_reply_error(req, 503, "busy", "out of memory");
		goto out;
	}
	if (bq_bstore_user_get_by_name(b->store, name, &c->user) < 0) {
		/*
		 * Same answer as a wrong password, and after the same work: the password
		 * is checked against the decoy hash, so the answer's timing does not
		 * confirm names to strangers either.
		 */
		if (!b->decoy_hash) {
			bq_http_reply_error(req, 401, "bad_credentials",
					    "wrong username or password");
			goto out;
		}
		c->unknown = true;
		snprintf(c->user.pass_hash, sizeof(c->user.pass_hash), "%s", b->decoy_hash);
	}
	c->b = b;
	c->req = req;
	rc = bq_password_verify_async(b->worker, &b->hash_params, c->user.pass_hash, pw, pwlen,
				      logged_in, c);
	if (rc == -EMSGSIZE) {
		/* Longer than any password registration accepts: it matches no hash. */
		bq_http_reply_error(req, 401, "bad_credentials", "wrong username or password");
		goto out;
	}
	if (rc < 0) {
		bq_http_reply_error(req, 503, "busy", "cannot check the password now: %s",
				    strerror(-rc));
		goto out;
	}
	bq_http_req_on_abort(req, acct_abort, c);
	c = NULL;
out:
	bq_free(c);
	json_decref(obj);
}

/*
 * Sessions recently checked against the store, by token hash: an API request then costs
 * no SQLite read. An entry is trusted for AUTH_CACHE_MS, after which the store is asked
 * again (so an expired session is refused at most that late, and last_seen is still
 * written); logout removes it at once. Only this process writes sessions.
 */
#define AUTH_CACHE_MAX 10000
#define AUTH_CACHE_MS 5000

struct auth_entry {
	struct bq_buser u; /* without the password hash */
	int64_t checked_ms;
};

static void auth_cache_clear(struct be *b)
{
	size_t pos = 0;
	struct auth_entry *e;

	while (b->auth_cache && (e = bq_map_next(b->auth_cache, &pos, NULL, NULL))) {
		bq_free(e);
	}
	bq_map_free(b->auth_cache);
	b->auth_cache = NULL;
}

void be_auth_cache_free(struct be *b)
{
	auth_cache_clear(b);
	bq_free(b->decoy_hash);
	b->decoy_hash = NULL;
}

static void decoy_done(void *ud, int err, const char *hash)
{
	struct be *b = ud;

	if (err == 0 && hash && !b->stopping) {
		b->decoy_hash = bq_strdup(hash);
	}
}

int be_accounts_start(struct be *b)
{
	char pw[BQ_TOKEN_LEN + 1];
	int rc;

	/* A hash of 256 random bits with the current cost: nobody knows its password. */
	bq_token_new(pw);
	rc = bq_password_hash_async(b->worker, &b->hash_params, pw, strlen(pw), decoy_done, b);
	explicit_bzero(pw, sizeof(pw));
	return rc;
}

static bool auth_cache_get(struct be *b, const char *hash, int64_t now, struct bq_buser *out)
{
	struct auth_entry *e = b->auth_cache ? bq_map_get(b->auth_cache, hash, strlen(hash)) : NULL;

	if (!e || now - e->checked_ms >= AUTH_CACHE_MS || now < e->checked_ms) {
		return false;
	}
	*out = e->u;
	return true;
}

static void auth_cache_put(struct be *b, const char *hash, int64_t now, const struct bq_buser *u)
{
	struct auth_entry *e;

	if (b->auth_cache && bq_map_size(b->auth_cache) >= AUTH_CACHE_MAX) {
		auth_cache_clear(b); /* they come back one store read each */
	}
	if (!b->auth_cache && !(b->auth_cache = bq_map_new())) {
		return;
	}
	e = bq_map_get(b->auth_cache, hash, strlen(hash));
	if (!e) {
		e = bq_calloc(1, sizeof(*e));
		if (!e || bq_map_set(b->auth_cache, hash, strlen(hash), e) < 0) {
			bq_free(e);
			return;
		}
	}
	e->u = *u;
	memset(e->u.pass_hash, 0, sizeof(e->u.pass_hash));
	e->checked_ms = now;
}

static void auth_cache_forget(struct be *b, const char *hash)
{
	if (b->auth_cache) {
		bq_free(bq_map_remove(b->auth_cache, hash, strlen(hash)));
	}
}

bool be_auth_user(struct be *b, struct bq_http_req *req, struct bq_buser *out)
{
	int64_t now = (int64_t)bq_wall_ms();
	char token[BQ_TOKEN_LEN + 1], hash[BQ_TOKEN_HASH_HEX + 1];
	enum token_src src = request_token(req, token);

	if (src == TOK_NONE || src == TOK_BAD_HEADER) {
		bq_http_reply_error(req, 401, "unauthorized",
				    "log in first (Authorization: Bearer, or the " COOKIE_NAME
				    " cookie)");
		return false;
	}
	if (!cross_site_ok(req, src)) {
		return false;
	}
	bq_token_hash(token, hash);
	if (auth_cache_get(b, hash, now, out)) {
		return true;
	}
	if (bq_bstore_session_lookup(b->store, hash, now, out) < 0) {
		auth_cache_forget(b, hash);
		bq_http_reply_error(req, 401, "unauthorized",
				    "the session has ended: log in again");
		return false;
	}
	auth_cache_put(b, hash, now, out);
	return true;
}

void be_h_logout(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	char token[BQ_TOKEN_LEN + 1], hash[BQ_TOKEN_HASH_HEX + 1];
	enum token_src src = request_token(req, token);

	if (!cross_site_ok(req, src)) {
		return;
	}
	/* Whatever the outcome, the browser should forget its cookie. */
	bq_http_req_add_header(req, "Set-Cookie",
			       COOKIE_NAME "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
	if (src == TOK_NONE || src == TOK_BAD_HEADER) {
		bq_http_reply_error(req, 401, "unauthorized",
				    "log in first (Authorization: Bearer, or the " COOKIE_NAME
				    " cookie)");
		return;
	}
	bq_token_hash(token, hash);
	auth_cache_forget(b, hash);
	if (bq_bstore_session_remove(b->store, hash) < 0) {
		bq_http_reply_error(req, 401, "unauthorized", "no such session");
		return;
	}
	be_reply_json(req, 200, json_pack("{s:b}", "logged_out", 1));
}

void be_h_me(struct bq_http_req *req, void *ud)
{
	struct be *b = bq_http_req_user_data(req);
	struct bq_buser u;

	if (be_auth_user(b, req, &u)) {
		be_reply_json(req, 200, json_pack("{s:o}", "user", user_json(&u)));
	}
}
