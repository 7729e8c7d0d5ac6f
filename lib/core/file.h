/* SPDX-License-Identifier: MIT */
/*
 * file: writing small files so that readers never see half of one. Key files, address
 * maps and (later) state snapshots go through here.
 */
#ifndef BQ_CORE_FILE_H
#define BQ_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * Write len bytes to path atomically: a temporary file beside it ("PATH.tmp.PID",
 * created with O_EXCL and mode, never following a link someone put there) is written,
 * fsynced and moved into place, then the directory is fsynced (best effort).
 * With replace, an existing path is replaced (rename). Without it, an existing path
 * is left alone and -EEXIST returned (link + unlink): two processes creating the same
 * file at once end up agreeing on one content.
 * 0 or a negative errno; the temporary file never stays behind.
 */
int bq_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
			 bool replace);

/* write(2) until everything is written, retrying on EINTR. 0 or a negative errno. */
int bq_file_write_all(int fd, const void *data, size_t len);
/* read(2) exactly len bytes; -EIO on a short file. 0 or a negative errno. */
int bq_file_read_all(int fd, void *data, size_t len);

#endif
