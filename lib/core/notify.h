/* SPDX-License-Identifier: MIT */
/*
 * notify: systemd's readiness protocol (sd_notify(3)) without libsystemd. A service of
 * Type=notify is "started" only when its main process sends "READY=1" as one datagram
 * to the AF_UNIX socket systemd names in $NOTIFY_SOCKET ("/run/systemd/notify", or
 * "@name" for the abstract namespace). Outside systemd the variable is unset and the
 * call does nothing, so a program calls it unconditionally once it serves requests.
 *
 * systemd learns the sender from SO_PASSCRED on its own socket, so no credentials are
 * attached here; with NotifyAccess=main only the main process may send.
 */
#ifndef BQ_CORE_NOTIFY_H
#define BQ_CORE_NOTIFY_H

#define BQ_NOTIFY_ENV "NOTIFY_SOCKET"
/* Longer than any state a program needs; systemd itself accepts far more. */
#define BQ_NOTIFY_STATE_MAX 4096

/*
 * Send state ("READY=1", "STOPPING=1", "STATUS=text", several joined by '\n') to the
 * socket in $NOTIFY_SOCKET. Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset or empty
 * (not run by systemd: nothing to do), or a negative errno: -EINVAL (empty or oversized
 * state, or a socket name that is neither "/path" nor "@name"), -ENAMETOOLONG, or what
 * socket() and sendto() reported (-ENOENT, -ECONNREFUSED, ...). state is borrowed.
 */
int bq_notify(const char *state);

/* The same to an explicit socket name in $NOTIFY_SOCKET's form (tests). Both borrowed. */
int bq_notify_to(const char *socket_name, const char *state);

#endif
