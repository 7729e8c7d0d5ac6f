/* SPDX-License-Identifier: MIT */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int bq_file_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return w < 0 ? -errno : -EIO;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int bq_file_read_all(int fd, void *data, size_t len)
{
	uint8_t *p = data;

	while (len > 0) {
		ssize_t r = read(fd, p, len);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			return r < 0 ? -errno : -EIO;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Make the rename durable: fsync the directory holding path (best effort). */
static void sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash) {
		snprintf(dir, sizeof(dir), ".");
	} else if (slash == path) {
		snprintf(dir, sizeof(dir), "/");
	} else {
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

static int open_tmp(const char *tmp, mode_t mode)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

	/* A crashed writer with our pid left it: remove it once and try again. O_EXCL
	 * keeps the retry from following a link planted in its place. */
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	}
	return fd < 0 ? -errno : fd;
}

int bq_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
			 bool replace)
{
	char tmp[PATH_MAX];
	int fd, rc, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		return -ENAMETOOLONG;
	}
	fd = open_tmp(tmp, mode);
	if (fd < 0) {
		return fd;
	}
	rc = bq_file_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
	}
	if (close(fd) < 0 && rc == 0) {
		rc = -errno;
	}
	if (rc == 0) {
		if (replace) {
			rc = rename(tmp, path) < 0 ? -errno : 0;
		} else {
			/* link() fails with EEXIST instead of replacing: first writer wins. */
			rc = link(tmp, path) < 0 ? -errno : 0;
		}
	}
	unlink(tmp); /* after rename it is already gone; after link it is a second name */
	if (rc == 0) {
		sync_dir(path);
	}
	return rc;
}
