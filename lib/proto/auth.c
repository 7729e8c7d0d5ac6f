/* SPDX-License-Identifier: MIT */
/*
 * Frame tags with the mesh network key, and the key file. The tag covers bytes
 * [2, len - 16) of a frame: everything but the length field (implied by the frame's
 * extent) and the tag itself.
 */
#include "proto/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/cursor.h"
#include "proto/frame.h"

struct bq_auth {
	uint8_t key[BQ_KEY_LEN];
};

struct bq_auth *bq_auth_new(const uint8_t key[BQ_KEY_LEN])
{
	struct bq_auth *a;

	/* Idempotent; it picks the fastest BLAKE2b implementation for this CPU. */
	if (sodium_init() < 0) {
		return NULL;
	}
	a = bq_malloc(sizeof(*a));
	if (!a) {
		return NULL;
	}
	memcpy(a->key, key, BQ_KEY_LEN);
	return a;
}

void bq_auth_free(struct bq_auth *a)
{
	if (!a) {
		return;
	}
	sodium_memzero(a->key, sizeof(a->key));
	bq_free(a);
}

/*
 * The frame must be whole (its length field agrees with len), carry the AUTH flag and
 * be at least a minimal header plus a tag.
 */
static int tagged_frame(const uint8_t *frame, size_t len)
{
	struct bq_cur c;
	uint16_t flen;
	uint8_t version, type, flags;

	if (!frame || len < BQ_FRAME_HEADER_MIN + BQ_TAG_LEN || len > BQ_FRAME_MAX) {
		return 0;
	}
	bq_cur_init(&c, frame, len);
	bq_cur_u16be(&c, &flen);
	bq_cur_u8(&c, &version);
	bq_cur_u8(&c, &type);
	bq_cur_u8(&c, &flags);
	return bq_cur_error(&c) == 0 && (size_t)flen + 2 == len && (flags & BQ_FF_AUTH);
}

static int compute_tag(const struct bq_auth *a, const uint8_t *frame, size_t len,
		       uint8_t tag[BQ_TAG_LEN])
{
	if (crypto_generichash(tag, BQ_TAG_LEN, frame + 2, len - 2 - BQ_TAG_LEN, a->key,
			       BQ_KEY_LEN) != 0) {
		return -EINVAL;
	}
	return 0;
}

int bq_auth_sign(const struct bq_auth *a, uint8_t *frame, size_t len)
{
	if (!a || !tagged_frame(frame, len)) {
		return -EINVAL;
	}
	return compute_tag(a, frame, len, frame + len - BQ_TAG_LEN);
}

int bq_auth_verify(const struct bq_auth *a, const uint8_t *frame, size_t len)
{
	uint8_t tag[BQ_TAG_LEN];
	int rc = -EBADMSG;

	if (!a || !tagged_frame(frame, len)) {
		return -EBADMSG;
	}
	if (compute_tag(a, frame, len, tag) == 0 &&
	    sodium_memcmp(tag, frame + len - BQ_TAG_LEN, BQ_TAG_LEN) == 0) {
		rc = 0;
	}
	sodium_memzero(tag, sizeof(tag));
	return rc;
}

/* ---- key file ---------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Fill err (if given) and return rc. */
static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* Read exactly BQ_KEY_LEN bytes; the file was checked to be that size. */
static int read_all(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			return r < 0 ? -errno : -EIO;
		}
		got += (size_t)r;
	}
	return 0;
}

static int write_all(int fd, const uint8_t *buf, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t r = write(fd, buf + put, n - put);

		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			return r < 0 ? -errno : -EIO;
		}
		put += (size_t)r;
	}
	return 0;
}

static int load_key(int fd, const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	struct stat st;
	uint8_t buf[BQ_KEY_LEN];
	int rc;

	if (fstat(fd, &st) < 0) {
		rc = -errno;
		return fail(err, errlen, rc, "cannot stat key file %s: %s", path, strerror(-rc));
	}
	if (!S_ISREG(st.st_mode)) {
		return fail(err, errlen, -EINVAL, "key file %s is not a regular file", path);
	}
	/* A key others can read is no secret; one others can write is not ours. */
	if (st.st_mode & 077) {
		return fail(err, errlen, -EPERM,
			    "key file %s is accessible by group or others (mode %03o); "
			    "run: chmod 600 %s",
			    path, (unsigned)(st.st_mode & 0777), path);
	}
	if (st.st_size != BQ_KEY_LEN) {
		return fail(err, errlen, -EINVAL, "key file %s has %lld bytes, expected %d", path,
			    (long long)st.st_size, BQ_KEY_LEN);
	}
	rc = read_all(fd, buf, sizeof(buf));
	if (rc < 0) {
		sodium_memzero(buf, sizeof(buf));
		return fail(err, errlen, rc, "cannot read key file %s: %s", path, strerror(-rc));
	}
	memcpy(key, buf, BQ_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
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

static int create_key(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	uint8_t buf[BQ_KEY_LEN];
	int fd, rc, n;

	n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		return fail(err, errlen, -ENAMETOOLONG, "key file path %s is too long", path);
	}
	/* O_EXCL: never write through a file or link someone else put there. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EEXIST) {
			return fail(err, errlen, rc,
				    "cannot create key file: %s.tmp exists (another process is "
				    "creating the key, or a crash left it; remove it)",
				    path);
		}
		return fail(err, errlen, rc, "cannot create key file %s.tmp: %s", path,
			    strerror(-rc));
	}
	randombytes_buf(buf, sizeof(buf));
	rc = write_all(fd, buf, sizeof(buf));
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
	}
	if (close(fd) < 0 && rc == 0) {
		rc = -errno;
	}
	if (rc == 0 && rename(tmp, path) < 0) {
		rc = -errno;
	}
	if (rc < 0) {
		sodium_memzero(buf, sizeof(buf));
		unlink(tmp);
		return fail(err, errlen, rc, "cannot write key file %s: %s", path, strerror(-rc));
	}
	sync_dir(path);
	memcpy(key, buf, BQ_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int bq_auth_load_or_create_key(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	int fd, rc;

	if (err && errlen) {
		err[0] = '\0';
	}
	if (!path || !path[0]) {
		return fail(err, errlen, -EINVAL, "no key file path given");
	}
	if (sodium_init() < 0) {
		return fail(err, errlen, -EIO, "libsodium failed to initialise");
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT) {
			return create_key(path, key, err, errlen);
		}
		return fail(err, errlen, rc, "cannot open key file %s: %s", path, strerror(-rc));
	}
	rc = load_key(fd, path, key, err, errlen);
	close(fd);
	return rc;
}
