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
#include "core/file.h"
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
	rc = bq_file_read_all(fd, buf, sizeof(buf));
	if (rc < 0) {
		sodium_memzero(buf, sizeof(buf));
		return fail(err, errlen, rc, "cannot read key file %s: %s", path, strerror(-rc));
	}
	memcpy(key, buf, BQ_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

static int load_key_file(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen);

/*
 * A new random key, written without replacing anything: when two processes create the
 * key at the same moment, the second finds the first one's file and loads it, so both
 * end up with the same key.
 */
static int create_key(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	uint8_t buf[BQ_KEY_LEN];
	int rc;

	randombytes_buf(buf, sizeof(buf));
	rc = bq_file_write_atomic(path, buf, sizeof(buf), 0600, false);
	if (rc == 0) {
		memcpy(key, buf, BQ_KEY_LEN);
	}
	sodium_memzero(buf, sizeof(buf));
	if (rc == -EEXIST) {
		return load_key_file(path, key, err, errlen);
	}
	if (rc < 0) {
		return fail(err, errlen, rc, "cannot create key file %s: %s", path, strerror(-rc));
	}
	return 0;
}

static int load_key_file(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		rc = -errno;
		return fail(err, errlen, rc, "cannot open key file %s: %s", path, strerror(-rc));
	}
	rc = load_key(fd, path, key, err, errlen);
	close(fd);
	return rc;
}

int bq_auth_load_or_create_key(const char *path, uint8_t key[BQ_KEY_LEN], char *err, size_t errlen)
{
	if (err && errlen) {
		err[0] = '\0';
	}
	if (!path || !path[0]) {
		return fail(err, errlen, -EINVAL, "no key file path given");
	}
	if (sodium_init() < 0) {
		return fail(err, errlen, -EIO, "libsodium failed to initialise");
	}
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		return create_key(path, key, err, errlen);
	}
	return load_key_file(path, key, err, errlen);
}
