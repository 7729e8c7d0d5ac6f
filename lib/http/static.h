/* SPDX-License-Identifier: MIT */
/*
 * http/static: the web UI's files, served from memory.
 *
 * Every regular file under a directory is read once, at load (before the loop runs: a
 * request never waits for the disk), with its MIME type from the extension and an
 * ETag from a BLAKE2b hash of its bytes, so a browser revalidates with If-None-Match
 * and gets 304 until the file changes. Edits on disk show after a restart (or a new
 * load). Names starting with '.' and anything that is not a regular file or a
 * directory (links, sockets) are skipped, and a request can only name a file that was
 * loaded: no path from a request ever reaches the file system.
 *
 * Limits (a directory that passes them is refused at load with one line):
 * BQ_HTTP_STATIC_FILES_MAX files, BQ_HTTP_STATIC_FILE_MAX bytes each,
 * BQ_HTTP_STATIC_TOTAL_MAX in all, BQ_HTTP_STATIC_DEPTH_MAX levels.
 */
#ifndef BQ_HTTP_STATIC_H
#define BQ_HTTP_STATIC_H

#include <stddef.h>

#include "core/log.h"
#include "http/server.h"

#define BQ_HTTP_STATIC_FILES_MAX 1024
#define BQ_HTTP_STATIC_FILE_MAX (8u << 20)
#define BQ_HTTP_STATIC_TOTAL_MAX (64u << 20)
#define BQ_HTTP_STATIC_DEPTH_MAX 8

struct bq_http_static;

/*
 * Load every file under dir. 0 and *out; or a negative errno and one line in err:
 * -ENOENT/-ENOTDIR/-EACCES (dir), -EFBIG (a limit), -ENOMEM. log is borrowed.
 */
int bq_http_static_load(const char *dir, struct bq_log *log, struct bq_http_static **out, char *err,
			size_t errlen);
void bq_http_static_free(struct bq_http_static *st);
size_t bq_http_static_count(const struct bq_http_static *st);

/*
 * Answer a GET or HEAD (a bq_http_handler_cb with st as its user data, for
 * cfg.fallback). The path maps to a file as: "/" and ".../" to their index.html, "/x"
 * to "x", else "x.html" (so "/chat" finds chat.html). 200 with Content-Type, ETag and
 * "Cache-Control: no-cache"; 304 when If-None-Match names the ETag (or is "*"); the
 * server's 404 JSON otherwise.
 */
void bq_http_static_serve(struct bq_http_req *req, void *st);

/* The MIME type for a file name by its extension ("application/octet-stream"). */
const char *bq_http_static_mime(const char *name);

#endif
