/* SPDX-License-Identifier: MIT */
/*
 * addrmap: the simulator's map from Bluetooth addresses to sockets, so a program given
 * only a MAC (the seed's "D8:3A:DD:03:1E:77") reaches the simulated node behind it.
 *
 * Map file, one entry a line, '#' starts a comment, blank lines ignored:
 *   D8:3A:DD:03:1E:77 unix:/run/blueq/sim/node-1.sock
 *   02:00:00:00:00:02 tcp://127.0.0.1:7002
 * Targets must be unix: or tcp:// (a map never points at another Bluetooth address).
 * Malformed lines are skipped. The file is bounded: at most BQ_ADDRMAP_FILE_MAX bytes,
 * lines of at most BQ_ADDRMAP_LINE_MAX bytes (longer ones are skipped).
 *
 * Which file: $BLUEQ_ADDR_MAP when set and non-empty; else /run/blueq/sim-addrmap when
 * that file exists; else /tmp/blueq-sim-addrmap.
 */
#ifndef BQ_TRANSPORT_ADDRMAP_H
#define BQ_TRANSPORT_ADDRMAP_H

#include <stddef.h>
#include <stdint.h>

#include "transport/addr.h"

#define BQ_ADDRMAP_ENV "BLUEQ_ADDR_MAP"
#define BQ_ADDRMAP_RUN_PATH "/run/blueq/sim-addrmap"
#define BQ_ADDRMAP_TMP_PATH "/tmp/blueq-sim-addrmap"
#define BQ_ADDRMAP_FILE_MAX (64 * 1024)
#define BQ_ADDRMAP_LINE_MAX 512

/*
 * Resolve through the default map file (above). If in is a Bluetooth address (bt-rfcomm
 * or bt-l2cap) listed in the map, *out is the mapped address and 1 is returned; otherwise
 * *out = *in and 0 is returned (also when there is no map file). A map file that exists
 * but cannot be read (or is over the size limit) gives *out = *in, a negative errno and a
 * line in err. in and out may be the same struct.
 */
int bq_addrmap_resolve(const struct bq_addr *in, struct bq_addr *out, char *err, size_t errlen);

/* As bq_addrmap_resolve with an explicit map file (path borrowed). */
int bq_addrmap_resolve_file(const char *path, const struct bq_addr *in, struct bq_addr *out,
			    char *err, size_t errlen);

/*
 * The map file a resolver reads now (the rules above). Writes into buf (cap bytes) and
 * returns buf; the path is truncated to fit.
 */
const char *bq_addrmap_default_path(char *buf, size_t cap);

/*
 * The path a simulator should write by default: $BLUEQ_ADDR_MAP when set; else
 * /run/blueq/sim-addrmap when the directory /run/blueq exists; else /tmp/blueq-sim-addrmap.
 */
const char *bq_addrmap_default_write_path(char *buf, size_t cap);

struct bq_addrmap_entry {
	uint8_t bdaddr[BQ_BDADDR_LEN];
	const char *target; /* "unix:/path" or "tcp://host:port"; borrowed */
};

/*
 * Write a whole map atomically (a temporary file in the same directory, then rename),
 * mode 0644, with a comment header. Targets are validated (unix or tcp only). 0 or a
 * negative errno with a line in err. path and entries borrowed.
 */
int bq_addrmap_write(const char *path, const struct bq_addrmap_entry *entries, size_t n,
		     char *err, size_t errlen);

#endif
