/* SPDX-License-Identifier: MIT */
/*
 * sock_unix: the unix backend's family table (SOCK_STREAM). A daemon killed with
 * kill -9 leaves its socket file behind; prepare_listen tells such a stale file from a
 * live listener by connecting to it, so a restart needs no manual rm.
 */
#include "transport/conn_impl.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int unix_fill(const char *path, struct bq__sockaddr *t)
{
	struct sockaddr_un *un = (struct sockaddr_un *)&t->ss;
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(un->sun_path)) {
		return -ENAMETOOLONG;
	}
	memset(t, 0, sizeof(*t));
	t->family = AF_UNIX;
	t->type = SOCK_STREAM;
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, n + 1);
	t->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	return 0;
}

static int unix_resolve(const struct bq_addr *a, bool passive, struct bq__sockaddr *out, int max,
			char *err, size_t errlen)
{
	int r = unix_fill(a->path, &out[0]);

	if (r < 0) {
		snprintf(err, errlen, "unix socket path '%s' is empty or too long", a->path);
		return r;
	}
	return 1;
}

static int unix_prepare_listen(const struct bq_addr *a, char *err, size_t errlen)
{
	struct bq__sockaddr t;
	struct stat st;
	int fd, r;

	if (lstat(a->path, &st) < 0) {
		return 0; /* nothing there (or unreadable: bind will say why) */
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
			 "cannot listen on unix:%s: the path exists and is not a socket", a->path);
		return -EEXIST;
	}
	if (unix_fill(a->path, &t) < 0) {
		return 0;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return 0;
	}
	r = connect(fd, (const struct sockaddr *)&t.ss, t.len);
	r = r < 0 ? errno : 0;
	close(fd);
	/* Accepted, or refused only because its backlog is full: somebody is there. */
	if (r == 0 || r == EAGAIN || r == EINPROGRESS) {
		snprintf(err, errlen, "unix socket %s is already in use", a->path);
		return -EADDRINUSE;
	}
	if (r == ECONNREFUSED) {
		unlink(a->path);
	}
	return 0;
}

static void unix_peer_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
	size_t off = offsetof(struct sockaddr_un, sun_path);

	/* Connecting clients are normally unbound: their address is just "unix:". */
	if (len > off && un->sun_path[0] != '\0') {
		snprintf(out, cap, "unix:%.*s", (int)(len - off), un->sun_path);
	} else {
		snprintf(out, cap, "unix:");
	}
}

static void unix_listen_name(const struct bq_addr *a, char *out, size_t cap)
{
	snprintf(out, cap, "unix socket %s", a->path);
}

const struct bq__family bq__unix_family = {
	.kind = BQ_ADDR_UNIX,
	.resolve = unix_resolve,
	.prepare_listen = unix_prepare_listen,
	.peer_text = unix_peer_text,
	.listen_name = unix_listen_name,
};
