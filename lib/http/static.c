/* SPDX-License-Identifier: MIT */
/*
 * http/static: see static.h. The files sit in one map from their request path
 * ("/index.html") to the bytes, loaded once; serving is a lookup and a copy.
 */
#include "http/static.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/map.h"

static const char *const MOD = "static";

#define PATH_MAX_LEN 1024
#define ETAG_BYTES 16 /* 128 bits of BLAKE2b: a collision between two versions is moot */

struct static_file {
	char *data;
	size_t len;
	const char *mime;
	char etag[2 + 2 * ETAG_BYTES + 1]; /* quoted hex */
};

struct bq_http_static {
	struct bq_log *log;
	struct bq_map *files; /* "/path" -> struct static_file */
	size_t total;
};

struct load_ctx {
	struct bq_http_static *st;
	char *err;
	size_t errlen;
};

static const struct {
	const char *ext;
	const char *mime;
} mime_types[] = {
	{"html", "text/html; charset=utf-8"},
	{"htm", "text/html; charset=utf-8"},
	{"css", "text/css; charset=utf-8"},
	{"js", "text/javascript; charset=utf-8"},
	{"mjs", "text/javascript; charset=utf-8"},
	{"json", "application/json"},
	{"webmanifest", "application/manifest+json"},
	{"svg", "image/svg+xml"},
	{"png", "image/png"},
	{"jpg", "image/jpeg"},
	{"jpeg", "image/jpeg"},
	{"gif", "image/gif"},
	{"webp", "image/webp"},
	{"ico", "image/x-icon"},
	{"woff2", "font/woff2"},
	{"woff", "font/woff"},
	{"txt", "text/plain; charset=utf-8"},
	{"map", "application/json"},
};

const char *bq_http_static_mime(const char *name)
{
	const char *dot = strrchr(name, '.');
	const char *slash = strrchr(name, '/');

	if (dot && (!slash || dot > slash)) {
		for (size_t i = 0; i < sizeof(mime_types) / sizeof(mime_types[0]); i++) {
			if (strcasecmp(dot + 1, mime_types[i].ext) == 0) {
				return mime_types[i].mime;
			}
		}
	}
	return "application/octet-stream";
}

static void file_free(struct static_file *f)
{
	if (f) {
		bq_free(f->data);
		bq_free(f);
	}
}

void bq_http_static_free(struct bq_http_static *st)
{
	size_t pos = 0;
	struct static_file *f;

	if (!st) {
		return;
	}
	while ((f = bq_map_next(st->files, &pos, NULL, NULL))) {
		file_free(f);
	}
	bq_map_free(st->files);
	bq_free(st);
}

size_t bq_http_static_count(const struct bq_http_static *st)
{
	return st ? bq_map_size(st->files) : 0;
}

static int load_file(struct load_ctx *c, const char *fs_path, const char *url_path)
{
	struct bq_http_static *st = c->st;
	unsigned char h[ETAG_BYTES];
	struct static_file *f;
	struct stat sb;
	int fd, rc;

	if (bq_map_size(st->files) >= BQ_HTTP_STATIC_FILES_MAX) {
		snprintf(c->err, c->errlen, "web files: more than %d files",
			 BQ_HTTP_STATIC_FILES_MAX);
		return -EFBIG;
	}
	fd = open(fs_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		snprintf(c->err, c->errlen, "web files: cannot open %.300s: %s", fs_path,
			 strerror(errno));
		return rc;
	}
	if (fstat(fd, &sb) < 0 || sb.st_size < 0) {
		rc = -errno;
		close(fd);
		snprintf(c->err, c->errlen, "web files: cannot stat %.300s", fs_path);
		return rc ? rc : -EIO;
	}
	if ((uint64_t)sb.st_size > BQ_HTTP_STATIC_FILE_MAX ||
	    st->total + (size_t)sb.st_size > BQ_HTTP_STATIC_TOTAL_MAX) {
		close(fd);
		snprintf(c->err, c->errlen,
			 "web files: %.300s is over the limit (%u bytes a file, %u in all)",
			 fs_path, BQ_HTTP_STATIC_FILE_MAX, BQ_HTTP_STATIC_TOTAL_MAX);
		return -EFBIG;
	}
	f = bq_calloc(1, sizeof(*f));
	if (f) {
		f->len = (size_t)sb.st_size;
		f->data = bq_malloc(f->len + 1); /* +1: a zero-length file still gets a buffer */
	}
	if (!f || !f->data) {
		close(fd);
		file_free(f);
		snprintf(c->err, c->errlen, "web files: out of memory");
		return -ENOMEM;
	}
	rc = bq_file_read_all(fd, f->data, f->len);
	close(fd);
	if (rc < 0) {
		file_free(f);
		snprintf(c->err, c->errlen, "web files: cannot read %.300s: %s", fs_path,
			 strerror(-rc));
		return rc;
	}
	f->mime = bq_http_static_mime(url_path);
	crypto_generichash(h, sizeof(h), (const unsigned char *)f->data, f->len, NULL, 0);
	f->etag[0] = '"';
	sodium_bin2hex(f->etag + 1, sizeof(f->etag) - 1, h, sizeof(h));
	f->etag[sizeof(f->etag) - 2] = '"';
	f->etag[sizeof(f->etag) - 1] = '\0';
	if (bq_map_set(st->files, url_path, strlen(url_path), f) < 0) {
		file_free(f);
		snprintf(c->err, c->errlen, "web files: out of memory");
		return -ENOMEM;
	}
	st->total += f->len;
	return 0;
}

static int load_dir(struct load_ctx *c, const char *fs_dir, const char *url_dir, unsigned depth)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (depth > BQ_HTTP_STATIC_DEPTH_MAX) {
		snprintf(c->err, c->errlen, "web files: %.300s is nested deeper than %d levels",
			 fs_dir, BQ_HTTP_STATIC_DEPTH_MAX);
		return -EFBIG;
	}
	d = opendir(fs_dir);
	if (!d) {
		rc = -errno;
		snprintf(c->err, c->errlen, "web files: cannot open %.300s: %s", fs_dir,
			 strerror(errno));
		return rc;
	}
	while (rc == 0 && (errno = 0, e = readdir(d))) {
		char fs_path[PATH_MAX_LEN], url_path[PATH_MAX_LEN];
		struct stat sb;
		int n1, n2;

		if (e->d_name[0] == '.') {
			continue; /* ".", "..", and hidden files (editor swap files, .git) */
		}
		n1 = snprintf(fs_path, sizeof(fs_path), "%s/%s", fs_dir, e->d_name);
		n2 = snprintf(url_path, sizeof(url_path), "%s/%s", url_dir, e->d_name);
		if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(fs_path) ||
		    (size_t)n2 >= sizeof(url_path)) {
			snprintf(c->err, c->errlen, "web files: path too long under %.300s",
				 fs_dir);
			rc = -ENAMETOOLONG;
			break;
		}
		if (lstat(fs_path, &sb) < 0) {
			continue; /* gone since readdir */
		}
		if (S_ISDIR(sb.st_mode)) {
			rc = load_dir(c, fs_path, url_path, depth + 1);
		} else if (S_ISREG(sb.st_mode)) {
			rc = load_file(c, fs_path, url_path);
		}
	}
	if (rc == 0 && errno != 0) {
		rc = -errno;
		snprintf(c->err, c->errlen, "web files: cannot list %.300s: %s", fs_dir,
			 strerror(errno));
	}
	closedir(d);
	return rc;
}

int bq_http_static_load(const char *dir, struct bq_log *log, struct bq_http_static **out, char *err,
			size_t errlen)
{
	struct bq_http_static *st;
	struct load_ctx c;
	int rc;

	*out = NULL;
	if (sodium_init() < 0) {
		snprintf(err, errlen, "web files: libsodium failed to start");
		return -EIO;
	}
	st = bq_calloc(1, sizeof(*st));
	if (st) {
		st->log = log;
		st->files = bq_map_new();
	}
	if (!st || !st->files) {
		bq_http_static_free(st);
		snprintf(err, errlen, "web files: out of memory");
		return -ENOMEM;
	}
	c = (struct load_ctx){.st = st, .err = err, .errlen = errlen};
	rc = load_dir(&c, dir, "", 0);
	if (rc < 0) {
		bq_http_static_free(st);
		return rc;
	}
	bq_info(log, MOD, "msg=\"web files loaded\" dir=\"%s\" files=%zu bytes=%zu", dir,
		bq_map_size(st->files), st->total);
	*out = st;
	return 0;
}

static const struct static_file *find(const struct bq_http_static *st, const char *path)
{
	char alt[PATH_MAX_LEN];
	const struct static_file *f;
	size_t len = strlen(path);
	int n;

	if (len == 0 || path[0] != '/' || len >= sizeof(alt) - 16) {
		return NULL;
	}
	if (path[len - 1] == '/') {
		n = snprintf(alt, sizeof(alt), "%sindex.html", path);
		return n > 0 ? bq_map_get(st->files, alt, (size_t)n) : NULL;
	}
	f = bq_map_get(st->files, path, len);
	if (f) {
		return f;
	}
	n = snprintf(alt, sizeof(alt), "%s.html", path);
	return n > 0 ? bq_map_get(st->files, alt, (size_t)n) : NULL;
}

/* If-None-Match: "*" or a list of (possibly weak) entity tags, compared weakly. */
static bool etag_matches(const char *inm, const char *etag)
{
	size_t elen = strlen(etag);

	while (inm && *inm) {
		const char *end;

		while (*inm == ' ' || *inm == '\t' || *inm == ',') {
			inm++;
		}
		if (*inm == '*') {
			return true;
		}
		if (strncmp(inm, "W/", 2) == 0) {
			inm += 2;
		}
		end = strchr(inm, ',');
		if (!end) {
			end = inm + strlen(inm);
		}
		while (end > inm && (end[-1] == ' ' || end[-1] == '\t')) {
			end--;
		}
		if ((size_t)(end - inm) == elen && memcmp(inm, etag, elen) == 0) {
			return true;
		}
		inm = strchr(inm, ',');
	}
	return false;
}

void bq_http_static_serve(struct bq_http_req *req, void *ud)
{
	const struct bq_http_static *st = ud;
	const struct static_file *f = st ? find(st, bq_http_req_path(req)) : NULL;

	if (!f) {
		bq_http_reply_not_found(req);
		return;
	}
	/* no-cache: always revalidate, so a new version shows at once (a 304 is cheap). */
	if (bq_http_req_add_header(req, "ETag", f->etag) < 0 ||
	    bq_http_req_add_header(req, "Cache-Control", "no-cache") < 0) {
		bq_http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (etag_matches(bq_http_req_header(req, "If-None-Match"), f->etag)) {
		bq_http_reply(req, 304, f->mime, NULL, 0);
		return;
	}
	bq_http_reply(req, 200, f->mime, f->data, f->len);
}
