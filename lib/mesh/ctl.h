/* SPDX-License-Identifier: MIT */
/*
 * ctl: a tiny line server for control sockets (blueq-node's JSON status socket; any
 * daemon can reuse it). It listens on a UNIX socket, reads newline-terminated command
 * lines (at most BQ_CTL_LINE_MAX bytes; a longer line is answered with an error and
 * the connection closed), calls the handler once per line and writes what the handler
 * appended to reply followed by one newline. A connection may send many lines; the
 * answers come back in order. Connections and output are bounded.
 */
#ifndef BQ_MESH_CTL_H
#define BQ_MESH_CTL_H

#include <stddef.h>

#include "core/buf.h"
#include "core/log.h"
#include "loop/loop.h"

#define BQ_CTL_LINE_MAX 256
#define BQ_CTL_CONN_MAX 64

struct bq_ctl;

/*
 * line: the command without its newline (and without a trailing '\r'), NUL-terminated,
 * borrowed for the call. Append one answer line (no newline) to reply.
 */
typedef void (*bq_ctl_handler_cb)(const char *line, struct bq_buf *reply, void *user_data);

/*
 * Listen on the UNIX socket path (a stale socket file is replaced). loop and log are
 * borrowed; path is copied. NULL with a line in err on failure (e.g. in use).
 */
struct bq_ctl *bq_ctl_new(struct bq_loop *loop, const char *path, bq_ctl_handler_cb handler,
			  void *user_data, struct bq_log *log, char *err, size_t errlen);
/* Close every connection, stop listening and remove the socket file. NULL is fine. */
void bq_ctl_free(struct bq_ctl *c);

#endif
