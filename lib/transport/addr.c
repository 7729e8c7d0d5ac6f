/* SPDX-License-Identifier: MIT */
/*
 * Address parsing. Every address reaches us from a command line or a config file, so
 * each rejection names the input and the one thing that is wrong with it, on one line.
 * Parsing is manual indexing over (pointer, length) spans: no sscanf, no strtol.
 */
#include "transport/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define RFCOMM_CHANNEL_MIN 1
#define RFCOMM_CHANNEL_MAX 30
#define HOSTNAME_MAX 253 /* RFC 1035 limit on a full domain name */
#define ECHO_MAX 80	 /* bytes of the user's input repeated in an error */
#define SCHEMES_HINT "use a Bluetooth address, bt-rfcomm://, bt-l2cap://, tcp://, unix:"

/* A (pointer, length) view of part of the input; never NUL-terminated. */
struct span {
	const char *p;
	size_t n;
};

/*
 * Copy user input into an error message: bounded so a 10 kB argument cannot flood the
 * log, and with control bytes replaced so the message stays one line.
 */
static const char *echo(const char *p, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	bool cut = n > ECHO_MAX;

	if (cut) {
		n = ECHO_MAX;
	}
	for (i = 0; i < n && o + 1 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];

		out[o++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
	}
	if (cut && o + 4 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* "invalid <what> '<input>': <reason>" */
__attribute__((format(printf, 5, 6))) static int fail(char *err, size_t errlen, const char *what,
						      const char *input, const char *fmt, ...)
{
	char in[ECHO_MAX + 8];
	int n;
	va_list ap;

	if (!err || errlen == 0) {
		return -EINVAL;
	}
	n = snprintf(err, errlen, "invalid %s '%s': ", what,
		     echo(input, strlen(input), in, sizeof(in)));
	if (n >= 0 && (size_t)n < errlen) {
		va_start(ap, fmt);
		vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Unsigned number, decimal or (with allow_hex) 0x-prefixed hex. -EINVAL when it is not
 * a number, -ERANGE when it exceeds 32 bits (callers then report the text as given).
 */
static int parse_uint(struct span s, bool allow_hex, uint32_t *out)
{
	uint64_t v = 0;
	size_t i = 0;
	unsigned base = 10;

	if (allow_hex && s.n > 2 && s.p[0] == '0' && (s.p[1] == 'x' || s.p[1] == 'X')) {
		base = 16;
		i = 2;
	}
	if (i >= s.n) {
		return -EINVAL;
	}
	for (; i < s.n; i++) {
		int d = base == 16 ? hexval(s.p[i]) : (is_digit(s.p[i]) ? s.p[i] - '0' : -1);

		if (d < 0) {
			return -EINVAL;
		}
		v = v * base + (unsigned)d;
		if (v > UINT32_MAX) {
			return -ERANGE;
		}
	}
	*out = (uint32_t)v;
	return 0;
}

/*
 * Six colon-separated hex pairs. On failure writes the reason (without the prefix) to
 * why, so both bq_bdaddr_parse and the address parser can use it.
 */
static int bdaddr_parse_span(struct span s, uint8_t out[BQ_BDADDR_LEN], char *why, size_t whylen)
{
	struct span g[BQ_BDADDR_LEN];
	size_t i, start = 0, count = 0;
	char tmp[ECHO_MAX + 8];

	for (i = 0; i <= s.n; i++) {
		if (i < s.n && s.p[i] != ':') {
			continue;
		}
		if (count < BQ_BDADDR_LEN) {
			g[count].p = s.p + start;
			g[count].n = i - start;
		}
		count++;
		start = i + 1;
	}
	if (count != BQ_BDADDR_LEN) {
		snprintf(why, whylen, "expected six hex bytes separated by ':' (got %zu)", count);
		return -EINVAL;
	}
	for (i = 0; i < BQ_BDADDR_LEN; i++) {
		int hi = g[i].n == 2 ? hexval(g[i].p[0]) : -1;
		int lo = g[i].n == 2 ? hexval(g[i].p[1]) : -1;

		if (hi < 0 || lo < 0) {
			snprintf(why, whylen, "'%s' is not a hex byte",
				 echo(g[i].p, g[i].n, tmp, sizeof(tmp)));
			return -EINVAL;
		}
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int bq_bdaddr_parse(const char *s, uint8_t out[BQ_BDADDR_LEN])
{
	char why[160];
	uint8_t tmp[BQ_BDADDR_LEN];

	if (!s) {
		return -EINVAL;
	}
	if (bdaddr_parse_span((struct span){s, strlen(s)}, tmp, why, sizeof(why)) < 0) {
		return -EINVAL;
	}
	memcpy(out, tmp, sizeof(tmp));
	return 0;
}

char *bq_bdaddr_format(const uint8_t a[BQ_BDADDR_LEN], char *out)
{
	snprintf(out, BQ_BDADDR_STRLEN, "%02X:%02X:%02X:%02X:%02X:%02X", a[0], a[1], a[2], a[3],
		 a[4], a[5]);
	return out;
}

/*
 * L2CAP PSM validity (Bluetooth Core, Vol 3 Part A, 4.2): the least significant bit of
 * the least significant octet is 1 (the PSM is odd) and the least significant bit of
 * the most significant octet is 0 (so 0x0101 or 0x1101 are invalid, 0x1001 is fine).
 * Values below 0x1001 are assigned by the SIG (SDP 0x0001, RFCOMM 0x0003, ...);
 * binding them needs CAP_NET_BIND_SERVICE on Linux, but they are valid addresses.
 */
static const char *psm_problem(uint32_t psm)
{
	if (psm == 0 || psm > 0xFFFF) {
		return "is out of range 1..0xFFFF";
	}
	if (!(psm & 0x0001)) {
		return "must be odd";
	}
	if (psm & 0x0100) {
		return "must have the lowest bit of its upper byte clear (e.g. 0x1001, 0x1003)";
	}
	return NULL;
}

/* bt-rfcomm://MAC[/CHANNEL] or bt-l2cap://MAC/PSM; rest is what follows "://". */
static int parse_bt(const char *input, const char *rest, enum bq_addr_kind kind,
		    struct bq_addr *out, char *err, size_t errlen)
{
	const char *what = "Bluetooth address";
	const char *slash = strchr(rest, '/');
	struct span mac = {rest, slash ? (size_t)(slash - rest) : strlen(rest)};
	struct span num;
	char why[160], tmp[ECHO_MAX + 8];
	uint32_t v;
	int r;

	if (bdaddr_parse_span(mac, out->bdaddr, why, sizeof(why)) < 0) {
		return fail(err, errlen, what, input, "%s", why);
	}
	out->kind = kind;
	if (!slash) {
		if (kind == BQ_ADDR_L2CAP) {
			return fail(err, errlen, what, input,
				    "missing L2CAP PSM (bt-l2cap://MAC/PSM)");
		}
		out->port = BQ_RFCOMM_DEFAULT_CHANNEL;
		return 0;
	}
	num.p = slash + 1;
	num.n = strlen(num.p);
	echo(num.p, num.n, tmp, sizeof(tmp));
	if (kind == BQ_ADDR_RFCOMM) {
		if (num.n == 0) {
			return fail(err, errlen, what, input, "RFCOMM channel is empty");
		}
		r = parse_uint(num, false, &v);
		if (r == -EINVAL) {
			return fail(err, errlen, what, input, "RFCOMM channel '%s' is not a number",
				    tmp);
		}
		if (r < 0 || v < RFCOMM_CHANNEL_MIN || v > RFCOMM_CHANNEL_MAX) {
			return fail(err, errlen, what, input,
				    "RFCOMM channel %s is out of range %d..%d", tmp,
				    RFCOMM_CHANNEL_MIN, RFCOMM_CHANNEL_MAX);
		}
	} else {
		const char *problem;

		if (num.n == 0) {
			return fail(err, errlen, what, input, "L2CAP PSM is empty");
		}
		r = parse_uint(num, true, &v);
		if (r == -EINVAL) {
			return fail(err, errlen, what, input, "L2CAP PSM '%s' is not a number",
				    tmp);
		}
		problem = r < 0 ? psm_problem(UINT32_MAX) : psm_problem(v);
		if (problem) {
			return fail(err, errlen, what, input, "L2CAP PSM %s %s", tmp, problem);
		}
	}
	out->port = (uint16_t)v;
	return 0;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' ||
	       c == '-';
}

/* "[v6]" contents: an IPv6 address, optionally with a %zone (fe80::1%eth0). */
static bool valid_ipv6(struct span s)
{
	char buf[64];
	struct in6_addr a;
	size_t i, addr_n = s.n;

	for (i = 0; i < s.n; i++) {
		if (s.p[i] == '%') {
			addr_n = i;
			break;
		}
	}
	if (addr_n == 0 || addr_n >= sizeof(buf)) {
		return false;
	}
	if (addr_n < s.n) {
		if (addr_n + 1 == s.n) {
			return false;
		}
		for (i = addr_n + 1; i < s.n; i++) {
			if (!host_char(s.p[i]) && s.p[i] != '_') {
				return false;
			}
		}
	}
	memcpy(buf, s.p, addr_n);
	buf[addr_n] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/* tcp://host:port, tcp://[v6]:port */
static int parse_tcp(const char *input, const char *rest, struct bq_addr *out, char *err,
		     size_t errlen)
{
	const char *what = "address";
	struct span host, port;
	const char *colon;
	char tmp[ECHO_MAX + 8];
	uint32_t v;
	size_t i;
	int r;

	if (rest[0] == '[') {
		const char *close = strchr(rest, ']');

		if (!close) {
			return fail(err, errlen, what, input, "'[' without a closing ']'");
		}
		host.p = rest + 1;
		host.n = (size_t)(close - host.p);
		if (!valid_ipv6(host)) {
			return fail(err, errlen, what, input, "'%s' is not an IPv6 address",
				    echo(host.p, host.n, tmp, sizeof(tmp)));
		}
		if (close[1] != ':') {
			return fail(err, errlen, what, input, "missing port (tcp://[v6]:port)");
		}
		colon = close + 1;
	} else {
		colon = strrchr(rest, ':');
		if (!colon) {
			return fail(err, errlen, what, input, "missing port (tcp://host:port)");
		}
		host.p = rest;
		host.n = (size_t)(colon - rest);
		if (host.n == 0) {
			return fail(err, errlen, what, input, "host is empty");
		}
		if (memchr(host.p, ':', host.n)) {
			return fail(err, errlen, what, input,
				    "an IPv6 address must be in brackets (tcp://[::1]:port)");
		}
		if (host.n > HOSTNAME_MAX) {
			return fail(err, errlen, what, input, "host is longer than %d bytes",
				    HOSTNAME_MAX);
		}
		for (i = 0; i < host.n; i++) {
			if (!host_char(host.p[i])) {
				return fail(err, errlen, what, input,
					    "host has a character that is not allowed ('%s')",
					    echo(host.p + i, 1, tmp, sizeof(tmp)));
			}
		}
	}
	port.p = colon + 1;
	port.n = strlen(port.p);
	if (port.n == 0) {
		return fail(err, errlen, what, input, "port is empty");
	}
	echo(port.p, port.n, tmp, sizeof(tmp));
	r = parse_uint(port, false, &v);
	if (r == -EINVAL) {
		return fail(err, errlen, what, input, "port '%s' is not a number", tmp);
	}
	if (r < 0 || v > 65535) {
		return fail(err, errlen, what, input, "port %s is out of range 0..65535", tmp);
	}
	out->kind = BQ_ADDR_TCP;
	memcpy(out->host, host.p, host.n);
	out->host[host.n] = '\0';
	out->port = (uint16_t)v;
	return 0;
}

/* unix:PATH and mem:NAME: non-empty, fits sun_path with its NUL. */
static int parse_path(const char *input, const char *rest, enum bq_addr_kind kind,
		      struct bq_addr *out, char *err, size_t errlen)
{
	const char *noun = kind == BQ_ADDR_UNIX ? "path" : "name";
	size_t n = strlen(rest);

	if (n == 0) {
		return fail(err, errlen, "address", input, "%s is empty", noun);
	}
	if (n >= BQ_ADDR_PATH_MAX) {
		return fail(err, errlen, "address", input, "%s is %zu bytes, the limit is %d", noun,
			    n, BQ_ADDR_PATH_MAX - 1);
	}
	out->kind = kind;
	memcpy(out->path, rest, n + 1);
	return 0;
}

/*
 * Does a scheme-less string look like an attempt at a MAC? A first group of one or two
 * characters before ':' does ("D8:3A:ZZ:..."); "localhost:8001" and "ftp:x" do not.
 */
static bool looks_like_bdaddr(const char *s)
{
	const char *colon = strchr(s, ':');

	if (strchr(s, '/')) {
		return false;
	}
	return colon && colon - s <= 2;
}

/* A URI scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986). */
static size_t scheme_len(const char *s)
{
	size_t i;

	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) {
		return 0;
	}
	for (i = 1; s[i]; i++) {
		if (!(host_char(s[i]) || s[i] == '+')) {
			break;
		}
	}
	return s[i] == ':' ? i : 0;
}

int bq_addr_parse(const char *s, struct bq_addr *out, char *err, size_t errlen)
{
	static const struct {
		const char *prefix;
		enum bq_addr_kind kind;
	} forms[] = {
		{"bt-rfcomm://", BQ_ADDR_RFCOMM},
		{"bt-l2cap://", BQ_ADDR_L2CAP},
		{"tcp://", BQ_ADDR_TCP},
		{"unix://", BQ_ADDR_UNIX},
		{"mem://", BQ_ADDR_MEM},
		{"unix:", BQ_ADDR_UNIX},
		{"mem:", BQ_ADDR_MEM},
	};
	char why[160], tmp[ECHO_MAX + 8];
	size_t i, n;

	if (err && errlen) {
		err[0] = '\0';
	}
	memset(out, 0, sizeof(*out));
	if (!s || !s[0]) {
		return fail(err, errlen, "address", "", "it is empty (%s)", SCHEMES_HINT);
	}
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		const char *rest = s + strlen(forms[i].prefix);

		if (!starts_with(s, forms[i].prefix)) {
			continue;
		}
		switch (forms[i].kind) {
		case BQ_ADDR_RFCOMM:
		case BQ_ADDR_L2CAP:
			return parse_bt(s, rest, forms[i].kind, out, err, errlen);
		case BQ_ADDR_TCP:
			return parse_tcp(s, rest, out, err, errlen);
		case BQ_ADDR_UNIX:
		case BQ_ADDR_MEM:
			return parse_path(s, rest, forms[i].kind, out, err, errlen);
		}
	}
	if (looks_like_bdaddr(s)) {
		if (bdaddr_parse_span((struct span){s, strlen(s)}, out->bdaddr, why, sizeof(why)) <
		    0) {
			return fail(err, errlen, "Bluetooth address", s, "%s", why);
		}
		out->kind = BQ_ADDR_RFCOMM;
		out->port = BQ_RFCOMM_DEFAULT_CHANNEL;
		out->bare_bdaddr = 1;
		return 0;
	}
	n = scheme_len(s);
	if (n == 0) {
		return fail(err, errlen, "address", s, "not a Bluetooth address or a URL (%s)",
			    SCHEMES_HINT);
	}
	echo(s, n, tmp, sizeof(tmp));
	/* "localhost:8001" is a common slip for tcp://localhost:8001: say so. */
	if (s[n + 1] && strspn(s + n + 1, "0123456789") == strlen(s + n + 1)) {
		return fail(err, errlen, "address", s,
			    "unknown scheme '%s' (did you mean tcp://%s?)", tmp, s);
	}
	return fail(err, errlen, "address", s, "unknown scheme '%s' (%s)", tmp, SCHEMES_HINT);
}

const char *bq_addr_kind_name(enum bq_addr_kind kind)
{
	switch (kind) {
	case BQ_ADDR_TCP:
		return "tcp";
	case BQ_ADDR_UNIX:
		return "unix";
	case BQ_ADDR_RFCOMM:
		return "bt-rfcomm";
	case BQ_ADDR_L2CAP:
		return "bt-l2cap";
	case BQ_ADDR_MEM:
		return "mem";
	}
	return "unknown";
}

int bq_addr_format(const struct bq_addr *a, char *buf, size_t len)
{
	char mac[BQ_BDADDR_STRLEN];
	int n;

	if (!buf || len == 0) {
		return -ENOSPC;
	}
	switch (a->kind) {
	case BQ_ADDR_TCP:
		if (strchr(a->host, ':')) {
			n = snprintf(buf, len, "tcp://[%s]:%u", a->host, (unsigned)a->port);
		} else {
			n = snprintf(buf, len, "tcp://%s:%u", a->host, (unsigned)a->port);
		}
		break;
	case BQ_ADDR_UNIX:
		n = snprintf(buf, len, "unix:%s", a->path);
		break;
	case BQ_ADDR_MEM:
		n = snprintf(buf, len, "mem:%s", a->path);
		break;
	case BQ_ADDR_RFCOMM:
		n = snprintf(buf, len, "bt-rfcomm://%s/%u", bq_bdaddr_format(a->bdaddr, mac),
			     (unsigned)a->port);
		break;
	case BQ_ADDR_L2CAP:
		/* PSMs are conventionally written in hex (0x1001); the parser takes both. */
		n = snprintf(buf, len, "bt-l2cap://%s/0x%04X", bq_bdaddr_format(a->bdaddr, mac),
			     (unsigned)a->port);
		break;
	default:
		buf[0] = '\0';
		return -EINVAL;
	}
	if (n < 0 || (size_t)n >= len) {
		return -ENOSPC;
	}
	return 0;
}

int bq_addr_check(const char *value, char *err, size_t errlen)
{
	struct bq_addr a;

	return bq_addr_parse(value, &a, err, errlen);
}
