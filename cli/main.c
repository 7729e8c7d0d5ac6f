/* SPDX-License-Identifier: MIT */
/*
 * blueq-cli: a terminal mesh client. Attaches to a node as one user (the MeshClient
 * engine in lib/mesh/client.c) and lists the directory, sends, listens or chats; or
 * talks to a control socket (ctl) for scripts and tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/opt.h"
#include "loop/loop.h"
#include "mesh/client.h"
#include "proto/auth.h"
#include "transport/addr.h"
#include "transport/addrmap.h"
#include "transport/conn.h"

#define PROG "blueq-cli"
#define CTL_REPLY_MAX (4 * 1024 * 1024)
#define STDIN_LINE_MAX (BQ_TEXT_MAX + BQ_USER_ID_MAX + 8)

struct cli_cfg {
	char *node;
	char *user;
	char *name;
	uint64_t timeout_ms;
	char *key_file;
	int log_level;
	char *debug;
	int64_t count;
	char *command;
	char *arg1;
	char *arg2;
};

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };

static const struct bq_opt options[] = {
	{ "node", 'n', BQ_OPT_STRING, offsetof(struct cli_cfg, node), "D8:3A:DD:03:1E:77", 0, 0,
	  NULL, bq_addr_check, 0, "ADDR",
	  "node to attach to (Bluetooth MAC, bt-rfcomm://, bt-l2cap://, tcp://, unix:); "
	  "a MAC in the simulator's address map reaches the simulated node" },
	{ "user", 'u', BQ_OPT_STRING, offsetof(struct cli_cfg, user), NULL, 0, 0, NULL, NULL, 0,
	  "ID", "user id to attach as (default cli-PID)" },
	{ "name", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, name), NULL, 0, 0, NULL, NULL, 0,
	  "NAME", "display name (default: the user id)" },
	{ "timeout", 't', BQ_OPT_DURATION, offsetof(struct cli_cfg, timeout_ms), "10s", 1,
	  3600 * 1000, NULL, NULL, 0, "DURATION",
	  "give up after this long (users, send, broadcast, ctl; attach for listen and chat)" },
	{ "key-file", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, key_file), NULL, 0, 0, NULL,
	  NULL, 0, "PATH", "mesh network key: sign every frame (optional for clients)" },
	{ "log-level", 0, BQ_OPT_ENUM, offsetof(struct cli_cfg, log_level), "warn", 0, 0,
	  log_levels, NULL, 0, "LEVEL", "error, warn, info or debug (to stderr)" },
	{ "debug", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, debug), NULL, 0, 0, NULL, NULL, 0,
	  "MODULES", "debug lines for these modules (client,link or all)" },
	{ "count", 'c', BQ_OPT_INT, offsetof(struct cli_cfg, count), "0", 0, 1000000000, NULL,
	  NULL, 0, "N", "listen: exit after N messages (0: until interrupted)" },
	{ "command", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, command), NULL, 0, 0, NULL, NULL,
	  1, "COMMAND", "users | send DST TEXT | broadcast TEXT | listen | chat | ctl PATH LINE" },
	{ "arg1", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, arg1), NULL, 0, 0, NULL, NULL, 2,
	  "ARG", "first argument of the command" },
	{ "arg2", 0, BQ_OPT_STRING, offsetof(struct cli_cfg, arg2), NULL, 0, 0, NULL, NULL, 3,
	  "ARG", "second argument of the command" },
	{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
};

static const char synopsis[] =
	"[OPTIONS] COMMAND [ARGS]\n"
	"Commands:\n"
	"  users              print the mesh directory (users, then nodes)\n"
	"  send DST TEXT      send TEXT to user DST and wait for the delivery receipt\n"
	"  broadcast TEXT     send TEXT to everyone (no receipts: \"sent to mesh\")\n"
	"  listen             print every inbound message until interrupted (--count N)\n"
	"  chat               interactive: '@ID text' direct, plain text broadcast, /users, /quit\n"
	"  ctl PATH LINE      send LINE to a control socket, print the one-line reply";

struct cli;

struct command {
	const char *name;
	int nargs;
	bool attach;      /* needs a user attached to the mesh */
	void (*on_ready)(struct cli *cli);
};

struct cli {
	struct cli_cfg cfg;
	const struct command *cmd;
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_auth *auth;
	struct bq_mclient *mc;
	struct bq_muser *mu;
	struct bq_timer *timeout;
	char user_id[BQ_USER_ID_MAX + 1];
	char node_text[BQ_ADDR_STRLEN];
	char resolved_text[BQ_ADDR_STRLEN];
	bool ready_once;
	bool mapped; /* the node address went through the address map */
	bool lost;
	int exit_code;
	uint64_t msg_id;
	int64_t received;
	/* chat */
	bool stdin_watched;
	bool stdin_eof;
	struct bq_timer *stdin_poll;
	struct bq_buf line;
	int stdin_flags;
	bool stdin_nb_set;
	/* ctl */
	struct bq_conn *ctl;
	struct bq_buf reply;
};

static void finish(struct cli *cli, int code)
{
	cli->exit_code = code;
	bq_loop_stop(cli->loop);
}

static void say_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say_err(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Network text on a terminal: control characters are escaped, never interpreted. */
static void print_safe(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch < 0x20 || ch == 0x7f) {
			fprintf(out, "\\x%02x", ch);
		} else if (ch == '\\') {
			fputs("\\\\", out);
		} else {
			fputc(ch, out);
		}
	}
}

static const char *presence_name(uint8_t p)
{
	switch (p) {
	case BQ_PRES_ONLINE:
		return "online";
	case BQ_PRES_OFFLINE:
		return "offline";
	case BQ_PRES_GONE:
		return "gone";
	}
	return "unknown";
}

/* ---- users ------------------------------------------------------------------------- */

struct dir_list {
	const struct bq_dir_entry **v;
	struct bq_dir_entry *copies;
	size_t n, cap;
};

static void collect(const struct bq_dir_entry *e, void *ud)
{
	struct dir_list *l = ud;

	if (l->n < l->cap) {
		l->copies[l->n] = *e;
		l->v[l->n] = &l->copies[l->n];
		l->n++;
	}
}

static int cmp_entry(const void *a, const void *b)
{
	const struct bq_dir_entry *x = *(const struct bq_dir_entry *const *)a;
	const struct bq_dir_entry *y = *(const struct bq_dir_entry *const *)b;
	int r;

	if (x->kind != y->kind) {
		return x->kind < y->kind ? -1 : 1;
	}
	if (x->kind == BQ_DIR_USER) {
		size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;

		r = memcmp(x->id, y->id, n);
		return r ? r : (int)x->id_len - (int)y->id_len;
	}
	return memcmp(x->node, y->node, BQ_NODE_ADDR_LEN);
}

static void print_directory(struct cli *cli, FILE *out)
{
	struct dir_list l = { 0 };
	char mac[BQ_BDADDR_STRLEN];

	l.cap = bq_mclient_dir_count(cli->mc);
	if (l.cap) {
		l.v = bq_calloc(l.cap, sizeof(*l.v));
		l.copies = bq_calloc(l.cap, sizeof(*l.copies));
		if (!l.v || !l.copies) {
			l.cap = 0;
		}
	}
	bq_mclient_dir_foreach(cli->mc, collect, &l);
	if (l.n > 1) {
		qsort(l.v, l.n, sizeof(*l.v), cmp_entry);
	}
	for (size_t i = 0; i < l.n; i++) {
		const struct bq_dir_entry *e = l.v[i];

		if (e->kind == BQ_DIR_USER) {
			print_safe(out, e->id, e->id_len);
			fputc(' ', out);
			print_safe(out, e->name, e->name_len);
			fprintf(out, " home=%s presence=%s\n", bq_bdaddr_format(e->home, mac),
				presence_name(e->presence));
		} else {
			fprintf(out, "node %s ", bq_bdaddr_format(e->node, mac));
			print_safe(out, e->name, e->name_len);
			fputs(" neighbours=", out);
			for (size_t k = 0; k < e->n_neigh; k++) {
				fprintf(out, "%s%s", k ? "," : "",
					bq_bdaddr_format(e->neigh + 6 * k, mac));
			}
			fputc('\n', out);
		}
	}
	fflush(out);
	bq_free(l.v);
	bq_free(l.copies);
}

static void users_ready(struct cli *cli)
{
	print_directory(cli, stdout);
	finish(cli, 0);
}

/* ---- send / broadcast -------------------------------------------------------------- */

static void send_to(struct cli *cli, const char *dst, const char *text)
{
	int rc = bq_muser_send(cli->mu, dst, text, strlen(text), 0, &cli->msg_id);

	if (rc == -EMSGSIZE) {
		say_err("message too long (%zu bytes, at most %d)", strlen(text), BQ_TEXT_MAX);
		finish(cli, 2);
	} else if (rc == -EINVAL) {
		say_err("invalid destination user id '%s'", dst ? dst : "");
		finish(cli, 2);
	} else if (rc < 0) {
		say_err("cannot send: %s", strerror(-rc));
		finish(cli, 1);
	}
}

static void send_ready(struct cli *cli)
{
	send_to(cli, cli->cfg.arg1, cli->cfg.arg2);
}

static void broadcast_ready(struct cli *cli)
{
	send_to(cli, NULL, cli->cfg.arg1);
}

/* ---- listen and chat --------------------------------------------------------------- */

static void listen_ready(struct cli *cli)
{
	if (!cli->ready_once) {
		fprintf(stderr, PROG ": listening as %s at %s\n", cli->user_id, cli->node_text);
	}
	bq_timer_stop(cli->timeout);
}

static void chat_users(struct cli *cli)
{
	print_directory(cli, stdout);
}

static void chat_line(struct cli *cli, char *line, size_t len)
{
	char dst[BQ_USER_ID_MAX + 1];
	const char *text = line;
	int rc;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) {
		line[--len] = '\0';
	}
	if (len == 0) {
		return;
	}
	if (strcmp(line, "/quit") == 0) {
		finish(cli, 0);
		return;
	}
	if (strcmp(line, "/users") == 0) {
		chat_users(cli);
		return;
	}
	if (line[0] == '/') {
		printf("* commands: @ID text (direct), text (everyone), /users, /quit\n");
		fflush(stdout);
		return;
	}
	if (line[0] == '@') {
		const char *sp = memchr(line, ' ', len);
		size_t idlen = sp ? (size_t)(sp - line - 1) : len - 1;

		if (!sp || idlen == 0 || idlen > BQ_USER_ID_MAX) {
			printf("* usage: @ID text\n");
			fflush(stdout);
			return;
		}
		memcpy(dst, line + 1, idlen);
		dst[idlen] = '\0';
		text = sp + 1;
		rc = bq_muser_send(cli->mu, dst, text, strlen(text), 0, &cli->msg_id);
	} else {
		rc = bq_muser_send(cli->mu, NULL, text, strlen(text), 0, &cli->msg_id);
	}
	if (rc < 0) {
		printf("* not sent: %s\n", rc == -EINVAL ? "invalid user id" :
		       rc == -EMSGSIZE ? "message too long" : strerror(-rc));
		fflush(stdout);
	}
}

static void check_chat_done(struct cli *cli)
{
	/* After end of input, wait for what is still in flight, then leave. */
	if (cli->stdin_eof && (!cli->mu || bq_muser_outstanding(cli->mu) == 0)) {
		finish(cli, 0);
	}
}

static void stdin_read(struct cli *cli)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0 && errno == EAGAIN) {
			return;
		}
		if (n <= 0) {
			if (cli->line.len) {
				chat_line(cli, (char *)cli->line.data, cli->line.len);
				bq_buf_reset(&cli->line);
			}
			cli->stdin_eof = true;
			if (cli->stdin_watched) {
				bq_loop_io_remove(cli->loop, STDIN_FILENO);
				cli->stdin_watched = false;
			}
			if (cli->stdin_poll) {
				bq_timer_stop(cli->stdin_poll);
			}
			bq_timer_start(cli->timeout, cli->cfg.timeout_ms);
			check_chat_done(cli);
			return;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				bq_buf_cstr(&cli->line);
				chat_line(cli, (char *)cli->line.data, cli->line.len);
				bq_buf_reset(&cli->line);
				if (bq_loop_stopped(cli->loop)) {
					return;
				}
			} else if (bq_buf_append(&cli->line, &buf[i], 1) < 0) {
				printf("* line too long, dropped\n");
				bq_buf_reset(&cli->line);
			}
		}
		if (!cli->stdin_watched) {
			return; /* a regular file: one chunk per timer tick */
		}
	}
}

static void stdin_io_cb(struct bq_loop *loop, int fd, unsigned events, void *ud)
{
	stdin_read(ud);
}

static void stdin_poll_cb(struct bq_timer *t, void *ud)
{
	struct cli *cli = ud;

	stdin_read(cli);
	if (!cli->stdin_eof) {
		bq_timer_start(t, 1);
	}
}

static void chat_ready(struct cli *cli)
{
	int rc;

	bq_timer_stop(cli->timeout);
	if (cli->ready_once) {
		return;
	}
	printf("* attached as %s at %s; @ID text, text for everyone, /users, /quit\n",
	       cli->user_id, cli->node_text);
	fflush(stdout);
	cli->stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
	if (cli->stdin_flags >= 0 &&
	    fcntl(STDIN_FILENO, F_SETFL, cli->stdin_flags | O_NONBLOCK) == 0) {
		cli->stdin_nb_set = true;
	}
	rc = bq_loop_io_add(cli->loop, STDIN_FILENO, BQ_EV_READ, stdin_io_cb, cli);
	if (rc == 0) {
		cli->stdin_watched = true;
		return;
	}
	/* epoll refuses regular files (EPERM): they never block, so read them on a timer. */
	cli->stdin_poll = bq_timer_new(cli->loop, stdin_poll_cb, cli);
	if (!cli->stdin_poll) {
		say_err("out of memory");
		finish(cli, 1);
		return;
	}
	bq_timer_start(cli->stdin_poll, 0);
}

/* ---- client callbacks -------------------------------------------------------------- */

static const char *connect_reason(int err, const char *reason)
{
	switch (-err) {
	case ECONNREFUSED:
		return "connection refused";
	case ENOENT:
		return "no such socket (nothing listens there)";
	default:
		return reason;
	}
}

/* "cannot reach D8:3A:DD:03:1E:77 (unix:/x): connection refused" */
static void say_unreachable(struct cli *cli, const char *why)
{
	if (cli->mapped) {
		say_err("cannot reach %s (%s): %s", cli->node_text, cli->resolved_text, why);
	} else {
		say_err("cannot reach %s: %s", cli->node_text, why);
	}
}

static void on_link(struct bq_mclient *c, enum bq_mclient_state st, int err, const char *reason,
		    void *ud)
{
	struct cli *cli = ud;

	if (st != BQ_MC_BACKOFF) {
		return;
	}
	if (!cli->ready_once) {
		say_unreachable(cli, connect_reason(err, reason));
		finish(cli, 1);
		return;
	}
	if (!cli->lost) {
		say_err("link to %s lost: %s; reconnecting", cli->node_text, reason);
		cli->lost = true;
	}
}

static void on_user(struct bq_muser *u, enum bq_muser_state st, const char *reason, void *ud)
{
	struct cli *cli = ud;

	if (st == BQ_MU_REJECTED) {
		say_err("%s refused to attach %s: %s", cli->node_text, cli->user_id, reason);
		finish(cli, 1);
		return;
	}
	if (st != BQ_MU_READY) {
		return;
	}
	if (cli->lost) {
		say_err("reconnected to %s", cli->node_text);
		cli->lost = false;
	}
	cli->cmd->on_ready(cli);
	cli->ready_once = true;
}

static void on_message(struct bq_muser *u, const struct bq_frame *f, void *ud)
{
	struct cli *cli = ud;
	bool bcast = f->flags & BQ_FF_BROADCAST;

	if (strcmp(cli->cmd->name, "chat") == 0) {
		printf("<");
		print_safe(stdout, f->src, f->src_len);
		printf("%s> ", bcast ? " to all" : "");
		print_safe(stdout, (const char *)f->payload, f->payload_len);
		printf("\n");
		fflush(stdout);
		return;
	}
	if (strcmp(cli->cmd->name, "listen") != 0) {
		return;
	}
	printf("from=");
	print_safe(stdout, f->src, f->src_len);
	printf(" msg_id=%016" PRIx64 "%s text=", f->msg_id, bcast ? " broadcast=1" : "");
	print_safe(stdout, (const char *)f->payload, f->payload_len);
	printf("\n");
	fflush(stdout);
	cli->received++;
	if (cli->cfg.count > 0 && cli->received >= cli->cfg.count) {
		finish(cli, 0);
	}
}

static bool failure_status(uint8_t st)
{
	return st != BQ_ACK_DELIVERED && st != BQ_ACK_ACCEPTED && st != BQ_ACK_STORED &&
	       st != BQ_ACK_OK;
}

static void on_ack(struct bq_muser *u, uint64_t id, uint8_t status, const char *reason, void *ud)
{
	struct cli *cli = ud;
	const char *cmd = cli->cmd->name;

	if (strcmp(cmd, "chat") == 0) {
		printf("* %s msg_id=%016" PRIx64 "%s%s\n", bq_ack_status_name(status), id,
		       reason[0] ? " reason=" : "", reason);
		fflush(stdout);
		check_chat_done(cli);
		return;
	}
	if (id != cli->msg_id) {
		return;
	}
	if (failure_status(status)) {
		printf("failed msg_id=%016" PRIx64 " status=%s%s%s\n", id,
		       bq_ack_status_name(status), reason[0] ? " reason=" : "", reason);
		fflush(stdout);
		finish(cli, 1);
		return;
	}
	if (strcmp(cmd, "broadcast") == 0 && status == BQ_ACK_ACCEPTED) {
		printf("sent to mesh msg_id=%016" PRIx64 "\n", id);
		fflush(stdout);
		finish(cli, 0);
	} else if (strcmp(cmd, "send") == 0 && status == BQ_ACK_DELIVERED) {
		printf("delivered msg_id=%016" PRIx64 "\n", id);
		fflush(stdout);
		finish(cli, 0);
	} else if (status == BQ_ACK_STORED) {
		fprintf(stderr, PROG ": msg_id=%016" PRIx64 " stored at the recipient's home node"
			" (recipient offline); waiting for delivery\n", id);
	}
}

static void on_timeout(struct bq_timer *t, void *ud)
{
	struct cli *cli = ud;
	const char *what;

	if (!cli->ready_once) {
		what = "the node to attach the user";
	} else if (strcmp(cli->cmd->name, "chat") == 0) {
		what = "the receipts of the messages sent";
		if (cli->stdin_eof) {
			say_err("timed out after %" PRIu64 " ms waiting for %s",
				cli->cfg.timeout_ms, what);
			finish(cli, 1);
		}
		return;
	} else if (strcmp(cli->cmd->name, "broadcast") == 0) {
		what = "the node to accept the broadcast";
	} else {
		what = "the delivery receipt";
	}
	say_err("timed out after %" PRIu64 " ms waiting for %s", cli->cfg.timeout_ms, what);
	finish(cli, 1);
}

static void on_signal(struct bq_loop *loop, int signo, void *ud)
{
	struct cli *cli = ud;

	finish(cli, (!cli->cmd || strcmp(cli->cmd->name, "listen") == 0 ||
		     strcmp(cli->cmd->name, "chat") == 0) ? 0 : 130);
}

/* ---- ctl --------------------------------------------------------------------------- */

static void ctl_cb(struct bq_conn *c, unsigned events, void *ud)
{
	struct cli *cli = ud;

	if (events & BQ_CONN_ERROR) {
		say_err("control socket %s: %s", cli->cfg.arg1, bq_conn_error_text(c));
		finish(cli, 1);
		return;
	}
	if (events & BQ_CONN_CONNECTED) {
		struct iovec iov[2] = {
			{ .iov_base = cli->cfg.arg2, .iov_len = strlen(cli->cfg.arg2) },
			{ .iov_base = "\n", .iov_len = 1 },
		};
		ssize_t w = bq_conn_writev(c, iov, 2);

		/* A control line is tiny: a fresh socket takes it whole. */
		if (w != (ssize_t)(iov[0].iov_len + 1)) {
			say_err("control socket %s: cannot send the command", cli->cfg.arg1);
			finish(cli, 1);
		}
	}
	if (!(events & BQ_CONN_READABLE)) {
		return;
	}
	for (;;) {
		int err = 0;
		uint8_t *dst = bq_buf_reserve(&cli->reply, 4096, &err);
		ssize_t n;
		const uint8_t *nl;

		if (!dst) {
			say_err("control socket %s: reply longer than %d bytes", cli->cfg.arg1,
				CTL_REPLY_MAX);
			finish(cli, 1);
			return;
		}
		n = bq_conn_read(c, dst, 4096);
		if (n == -EAGAIN) {
			return;
		}
		if (n > 0) {
			bq_buf_commit(&cli->reply, (size_t)n);
			nl = memchr(cli->reply.data, '\n', cli->reply.len);
			if (!nl) {
				continue;
			}
			fwrite(cli->reply.data, 1, (size_t)(nl - cli->reply.data) + 1, stdout);
			fflush(stdout);
			finish(cli, 0);
			return;
		}
		if (cli->reply.len) {
			fwrite(cli->reply.data, 1, cli->reply.len, stdout);
			fputc('\n', stdout);
			fflush(stdout);
			finish(cli, 0);
		} else {
			say_err("control socket %s closed without a reply", cli->cfg.arg1);
			finish(cli, 1);
		}
		return;
	}
}

static int run_ctl(struct cli *cli)
{
	char spec[BQ_ADDR_PATH_MAX + 16];
	char err[300];
	struct bq_addr a;

	if (strncmp(cli->cfg.arg1, "unix:", 5) == 0) {
		snprintf(spec, sizeof(spec), "%s", cli->cfg.arg1);
	} else {
		snprintf(spec, sizeof(spec), "unix:%s", cli->cfg.arg1);
	}
	if (bq_addr_parse(spec, &a, err, sizeof(err)) < 0 || a.kind != BQ_ADDR_UNIX) {
		say_err("ctl: '%s' is not a control socket path (%s)", cli->cfg.arg1, err);
		return 2;
	}
	if (memchr(cli->cfg.arg2, '\n', strlen(cli->cfg.arg2))) {
		say_err("ctl: the command must be one line");
		return 2;
	}
	bq_buf_init(&cli->reply, CTL_REPLY_MAX);
	if (bq_conn_connect(cli->loop, &a, ctl_cb, cli, &cli->ctl, err, sizeof(err)) < 0) {
		say_err("control socket %s: %s", cli->cfg.arg1, err);
		return 1;
	}
	bq_timer_start(cli->timeout, cli->cfg.timeout_ms);
	cli->exit_code = 1;
	bq_loop_run(cli->loop);
	bq_conn_close(cli->ctl);
	bq_buf_free(&cli->reply);
	return cli->exit_code;
}

static void ctl_timeout(struct bq_timer *t, void *ud)
{
	struct cli *cli = ud;

	say_err("control socket %s: no reply within %" PRIu64 " ms", cli->cfg.arg1,
		cli->cfg.timeout_ms);
	finish(cli, 1);
}

/* ---- main -------------------------------------------------------------------------- */

static const struct command commands[] = {
	{ "users", 0, true, users_ready },
	{ "send", 2, true, send_ready },
	{ "broadcast", 1, true, broadcast_ready },
	{ "listen", 0, true, listen_ready },
	{ "chat", 0, true, chat_ready },
	{ "ctl", 2, false, NULL },
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].name, name) == 0) {
			return &commands[i];
		}
	}
	return NULL;
}

static int load_key(struct cli *cli)
{
	uint8_t key[BQ_KEY_LEN];
	char err[300];
	int rc;

	if (!cli->cfg.key_file) {
		return 0;
	}
	/* A client never creates the network key; it must exist already. */
	if (access(cli->cfg.key_file, R_OK) < 0) {
		say_err("--key-file: cannot read %s: %s", cli->cfg.key_file, strerror(errno));
		return 2;
	}
	rc = bq_auth_load_or_create_key(cli->cfg.key_file, key, err, sizeof(err));
	if (rc < 0) {
		say_err("--key-file: %s", err);
		return 2;
	}
	cli->auth = bq_auth_new(key);
	memset(key, 0, sizeof(key));
	if (!cli->auth) {
		say_err("out of memory");
		return 1;
	}
	return 0;
}

static int run_mesh(struct cli *cli)
{
	struct bq_mclient_config mcfg;
	struct bq_mclient_cbs cbs = {
		.link_state = on_link,
		.user_state = on_user,
		.message = on_message,
		.ack = on_ack,
	};
	char err[300];
	int rc;

	bq_mclient_config_defaults(&mcfg);
	if (bq_addr_parse(cli->cfg.node, &mcfg.node, err, sizeof(err)) < 0) {
		say_err("--node: %s", err);
		return 2;
	}
	snprintf(cli->node_text, sizeof(cli->node_text), "%s", cli->cfg.node);
	{
		struct bq_addr r;
		char merr[300];

		/* The engine resolves again per connect; this copy is for messages. */
		rc = bq_addrmap_resolve(&mcfg.node, &r, merr, sizeof(merr));
		if (rc < 0) {
			say_err("warning: %s", merr);
		}
		cli->mapped = rc == 1;
		bq_addr_format(&r, cli->resolved_text, sizeof(cli->resolved_text));
	}
	mcfg.name = PROG;
	mcfg.auth = cli->auth;
	mcfg.connect_timeout_ms = cli->cfg.timeout_ms > UINT32_MAX ? UINT32_MAX
								  : (uint32_t)cli->cfg.timeout_ms;
	cli->mc = bq_mclient_new(cli->loop, &mcfg, &cbs, cli, cli->log);
	if (!cli->mc) {
		say_err("out of memory");
		return 1;
	}
	cli->mu = bq_mclient_attach(cli->mc, cli->user_id, cli->cfg.name, cli);
	if (!cli->mu) {
		say_err("invalid user id '%s' or name (ids: 1-64 of A-Z a-z 0-9 . _ @ : -)",
			cli->user_id);
		return 2;
	}
	rc = bq_mclient_start(cli->mc, err, sizeof(err));
	if (rc < 0) {
		say_unreachable(cli, err);
		return 1;
	}
	bq_timer_start(cli->timeout, cli->cfg.timeout_ms);
	cli->exit_code = 1;
	bq_loop_run(cli->loop);
	/* Leave politely: DETACH goes out before the link closes (bounded). */
	bq_mclient_stop(cli->mc);
	for (int i = 0; i < 50 && bq_mclient_busy(cli->mc); i++) {
		bq_loop_run_once(cli->loop, 10);
	}
	return cli->exit_code;
}

int main(int argc, char **argv)
{
	struct cli cli;
	char err[300];
	int rc;

	memset(&cli, 0, sizeof(cli));
	bq_buf_init(&cli.line, STDIN_LINE_MAX);
	rc = bq_opt_parse(options, &cli.cfg, argc, argv, PROG, synopsis, err, sizeof(err));
	if (rc == 1) {
		bq_opt_free(options, &cli.cfg);
		return 0;
	}
	if (rc < 0) {
		say_err("%s", err);
		bq_opt_free(options, &cli.cfg);
		return 2;
	}
	if (!cli.cfg.command) {
		say_err("missing command: users, send, broadcast, listen, chat or ctl (see "
			"--help)");
		rc = 2;
		goto out;
	}
	cli.cmd = find_command(cli.cfg.command);
	if (!cli.cmd) {
		say_err("unknown command '%s' (users, send, broadcast, listen, chat, ctl)",
			cli.cfg.command);
		rc = 2;
		goto out;
	}
	if ((cli.cmd->nargs >= 1) != (cli.cfg.arg1 != NULL) ||
	    (cli.cmd->nargs >= 2) != (cli.cfg.arg2 != NULL)) {
		static const char *const usage[] = { "", "TEXT", "DST TEXT" };

		say_err("usage: " PROG " %s %s", cli.cmd->name,
			strcmp(cli.cmd->name, "ctl") == 0 ? "PATH LINE" : usage[cli.cmd->nargs]);
		rc = 2;
		goto out;
	}
	if (cli.cfg.user) {
		snprintf(cli.user_id, sizeof(cli.user_id), "%s", cli.cfg.user);
	} else {
		snprintf(cli.user_id, sizeof(cli.user_id), "cli-%ld", (long)getpid());
	}
	signal(SIGPIPE, SIG_IGN);
	cli.log = bq_log_new(PROG);
	cli.loop = cli.log ? bq_loop_new(NULL, cli.log) : NULL;
	if (!cli.loop) {
		say_err("out of memory");
		rc = 1;
		goto out;
	}
	bq_log_set_level(cli.log, (enum bq_log_level)cli.cfg.log_level);
	if (cli.cfg.debug && bq_log_set_debug_modules(cli.log, cli.cfg.debug) < 0) {
		say_err("out of memory");
		rc = 1;
		goto out;
	}
	bq_loop_signal(cli.loop, SIGINT, on_signal, &cli);
	bq_loop_signal(cli.loop, SIGTERM, on_signal, &cli);
	if (!cli.cmd->attach) {
		cli.timeout = bq_timer_new(cli.loop, ctl_timeout, &cli);
		rc = cli.timeout ? run_ctl(&cli) : 1;
		goto out;
	}
	cli.timeout = bq_timer_new(cli.loop, on_timeout, &cli);
	if (!cli.timeout) {
		say_err("out of memory");
		rc = 1;
		goto out;
	}
	rc = load_key(&cli);
	if (rc == 0) {
		rc = run_mesh(&cli);
	}
out:
	if (cli.stdin_watched) {
		bq_loop_io_remove(cli.loop, STDIN_FILENO);
	}
	if (cli.stdin_nb_set) {
		fcntl(STDIN_FILENO, F_SETFL, cli.stdin_flags);
	}
	bq_mclient_free(cli.mc);
	bq_timer_free(cli.timeout);
	bq_timer_free(cli.stdin_poll);
	if (cli.auth) {
		bq_auth_free(cli.auth);
	}
	if (cli.loop) {
		bq_loop_free(cli.loop);
	}
	bq_log_free(cli.log);
	bq_buf_free(&cli.line);
	bq_opt_free(options, &cli.cfg);
	return rc;
}
