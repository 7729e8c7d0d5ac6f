/* SPDX-License-Identifier: MIT */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/opt.h"

static const char *g_prog = "bench";
static bool *g_failed;

void bench_init(const char *prog, bool *failed)
{
	g_prog = prog;
	g_failed = failed;
}

uint64_t bench_now_us(void)
{
	return bq_clock_now_us(bq_clock_system());
}

void bench_say(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: error: ", g_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (g_failed) {
		*g_failed = true;
	}
	exit(1);
}

void bench_add_row(struct bench_rows *rows, const char *what, const char *target, const char *fmt,
		   ...)
{
	struct bench_row *r;
	va_list ap;

	if (rows->n >= BENCH_ROWS_MAX) {
		return;
	}
	r = &rows->row[rows->n++];
	snprintf(r->what, sizeof(r->what), "%s", what);
	snprintf(r->target, sizeof(r->target), "%s", target);
	va_start(ap, fmt);
	vsnprintf(r->measured, sizeof(r->measured), fmt, ap);
	va_end(ap);
	bench_say("| %s | %s | %s |", r->what, r->measured, r->target);
}

void bench_print_rows(const struct bench_rows *rows, const char *header)
{
	printf("\n| %s | measured | target |\n|---|---|---|\n", header);
	for (int i = 0; i < rows->n; i++) {
		printf("| %s | %s | %s |\n", rows->row[i].what, rows->row[i].measured,
		       rows->row[i].target);
	}
}

bool bench_leading_int(const char *s, int64_t *out, const char **end)
{
	char digits[24];
	size_t n = 0;

	while (*s == ' ' || *s == '\t') {
		s++;
	}
	if (*s == '-') {
		digits[n++] = *s++;
	}
	while (*s >= '0' && *s <= '9' && n < sizeof(digits) - 1) {
		digits[n++] = *s++;
	}
	digits[n] = '\0';
	if (end) {
		*end = s;
	}
	return n > 0 && bq_opt_parse_int(digits, out) == 0;
}

static int cmp_i64(const void *x, const void *y)
{
	int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;

	return a < c ? -1 : a > c;
}

double bench_pct_ms(int64_t *v, size_t n, unsigned p)
{
	size_t i;

	if (n == 0) {
		return 0.0;
	}
	qsort(v, n, sizeof(*v), cmp_i64);
	i = n * p / 100;
	return (double)v[i < n ? i : n - 1] / 1e3;
}

void bench_proc_set_args(struct bench_proc *p, const char *const *argv)
{
	size_t off = 0;
	int n = 0;

	for (; argv[n] && n < BENCH_ARGS_MAX; n++) {
		size_t len = strlen(argv[n]) + 1;

		if (off + len > sizeof(p->argbuf)) {
			bench_die("argument list too long for %s", p->name);
		}
		memcpy(p->argbuf + off, argv[n], len);
		p->argv[n] = p->argbuf + off;
		off += len;
	}
	p->argv[n] = NULL;
}

void bench_proc_start(struct bench_proc *p)
{
	int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	pid_t parent = getpid();
	pid_t pid;

	if (fd < 0) {
		bench_die("cannot open %s: %s", p->log, strerror(errno));
	}
	pid = fork();
	if (pid < 0) {
		bench_die("fork: %s", strerror(errno));
	}
	if (pid == 0) {
		sigset_t none;
		int devnull = open("/dev/null", O_RDONLY);

		/* Only async-signal-safe calls until exec. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (p->own_group) {
			setpgid(0, 0);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) {
			_exit(127); /* the bench died between fork and prctl */
		}
		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
		}
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		/* Our HTTP connections and epoll set are not the child's business. */
		close_range(3, ~0u, 0);
		execv(p->argv[0], p->argv);
		_exit(127);
	}
	close(fd);
	p->pid = pid;
	if (p->own_group) {
		setpgid(pid, pid); /* as the child does: whichever runs first */
		p->pgid = pid;
	}
}

bool bench_proc_alive(struct bench_proc *p, int *status)
{
	int st = 0;

	if (p->pid <= 0) {
		return false;
	}
	if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
		p->pid = 0;
		if (status) {
			*status = st;
		}
		return false;
	}
	return true;
}

bool bench_proc_stop(struct bench_proc *p, int sig, uint64_t grace_ms)
{
	uint64_t end = bench_now_us() + grace_ms * 1000;
	bool clean = true;

	if (p->pid <= 0) {
		return true;
	}
	kill(p->pid, sig ? sig : (p->stop_sig ? p->stop_sig : SIGTERM));
	while (waitpid(p->pid, NULL, WNOHANG) == 0) {
		if (bench_now_us() > end) {
			clean = false;
			kill(p->pid, SIGKILL);
			waitpid(p->pid, NULL, 0);
			break;
		}
		usleep(5000);
	}
	p->pid = 0;
	return clean;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void bench_rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

bool bench_unix_probe(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;
	bool ok;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		return false;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return false;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}
