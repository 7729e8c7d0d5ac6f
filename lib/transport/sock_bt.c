/* SPDX-License-Identifier: MIT */
/*
 * sock_bt: the bt-rfcomm and bt-l2cap backends' family tables (BlueZ sockets: RFCOMM is
 * SOCK_STREAM, L2CAP is SOCK_SEQPACKET). Only the kernel's socket API is used, never
 * libbluetooth's functions, so the sockaddr set-up below is the whole BlueZ contract:
 *   - bdaddr_t is little-endian: b[0] is the LAST byte of the display form, so
 *     D8:3A:DD:03:1E:77 is stored 77 1E 03 DD 3A D8;
 *   - l2_psm is little-endian too (htobs); the RFCOMM channel is one byte.
 * A kernel without Bluetooth fails socket() with EAFNOSUPPORT: conn.c turns that into
 * BQ__BT_UNAVAILABLE.
 */
#include "transport/conn_impl.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef BQ_HAVE_BLUEZ
#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <bluetooth/rfcomm.h>
#else
/* The kernel ABI, as in BlueZ's lib/bluetooth.h, rfcomm.h and l2cap.h. */
#define BTPROTO_L2CAP 0
#define BTPROTO_RFCOMM 3
#define BDADDR_BREDR 0x00
#define htobs(d) htole16(d)
#define btohs(d) le16toh(d)
typedef struct {
	uint8_t b[6];
} __attribute__((packed)) bdaddr_t;
struct sockaddr_rc {
	sa_family_t rc_family;
	bdaddr_t rc_bdaddr;
	uint8_t rc_channel;
};
struct sockaddr_l2 {
	sa_family_t l2_family;
	unsigned short l2_psm;
	bdaddr_t l2_bdaddr;
	unsigned short l2_cid;
	uint8_t l2_bdaddr_type;
};
#endif

/* Display order (D8 first) to BlueZ order (D8 last), and back: the same reversal. */
static void bdaddr_reverse(const uint8_t in[BQ_BDADDR_LEN], uint8_t out[BQ_BDADDR_LEN])
{
	int i;

	for (i = 0; i < BQ_BDADDR_LEN; i++) {
		out[i] = in[BQ_BDADDR_LEN - 1 - i];
	}
}

int bq_bt_sockaddr(const struct bq_addr *addr, struct sockaddr *sa, size_t salen)
{
	if (addr->kind == BQ_ADDR_RFCOMM) {
		struct sockaddr_rc rc;

		if (salen < sizeof(rc)) {
			return -ENOSPC;
		}
		memset(&rc, 0, sizeof(rc));
		rc.rc_family = AF_BLUETOOTH;
		bdaddr_reverse(addr->bdaddr, rc.rc_bdaddr.b);
		rc.rc_channel = (uint8_t)addr->port;
		memcpy(sa, &rc, sizeof(rc));
		return (int)sizeof(rc);
	}
	if (addr->kind == BQ_ADDR_L2CAP) {
		struct sockaddr_l2 l2;

		if (salen < sizeof(l2)) {
			return -ENOSPC;
		}
		memset(&l2, 0, sizeof(l2));
		l2.l2_family = AF_BLUETOOTH;
		l2.l2_psm = htobs(addr->port);
		bdaddr_reverse(addr->bdaddr, l2.l2_bdaddr.b);
		l2.l2_bdaddr_type = BDADDR_BREDR;
		memcpy(sa, &l2, sizeof(l2));
		return (int)sizeof(l2);
	}
	return -EINVAL;
}

static int bt_resolve(const struct bq_addr *a, bool passive, struct bq__sockaddr *out, int max,
		      char *err, size_t errlen)
{
	struct bq_addr local = *a;
	int n;

	/* A listener binds BDADDR_ANY (every adapter) and its channel or PSM. */
	if (passive) {
		memset(local.bdaddr, 0, sizeof(local.bdaddr));
	}
	memset(&out[0], 0, sizeof(out[0]));
	n = bq_bt_sockaddr(&local, (struct sockaddr *)&out[0].ss, sizeof(out[0].ss));
	if (n < 0) {
		snprintf(err, errlen, "not a Bluetooth address");
		return n;
	}
	out[0].family = AF_BLUETOOTH;
	out[0].len = (socklen_t)n;
	if (a->kind == BQ_ADDR_RFCOMM) {
		out[0].type = SOCK_STREAM;
		out[0].protocol = BTPROTO_RFCOMM;
	} else {
		out[0].type = SOCK_SEQPACKET;
		out[0].protocol = BTPROTO_L2CAP;
	}
	return 1;
}

static void rfcomm_peer_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	struct sockaddr_rc rc;
	uint8_t b[BQ_BDADDR_LEN];
	char mac[BQ_BDADDR_STRLEN];

	if (len < sizeof(rc)) {
		snprintf(out, cap, "bt-rfcomm:");
		return;
	}
	memcpy(&rc, sa, sizeof(rc));
	bdaddr_reverse(rc.rc_bdaddr.b, b);
	snprintf(out, cap, "bt-rfcomm://%s/%u", bq_bdaddr_format(b, mac), (unsigned)rc.rc_channel);
}

static void l2cap_peer_text(const struct sockaddr *sa, socklen_t len, char *out, size_t cap)
{
	struct sockaddr_l2 l2;
	uint8_t b[BQ_BDADDR_LEN];
	char mac[BQ_BDADDR_STRLEN];

	if (len < sizeof(l2)) {
		snprintf(out, cap, "bt-l2cap:");
		return;
	}
	memcpy(&l2, sa, sizeof(l2));
	bdaddr_reverse(l2.l2_bdaddr.b, b);
	snprintf(out, cap, "bt-l2cap://%s/0x%04X", bq_bdaddr_format(b, mac),
		 (unsigned)btohs(l2.l2_psm));
}

static void rfcomm_listen_name(const struct bq_addr *a, char *out, size_t cap)
{
	snprintf(out, cap, "bt-rfcomm channel %u", (unsigned)a->port);
}

static void l2cap_listen_name(const struct bq_addr *a, char *out, size_t cap)
{
	snprintf(out, cap, "bt-l2cap PSM 0x%04X", (unsigned)a->port);
}

const struct bq__family bq__rfcomm_family = {
	.kind = BQ_ADDR_RFCOMM,
	.resolve = bt_resolve,
	.peer_text = rfcomm_peer_text,
	.listen_name = rfcomm_listen_name,
};

const struct bq__family bq__l2cap_family = {
	.kind = BQ_ADDR_L2CAP,
	.resolve = bt_resolve,
	.peer_text = l2cap_peer_text,
	.listen_name = l2cap_listen_name,
};
