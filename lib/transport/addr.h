/* SPDX-License-Identifier: MIT */
/*
 * addr: parsing and formatting of every address form blueq accepts.
 *
 *   D8:3A:DD:03:1E:77          a Bluetooth address (RFCOMM, default channel 1)
 *   bt-rfcomm://MAC/CHANNEL    RFCOMM channel 1..30 ("/CHANNEL" optional, default 1)
 *   bt-l2cap://MAC/PSM         L2CAP PSM, decimal or 0x hex, 1..0xFFFF: odd, and the
 *                              lowest bit of the upper byte clear (Core spec rule);
 *                              0x1001..0xFFFF are the dynamic PSMs
 *   tcp://host:port            host: a name of [A-Za-z0-9.-], an IPv4 address or [IPv6];
 *                              port 0..65535 (0 = any free port, for listening)
 *   unix:/path                 an absolute or relative path, < 108 bytes (also unix://path)
 *   mem:NAME                   an in-memory pair (tests only)
 *
 * A value type: parse into a struct on the stack.
 */
#ifndef BQ_TRANSPORT_ADDR_H
#define BQ_TRANSPORT_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define BQ_BDADDR_LEN 6
#define BQ_BDADDR_STRLEN 18 /* "D8:3A:DD:03:1E:77" + NUL */
#define BQ_ADDR_HOST_MAX 256
#define BQ_ADDR_PATH_MAX 108 /* sizeof(sun_path) */
#define BQ_ADDR_STRLEN 400   /* enough for any formatted address */

enum bq_addr_kind {
	BQ_ADDR_TCP,
	BQ_ADDR_UNIX,
	BQ_ADDR_RFCOMM,
	BQ_ADDR_L2CAP,
	BQ_ADDR_MEM,
};

struct bq_addr {
	enum bq_addr_kind kind;
	char host[BQ_ADDR_HOST_MAX];    /* TCP: without brackets */
	uint16_t port;                  /* TCP port, RFCOMM channel or L2CAP PSM */
	char path[BQ_ADDR_PATH_MAX];    /* UNIX path, MEM name */
	uint8_t bdaddr[BQ_BDADDR_LEN];  /* in display order: D8 first */
	int bare_bdaddr;                /* 1 when given as a plain MAC (no scheme) */
};

#define BQ_RFCOMM_DEFAULT_CHANNEL 1

/*
 * Parse any form above. Returns 0, or -EINVAL with a one-line reason in err
 * ("invalid Bluetooth address 'D8:3A:ZZ:03:1E:77': 'ZZ' is not a hex byte").
 */
int bq_addr_parse(const char *s, struct bq_addr *out, char *err, size_t errlen);
/*
 * Canonical text form (bt-rfcomm://D8:3A:DD:03:1E:77/1, bt-l2cap://D8:3A:DD:03:1E:77/0x1001,
 * tcp://[::1]:80, unix:/p). 0, or -ENOSPC when buf is too small (BQ_ADDR_STRLEN always fits).
 */
int bq_addr_format(const struct bq_addr *a, char *buf, size_t len);
/* The transport's name: "tcp", "unix", "bt-rfcomm", "bt-l2cap", "mem". */
const char *bq_addr_kind_name(enum bq_addr_kind kind);

/* Exactly six colon-separated hex pairs, case-insensitive. 0 or -EINVAL. */
int bq_bdaddr_parse(const char *s, uint8_t out[BQ_BDADDR_LEN]);
/* Upper-case "D8:3A:DD:03:1E:77"; out must hold BQ_BDADDR_STRLEN bytes. Returns out. */
char *bq_bdaddr_format(const uint8_t a[BQ_BDADDR_LEN], char *out);

/* An option-table check callback accepting any address form above. */
int bq_addr_check(const char *value, char *err, size_t errlen);

#endif
