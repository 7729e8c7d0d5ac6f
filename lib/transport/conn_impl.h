/* SPDX-License-Identifier: MIT */
/*
 * conn_impl: private to lib/transport. The layout of struct bq_conn, the backend vtable
 * and the per-family socket helpers that conn.c combines into the fd backend.
 *
 * Two layers:
 *   struct bq_conn_ops  what a connection does once it exists (read, writev, want_write,
 *                       close). One table for every socket backend (fd_ops in conn.c),
 *                       one for the in-memory pair (mem.c).
 *   struct bq__family   how a socket backend turns a struct bq_addr into sockaddrs, names
 *                       a peer, and prepares a listening address: sock_ip.c (tcp),
 *                       sock_unix.c, sock_bt.c (bt-rfcomm, bt-l2cap).
 */
#ifndef BQ_TRANSPORT_CONN_IMPL_H
#define BQ_TRANSPORT_CONN_IMPL_H

#include <stdbool.h>
#include <sys/socket.h>

#include "transport/conn.h"

#define BQ__ERR_TEXT_MAX 256
#define BQ__TARGETS_MAX 4 /* addresses tried per connect (e.g. ::1, then 127.0.0.1) */
#define BQ__BT_UNAVAILABLE                                                                         \
	"Bluetooth is not available on this machine (address family not supported)"

struct bq_conn_ops {
	/* As bq_conn_read / bq_conn_writev / bq_conn_want_write. */
	ssize_t (*read)(struct bq_conn *c, void *buf, size_t len);
	ssize_t (*writev)(struct bq_conn *c, const struct iovec *iov, int iovcnt);
	void (*want_write)(struct bq_conn *c, bool on);
	/*
	 * Release everything the backend holds (descriptor, timers, buffers) and stop every
	 * event source, so no callback can follow. Called once; conn.c frees the memory,
	 * after the callback on the stack (if any) has returned.
	 */
	void (*close)(struct bq_conn *c);
};

enum bq__conn_state {
	BQ__CONNECTING,
	BQ__CONNECTED,
	BQ__FAILED, /* BQ_CONN_ERROR delivered or due; waiting for the owner to close */
	BQ__CLOSED, /* bq_conn_close ran; memory freed when the dispatch depth drops to 0 */
};

struct bq__connect; /* conn.c: resolved targets, exists only while connecting */

/*
 * One connection. Backends with extra state (mem.c) embed this as their first member
 * and allocate the whole object, so conn.c can bq_free(c).
 */
struct bq_conn {
	const struct bq_conn_ops *ops;
	struct bq_loop *loop; /* borrowed */
	bq_conn_cb cb;
	void *user_data; /* borrowed, the owner's */
	enum bq_addr_kind kind;
	enum bq__conn_state state;
	int fd;		    /* owned; -1 for mem or once closed */
	unsigned io_events; /* BQ_EV_* registered with the loop; 0 = not registered */
	unsigned depth;	    /* our callbacks currently on the stack */
	bool want_write;
	int err;		     /* first failure, negative errno */
	struct bq__connect *pending; /* owned, while connecting */
	struct bq_timer *notify;     /* owned, created only when a connect fails at once */
	char peer[BQ_ADDR_STRLEN];
	char err_text[BQ__ERR_TEXT_MAX];
};

/* One resolved socket address with what socket() needs for it. */
struct bq__sockaddr {
	int family, type, protocol;
	socklen_t len;
	struct sockaddr_storage ss;
};

/* What differs between socket backends; one const table per backend file. */
struct bq__family {
	enum bq_addr_kind kind;
	/*
	 * Fill up to max sockaddrs for a (passive: listening) address. Returns how many (>= 1)
	 * or a negative errno with a line in err.
	 */
	int (*resolve)(const struct bq_addr *a, bool passive, struct bq__sockaddr *out, int max,
		       char *err, size_t errlen);
	/* Socket options for a new connected socket (TCP_NODELAY). NULL = none. */
	void (*configure)(int fd);
	/* Before bind: e.g. remove a stale UNIX socket file. NULL = nothing to do. */
	int (*prepare_listen)(const struct bq_addr *a, char *err, size_t errlen);
	/* Peer text for an accepted connection ("tcp://127.0.0.1:40122"). */
	void (*peer_text)(const struct sockaddr *sa, socklen_t len, char *out, size_t cap);
	/* "tcp port 8001", "unix socket /x", "bt-rfcomm channel 3": used in listen errors. */
	void (*listen_name)(const struct bq_addr *a, char *out, size_t cap);
};

extern const struct bq__family bq__tcp_family;
extern const struct bq__family bq__unix_family;
extern const struct bq__family bq__rfcomm_family;
extern const struct bq__family bq__l2cap_family;

/* conn.c */
void bq__conn_init(struct bq_conn *c, struct bq_loop *loop, const struct bq_conn_ops *ops,
		   enum bq_addr_kind kind);
/*
 * Run the owner's callback; frees c afterwards if it was closed inside. Returns false
 * when c is gone (the caller must not touch it again).
 */
bool bq__conn_dispatch(struct bq_conn *c, unsigned events);
/* Record the first failure (later ones keep the first). */
void bq__conn_set_error(struct bq_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * socket() for a target, non-blocking and close-on-exec. A kernel without Bluetooth gives
 * -EAFNOSUPPORT and BQ__BT_UNAVAILABLE in err.
 */
int bq__socket_open(const struct bq__sockaddr *t, char *err, size_t errlen);

#endif
