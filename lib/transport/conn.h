/* SPDX-License-Identifier: MIT */
/*
 * conn: one byte-stream connection over any transport, behind one vtable (Redis's
 * ConnectionType, BlueZ's mesh-io). Backends: tcp, unix, bt-rfcomm, bt-l2cap (BlueZ
 * sockets) and an in-memory pair for unit tests. Protocol engines hold a struct
 * bq_conn and never learn which backend they have.
 *
 * Every connection is non-blocking and registered with the loop. The owner sets one
 * event callback; events:
 *   BQ_CONN_CONNECTED  an outgoing connect finished
 *   BQ_CONN_READABLE   bq_conn_read will return data or EOF
 *   BQ_CONN_WRITABLE   the output buffer drained (only while want_write is on)
 *   BQ_CONN_ERROR      the connection failed; bq_conn_error() says why. The owner
 *                      closes it. No other event follows.
 * Where the kernel has no Bluetooth, connecting or listening on bt-* fails at once
 * with -EAFNOSUPPORT and the error text
 * "Bluetooth is not available on this machine (address family not supported)".
 */
#ifndef BQ_TRANSPORT_CONN_H
#define BQ_TRANSPORT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "loop/loop.h"
#include "transport/addr.h"

struct bq_conn;
struct bq_listener;

enum {
	BQ_CONN_CONNECTED = 1u << 0,
	BQ_CONN_READABLE = 1u << 1,
	BQ_CONN_WRITABLE = 1u << 2,
	BQ_CONN_ERROR = 1u << 3,
};

typedef void (*bq_conn_cb)(struct bq_conn *c, unsigned events, void *user_data);
/* The listener hands over a new connection; the callee owns it (and sets its cb). */
typedef void (*bq_accept_cb)(struct bq_listener *l, struct bq_conn *c, void *user_data);

/*
 * Start connecting. On 0, *out is a connection in progress: BQ_CONN_CONNECTED or
 * BQ_CONN_ERROR follows through cb. On failure (bad address family, no Bluetooth,
 * out of descriptors) returns a negative errno, writes a one-line reason to err and
 * never calls cb.
 */
int bq_conn_connect(struct bq_loop *loop, const struct bq_addr *addr, bq_conn_cb cb,
		    void *user_data, struct bq_conn **out, char *err, size_t errlen);

void bq_conn_set_cb(struct bq_conn *c, bq_conn_cb cb, void *user_data);
/* >0 bytes read, 0 at end of stream, -EAGAIN when nothing is there, or a negative errno. */
ssize_t bq_conn_read(struct bq_conn *c, void *buf, size_t len);
/* Bytes written (possibly fewer than asked), -EAGAIN, or a negative errno. */
ssize_t bq_conn_writev(struct bq_conn *c, const struct iovec *iov, int iovcnt);
/* Ask for BQ_CONN_WRITABLE when the connection can take more bytes. */
void bq_conn_want_write(struct bq_conn *c, bool on);
/* Close and free. No callback runs after this returns; safe inside the conn's own callback. */
void bq_conn_close(struct bq_conn *c);

bool bq_conn_connected(const struct bq_conn *c);
/* Negative errno of the failure, 0 if none. */
int bq_conn_error(const struct bq_conn *c);
/* One line describing the failure ("connection refused by tcp://127.0.0.1:7000"). */
const char *bq_conn_error_text(const struct bq_conn *c);
/* The peer's address as text ("tcp://127.0.0.1:40122", "unix:", "mem:a"). */
const char *bq_conn_peer(const struct bq_conn *c);
enum bq_addr_kind bq_conn_kind(const struct bq_conn *c);
/* The descriptor, or -1 for the in-memory backend. */
int bq_conn_fd(const struct bq_conn *c);

/*
 * Listen. On failure returns a negative errno and a line naming the address
 * ("tcp port 8001 is already in use", "unix socket /run/x.sock is already in use").
 * An existing UNIX socket file nobody listens on is replaced.
 */
int bq_listener_new(struct bq_loop *loop, const struct bq_addr *addr, bq_accept_cb cb,
		    void *user_data, struct bq_listener **out, char *err, size_t errlen);
/* Closes the socket (and unlinks a UNIX path it created). */
void bq_listener_free(struct bq_listener *l);
/* For tcp://host:0: the port the kernel chose. */
int bq_listener_port(const struct bq_listener *l);

/*
 * An in-memory pair for unit tests: bytes written to one end become readable at the
 * other on the next loop iteration. Each end holds at most max_buffered bytes in flight
 * (then writes return -EAGAIN). Closing one end gives the other end EOF.
 */
int bq_conn_mem_pair(struct bq_loop *loop, size_t max_buffered, struct bq_conn **a,
		     struct bq_conn **b);

/*
 * Bluetooth socket set-up exposed for unit tests on machines without Bluetooth:
 * fill a sockaddr for the address (byte order reversed as BlueZ expects) without
 * creating a socket. Returns the sockaddr length or a negative errno.
 */
struct sockaddr;
int bq_bt_sockaddr(const struct bq_addr *addr, struct sockaddr *sa, size_t salen);

#endif
