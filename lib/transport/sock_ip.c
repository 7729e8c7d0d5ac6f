/* SPDX-License-Identifier: MIT */
/*
 * sock_ip: the tcp backend's family table. Names are resolved with getaddrinfo, which
 * blocks for names that need DNS; blueq's addresses are numeric or "localhost", so that
 * is accepted for now (docs/internals/transport.md). "localhost" itself never reaches
 * the resolver: RFC 6761 says it is always loopback, and a minimal system may have no
 * /etc/hosts at all (a debootstrap root has none), where the seed's
 * http://localhost:5000 must still work.
 */
#include "transport/conn_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_localhost(const char *host)
{
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0) {
		return true;
	}
	return n > 10 && strcasecmp(host + n - 10, ".localhost") == 0;
}

/* Loopback targets for "localhost": IPv4 first (what listeners bind), then ::1. */
static int localhost_targets(const struct bq_addr *a, bool passive, struct bq__sockaddr *out,
			     int max)
{
	int n = 0;

	if (n < max) {
		struct sockaddr_in *in = (struct sockaddr_in *)&out[n].ss;

		memset(&out[n], 0, sizeof(out[n]));
		in->sin_family = AF_INET;
		in->sin_port = htons(a->port);
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		out[n].family = AF_INET;
		out[n].len = sizeof(*in);
		n++;
	}
	if (!passive && n < max) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out[n].ss;

		memset(&out[n], 0, sizeof(out[n]));
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(a->port);
		in6->sin6_addr = in6addr_loopback;
		out[n].family = AF_INET6;
		out[n].len = sizeof(*in6);
		n++;
	}
	for (int i = 0; i < n; i++) {
		out[i].type = SOCK_STREAM;
		out[i].protocol = IPPROTO_TCP;
	}
	return n;
}

static int tcp_resolve(const struct bq_addr *a, bool passive, struct bq__sockaddr *out, int max,
		       char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL, *ai;
	char port[8];
	int r, n = 0, pass;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	if (is_localhost(a->host)) {
		return localhost_targets(a, passive, out, max);
	}
	snprintf(port, sizeof(port), "%u", (unsigned)a->port);
	r = getaddrinfo(a->host, port, &hints, &res);
	if (r != 0) {
		int e = r == EAI_SYSTEM ? errno : 0;

		snprintf(err, errlen, "cannot resolve host '%s': %s", a->host,
			 r == EAI_SYSTEM ? strerror(e) : gai_strerror(r));
		if (r == EAI_MEMORY) {
			return -ENOMEM;
		}
		return e ? -e : -EHOSTUNREACH;
	}
	/*
	 * A listener binds one socket, so "localhost" must pick the family its clients try:
	 * IPv4 first for passive use (a connect to "localhost" tries every target in turn).
	 */
	for (pass = 0; pass < 2; pass++) {
		for (ai = res; ai && n < max; ai = ai->ai_next) {
			bool v4 = ai->ai_family == AF_INET;

			if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
			    ai->ai_addrlen > sizeof(out[n].ss)) {
				continue;
			}
			if (passive && (pass == 0) != v4) {
				continue;
			}
			if (!passive && pass == 1) {
				continue;
			}
			out[n].family = ai->ai_family;
			out[n].type = SOCK_STREAM;
			out[n].protocol = IPPROTO_TCP;
			out[n].len = ai->ai_addrlen;
			memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
			n++;
		}
	}
	freeaddrinfo(res);
	if (n == 0) {
		snprintf(err, errlen, "host '%s' has no IPv4 or IPv6 address", a->host);
		return -EHOSTUNREACH;
	}
	return n;
}

/* Frames are small and latency matters more than packet count: no Nagle delay. */
static void tcp_configure(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void tcp_peer_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, cap, "tcp://%s:%u", host, (unsigned)ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		/* A v4 client of a [::] listener reads better as plain IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host));
			snprintf(out, cap, "tcp://%s:%u", host, (unsigned)ntohs(in6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
			snprintf(out, cap, "tcp://[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
		}
	} else {
		snprintf(out, cap, "tcp:");
	}
}

static void tcp_listen_name(const struct bq_addr *a, char *out, size_t cap)
{
	snprintf(out, cap, "tcp port %u", (unsigned)a->port);
}

const struct bq__family bq__tcp_family = {
	.kind = BQ_ADDR_TCP,
	.resolve = tcp_resolve,
	.configure = tcp_configure,
	.peer_text = tcp_peer_text,
	.listen_name = tcp_listen_name,
};
