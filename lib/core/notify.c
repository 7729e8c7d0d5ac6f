/* SPDX-License-Identifier: MIT */
#include "core/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int bq_notify_to(const char *socket_name, const char *state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t name_len, state_len;
	ssize_t n;
	int fd, rc = 1;

	if (!socket_name || !state) {
		return -EINVAL;
	}
	name_len = strlen(socket_name);
	state_len = strlen(state);
	if (state_len == 0 || state_len > BQ_NOTIFY_STATE_MAX) {
		return -EINVAL;
	}
	/* Relative names would depend on the working directory: systemd never sends one. */
	if (name_len < 2 || (socket_name[0] != '/' && socket_name[0] != '@')) {
		return -EINVAL;
	}
	if (name_len >= sizeof(sa.sun_path)) {
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, socket_name, name_len);
	if (socket_name[0] == '@') {
		sa.sun_path[0] = '\0';
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		return -errno;
	}
	/* An abstract name is exactly its bytes (no NUL); a path may carry its NUL either way. */
	do {
		n = sendto(fd, state, state_len, MSG_NOSIGNAL, (const struct sockaddr *)&sa,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len));
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		rc = -errno;
	} else if ((size_t)n != state_len) {
		rc = -EMSGSIZE; /* datagrams are whole or nothing; cannot happen on Linux */
	}
	close(fd);
	return rc;
}

int bq_notify(const char *state)
{
	const char *name = getenv(BQ_NOTIFY_ENV);

	if (!name || !name[0]) {
		return 0;
	}
	return bq_notify_to(name, state);
}
