/* SPDX-License-Identifier: MIT */
/*
 * bench/common: what every benchmark program needs around its measurements: messages
 * and a fatal exit, the table rows printed beside the targets, percentiles, and the
 * child processes (blueq-node, blueq-manager, ...) started with their logs in files and
 * killed with the benchmark whatever way it ends (PR_SET_PDEATHSIG).
 *
 * Benchmarks are programs, not library code: bench_die exits.
 */
#ifndef BQ_BENCH_COMMON_H
#define BQ_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BENCH_PATHLEN 320
#define BENCH_ARGS_MAX 24
#define BENCH_ARGBUF 4096
#define BENCH_ROWS_MAX 48
#define BENCH_SEC 1000000ull

struct bench_proc {
	pid_t pid; /* 0: not running */
	char name[24];
	char log[BENCH_PATHLEN]; /* stdout and stderr go here */
	char argbuf[BENCH_ARGBUF];
	char *argv[BENCH_ARGS_MAX + 1];
	int stop_sig;	/* bench_proc_stop's default signal (0: SIGTERM) */
	bool own_group; /* its own process group (gunicorn: its workers go with it) */
	pid_t pgid;
};

struct bench_row {
	char what[240];
	char measured[320];
	char target[96];
};

struct bench_rows {
	struct bench_row row[BENCH_ROWS_MAX];
	int n;
};

/* The program's name for messages, and a flag bench_die sets (keep the logs). */
void bench_init(const char *prog, bool *failed);
uint64_t bench_now_us(void);
void bench_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A table row (also said as it is measured); past BENCH_ROWS_MAX rows are dropped. */
void bench_add_row(struct bench_rows *rows, const char *what, const char *target, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));
/* Print the rows as a Markdown table under the header line. */
void bench_print_rows(const struct bench_rows *rows, const char *header);

/* The decimal number at the start of s (after blanks, maybe negative); *end after it. */
bool bench_leading_int(const char *s, int64_t *out, const char **end);
/* The p-th percentile of v[0..n) (sorted here), microseconds in, milliseconds out. */
double bench_pct_ms(int64_t *v, size_t n, unsigned p);

/* argv copied into p (dies when it does not fit). */
void bench_proc_set_args(struct bench_proc *p, const char *const *argv);
/* Fork and exec p->argv with stdout/stderr appended to p->log; dies on failure. */
void bench_proc_start(struct bench_proc *p);
/* False (and reaped, pid 0, *status set when not NULL) once it has exited. */
bool bench_proc_alive(struct bench_proc *p, int *status);
/* sig (0: p->stop_sig or SIGTERM), wait up to grace_ms, then SIGKILL. True if in time. */
bool bench_proc_stop(struct bench_proc *p, int sig, uint64_t grace_ms);
/* True when something accepts connections on the UNIX socket at path. */
bool bench_unix_probe(const char *path);
/* Remove a directory tree (the benchmark's temporary one). */
void bench_rm_tree(const char *dir);

#endif
