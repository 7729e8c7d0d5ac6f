/* SPDX-License-Identifier: MIT */
#include "core/opt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"

/* A config file is a few dozen lines; anything near this is a wrong path, not a config. */
#define OPT_FILE_MAX (1024 * 1024)
/* Long enough for any reason we compose; the caller's err buffer truncates further. */
#define OPT_REASON_MAX 512

/*
 * State of one bq_opt_parse run. list_fresh[i] stays true while LIST entry i still holds
 * only its default, so the first explicit use replaces the default instead of adding to
 * it. NULL outside bq_opt_parse: bq_opt_set and bq_opt_load_file then simply append.
 */
struct opt_ctx {
	const struct bq_opt *table;
	void *cfg;
	bool *list_fresh;
	bool in_file; /* a config file may not name another one */
};

static void errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void *field(const struct bq_opt *o, void *cfg)
{
	return (char *)cfg + o->offset;
}

static size_t table_len(const struct bq_opt *table)
{
	size_t n = 0;

	while (table[n].name) {
		n++;
	}
	return n;
}

static const struct bq_opt *find_long(const struct bq_opt *table, const char *name, size_t len)
{
	for (const struct bq_opt *o = table; o->name; o++) {
		if (strlen(o->name) == len && memcmp(o->name, name, len) == 0) {
			return o;
		}
	}
	return NULL;
}

static const struct bq_opt *find_short(const struct bq_opt *table, char c)
{
	for (const struct bq_opt *o = table; o->name; o++) {
		if (o->short_name && o->short_name == c) {
			return o;
		}
	}
	return NULL;
}

static const struct bq_opt *find_positional(const struct bq_opt *table, int pos)
{
	for (const struct bq_opt *o = table; o->name; o++) {
		if (o->positional == pos) {
			return o;
		}
	}
	return NULL;
}

static int max_positional(const struct bq_opt *table)
{
	int n = 0;

	for (const struct bq_opt *o = table; o->name; o++) {
		if (o->positional > n) {
			n = o->positional;
		}
	}
	return n;
}

int bq_opt_parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	/* strtoll would skip leading blanks silently; a config value " 80" is a typo. */
	if (!s || !*s || isspace((unsigned char)*s)) {
		return -EINVAL;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0') {
		return -EINVAL;
	}
	if (errno == ERANGE) {
		return -ERANGE;
	}
	if (errno != 0) {
		return -EINVAL;
	}
	*out = (int64_t)v;
	return 0;
}

int bq_opt_parse_duration(const char *s, uint64_t *ms_out)
{
	uint64_t v = 0, unit;
	const char *p = s;

	if (!s || !isdigit((unsigned char)*s)) {
		return -EINVAL;
	}
	/* Digits by hand: strtoull would accept blanks and a minus sign and wrap negatives. */
	for (; isdigit((unsigned char)*p); p++) {
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v)) {
			return -ERANGE;
		}
	}
	if (*p == '\0' || strcmp(p, "ms") == 0) {
		unit = 1;
	} else if (strcmp(p, "s") == 0) {
		unit = 1000;
	} else if (strcmp(p, "m") == 0) {
		unit = 60 * 1000;
	} else if (strcmp(p, "h") == 0) {
		unit = 60 * 60 * 1000;
	} else {
		return -EINVAL;
	}
	if (__builtin_mul_overflow(v, unit, &v)) {
		return -ERANGE;
	}
	*ms_out = v;
	return 0;
}

/* Render milliseconds in the largest unit that divides them, as a user would write it. */
static void fmt_duration(uint64_t ms, char *out, size_t cap)
{
	if (ms && ms % 3600000 == 0) {
		snprintf(out, cap, "%" PRIu64 "h", ms / 3600000);
	} else if (ms && ms % 60000 == 0) {
		snprintf(out, cap, "%" PRIu64 "m", ms / 60000);
	} else if (ms && ms % 1000 == 0) {
		snprintf(out, cap, "%" PRIu64 "s", ms / 1000);
	} else {
		snprintf(out, cap, "%" PRIu64 "ms", ms);
	}
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static bool bounded(const struct bq_opt *o)
{
	return o->min != 0 || o->max != 0;
}

static int run_check(const struct bq_opt *o, const char *value, char *reason, size_t rlen)
{
	char cerr[OPT_REASON_MAX];
	int r;

	if (!o->check) {
		return 0;
	}
	cerr[0] = '\0';
	r = o->check(value, cerr, sizeof(cerr));
	if (r < 0) {
		errf(reason, rlen, "%s", cerr[0] ? cerr : "invalid value");
		return r;
	}
	return 0;
}

static void list_choices(const struct bq_opt *o, char *out, size_t cap, const char *sep)
{
	size_t pos = 0;

	out[0] = '\0';
	for (size_t i = 0; o->choices && o->choices[i]; i++) {
		int n = snprintf(out + pos, cap - pos, "%s%s", i ? sep : "", o->choices[i]);

		if (n < 0 || (size_t)n >= cap - pos) {
			break;
		}
		pos += (size_t)n;
	}
}

static int list_append(struct bq_strlist *l, const char *value)
{
	char *copy = bq_strdup(value);
	char **v;

	if (!copy) {
		return -ENOMEM;
	}
	v = bq_realloc(l->v, (l->n + 1) * sizeof(*v));
	if (!v) {
		bq_free(copy);
		return -ENOMEM;
	}
	v[l->n++] = copy;
	l->v = v;
	return 0;
}

static void list_clear(struct bq_strlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		bq_free(l->v[i]);
	}
	bq_free(l->v);
	l->v = NULL;
	l->n = 0;
}

/*
 * Store one textual value into cfg. On failure the field is unchanged and reason holds
 * the problem without the option name (callers prefix "--name: " or "file:line: name: ").
 */
static int apply_value(struct opt_ctx *ctx, const struct bq_opt *o, const char *value,
		       char *reason, size_t rlen)
{
	void *f = field(o, ctx->cfg);
	char a[32], b[32];
	int r;

	switch (o->type) {
	case BQ_OPT_BOOL: {
		bool v;

		if (parse_bool(value, &v) < 0) {
			errf(reason, rlen, "'%s' is not a boolean (true/false, yes/no, 1/0)",
			     value);
			return -EINVAL;
		}
		*(bool *)f = v;
		return 0;
	}
	case BQ_OPT_INT: {
		int64_t v;

		r = bq_opt_parse_int(value, &v);
		if (r == -ERANGE) {
			errf(reason, rlen, "%s is out of range", value);
			return -EINVAL;
		}
		if (r < 0) {
			errf(reason, rlen, "'%s' is not a whole number", value);
			return -EINVAL;
		}
		if (bounded(o) && v < o->min) {
			errf(reason, rlen, "%s is below the minimum %" PRId64, value, o->min);
			return -EINVAL;
		}
		if (bounded(o) && v > o->max) {
			errf(reason, rlen, "%s is above the maximum %" PRId64, value, o->max);
			return -EINVAL;
		}
		*(int64_t *)f = v;
		return 0;
	}
	case BQ_OPT_DURATION: {
		uint64_t v;

		r = bq_opt_parse_duration(value, &v);
		if (r == -ERANGE) {
			errf(reason, rlen, "%s is too long a duration", value);
			return -EINVAL;
		}
		if (r < 0) {
			errf(reason, rlen, "'%s' is not a duration (e.g. 250ms, 10s, 5m)", value);
			return -EINVAL;
		}
		if (bounded(o) && (o->min > 0 && v < (uint64_t)o->min)) {
			fmt_duration((uint64_t)o->min, a, sizeof(a));
			errf(reason, rlen, "%s is below the minimum %s", value, a);
			return -EINVAL;
		}
		if (bounded(o) && (o->max < 0 || v > (uint64_t)o->max)) {
			fmt_duration(o->max < 0 ? 0 : (uint64_t)o->max, b, sizeof(b));
			errf(reason, rlen, "%s is above the maximum %s", value, b);
			return -EINVAL;
		}
		*(uint64_t *)f = v;
		return 0;
	}
	case BQ_OPT_STRING: {
		char *copy;

		r = run_check(o, value, reason, rlen);
		if (r < 0) {
			return -EINVAL;
		}
		copy = bq_strdup(value);
		if (!copy) {
			errf(reason, rlen, "out of memory");
			return -ENOMEM;
		}
		bq_free(*(char **)f);
		*(char **)f = copy;
		return 0;
	}
	case BQ_OPT_ENUM: {
		char choices[OPT_REASON_MAX / 2];

		for (int i = 0; o->choices && o->choices[i]; i++) {
			if (strcmp(value, o->choices[i]) == 0) {
				*(int *)f = i;
				return 0;
			}
		}
		list_choices(o, choices, sizeof(choices), ", ");
		errf(reason, rlen, "'%s' is not one of: %s", value, choices);
		return -EINVAL;
	}
	case BQ_OPT_LIST: {
		struct bq_strlist *l = f;
		size_t idx = (size_t)(o - ctx->table);

		r = run_check(o, value, reason, rlen);
		if (r < 0) {
			return -EINVAL;
		}
		if (ctx->list_fresh && ctx->list_fresh[idx]) {
			list_clear(l);
			ctx->list_fresh[idx] = false;
		}
		r = list_append(l, value);
		if (r < 0) {
			errf(reason, rlen, "out of memory");
		}
		return r;
	}
	case BQ_OPT_CONFIG:
		break;
	}
	errf(reason, rlen, "cannot be set this way");
	return -EINVAL;
}

static int load_file(struct opt_ctx *ctx, const char *path, bool missing_ok, char *err,
		     size_t errlen);

/* Set o from text; err gets "PREFIX: reason". CONFIG entries load their file. */
static int set_one(struct opt_ctx *ctx, const struct bq_opt *o, const char *value,
		   const char *prefix, char *err, size_t errlen)
{
	char reason[OPT_REASON_MAX];
	int r;

	if (o->type == BQ_OPT_CONFIG) {
		if (ctx->in_file) {
			errf(err, errlen, "%s: a config file cannot name another config file",
			     prefix);
			return -EINVAL;
		}
		return load_file(ctx, value, false, err, errlen);
	}
	r = apply_value(ctx, o, value, reason, sizeof(reason));
	if (r < 0) {
		errf(err, errlen, "%s: %s", prefix, reason);
	}
	return r;
}

static char *trim(char *s, char *end)
{
	while (s < end && isspace((unsigned char)*s)) {
		s++;
	}
	while (end > s && isspace((unsigned char)end[-1])) {
		end--;
	}
	*end = '\0';
	return s;
}

/* Read all of fd into b; err names path on failure. */
static int read_fd(int fd, const char *path, struct bq_buf *b, char *err, size_t errlen)
{
	int r;

	for (;;) {
		uint8_t *p = bq_buf_reserve(b, 4096, &r);
		ssize_t n = 0;

		if (!p && r == -EMSGSIZE && b->len < b->max) {
			/* A short last chunk may still fit under the limit. */
			p = bq_buf_reserve(b, b->max - b->len, &r);
		}
		if (!p && r == -EMSGSIZE) {
			/* Full: a file of exactly the limit is fine if nothing follows. */
			char probe;

			do {
				n = read(fd, &probe, 1);
			} while (n < 0 && errno == EINTR);
			if (n == 0) {
				return 0;
			}
		}
		if (!p) {
			if (r == -EMSGSIZE) {
				errf(err, errlen, "%s: larger than %d bytes", path, OPT_FILE_MAX);
			} else {
				errf(err, errlen, "%s: out of memory", path);
			}
			return r;
		}
		n = read(fd, p, b->cap - 1 - b->len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			r = -errno;
			errf(err, errlen, "%s: %s", path, strerror(errno));
			return r;
		}
		if (n == 0) {
			return 0;
		}
		bq_buf_commit(b, (size_t)n);
	}
}

static int load_file(struct opt_ctx *ctx, const char *path, bool missing_ok, char *err,
		     size_t errlen)
{
	struct bq_buf b;
	char *line, *end;
	bool was_in_file = ctx->in_file;
	unsigned lineno = 0;
	int fd, r;

	bq_buf_init(&b, OPT_FILE_MAX);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (missing_ok && r == -ENOENT) {
			return 0;
		}
		errf(err, errlen, "cannot read config file '%s': %s", path, strerror(-r));
		return r;
	}
	r = read_fd(fd, path, &b, err, errlen);
	close(fd);
	if (r < 0) {
		goto out;
	}
	if (memchr(bq_buf_cstr(&b), '\0', b.len)) {
		errf(err, errlen, "%s: not a text file (contains a NUL byte)", path);
		r = -EINVAL;
		goto out;
	}
	ctx->in_file = true;
	line = (char *)b.data;
	end = line ? line + b.len : NULL;
	while (line && line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		char *stop = nl ? nl : end;
		char *eq, *name, *value;
		const struct bq_opt *o;
		char prefix[512];

		lineno++;
		eq = memchr(line, '=', (size_t)(stop - line));
		name = trim(line, eq ? eq : stop);
		if ((!*name && !eq) || *name == '#') {
			line = stop + 1;
			continue;
		}
		if (!eq || !*name) {
			errf(err, errlen, "%s:%u: expected 'name = value'", path, lineno);
			r = -EINVAL;
			goto out;
		}
		value = trim(eq + 1, stop);
		/* Quotes keep leading or trailing blanks; they are not part of the value. */
		if (strlen(value) >= 2 && value[0] == '"' && value[strlen(value) - 1] == '"') {
			value[strlen(value) - 1] = '\0';
			value++;
		}
		o = find_long(ctx->table, name, strlen(name));
		if (!o) {
			errf(err, errlen, "%s:%u: unknown option '%s'", path, lineno, name);
			r = -EINVAL;
			goto out;
		}
		snprintf(prefix, sizeof(prefix), "%s:%u: %s", path, lineno, o->name);
		r = set_one(ctx, o, value, prefix, err, errlen);
		if (r < 0) {
			goto out;
		}
		line = stop + 1;
	}
	r = 0;
out:
	ctx->in_file = was_in_file;
	bq_buf_free(&b);
	return r;
}

int bq_opt_load_file(const struct bq_opt *table, void *cfg, const char *path, char *err,
		     size_t errlen)
{
	struct opt_ctx ctx = { .table = table, .cfg = cfg };

	return load_file(&ctx, path, false, err, errlen);
}

int bq_opt_set(const struct bq_opt *table, void *cfg, const char *name, const char *value,
	       char *err, size_t errlen)
{
	struct opt_ctx ctx = { .table = table, .cfg = cfg };
	const struct bq_opt *o = find_long(table, name, strlen(name));
	char prefix[160];

	if (!o) {
		errf(err, errlen, "unknown option --%s", name);
		return -EINVAL;
	}
	snprintf(prefix, sizeof(prefix), "--%s", o->name);
	return set_one(&ctx, o, value, prefix, err, errlen);
}

void bq_opt_free(const struct bq_opt *table, void *cfg)
{
	for (const struct bq_opt *o = table; o->name; o++) {
		if (o->type == BQ_OPT_STRING) {
			char **s = field(o, cfg);

			bq_free(*s);
			*s = NULL;
		} else if (o->type == BQ_OPT_LIST) {
			list_clear(field(o, cfg));
		}
	}
}

int bq_opt_defaults(const struct bq_opt *table, void *cfg, char *err, size_t errlen)
{
	struct opt_ctx ctx = { .table = table, .cfg = cfg };
	char reason[OPT_REASON_MAX];

	bq_opt_free(table, cfg);
	for (const struct bq_opt *o = table; o->name; o++) {
		void *f = field(o, cfg);
		int r;

		switch (o->type) {
		case BQ_OPT_BOOL:
			*(bool *)f = false;
			break;
		case BQ_OPT_INT:
			*(int64_t *)f = 0;
			break;
		case BQ_OPT_DURATION:
			*(uint64_t *)f = 0;
			break;
		case BQ_OPT_ENUM:
			*(int *)f = 0;
			break;
		case BQ_OPT_STRING:
		case BQ_OPT_LIST:
		case BQ_OPT_CONFIG:
			break;
		}
		if (!o->def || o->type == BQ_OPT_CONFIG) {
			continue;
		}
		r = apply_value(&ctx, o, o->def, reason, sizeof(reason));
		if (r < 0) {
			errf(err, errlen, "--%s: bad default: %s", o->name, reason);
			return r;
		}
	}
	return 0;
}

/* One command-line item after tokenising: which entry, and its text. */
struct opt_tok {
	const struct bq_opt *o;
	const char *value; /* borrowed from argv or a literal */
	char label[64];    /* "--name" as the user wrote it, for messages */
};

/*
 * Split argv into tokens without touching cfg, so the config file can be loaded first
 * and --help works even when the rest of the line (or the config file) is wrong.
 * Returns the number of tokens, 0 tokens are fine; -EINVAL with err; or OPT_HELP_REQUESTED
 * for --help, OPT_HELP_MARKDOWN for --help-markdown.
 */
#define OPT_HELP_REQUESTED (1 << 30)
#define OPT_HELP_MARKDOWN ((1 << 30) + 1)

static int tokenize(const struct bq_opt *table, int argc, char **argv, struct opt_tok *toks,
		    char *err, size_t errlen)
{
	int ntok = 0, npos = 0, maxpos = max_positional(table);
	bool options_done = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		struct opt_tok *t = &toks[ntok];

		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			const struct bq_opt *o = find_positional(table, ++npos);

			if (!o) {
				if (maxpos) {
					errf(err, errlen,
					     "unexpected argument '%s' (at most %d positional "
					     "arguments; see --help)",
					     arg, maxpos);
				} else {
					errf(err, errlen,
					     "unexpected argument '%s' (see --help)", arg);
				}
				return -EINVAL;
			}
			t->o = o;
			t->value = arg;
			snprintf(t->label, sizeof(t->label), "--%s", o->name);
			ntok++;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if (arg[1] == '-') {
			const char *name = arg + 2;
			const char *eq = strchr(name, '=');
			size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
			const struct bq_opt *o = find_long(table, name, nlen);
			bool negated = false;

			if (!o && nlen > 3 && memcmp(name, "no-", 3) == 0) {
				o = find_long(table, name + 3, nlen - 3);
				if (o && o->type != BQ_OPT_BOOL) {
					o = NULL;
				}
				negated = o != NULL;
			}
			if (!o && nlen == 4 && memcmp(name, "help", 4) == 0) {
				return OPT_HELP_REQUESTED;
			}
			/* The option table as Markdown, for the generated configuration docs. */
			if (!o && nlen == 13 && memcmp(name, "help-markdown", 13) == 0) {
				return OPT_HELP_MARKDOWN;
			}
			if (!o) {
				errf(err, errlen, "unknown option --%.*s (see --help)", (int)nlen,
				     name);
				return -EINVAL;
			}
			snprintf(t->label, sizeof(t->label), "--%.*s", (int)nlen, name);
			t->o = o;
			if (negated) {
				if (eq) {
					errf(err, errlen, "%s: takes no value", t->label);
					return -EINVAL;
				}
				t->value = "false";
			} else if (eq) {
				t->value = eq + 1;
			} else if (o->type == BQ_OPT_BOOL) {
				t->value = "true";
			} else if (i + 1 < argc &&
				   !(argv[i + 1][0] == '-' && argv[i + 1][1] == '-' &&
				     argv[i + 1][2] != '\0')) {
				/* "--odin --api-port 1" is a forgotten value, not an odd one. */
				t->value = argv[++i];
			} else {
				errf(err, errlen, "%s: missing value", t->label);
				return -EINVAL;
			}
			ntok++;
			continue;
		}
		/* Short options, bundled like getopt: -vq, -p8001, -p 8001. */
		for (const char *p = arg + 1; *p; p++) {
			const struct bq_opt *o = find_short(table, *p);

			if (!o && *p == 'h') {
				return OPT_HELP_REQUESTED;
			}
			if (!o) {
				errf(err, errlen, "unknown option -%c (see --help)", *p);
				return -EINVAL;
			}
			t = &toks[ntok];
			t->o = o;
			snprintf(t->label, sizeof(t->label), "-%c", *p);
			if (o->type == BQ_OPT_BOOL) {
				t->value = "true";
				ntok++;
				continue;
			}
			if (p[1]) {
				t->value = p + 1;
			} else if (i + 1 < argc) {
				t->value = argv[++i];
			} else {
				errf(err, errlen, "%s: missing value", t->label);
				return -EINVAL;
			}
			ntok++;
			break;
		}
	}
	return ntok;
}

int bq_opt_parse(const struct bq_opt *table, void *cfg, int argc, char **argv,
		 const char *program, const char *synopsis, char *err, size_t errlen)
{
	struct opt_ctx ctx = { .table = table, .cfg = cfg };
	struct opt_tok *toks = NULL;
	const struct bq_opt *config = NULL;
	bool config_given = false;
	int ntok, r;

	if (err && errlen) {
		err[0] = '\0';
	}
	r = bq_opt_defaults(table, cfg, err, errlen);
	if (r < 0) {
		return r;
	}
	/* Bundled short flags make at most one token per character. */
	{
		size_t cap = 1;

		for (int i = 1; i < argc; i++) {
			cap += strlen(argv[i]) + 1;
		}
		toks = bq_calloc(cap, sizeof(*toks));
	}
	ctx.list_fresh = bq_calloc(table_len(table) + 1, sizeof(bool));
	if (!toks || !ctx.list_fresh) {
		errf(err, errlen, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; table[i].name; i++) {
		ctx.list_fresh[i] = true;
		if (table[i].type == BQ_OPT_CONFIG) {
			config = &table[i];
		}
	}
	ntok = tokenize(table, argc, argv, toks, err, errlen);
	if (ntok == OPT_HELP_REQUESTED) {
		bq_opt_print_help(table, stdout, program, synopsis);
		r = 1;
		goto out;
	}
	if (ntok == OPT_HELP_MARKDOWN) {
		bq_opt_print_markdown(table, stdout);
		r = 1;
		goto out;
	}
	if (ntok < 0) {
		r = ntok;
		goto out;
	}
	/* The config file comes first wherever it appears, so the command line wins. */
	for (int i = 0; i < ntok; i++) {
		if (toks[i].o->type != BQ_OPT_CONFIG) {
			continue;
		}
		config_given = true;
		r = set_one(&ctx, toks[i].o, toks[i].value, toks[i].label, err, errlen);
		if (r < 0) {
			goto out;
		}
	}
	if (!config_given && config && config->def) {
		/* A default path is a suggestion: its absence is not an error. */
		r = load_file(&ctx, config->def, true, err, errlen);
		if (r < 0) {
			goto out;
		}
	}
	for (int i = 0; i < ntok; i++) {
		if (toks[i].o->type == BQ_OPT_CONFIG) {
			continue;
		}
		r = set_one(&ctx, toks[i].o, toks[i].value, toks[i].label, err, errlen);
		if (r < 0) {
			goto out;
		}
	}
	r = 0;
out:
	if (r < 0 && r != -ENOMEM) {
		r = -EINVAL;
	}
	bq_free(toks);
	bq_free(ctx.list_fresh);
	return r;
}

static const char *metavar(const struct bq_opt *o, char *buf, size_t cap)
{
	if (o->metavar) {
		return o->metavar;
	}
	switch (o->type) {
	case BQ_OPT_BOOL:
		return "";
	case BQ_OPT_INT:
		return "N";
	case BQ_OPT_DURATION:
		return "DURATION";
	case BQ_OPT_ENUM: {
		char choices[200];

		list_choices(o, choices, sizeof(choices), "|");
		snprintf(buf, cap, "{%s}", choices);
		return buf;
	}
	case BQ_OPT_CONFIG:
		return "FILE";
	case BQ_OPT_STRING:
	case BQ_OPT_LIST:
		break;
	}
	return "VALUE";
}

/* Stands for a blank the wrapper must not break at: "(default: X)" stays together. */
#define HELP_NBSP '\x1f'

static bool bool_default_true(const struct bq_opt *o)
{
	bool v = false;

	return o->type == BQ_OPT_BOOL && o->def && parse_bool(o->def, &v) == 0 && v;
}

/* "  -p, --api-port PORT" or "      --[no-]color" */
static void help_left(const struct bq_opt *o, char *out, size_t cap)
{
	char mbuf[220];
	const char *mv = metavar(o, mbuf, sizeof(mbuf));
	char shortpart[8];

	if (o->short_name) {
		snprintf(shortpart, sizeof(shortpart), "-%c, ", o->short_name);
	} else {
		snprintf(shortpart, sizeof(shortpart), "    ");
	}
	snprintf(out, cap, "  %s--%s%s%s%s", shortpart, bool_default_true(o) ? "[no-]" : "",
		 o->name, *mv ? " " : "", mv);
}

static void help_right(const struct bq_opt *o, char *out, size_t cap)
{
	char pos[48] = "";
	char def[160] = "";

	if (o->positional) {
		snprintf(pos, sizeof(pos), " [argument%c%d]", HELP_NBSP, o->positional);
	}
	if (o->def && *o->def && !(o->type == BQ_OPT_BOOL && !bool_default_true(o))) {
		snprintf(def, sizeof(def), " (default:%c%s)", HELP_NBSP, o->def);
	}
	snprintf(out, cap, "%s%s%s", o->help ? o->help : "", pos, def);
}

/* Past this the help text goes on its own line rather than pushing everything right. */
#define HELP_COL_MAX 34
/* Help is wrapped to this width, the width the code itself is written to. */
#define HELP_WIDTH 100

static void put_seg(FILE *out, const char *text, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		fputc(text[i] == HELP_NBSP ? ' ' : text[i], out);
	}
}

/* Print text from column col (the cursor is already there), wrapping at blanks. */
static void print_wrapped(FILE *out, const char *text, size_t col)
{
	size_t width = HELP_WIDTH > col + 30 ? HELP_WIDTH - col : 30;

	while (strlen(text) > width) {
		size_t cut = width;

		while (cut > 0 && text[cut] != ' ') {
			cut--;
		}
		if (cut == 0) {
			/* One word longer than the column: let it overflow rather than split it. */
			cut = strcspn(text, " ");
			if (!text[cut]) {
				break;
			}
		}
		put_seg(out, text, cut);
		fprintf(out, "\n%*s", (int)col, "");
		text += cut + 1;
	}
	put_seg(out, text, strlen(text));
	fputc('\n', out);
}

void bq_opt_print_help(const struct bq_opt *table, FILE *out, const char *program,
		       const char *synopsis)
{
	char left[512], right[1024];
	size_t col = strlen("  -h, --help");

	for (const struct bq_opt *o = table; o->name; o++) {
		help_left(o, left, sizeof(left));
		if (strlen(left) > col && strlen(left) <= HELP_COL_MAX) {
			col = strlen(left);
		}
	}
	col += 2;
	fprintf(out, "Usage: %s%s%s\n", program ? program : "", synopsis ? " " : "",
		synopsis ? synopsis : "");
	fprintf(out, "\nOptions:\n");
	for (const struct bq_opt *o = table; o->name; o++) {
		help_left(o, left, sizeof(left));
		help_right(o, right, sizeof(right));
		if (strlen(left) + 2 > col) {
			fprintf(out, "%s\n%*s", left, (int)col, "");
		} else {
			fprintf(out, "%-*s", (int)col, left);
		}
		print_wrapped(out, right, col);
	}
	if (!find_long(table, "help", 4)) {
		fprintf(out, "%-*s%s\n", (int)col,
			find_short(table, 'h') ? "      --help" : "  -h, --help",
			"show this help and exit");
	}
}

/* Table cells cannot hold a raw '|' or a newline. */
static void md_text(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '|') {
			fputs("\\|", out);
		} else if (*s == '\n') {
			fputc(' ', out);
		} else {
			fputc(*s, out);
		}
	}
}

void bq_opt_print_markdown(const struct bq_opt *table, FILE *out)
{
	fprintf(out, "| option | default | meaning |\n");
	fprintf(out, "|---|---|---|\n");
	for (const struct bq_opt *o = table; o->name; o++) {
		char mbuf[220], range[96] = "";
		const char *mv = metavar(o, mbuf, sizeof(mbuf));

		fputs("| ", out);
		if (o->short_name) {
			fprintf(out, "`-%c`, ", o->short_name);
		}
		fprintf(out, "`--%s%s%s", bool_default_true(o) ? "[no-]" : "", o->name,
			*mv ? " " : "");
		md_text(out, mv);
		fputs("`", out);
		if (o->positional) {
			fprintf(out, " (argument %d)", o->positional);
		}
		fputs(" | ", out);
		if (o->def && *o->def) {
			fputs("`", out);
			md_text(out, o->def);
			fputs("`", out);
		} else {
			fputs("—", out);
		}
		fputs(" | ", out);
		md_text(out, o->help ? o->help : "");
		if (o->type == BQ_OPT_INT && bounded(o)) {
			snprintf(range, sizeof(range), " (%" PRId64 " to %" PRId64 ")", o->min,
				 o->max);
		} else if (o->type == BQ_OPT_DURATION && bounded(o)) {
			char a[32], b[32];

			fmt_duration(o->min > 0 ? (uint64_t)o->min : 0, a, sizeof(a));
			fmt_duration(o->max > 0 ? (uint64_t)o->max : 0, b, sizeof(b));
			snprintf(range, sizeof(range), " (%s to %s)", a, b);
		}
		fprintf(out, "%s |\n", range);
	}
}
