/* SPDX-License-Identifier: MIT */
/*
 * log: key=value lines with a level, one logger per program. Library modules never
 * print: they take the struct bq_log * their owner gives them (NULL = silent) and log
 * through it, the way BlueZ's shared code logs through a debug callback.
 *
 * Line format (stderr by default, journald-friendly):
 *   ts=2026-11-25T10:00:00.123Z level=info prog=blueq-node mod=node msg="attach" user_id=alice
 * Callers pass the key=value tail already formatted; bq_log_quote() helps with
 * values that may hold spaces or quotes. Secrets are never passed to the logger.
 */
#ifndef BQ_CORE_LOG_H
#define BQ_CORE_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum bq_log_level {
	BQ_LOG_ERROR = 0,
	BQ_LOG_WARN = 1,
	BQ_LOG_INFO = 2,
	BQ_LOG_DEBUG = 3,
};

struct bq_log;

/* Called with one finished line (no trailing newline). */
typedef void (*bq_log_sink_cb)(void *user_data, enum bq_log_level level, const char *line);

/* program is copied. Returns NULL on allocation failure. Default: level info, stderr. */
struct bq_log *bq_log_new(const char *program);
void bq_log_free(struct bq_log *log);

void bq_log_set_level(struct bq_log *log, enum bq_log_level level);
/* Parse "error|warn|info|debug"; returns 0 or -EINVAL. */
int bq_log_level_parse(const char *s, enum bq_log_level *out);
/*
 * Enable debug lines for a comma-separated list of modules ("node,link") or "all",
 * even when the level is below debug. Returns 0 or -ENOMEM.
 */
int bq_log_set_debug_modules(struct bq_log *log, const char *list);
/* Replace the stderr sink (tests capture lines this way). */
void bq_log_set_sink(struct bq_log *log, bq_log_sink_cb cb, void *user_data);

/* True when a line at this level for this module would be written. */
int bq_log_enabled(const struct bq_log *log, enum bq_log_level level, const char *module);

/*
 * Write one line. log may be NULL (nothing happens). fmt formats the key=value tail.
 * Lines are truncated at 2048 bytes rather than allocated.
 */
void bq_log_write(struct bq_log *log, enum bq_log_level level, const char *module,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void bq_log_vwrite(struct bq_log *log, enum bq_log_level level, const char *module,
		   const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

/*
 * Quote a value for a key=value line: wraps in double quotes and escapes quotes,
 * backslashes and control characters when needed. Writes at most cap bytes
 * including the NUL; returns out.
 */
const char *bq_log_quote(const char *value, char *out, size_t cap);

#define bq_err(log, mod, ...) bq_log_write((log), BQ_LOG_ERROR, (mod), __VA_ARGS__)
#define bq_warn(log, mod, ...) bq_log_write((log), BQ_LOG_WARN, (mod), __VA_ARGS__)
#define bq_info(log, mod, ...) bq_log_write((log), BQ_LOG_INFO, (mod), __VA_ARGS__)
#define bq_debug(log, mod, ...) bq_log_write((log), BQ_LOG_DEBUG, (mod), __VA_ARGS__)

#endif
