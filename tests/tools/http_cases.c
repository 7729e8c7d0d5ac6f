/* SPDX-License-Identifier: MIT */
/*
 * bq-http-cases: data-driven HTTP cases for blueq-backend (and any JSON HTTP API): each
 * case is a request written out as text and the answer expected, checked against a
 * running server.
 *
 *   bq-http-cases [--var NAME=VALUE]... [--var-file NAME=PATH]... BASE_URL CASE_FILE...
 *
 * BASE_URL is http://HOST:PORT. The files run in the order given, their cases in file
 * order, one request each on its own connection (Connection: close). One line per case:
 * "ok NAME" or "FAIL NAME: what; body ...", then "# N cases: N ok, 0 failed".
 * Exit 0 when every case passed, 1 when any failed, 2 for bad usage or a file that
 * cannot be read or parsed (one line; no request is sent then).
 *
 * A case file (tests/cases/README.md has the same with examples):
 *
 *   # a comment: what this case shows       ('#' lines are comments, except in a
 *   name: empty-text                         request body)
 *   as: alice                                (optional, see below)
 *   POST /api/messages                       METHOD /path?query
 *   Content-Type: application/json           request headers, as sent
 *                                            a blank line, then the body (optional)
 *   {"to": "bob", "text": ""}
 *   --- expect
 *   400                                      the status
 *   Allow: GET, POST                         expected headers (optional, see below)
 *   ~ some text                              the raw body must contain this text
 *   {"code": "bad_field"}                    the expected JSON (optional): from a line
 *                                            starting with '{' or '[', or after a
 *                                            blank line
 *   ===                                      the next case
 *
 * Directives before the request line:
 *   name: NAME        printed as FILE/NAME (FILE without ".case"); default FILE:LINE
 *   as: USER [PASS]   log in as USER first: the first time a user is named (here or by
 *                     {{token:USER}}) the tool registers it (POST /api/register) with
 *                     PASS or the fixed password "bq-cases-password", or logs in when
 *                     the name is taken (409); the token is kept for later cases. The
 *                     request gets "Authorization: Bearer TOKEN" unless the case has
 *                     its own Authorization header.
 * Requests: the tool adds Host, Content-Length (whenever there is a body, and always
 * for methods other than GET and HEAD) and Connection: close. The body is the lines
 * between the blank line and "--- expect", joined by "\n" (no newline after the last).
 *
 * Expectations, all of which must hold:
 *   - the status;
 *   - "Name: PATTERN": some header Name (any case) whose value matches PATTERN, where
 *     '*' matches any run of characters ("Retry-After: *": present; "Content-Type:
 *     text/plain*"); "!Name": no header Name at all;
 *   - "~ TEXT": the raw body contains TEXT (for bodies that are not JSON);
 *   - the JSON, when given: the body must be JSON and match it as a subset: every key
 *     of an expected object present with a matching value (recursively; other keys are
 *     ignored), arrays equal in length and matched element by element in order (an
 *     expected array ending in the string "..." matches any array that starts with
 *     the elements before it), other values equal. The string "*" matches any value
 *     (the key must be there); any other expected string holding '*' is a pattern for
 *     a string value ("the manager at *").
 *
 * Placeholders, replaced in the request line, headers, body and expectations:
 *   {{token:USER}}     USER's token (registered or logged in as for "as:")
 *   {{var:NAME}}       a value from --var NAME=VALUE, or the trimmed content of the file
 *                      of --var-file NAME=PATH
 *   {{repeat:TEXT:N}}  TEXT N times (TEXT may not hold ':'), for bodies over a limit
 * Any other "{{" is kept as it is.
 *
 * Not for event streams (GET /api/events never ends): each request has a 10 s deadline.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/opt.h"

#define PROG "bq-http-cases"
#define USAGE                                                                                      \
	"usage: " PROG " [--var NAME=VALUE]... [--var-file NAME=PATH]... BASE_URL CASE_FILE..."

#define FILE_MAX (4u << 20)	 /* one case file */
#define LINE_MAX_LEN 65536	 /* one line of a case file */
#define EXPAND_MAX (16u << 20)	 /* a request body or expectation after placeholders */
#define RESPONSE_MAX (16u << 20) /* one response, headers and body */
#define HEAD_MAX 65536		 /* the response's status line and headers */
#define HEADERS_MAX 128		 /* headers of one request or response */
#define VARS_MAX 32
#define USERS_MAX 256
#define VAR_VALUE_MAX 4096
#define DEADLINE_MS 10000
#define BODY_SHOWN 400 /* bytes of a body printed with a failure */
#define DEFAULT_PASSWORD "bq-cases-password"

struct hdr {
	char *name;
	char *value; /* for expectations: the pattern; NULL for "!Name" (absent) */
};

struct hdrs {
	struct hdr v[HEADERS_MAX];
	size_t n;
};

struct kase {
	char *label; /* FILE/NAME or FILE:LINE */
	char *as_user;
	char *as_pass;
	char *method;
	char *target;
	struct hdrs req;
	char *body; /* NULL: none */
	int status;
	struct hdrs expect;
	char **contains;
	size_t n_contains;
	char *json; /* the expected JSON's text, NULL: not checked */
	struct kase *next;
};

struct var {
	char *name;
	char *value;
};

struct user {
	char *name;
	char *pass;
	char *token; /* NULL until registered or logged in */
};

struct ctx {
	char host[256]; /* as in the URL, for the Host header */
	char node[256]; /* for getaddrinfo: without brackets */
	char port[8];
	struct var vars[VARS_MAX];
	size_t n_vars;
	struct user users[USERS_MAX];
	size_t n_users;
	struct kase *cases, **tail;
};

struct response {
	int status;
	struct hdrs h;
	struct bq_buf raw; /* everything read */
	const char *body;  /* into raw (or dechunked) */
	size_t body_len;
	struct bq_buf chunk; /* the dechunked body, when chunked */
};

/* ---- small helpers ---- */

static char *xstrndup(const char *s, size_t n)
{
	char *p = bq_strndup(s, n);

	if (!p) {
		fprintf(stderr, PROG ": out of memory\n");
		exit(2);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

static const char *skip_blanks(const char *s)
{
	while (*s == ' ' || *s == '\t') {
		s++;
	}
	return s;
}

/* Length of s without trailing blanks. */
static size_t trimmed_len(const char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
			   s[len - 1] == '\n')) {
		len--;
	}
	return len;
}

static bool line_is(const char *line, const char *word)
{
	size_t n = strlen(word);

	return strncmp(line, word, n) == 0 && trimmed_len(line + n, strlen(line + n)) == 0;
}

static bool blank_line(const char *line)
{
	return *skip_blanks(line) == '\0';
}

/* '*' matches any run of bytes; everything else itself. */
static bool glob(const char *pat, const char *s, size_t len)
{
	const char *star = NULL;
	size_t i = 0, mark = 0;

	while (i < len) {
		if (*pat == '*') {
			star = pat++;
			mark = i;
		} else if (*pat && *pat == s[i]) {
			pat++;
			i++;
		} else if (star) {
			pat = star + 1;
			i = ++mark;
		} else {
			return false;
		}
	}
	while (*pat == '*') {
		pat++;
	}
	return *pat == '\0';
}

static void hdrs_free(struct hdrs *h)
{
	for (size_t i = 0; i < h->n; i++) {
		bq_free(h->v[i].name);
		bq_free(h->v[i].value);
	}
	h->n = 0;
}

static void case_free(struct kase *k)
{
	bq_free(k->label);
	bq_free(k->as_user);
	bq_free(k->as_pass);
	bq_free(k->method);
	bq_free(k->target);
	hdrs_free(&k->req);
	bq_free(k->body);
	hdrs_free(&k->expect);
	for (size_t i = 0; i < k->n_contains; i++) {
		bq_free(k->contains[i]);
	}
	bq_free(k->contains);
	bq_free(k->json);
	bq_free(k);
}

static void ctx_free(struct ctx *c)
{
	struct kase *k = c->cases;

	while (k) {
		struct kase *next = k->next;

		case_free(k);
		k = next;
	}
	for (size_t i = 0; i < c->n_vars; i++) {
		bq_free(c->vars[i].name);
		bq_free(c->vars[i].value);
	}
	for (size_t i = 0; i < c->n_users; i++) {
		bq_free(c->users[i].name);
		bq_free(c->users[i].pass);
		bq_free(c->users[i].token);
	}
}

static const char *var_get(const struct ctx *c, const char *name, size_t len)
{
	for (size_t i = 0; i < c->n_vars; i++) {
		if (strlen(c->vars[i].name) == len && memcmp(c->vars[i].name, name, len) == 0) {
			return c->vars[i].value;
		}
	}
	return NULL;
}

/* A status at the start of s ("404"): 100..599, else -1. */
static int status_of(const char *s)
{
	for (int i = 0; i < 3; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return -1;
		}
	}
	if (s[0] < '1' || s[0] > '5') {
		return -1;
	}
	return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
}

/* ---- HTTP over a blocking socket ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for events before the deadline: 0, or a message in err. */
static int wait_fd(int fd, short events, int64_t deadline, char *err, size_t errlen)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left = deadline - now_ms();
	int rc;

	if (left <= 0) {
		snprintf(err, errlen, "no answer within %d ms", DEADLINE_MS);
		return -ETIMEDOUT;
	}
	do {
		rc = poll(&p, 1, (int)left);
	} while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		snprintf(err, errlen, "no answer within %d ms", DEADLINE_MS);
		return -ETIMEDOUT;
	}
	if (rc < 0) {
		rc = -errno;
		snprintf(err, errlen, "poll: %s", strerror(-rc));
		return rc;
	}
	return 0;
}

static int dial(const struct ctx *c, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res, *ai;
	int fd = -1, rc;

	rc = getaddrinfo(c->node, c->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", c->node, gai_strerror(rc));
		return -EINVAL;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			break;
		}
		rc = errno;
		close(fd);
		fd = -1;
		errno = rc;
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s:%s: %s", c->host, c->port,
			 strerror(errno));
	}
	freeaddrinfo(res);
	return fd;
}

static const char *hdr_get(const struct hdrs *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++) {
		if (strcasecmp(h->v[i].name, name) == 0) {
			return h->v[i].value;
		}
	}
	return NULL;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9') {
		return ch - '0';
	}
	if (ch >= 'a' && ch <= 'f') {
		return ch - 'a' + 10;
	}
	if (ch >= 'A' && ch <= 'F') {
		return ch - 'A' + 10;
	}
	return -1;
}

/* Undo Transfer-Encoding: chunked (extensions and trailers ignored). */
static int dechunk(const char *p, size_t len, struct bq_buf *out)
{
	size_t i = 0;

	for (;;) {
		size_t size = 0;
		int digits = 0;
		int d;

		while (i < len && (d = hex_digit(p[i])) >= 0) {
			if (size > (SIZE_MAX >> 4)) {
				return -EBADMSG;
			}
			size = size * 16 + (size_t)d;
			digits++;
			i++;
		}
		if (digits == 0) {
			return -EBADMSG;
		}
		while (i + 1 < len && !(p[i] == '\r' && p[i + 1] == '\n')) {
			i++;
		}
		if (i + 1 >= len) {
			return -EBADMSG;
		}
		i += 2;
		if (size == 0) {
			return 0;
		}
		if (size > len - i || len - i - size < 2) {
			return -EBADMSG;
		}
		if (bq_buf_append(out, p + i, size) < 0) {
			return -EMSGSIZE;
		}
		i += size + 2;
	}
}

/* Split raw into the status, the headers and the body (none for HEAD). */
static int parse_response(struct response *r, bool head, char *err, size_t errlen)
{
	const char *raw = bq_buf_cstr(&r->raw);
	const char *end = strstr(raw, "\r\n\r\n");
	const char *p, *eol, *colon;
	const char *te, *cl;
	int64_t v;
	size_t head_len;

	if (!end || (size_t)(end - raw) > HEAD_MAX) {
		snprintf(err, errlen, "no complete HTTP header in %zu bytes", r->raw.len);
		return -EBADMSG;
	}
	head_len = (size_t)(end - raw) + 4;
	if (strncmp(raw, "HTTP/1.", 7) != 0 || raw[8] != ' ' || status_of(raw + 9) < 0) {
		snprintf(err, errlen, "not an HTTP status line: %.60s", raw);
		return -EBADMSG;
	}
	r->status = status_of(raw + 9);
	p = strstr(raw, "\r\n") + 2;
	while (p < end + 2) {
		eol = strstr(p, "\r\n");
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || r->h.n == HEADERS_MAX) {
			snprintf(err, errlen, "bad or too many response headers");
			return -EBADMSG;
		}
		r->h.v[r->h.n].name = xstrndup(p, (size_t)(colon - p));
		colon = skip_blanks(colon + 1);
		r->h.v[r->h.n].value = xstrndup(colon, trimmed_len(colon, (size_t)(eol - colon)));
		r->h.n++;
		p = eol + 2;
	}
	r->body = raw + head_len;
	r->body_len = r->raw.len - head_len;
	te = hdr_get(&r->h, "Transfer-Encoding");
	cl = hdr_get(&r->h, "Content-Length");
	if (head) {
		r->body_len = 0; /* Content-Length tells what a GET would get */
	} else if (te && strcasecmp(te, "chunked") == 0) {
		bq_buf_init(&r->chunk, RESPONSE_MAX);
		if (dechunk(r->body, r->body_len, &r->chunk) < 0) {
			snprintf(err, errlen, "bad chunked body");
			return -EBADMSG;
		}
		r->body = r->chunk.len ? bq_buf_cstr(&r->chunk) : "";
		r->body_len = r->chunk.len;
	} else if (cl) {
		if (bq_opt_parse_int(cl, &v) < 0 || v < 0 || (uint64_t)v > r->body_len) {
			snprintf(err, errlen, "Content-Length %s but %zu body bytes came", cl,
				 r->body_len);
			return -EBADMSG;
		}
		r->body_len = (size_t)v;
	}
	return 0;
}

static void response_free(struct response *r)
{
	hdrs_free(&r->h);
	bq_buf_free(&r->raw);
	bq_buf_free(&r->chunk);
}

/*
 * One request: everything up to the end of the headers in req (the tool adds
 * Content-Length and Connection), the body apart. The whole answer is read until the
 * server closes. 0, or a message in err.
 */
static int http_do(const struct ctx *c, const char *head, const char *body, size_t body_len,
		   struct response *r, char *err, size_t errlen)
{
	int64_t deadline = now_ms() + DEADLINE_MS;
	struct bq_buf out;
	size_t off = 0;
	int fd, rc = 0;

	memset(r, 0, sizeof(*r));
	bq_buf_init(&r->raw, RESPONSE_MAX);
	bq_buf_init(&out, EXPAND_MAX + HEAD_MAX);
	if (bq_buf_append(&out, head, strlen(head)) < 0 ||
	    (body_len && bq_buf_append(&out, body, body_len) < 0)) {
		bq_buf_free(&out);
		snprintf(err, errlen, "request too large");
		return -EMSGSIZE;
	}
	fd = dial(c, err, errlen);
	if (fd < 0) {
		bq_buf_free(&out);
		return -ECONNREFUSED;
	}
	/*
	 * A server may answer (413) and close before reading a large body: a failed send
	 * is then no error, the answer is read all the same.
	 */
	while (off < out.len) {
		ssize_t n = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			rc = wait_fd(fd, POLLOUT, deadline, err, errlen);
			if (rc < 0) {
				goto out;
			}
			continue;
		}
		if (n < 0 && errno == EINTR) {
			continue;
		}
		break;
	}
	for (;;) {
		uint8_t *p = bq_buf_reserve(&r->raw, 65536, &rc);
		ssize_t n;

		if (!p) {
			snprintf(err, errlen, "answer larger than %u bytes", RESPONSE_MAX);
			goto out;
		}
		n = recv(fd, p, 65536, MSG_DONTWAIT);
		if (n > 0) {
			bq_buf_commit(&r->raw, (size_t)n);
			continue;
		}
		if (n == 0) {
			break;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			rc = wait_fd(fd, POLLIN, deadline, err, errlen);
			if (rc < 0) {
				goto out;
			}
			continue;
		}
		if (errno == EINTR) {
			continue;
		}
		if (errno == ECONNRESET && r->raw.len > 0) {
			break; /* the answer came, then a reset for the unread body */
		}
		rc = -errno;
		snprintf(err, errlen, "reading the answer: %s", strerror(errno));
		goto out;
	}
	rc = parse_response(r, strncmp(head, "HEAD ", 5) == 0, err, errlen);
out:
	close(fd);
	bq_buf_free(&out);
	return rc;
}

/* ---- users ---- */

static struct user *user_find(struct ctx *c, const char *name, bool create)
{
	for (size_t i = 0; i < c->n_users; i++) {
		if (strcmp(c->users[i].name, name) == 0) {
			return &c->users[i];
		}
	}
	if (!create || c->n_users == USERS_MAX) {
		return NULL;
	}
	c->users[c->n_users].name = xstrdup(name);
	c->users[c->n_users].pass = xstrdup(DEFAULT_PASSWORD);
	return &c->users[c->n_users++];
}

/* POST path {username, password}: the token of a 2xx answer, else NULL and *status. */
static char *account_call(struct ctx *c, const char *path, const struct user *u, int *status,
			  char *err, size_t errlen)
{
	struct response r;
	struct bq_buf head;
	json_t *req, *ans;
	char *body;
	char *token = NULL;
	const char *t;

	req = json_pack("{s:s, s:s}", "username", u->name, "password", u->pass);
	body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	bq_buf_init(&head, HEAD_MAX);
	if (bq_buf_printf(&head,
			  "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
			  "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			  path, c->host, c->port, strlen(body)) < 0) {
		free(body);
		bq_buf_free(&head);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	*status = 0;
	if (http_do(c, bq_buf_cstr(&head), body, strlen(body), &r, err, errlen) == 0) {
		*status = r.status;
		ans = json_loadb(r.body, r.body_len, 0, NULL);
		t = json_string_value(json_object_get(ans, "token"));
		if (r.status / 100 == 2 && t) {
			token = xstrdup(t);
		} else {
			snprintf(err, errlen, "%s answered %d: %.200s", path, r.status,
				 r.body_len ? r.body : "");
		}
		json_decref(ans);
	}
	response_free(&r);
	free(body);
	bq_buf_free(&head);
	return token;
}

/* The token of user name, registering (or, when taken, logging in) the first time. */
static const char *user_token(struct ctx *c, const char *name, char *err, size_t errlen)
{
	struct user *u = user_find(c, name, true);
	int status;

	if (!u) {
		snprintf(err, errlen, "more than %d users", USERS_MAX);
		return NULL;
	}
	if (u->token) {
		return u->token;
	}
	u->token = account_call(c, "/api/register", u, &status, err, errlen);
	if (!u->token && status == 409) {
		u->token = account_call(c, "/api/login", u, &status, err, errlen);
	}
	if (!u->token) {
		char why[400];

		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "cannot log in as %s: %s", name, why);
	}
	return u->token;
}

/* ---- placeholders ---- */

enum { PH_NONE, PH_TOKEN, PH_VAR, PH_REPEAT };

/*
 * A placeholder at s ("{{kind:arg}}")? Its kind, the argument and the whole length;
 * PH_NONE for any other text.
 */
static int placeholder(const char *s, const char **arg, size_t *arg_len, size_t *total)
{
	static const struct {
		const char *prefix;
		int kind;
	} kinds[] = {{"{{token:", PH_TOKEN}, {"{{var:", PH_VAR}, {"{{repeat:", PH_REPEAT}};
	const char *close;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].prefix);

		if (strncmp(s, kinds[i].prefix, n) != 0) {
			continue;
		}
		close = strstr(s + n, "}}");
		if (!close) {
			return PH_NONE;
		}
		*arg = s + n;
		*arg_len = (size_t)(close - (s + n));
		*total = (size_t)(close + 2 - s);
		return kinds[i].kind;
	}
	return PH_NONE;
}

/* {{repeat:TEXT:N}}: TEXT and N. 0 or -EINVAL. */
static int repeat_args(const char *arg, size_t len, size_t *text_len, int64_t *count)
{
	const char *colon = memchr(arg, ':', len);
	char num[24];
	size_t nlen;

	if (!colon || colon == arg) {
		return -EINVAL;
	}
	nlen = len - (size_t)(colon + 1 - arg);
	if (nlen == 0 || nlen >= sizeof(num)) {
		return -EINVAL;
	}
	memcpy(num, colon + 1, nlen);
	num[nlen] = '\0';
	if (bq_opt_parse_int(num, count) < 0 || *count < 0 || *count > (int64_t)EXPAND_MAX) {
		return -EINVAL;
	}
	*text_len = (size_t)(colon - arg);
	return 0;
}

/* Check the placeholders of s when loading (c: for variables). 0 or a message. */
static int check_placeholders(const struct ctx *c, const char *s, char *err, size_t errlen)
{
	const char *arg;
	size_t alen, total, tlen;
	int64_t count;

	for (const char *p = strstr(s, "{{"); p; p = strstr(p + 2, "{{")) {
		switch (placeholder(p, &arg, &alen, &total)) {
		case PH_TOKEN:
			if (alen == 0) {
				snprintf(err, errlen, "{{token:}} names no user");
				return -EINVAL;
			}
			break;
		case PH_VAR:
			if (!var_get(c, arg, alen)) {
				snprintf(err, errlen, "{{var:%.*s}}: no --var or --var-file %.*s",
					 (int)alen, arg, (int)alen, arg);
				return -EINVAL;
			}
			break;
		case PH_REPEAT:
			if (repeat_args(arg, alen, &tlen, &count) < 0) {
				snprintf(err, errlen, "bad {{repeat:TEXT:N}}: %.*s", (int)total, p);
				return -EINVAL;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

/* s with its placeholders replaced, into out (reset first). 0 or a message in err. */
static int expand(struct ctx *c, const char *s, struct bq_buf *out, char *err, size_t errlen)
{
	const char *p = s;
	const char *arg, *val;
	size_t alen, total, tlen;
	int64_t count;
	int rc = 0;
	char name[256];

	bq_buf_reset(out);
	while (*p && rc == 0) {
		const char *open = strstr(p, "{{");
		int kind;

		if (!open) {
			rc = bq_buf_append(out, p, strlen(p));
			break;
		}
		rc = bq_buf_append(out, p, (size_t)(open - p));
		if (rc < 0) {
			break;
		}
		kind = placeholder(open, &arg, &alen, &total);
		switch (kind) {
		case PH_TOKEN:
			snprintf(name, sizeof(name), "%.*s", (int)alen, arg);
			val = user_token(c, name, err, errlen);
			if (!val) {
				return -EINVAL;
			}
			rc = bq_buf_append(out, val, strlen(val));
			break;
		case PH_VAR:
			val = var_get(c, arg, alen);
			rc = bq_buf_append(out, val, strlen(val));
			break;
		case PH_REPEAT:
			repeat_args(arg, alen, &tlen, &count);
			for (int64_t i = 0; i < count && rc == 0; i++) {
				rc = bq_buf_append(out, arg, tlen);
			}
			break;
		default:
			total = 2;
			rc = bq_buf_append(out, open, 2);
			break;
		}
		p = open + total;
	}
	if (rc < 0) {
		snprintf(err, errlen, "text larger than %u bytes after placeholders", EXPAND_MAX);
		return rc;
	}
	bq_buf_cstr(out);
	return 0;
}

/* ---- checking an answer ---- */

static bool json_match(const json_t *exp, const json_t *got, char *path, size_t cap, char *why,
		       size_t whylen);

static void describe(const json_t *v, char *out, size_t cap)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	snprintf(out, cap, "%.150s", s ? s : "nothing");
	free(s);
}

static bool json_match(const json_t *exp, const json_t *got, char *path, size_t cap, char *why,
		       size_t whylen)
{
	size_t plen = strlen(path);
	char a[160], b[160];
	bool ok = true;

	if (json_is_string(exp) && strchr(json_string_value(exp), '*')) {
		const char *pat = json_string_value(exp);

		if (strcmp(pat, "*") == 0 && got) {
			return true;
		}
		if (json_is_string(got) &&
		    glob(pat, json_string_value(got), json_string_length(got))) {
			return true;
		}
		ok = false;
	} else if (json_is_object(exp)) {
		const char *key;
		const json_t *ev;

		if (!json_is_object(got)) {
			ok = false;
		} else {
			json_object_foreach((json_t *)exp, key, ev)
			{
				const json_t *gv = json_object_get(got, key);

				snprintf(path + plen, cap - plen, ".%s", key);
				if (!gv) {
					snprintf(why, whylen, "%s missing", path);
					return false;
				}
				if (!json_match(ev, gv, path, cap, why, whylen)) {
					return false;
				}
				path[plen] = '\0';
			}
			return true;
		}
	} else if (json_is_array(exp)) {
		size_t n = json_array_size(exp);
		const json_t *last = n ? json_array_get(exp, n - 1) : NULL;
		bool prefix = json_is_string(last) && strcmp(json_string_value(last), "...") == 0;

		if (prefix) {
			n--; /* [a, b, "..."]: a and b first, then anything */
		}
		if (!json_is_array(got) || json_array_size(got) < n ||
		    (!prefix && json_array_size(got) != n)) {
			ok = false;
		} else {
			for (size_t i = 0; i < n; i++) {
				snprintf(path + plen, cap - plen, "[%zu]", i);
				if (!json_match(json_array_get(exp, i), json_array_get(got, i),
						path, cap, why, whylen)) {
					return false;
				}
				path[plen] = '\0';
			}
			return true;
		}
	} else {
		ok = got && json_equal((json_t *)exp, (json_t *)got);
	}
	if (!ok) {
		describe(exp, a, sizeof(a));
		describe(got, b, sizeof(b));
		snprintf(why, whylen, "%s: expected %s got %s", path, a, b);
	}
	return ok;
}

/* The body for a failure line: at most BODY_SHOWN bytes, control bytes as '.'. */
static void show_body(const struct response *r, char *out, size_t cap)
{
	size_t n = r->body_len < BODY_SHOWN ? r->body_len : BODY_SHOWN;
	size_t j = 0;

	for (size_t i = 0; i < n && j + 1 < cap; i++) {
		unsigned char ch = (unsigned char)r->body[i];

		out[j++] = ch < 0x20 || ch == 0x7f ? '.' : (char)ch;
	}
	out[j] = '\0';
	if (r->body_len > n && j + 4 < cap) {
		memcpy(out + j, "...", 4);
	}
}

/* Every expectation of k against r: true, or false and why. */
static bool check(struct ctx *c, const struct kase *k, const struct response *r, char *why,
		  size_t whylen)
{
	struct bq_buf x;
	char path[512] = "$";
	json_t *exp = NULL, *got = NULL;
	json_error_t je;
	bool ok = false;

	if (r->status != k->status) {
		snprintf(why, whylen, "expected %d got %d", k->status, r->status);
		return false;
	}
	bq_buf_init(&x, EXPAND_MAX);
	for (size_t i = 0; i < k->expect.n; i++) {
		const struct hdr *e = &k->expect.v[i];
		bool found = false, matched = false;
		const char *first = NULL;

		for (size_t j = 0; j < r->h.n; j++) {
			if (strcasecmp(r->h.v[j].name, e->name) != 0) {
				continue;
			}
			found = true;
			first = first ? first : r->h.v[j].value;
			if (e->value && expand(c, e->value, &x, why, whylen) < 0) {
				goto out;
			}
			if (e->value &&
			    glob(bq_buf_cstr(&x), r->h.v[j].value, strlen(r->h.v[j].value))) {
				matched = true;
			}
		}
		if (!e->value && found) {
			snprintf(why, whylen, "header %s: expected none got \"%.200s\"", e->name,
				 first);
			goto out;
		}
		if (e->value && !matched) {
			if (found) {
				snprintf(why, whylen,
					 "header %s: expected \"%.200s\" got \"%.200s\"", e->name,
					 bq_buf_cstr(&x), first);
			} else {
				snprintf(why, whylen, "header %s: expected \"%.200s\", not there",
					 e->name, e->value);
			}
			goto out;
		}
	}
	for (size_t i = 0; i < k->n_contains; i++) {
		if (expand(c, k->contains[i], &x, why, whylen) < 0) {
			goto out;
		}
		if (!memmem(r->body, r->body_len, x.data, x.len)) {
			snprintf(why, whylen, "the body lacks \"%.200s\"", bq_buf_cstr(&x));
			goto out;
		}
	}
	if (k->json) {
		if (expand(c, k->json, &x, why, whylen) < 0) {
			goto out;
		}
		exp = json_loadb((const char *)x.data, x.len, JSON_DECODE_ANY, &je);
		if (!exp) {
			snprintf(why, whylen, "the expected JSON (after placeholders) is bad: %s",
				 je.text);
			goto out;
		}
		got = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &je);
		if (!got) {
			snprintf(why, whylen, "the body is not JSON (%s)", je.text);
			goto out;
		}
		if (!json_match(exp, got, path, sizeof(path), why, whylen)) {
			goto out;
		}
	}
	ok = true;
out:
	json_decref(exp);
	json_decref(got);
	bq_buf_free(&x);
	return ok;
}

/* ---- running a case ---- */

static bool run_case(struct ctx *c, const struct kase *k, char *why, size_t whylen)
{
	struct bq_buf head, tmp, body;
	struct response r;
	const char *token = NULL;
	bool ok = false;
	char err[600];

	memset(&r, 0, sizeof(r));
	bq_buf_init(&head, EXPAND_MAX);
	bq_buf_init(&tmp, EXPAND_MAX);
	bq_buf_init(&body, EXPAND_MAX);
	if (k->as_user) {
		struct user *u = user_find(c, k->as_user, true);

		if (u && !u->token && k->as_pass) {
			bq_free(u->pass);
			u->pass = xstrdup(k->as_pass);
		}
		token = user_token(c, k->as_user, why, whylen);
		if (!token) {
			goto out;
		}
	}
	if (expand(c, k->target, &tmp, why, whylen) < 0) {
		goto out;
	}
	if (bq_buf_printf(&head, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n", k->method, bq_buf_cstr(&tmp),
			  c->host, c->port) < 0) {
		goto oom;
	}
	for (size_t i = 0; i < k->req.n; i++) {
		if (expand(c, k->req.v[i].value, &tmp, why, whylen) < 0) {
			goto out;
		}
		if (bq_buf_printf(&head, "%s: %s\r\n", k->req.v[i].name, bq_buf_cstr(&tmp)) < 0) {
			goto oom;
		}
	}
	if (token && !hdr_get(&k->req, "Authorization") &&
	    bq_buf_printf(&head, "Authorization: Bearer %s\r\n", token) < 0) {
		goto oom;
	}
	if (k->body && expand(c, k->body, &body, why, whylen) < 0) {
		goto out;
	}
	if ((k->body || (strcmp(k->method, "GET") != 0 && strcmp(k->method, "HEAD") != 0)) &&
	    bq_buf_printf(&head, "Content-Length: %zu\r\n", body.len) < 0) {
		goto oom;
	}
	if (bq_buf_printf(&head, "Connection: close\r\n\r\n") < 0) {
		goto oom;
	}
	if (http_do(c, bq_buf_cstr(&head), (const char *)body.data, body.len, &r, err,
		    sizeof(err)) < 0) {
		snprintf(why, whylen, "%s", err);
		goto out;
	}
	ok = check(c, k, &r, why, whylen);
	if (!ok) {
		size_t n = strlen(why);

		snprintf(why + n, whylen - n, "; body ");
		n = strlen(why);
		show_body(&r, why + n, whylen - n);
	}
	goto out;
oom:
	snprintf(why, whylen, "request too large");
out:
	response_free(&r);
	bq_buf_free(&head);
	bq_buf_free(&tmp);
	bq_buf_free(&body);
	return ok;
}

/* ---- loading case files ---- */

struct loader {
	struct ctx *c;
	const char *file; /* as given */
	char stem[200];	  /* basename without ".case" */
	char **lines;
	size_t n_lines;
	size_t i; /* next line */
	char err[700];
};

static int load_error(struct loader *l, size_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int load_error(struct loader *l, size_t line, const char *fmt, ...)
{
	char msg[500];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(l->err, sizeof(l->err), "%s:%zu: %s", l->file, line, msg);
	return -EINVAL;
}

static int read_file(struct loader *l)
{
	FILE *f = fopen(l->file, "rb");
	struct bq_buf b;
	char chunk[8192];
	size_t n, start = 0;
	const char *base;
	int rc = 0;

	if (!f) {
		snprintf(l->err, sizeof(l->err), "%s: %s", l->file, strerror(errno));
		return -errno;
	}
	bq_buf_init(&b, FILE_MAX);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		rc = bq_buf_append(&b, chunk, n);
		if (rc < 0) {
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		rc = -EIO;
	}
	fclose(f);
	if (rc < 0) {
		bq_buf_free(&b);
		snprintf(l->err, sizeof(l->err), "%s: %s", l->file,
			 rc == -EMSGSIZE ? "larger than 4 MiB" : strerror(-rc));
		return rc;
	}
	bq_buf_cstr(&b);
	if (b.len && memchr(b.data, '\0', b.len)) {
		bq_buf_free(&b);
		snprintf(l->err, sizeof(l->err), "%s: holds a NUL byte", l->file);
		return -EINVAL;
	}
	/* Lines without their "\n" or "\r\n". */
	l->lines = bq_calloc(b.len + 2, sizeof(*l->lines));
	if (!l->lines) {
		bq_buf_free(&b);
		snprintf(l->err, sizeof(l->err), "%s: out of memory", l->file);
		return -ENOMEM;
	}
	for (size_t i = 0; i <= b.len; i++) {
		if (i < b.len && b.data[i] != '\n') {
			continue;
		}
		if (i == b.len && start == b.len) {
			break;
		}
		n = i - start;
		if (n > 0 && b.data[start + n - 1] == '\r') {
			n--;
		}
		if (n > LINE_MAX_LEN) {
			bq_buf_free(&b);
			return load_error(l, l->n_lines + 1, "line longer than %d bytes",
					  LINE_MAX_LEN);
		}
		l->lines[l->n_lines++] = xstrndup((const char *)b.data + start, n);
		start = i + 1;
	}
	bq_buf_free(&b);
	base = strrchr(l->file, '/');
	base = base ? base + 1 : l->file;
	n = strlen(base);
	if (n > 5 && strcmp(base + n - 5, ".case") == 0) {
		n -= 5;
	}
	snprintf(l->stem, sizeof(l->stem), "%.*s", (int)n, base);
	return 0;
}

/* "Name: value" into h (value trimmed); value_required false allows "!Name". */
static int parse_header(struct loader *l, size_t line, const char *s, struct hdrs *h, bool expect)
{
	const char *colon = strchr(s, ':');
	const char *v;

	if (h->n == HEADERS_MAX) {
		return load_error(l, line, "more than %d headers", HEADERS_MAX);
	}
	if (expect && s[0] == '!') {
		size_t n = trimmed_len(s + 1, strlen(s + 1));

		if (n == 0 || memchr(s + 1, ':', n) || memchr(s + 1, ' ', n)) {
			return load_error(l, line, "expected \"!Header-Name\"");
		}
		h->v[h->n].name = xstrndup(s + 1, n);
		h->v[h->n].value = NULL;
		h->n++;
		return 0;
	}
	if (!colon || colon == s || memchr(s, ' ', (size_t)(colon - s)) ||
	    memchr(s, '\t', (size_t)(colon - s))) {
		return load_error(l, line, "expected a header line \"Name: value\", got \"%.80s\"",
				  s);
	}
	v = skip_blanks(colon + 1);
	h->v[h->n].name = xstrndup(s, (size_t)(colon - s));
	h->v[h->n].value = xstrndup(v, trimmed_len(v, strlen(v)));
	h->n++;
	return 0;
}

/* Lines [from, to) joined by "\n", trailing blank lines dropped; NULL when all blank. */
static char *join_lines(struct loader *l, size_t from, size_t to, bool drop_comments)
{
	struct bq_buf b;
	size_t last = to;
	char *s;

	while (last > from && blank_line(l->lines[last - 1])) {
		last--;
	}
	if (last == from) {
		return NULL;
	}
	bq_buf_init(&b, FILE_MAX);
	for (size_t i = from; i < last; i++) {
		if (drop_comments && l->lines[i][0] == '#') {
			continue;
		}
		if ((b.len && bq_buf_append(&b, "\n", 1) < 0) ||
		    bq_buf_append(&b, l->lines[i], strlen(l->lines[i])) < 0) {
			break;
		}
	}
	s = xstrndup(b.len ? (const char *)b.data : "", b.len);
	bq_buf_free(&b);
	return s;
}

static bool is_method(const char *s, size_t n)
{
	if (n == 0 || n > 16) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 'A' || s[i] > 'Z') {
			return false;
		}
	}
	return true;
}

/* "~ TEXT": the body must contain TEXT. */
static int add_contains(struct loader *l, size_t line, struct kase *k, const char *s)
{
	char **nc;

	if (s[1] != ' ' || !s[2]) {
		return load_error(l, line, "expected \"~ TEXT\"");
	}
	nc = bq_realloc(k->contains, (k->n_contains + 1) * sizeof(*nc));
	if (!nc) {
		return load_error(l, line, "out of memory");
	}
	k->contains = nc;
	k->contains[k->n_contains++] = xstrdup(s + 2);
	return 0;
}

/* A directive "word: value"; value trimmed into *out (replacing any earlier one). */
static bool directive(const char *line, const char *word, char **out)
{
	size_t n = strlen(word);
	const char *v;

	if (strncmp(line, word, n) != 0 || line[n] != ':') {
		return false;
	}
	v = skip_blanks(line + n + 1);
	bq_free(*out);
	*out = xstrndup(v, trimmed_len(v, strlen(v)));
	return true;
}

/* Check the placeholders in every text of k. */
static int case_placeholders(struct loader *l, struct kase *k, size_t line)
{
	char err[300];
	int rc = check_placeholders(l->c, k->target, err, sizeof(err));

	for (size_t i = 0; rc == 0 && i < k->req.n; i++) {
		rc = check_placeholders(l->c, k->req.v[i].value, err, sizeof(err));
	}
	for (size_t i = 0; rc == 0 && i < k->expect.n; i++) {
		if (k->expect.v[i].value) {
			rc = check_placeholders(l->c, k->expect.v[i].value, err, sizeof(err));
		}
	}
	for (size_t i = 0; rc == 0 && i < k->n_contains; i++) {
		rc = check_placeholders(l->c, k->contains[i], err, sizeof(err));
	}
	if (rc == 0 && k->body) {
		rc = check_placeholders(l->c, k->body, err, sizeof(err));
	}
	if (rc == 0 && k->json) {
		rc = check_placeholders(l->c, k->json, err, sizeof(err));
	}
	return rc < 0 ? load_error(l, line, "%s", err) : 0;
}

/*
 * One case from l->i up to "===" or the end. 1 with *out (NULL when the part held only
 * blanks and comments), 0 at the end of the file, or -EINVAL with l->err.
 */
static int parse_case(struct loader *l, struct kase **out)
{
	struct kase *k = NULL;
	char *name = NULL;
	const char *s, *sp;
	size_t req_line = 0, start, expect_line = 0;
	size_t i = l->i;
	json_error_t je;
	json_t *v;
	int rc;

	*out = NULL;
	if (i >= l->n_lines) {
		return 0;
	}
	k = bq_calloc(1, sizeof(*k));
	if (!k) {
		snprintf(l->err, sizeof(l->err), "out of memory");
		return -ENOMEM;
	}
	/* Directives and comments, then the request line. */
	for (; i < l->n_lines; i++) {
		s = l->lines[i];
		if (line_is(s, "===")) {
			break;
		}
		if (blank_line(s) || s[0] == '#' || directive(s, "name", &name)) {
			continue;
		}
		if (directive(s, "as", &k->as_user)) {
			sp = strchr(k->as_user, ' ');
			if (sp) {
				k->as_pass = xstrdup(skip_blanks(sp));
				k->as_user[sp - k->as_user] = '\0';
			}
			if (!k->as_user[0]) {
				rc = load_error(l, i + 1, "\"as:\" names no user");
				goto err;
			}
			continue;
		}
		sp = strchr(s, ' ');
		if (!sp || !is_method(s, (size_t)(sp - s)) || sp[1] != '/' || strchr(sp + 1, ' ')) {
			rc = load_error(l, i + 1,
					"expected a request line \"METHOD /path\", got "
					"\"%.80s\"",
					s);
			goto err;
		}
		k->method = xstrndup(s, (size_t)(sp - s));
		k->target = xstrndup(sp + 1, trimmed_len(sp + 1, strlen(sp + 1)));
		req_line = ++i;
		break;
	}
	if (!k->method) {
		/* Only blanks and comments (e.g. after the last "==="). */
		if (name || k->as_user) {
			rc = load_error(l, i, "a case without a request line");
			goto err;
		}
		l->i = i < l->n_lines ? i + 1 : i;
		case_free(k);
		return 1;
	}
	/* Request headers, then the body up to "--- expect". */
	for (; i < l->n_lines; i++) {
		s = l->lines[i];
		if (blank_line(s) || line_is(s, "--- expect") || line_is(s, "===")) {
			break;
		}
		if (s[0] == '#') {
			continue;
		}
		rc = parse_header(l, i + 1, s, &k->req, false);
		if (rc < 0) {
			goto err;
		}
	}
	start = i;
	while (i < l->n_lines && !line_is(l->lines[i], "--- expect") &&
	       !line_is(l->lines[i], "===")) {
		i++;
	}
	if (i >= l->n_lines || !line_is(l->lines[i], "--- expect")) {
		rc = load_error(l, req_line, "no \"--- expect\" for this request");
		goto err;
	}
	if (start < i) {
		/* The blank line that ends the headers is not part of the body. */
		k->body = join_lines(l, start + 1, i, false);
	}
	i++;
	/* The status. */
	while (i < l->n_lines && (blank_line(l->lines[i]) || l->lines[i][0] == '#')) {
		i++;
	}
	if (i >= l->n_lines || line_is(l->lines[i], "===")) {
		rc = load_error(l, i, "no status after \"--- expect\"");
		goto err;
	}
	s = l->lines[i];
	k->status = status_of(s);
	if (k->status < 0 || trimmed_len(s, strlen(s)) != 3) {
		rc = load_error(l, i + 1, "expected a status (100..599), got \"%.80s\"", s);
		goto err;
	}
	i++;
	/* Expected headers and "~ text" lines, then the JSON up to "===". */
	for (; i < l->n_lines; i++) {
		s = l->lines[i];
		/* A JSON object or array may follow the status without a blank line. */
		if (blank_line(s) || line_is(s, "===") || s[0] == '{' || s[0] == '[') {
			break;
		}
		if (s[0] == '#') {
			continue;
		}
		if (s[0] == '~') {
			rc = add_contains(l, i + 1, k, s);
		} else {
			rc = parse_header(l, i + 1, s, &k->expect, true);
		}
		if (rc < 0) {
			goto err;
		}
	}
	start = i;
	while (i < l->n_lines && !line_is(l->lines[i], "===")) {
		if (l->lines[i][0] == '~') {
			rc = load_error(l, i + 1, "\"~ TEXT\" lines go right after the status");
			goto err;
		}
		i++;
	}
	expect_line = start + 1;
	k->json = join_lines(l, start, i, true);
	if (k->json && blank_line(k->json)) {
		bq_free(k->json);
		k->json = NULL;
	}
	if (k->json) {
		/* Placeholders sit inside strings, so the text parses as it is. */
		v = json_loads(k->json, JSON_DECODE_ANY, &je);
		if (!v) {
			rc = load_error(l, expect_line + (size_t)(je.line > 0 ? je.line - 1 : 0),
					"the expected JSON is bad: %s", je.text);
			goto err;
		}
		json_decref(v);
	}
	l->i = i < l->n_lines ? i + 1 : i;
	if (name && name[0]) {
		char label[400];

		snprintf(label, sizeof(label), "%s/%s", l->stem, name);
		k->label = xstrdup(label);
	} else {
		char label[300];

		snprintf(label, sizeof(label), "%s:%zu", l->stem, req_line);
		k->label = xstrdup(label);
	}
	bq_free(name);
	rc = case_placeholders(l, k, req_line);
	if (rc < 0) {
		case_free(k);
		return rc;
	}
	*out = k;
	return 1;
err:
	bq_free(name);
	case_free(k);
	return rc;
}

static int load_file(struct ctx *c, const char *file, char *err, size_t errlen)
{
	struct loader l = {.c = c, .file = file};
	struct kase *k;
	int rc = read_file(&l);

	while (rc == 0) {
		rc = parse_case(&l, &k);
		if (rc <= 0) {
			break;
		}
		if (k) {
			*c->tail = k;
			c->tail = &k->next;
		}
		rc = 0;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s", l.err);
	}
	for (size_t i = 0; i < l.n_lines; i++) {
		bq_free(l.lines[i]);
	}
	bq_free(l.lines);
	return rc;
}

/* ---- command line ---- */

static int parse_url(struct ctx *c, const char *url, char *err, size_t errlen)
{
	const char *p, *colon, *end;
	int64_t port;

	if (strncmp(url, "http://", 7) != 0) {
		snprintf(err, errlen, "BASE_URL must be http://HOST:PORT, not '%.100s'", url);
		return -EINVAL;
	}
	p = url + 7;
	end = p + strcspn(p, "/");
	if (*end && strcmp(end, "/") != 0) {
		snprintf(err, errlen, "BASE_URL must be http://HOST:PORT (no path): '%.100s'", url);
		return -EINVAL;
	}
	if (*p == '[') {
		colon = memchr(p, ']', (size_t)(end - p));
		if (!colon || colon[1] != ':') {
			snprintf(err, errlen, "bad BASE_URL '%.100s'", url);
			return -EINVAL;
		}
		snprintf(c->node, sizeof(c->node), "%.*s", (int)(colon - p - 1), p + 1);
		colon++;
	} else {
		colon = memchr(p, ':', (size_t)(end - p));
		if (!colon) {
			snprintf(err, errlen, "BASE_URL needs a port: '%.100s'", url);
			return -EINVAL;
		}
		snprintf(c->node, sizeof(c->node), "%.*s", (int)(colon - p), p);
	}
	snprintf(c->host, sizeof(c->host), "%.*s", (int)(colon - p), p);
	snprintf(c->port, sizeof(c->port), "%.*s", (int)(end - colon - 1), colon + 1);
	if (!c->node[0] || bq_opt_parse_int(c->port, &port) < 0 || port < 1 || port > 65535) {
		snprintf(err, errlen, "bad host or port in BASE_URL '%.100s'", url);
		return -EINVAL;
	}
	return 0;
}

/* --var NAME=VALUE, or --var-file NAME=PATH (the file's content, trailing blanks cut). */
static int add_var(struct ctx *c, const char *arg, bool from_file, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	char value[VAR_VALUE_MAX + 1];
	size_t n;

	if (!eq || eq == arg || c->n_vars == VARS_MAX) {
		snprintf(err, errlen, "%s: expected NAME=%s (at most %d)",
			 from_file ? "--var-file" : "--var", from_file ? "PATH" : "VALUE",
			 VARS_MAX);
		return -EINVAL;
	}
	for (const char *p = arg; p < eq; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
			snprintf(err, errlen, "bad variable name in '%.100s'", arg);
			return -EINVAL;
		}
	}
	if (from_file) {
		FILE *f = fopen(eq + 1, "rb");

		if (!f) {
			snprintf(err, errlen, "--var-file %.300s: %s", eq + 1, strerror(errno));
			return -errno;
		}
		n = fread(value, 1, sizeof(value), f);
		fclose(f);
		if (n > VAR_VALUE_MAX || memchr(value, '\0', n)) {
			snprintf(err, errlen, "--var-file %.300s: over %d bytes or binary", eq + 1,
				 VAR_VALUE_MAX);
			return -EINVAL;
		}
		value[trimmed_len(value, n)] = '\0';
	} else {
		snprintf(value, sizeof(value), "%s", eq + 1);
	}
	c->vars[c->n_vars].name = xstrndup(arg, (size_t)(eq - arg));
	c->vars[c->n_vars].value = xstrdup(value);
	c->n_vars++;
	return 0;
}

int main(int argc, char **argv)
{
	static struct ctx c;
	char err[800];
	char why[2048];
	int i = 1, total = 0, failed = 0;

	c.tail = &c.cases;
	while (i < argc && strncmp(argv[i], "--", 2) == 0) {
		bool file = strcmp(argv[i], "--var-file") == 0;

		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (strcmp(argv[i], "--help") == 0) {
			printf("%s\n", USAGE);
			return 0;
		}
		if ((!file && strcmp(argv[i], "--var") != 0) || i + 1 >= argc) {
			fprintf(stderr, PROG ": %s\n", USAGE);
			ctx_free(&c);
			return 2;
		}
		if (add_var(&c, argv[i + 1], file, err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			ctx_free(&c);
			return 2;
		}
		i += 2;
	}
	if (argc - i < 2) {
		fprintf(stderr, PROG ": %s\n", USAGE);
		ctx_free(&c);
		return 2;
	}
	if (parse_url(&c, argv[i], err, sizeof(err)) < 0) {
		fprintf(stderr, PROG ": %s\n", err);
		ctx_free(&c);
		return 2;
	}
	/* Every file is read and checked before the first request. */
	for (int f = i + 1; f < argc; f++) {
		if (load_file(&c, argv[f], err, sizeof(err)) < 0) {
			fprintf(stderr, PROG ": %s\n", err);
			ctx_free(&c);
			return 2;
		}
	}
	for (struct kase *k = c.cases; k; k = k->next) {
		total++;
		why[0] = '\0';
		if (run_case(&c, k, why, sizeof(why))) {
			printf("ok %s\n", k->label);
		} else {
			failed++;
			printf("FAIL %s: %s\n", k->label, why);
		}
		fflush(stdout);
	}
	printf("# %d cases: %d ok, %d failed\n", total, total - failed, failed);
	ctx_free(&c);
	return failed ? 1 : 0;
}
