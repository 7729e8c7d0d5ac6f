/* SPDX-License-Identifier: MIT */
#include "core/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

/*
 * A line, newline included, never exceeds this: it lives on the stack (no allocation
 * while logging an out-of-memory error) and stays below PIPE_BUF, so one write() to a
 * pipe or journald's stream socket is never interleaved with another process's line.
 */
#define LOG_LINE_MAX 2048

struct bq_log {
	char *program;          /* owned */
	enum bq_log_level level;
	char *debug_modules;    /* owned, normalised "a,b,c"; NULL = none */
	bool debug_all;
	bq_log_sink_cb sink;    /* NULL = stderr */
	void *sink_data;        /* borrowed */
};

static const char *const level_names[] = {
	[BQ_LOG_ERROR] = "error",
	[BQ_LOG_WARN] = "warn",
	[BQ_LOG_INFO] = "info",
	[BQ_LOG_DEBUG] = "debug",
};

struct bq_log *bq_log_new(const char *program)
{
	struct bq_log *log = bq_calloc(1, sizeof(*log));

	if (!log) {
		return NULL;
	}
	log->program = bq_strdup(program ? program : "blueq");
	if (!log->program) {
		bq_free(log);
		return NULL;
	}
	log->level = BQ_LOG_INFO;
	return log;
}

void bq_log_free(struct bq_log *log)
{
	if (!log) {
		return;
	}
	bq_free(log->program);
	bq_free(log->debug_modules);
	bq_free(log);
}

void bq_log_set_level(struct bq_log *log, enum bq_log_level level)
{
	if (!log) {
		return;
	}
	if (level > BQ_LOG_DEBUG) {
		level = BQ_LOG_DEBUG;
	}
	log->level = level;
}

int bq_log_level_parse(const char *s, enum bq_log_level *out)
{
	if (!s) {
		return -EINVAL;
	}
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum bq_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool is_list_space(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * Keep a normalised copy (no blanks, no empty items) so bq_log_enabled is a plain token
 * scan; "all" anywhere in the list turns on every module.
 */
int bq_log_set_debug_modules(struct bq_log *log, const char *list)
{
	char *norm;
	size_t n = 0;
	bool all = false;

	if (!log) {
		return 0;
	}
	if (!list || !*list) {
		bq_free(log->debug_modules);
		log->debug_modules = NULL;
		log->debug_all = false;
		return 0;
	}
	norm = bq_malloc(strlen(list) + 1);
	if (!norm) {
		return -ENOMEM;
	}
	for (const char *p = list; *p;) {
		const char *start, *end;

		while (*p == ',' || is_list_space(*p)) {
			p++;
		}
		start = p;
		while (*p && *p != ',') {
			p++;
		}
		end = p;
		while (end > start && is_list_space(end[-1])) {
			end--;
		}
		if (end == start) {
			continue;
		}
		if ((size_t)(end - start) == 3 && memcmp(start, "all", 3) == 0) {
			all = true;
		}
		if (n) {
			norm[n++] = ',';
		}
		memcpy(norm + n, start, (size_t)(end - start));
		n += (size_t)(end - start);
	}
	norm[n] = '\0';
	bq_free(log->debug_modules);
	log->debug_modules = n ? norm : NULL;
	if (!n) {
		bq_free(norm);
	}
	log->debug_all = all;
	return 0;
}

void bq_log_set_sink(struct bq_log *log, bq_log_sink_cb cb, void *user_data)
{
	if (!log) {
		return;
	}
	log->sink = cb;
	log->sink_data = user_data;
}

static bool module_listed(const char *list, const char *module)
{
	size_t mlen = strlen(module);

	for (const char *p = list; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		if (len == mlen && memcmp(p, module, len) == 0) {
			return true;
		}
		if (!comma) {
			break;
		}
		p = comma + 1;
	}
	return false;
}

int bq_log_enabled(const struct bq_log *log, enum bq_log_level level, const char *module)
{
	if (!log) {
		return 0;
	}
	if (level <= log->level) {
		return 1;
	}
	if (level != BQ_LOG_DEBUG) {
		return 0;
	}
	if (log->debug_all) {
		return 1;
	}
	return log->debug_modules && module && module_listed(log->debug_modules, module);
}

static size_t format_ts(char *out, size_t cap)
{
	uint64_t ms = bq_wall_ms();
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;
	int r;

	if (!gmtime_r(&secs, &tm)) {
		memset(&tm, 0, sizeof(tm));
	}
	n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(out + n, cap - n, ".%03uZ", (unsigned)(ms % 1000));
	return r > 0 ? n + (size_t)r : n;
}

/* Step back so a truncated line does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len)
{
	size_t cut = len;

	while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80) {
		cut--;
	}
	return cut;
}

static void write_all_once(const char *p, size_t n)
{
	ssize_t r;

	/* One write per line keeps lines whole; retry only if nothing went out. */
	do {
		r = write(STDERR_FILENO, p, n);
	} while (r < 0 && errno == EINTR);
}

void bq_log_vwrite(struct bq_log *log, enum bq_log_level level, const char *module,
		   const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX + 1];
	char ts[40];
	size_t len, max_body = LOG_LINE_MAX - 1; /* room for the newline */
	int n;
	int saved_errno = errno;

	if (!bq_log_enabled(log, level, module)) {
		return;
	}
	if (level > BQ_LOG_DEBUG) {
		level = BQ_LOG_DEBUG;
	}
	format_ts(ts, sizeof(ts));
	/* Format one byte past the limit so utf8_cut can see what follows the cut. */
	n = snprintf(line, max_body + 2, "ts=%s level=%s prog=%s mod=%s ", ts,
		     level_names[level], log->program, module && *module ? module : "-");
	len = n < 0 ? 0 : (size_t)n;
	if (len < max_body) {
		n = vsnprintf(line + len, max_body + 2 - len, fmt, ap);
		if (n > 0) {
			len += (size_t)n;
		}
	}
	if (len > max_body) {
		len = utf8_cut(line, max_body);
	}
	/* One record per line, whatever the caller formatted: no forged lines in the log. */
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\n' || line[i] == '\r') {
			line[i] = ' ';
		}
	}
	/* A tail with no key=value pairs must not leave a trailing blank. */
	while (len > 0 && line[len - 1] == ' ') {
		len--;
	}
	if (log->sink) {
		line[len] = '\0';
		log->sink(log->sink_data, level, line);
	} else {
		line[len] = '\n';
		write_all_once(line, len + 1);
	}
	errno = saved_errno;
}

void bq_log_write(struct bq_log *log, enum bq_log_level level, const char *module,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bq_log_vwrite(log, level, module, fmt, ap);
	va_end(ap);
}

static bool needs_quote(const char *v)
{
	if (!*v) {
		return true;
	}
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) {
			return true;
		}
	}
	return false;
}

/*
 * Truncation never cuts an escape in half and always keeps the closing quote, so a
 * shortened value is still one well-formed token.
 */
const char *bq_log_quote(const char *value, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (!out || cap == 0) {
		return out;
	}
	if (!value) {
		value = "";
	}
	if (!needs_quote(value)) {
		size_t n = strlen(value);

		if (n > cap - 1) {
			n = cap - 1;
		}
		memcpy(out, value, n);
		out[n] = '\0';
		return out;
	}
	if (cap < 3) {
		out[0] = '\0';
		return out;
	}
	out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		char esc[4];
		size_t elen;

		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			elen = 2;
		} else if (*p == '\n') {
			memcpy(esc, "\\n", 2);
			elen = 2;
		} else if (*p == '\t') {
			memcpy(esc, "\\t", 2);
			elen = 2;
		} else if (*p < ' ' || *p == 0x7f) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[*p >> 4];
			esc[3] = hex[*p & 0xf];
			elen = 4;
		} else {
			esc[0] = (char)*p;
			elen = 1;
		}
		if (o + elen + 2 > cap) {
			break;
		}
		memcpy(out + o, esc, elen);
		o += elen;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
