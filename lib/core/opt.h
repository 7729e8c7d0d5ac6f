/* SPDX-License-Identifier: MIT */
/*
 * opt: one option table per program drives the command line, the config file,
 * --help and the generated documentation table (Redis's standardConfig), so they
 * cannot drift apart and there are no strcmp chains.
 *
 * Values are stored into the program's own config struct at each entry's offset:
 *   BQ_OPT_BOOL     bool
 *   BQ_OPT_INT      int64_t, checked against [min, max]
 *   BQ_OPT_DURATION uint64_t milliseconds; accepts "250ms", "10s", "5m", "1h" or a bare
 *                   number of milliseconds; checked against [min, max] in ms
 *   BQ_OPT_STRING   char * (owned by the config after parsing; bq_opt_free releases)
 *   BQ_OPT_ENUM     int, the index into choices[]
 *   BQ_OPT_LIST     struct bq_strlist (repeatable; each use appends)
 *
 * Order of precedence: defaults, then the config file (the entry of type BQ_OPT_CONFIG,
 * e.g. --config FILE, wherever it appears on the line; its default path is loaded only if
 * that file exists), then the command line. Positional arguments fill the entries with
 * positional = 1, 2, ... in order; on the command line the later of a named option and
 * a positional for the same entry wins. A LIST's default is replaced by its first
 * explicit use; later uses append.
 *
 * Bounds: min and max are both enforced when either is non-zero.
 *
 * The config struct must start zeroed (or hold values this table stored): setting a
 * STRING or LIST frees what was there, and bq_opt_defaults/bq_opt_parse free and reset
 * every value first.
 *
 * Config file: "name = value" per line, the long name without dashes; blank lines and
 * lines starting with '#' are ignored; blanks around name and value are trimmed, and
 * a value in double quotes loses the quotes. At most 1 MiB.
 */
#ifndef BQ_CORE_OPT_H
#define BQ_CORE_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum bq_opt_type {
	BQ_OPT_BOOL,
	BQ_OPT_INT,
	BQ_OPT_DURATION,
	BQ_OPT_STRING,
	BQ_OPT_ENUM,
	BQ_OPT_LIST,
	BQ_OPT_CONFIG, /* names a config file to read; stores nothing */
};

struct bq_strlist {
	char **v; /* owned */
	size_t n;
};

/*
 * Extra check for a string value (e.g. an address): return 0, or -EINVAL and write a
 * short reason (no trailing period) into err.
 */
typedef int (*bq_opt_check_cb)(const char *value, char *err, size_t errlen);

struct bq_opt {
	const char *name;      /* long name without dashes: "api-port"; NULL ends the table */
	char short_name;       /* 0 for none */
	enum bq_opt_type type;
	size_t offset;         /* offsetof(struct cfg, field) */
	const char *def;       /* default as text (parsed like any value); NULL = none */
	int64_t min, max;      /* bounds for INT and DURATION (0, 0 = unbounded) */
	const char *const *choices; /* ENUM: NULL-terminated */
	bq_opt_check_cb check; /* optional, STRING and LIST */
	int positional;        /* 1-based position, 0 if named only */
	const char *metavar;   /* "PORT", "URL" */
	const char *help;      /* one line */
};

/* Set every entry to its default. Returns 0 or a negative errno with err filled. */
int bq_opt_defaults(const struct bq_opt *table, void *cfg, char *err, size_t errlen);

/*
 * Defaults, the config file if one is named, then argv. Returns:
 *   0            parsed, run the program
 *   1            --help (or -h, unless the table uses them) was given; help went to stdout
 *                (or --help-markdown: the table as bq_opt_print_markdown prints it)
 *   -EINVAL      bad input; err holds one line
 *                ("--api-port: 70000 is above the maximum 65535")
 *   -ENOMEM      out of memory
 * "--help"/"-h" is built in; so is "--name=value" and "--name value".
 */
int bq_opt_parse(const struct bq_opt *table, void *cfg, int argc, char **argv,
		 const char *program, const char *synopsis, char *err, size_t errlen);

/*
 * Read "name = value" lines ('#' comments, blank lines). Errors name file:line
 * ("app.conf:3: unknown option 'x'"). Returns 0 or a negative errno.
 */
int bq_opt_load_file(const struct bq_opt *table, void *cfg, const char *path, char *err,
		     size_t errlen);

/* Set one option by long name from text, exactly as the command line would. */
int bq_opt_set(const struct bq_opt *table, void *cfg, const char *name, const char *value,
	       char *err, size_t errlen);

void bq_opt_print_help(const struct bq_opt *table, FILE *out, const char *program,
		       const char *synopsis);
/* A Markdown table (option, default, meaning) for the README's configuration section. */
void bq_opt_print_markdown(const struct bq_opt *table, FILE *out);

/* Free every STRING and LIST value the table stored in cfg. */
void bq_opt_free(const struct bq_opt *table, void *cfg);

/* Parse a duration such as "250ms", "10s", "5m", "1h" or "1500" (ms). */
int bq_opt_parse_duration(const char *s, uint64_t *ms_out);
/* Parse a base-10 integer; the whole string must be used. 0 or -EINVAL / -ERANGE. */
int bq_opt_parse_int(const char *s, int64_t *out);

#endif
