/* SPDX-License-Identifier: MIT */
/*
 * Bluetooth without a kernel: the sockaddrs handed to BlueZ are checked byte by byte
 * (bdaddr_t and the L2CAP PSM are little-endian), and on a machine without Bluetooth
 * connect and listen fail at once with the promised text.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef BQ_HAVE_BLUEZ
#include <bluetooth/bluetooth.h>
#include <bluetooth/l2cap.h>
#include <bluetooth/rfcomm.h>
#endif

#include "loop/loop.h"
#include "transport/addr.h"
#include "transport/conn.h"

#define NO_BT "Bluetooth is not available on this machine (address family not supported)"

static char err[256];

static struct bq_addr addr_of(const char *s)
{
	struct bq_addr a;

	ck_assert_msg(bq_addr_parse(s, &a, err, sizeof(err)) == 0, "%s", err);
	return a;
}

/* True when this kernel has no AF_BLUETOOTH (the case the text is promised for). */
static bool no_bluetooth(void)
{
	int fd = socket(AF_BLUETOOTH, SOCK_STREAM, 3 /* BTPROTO_RFCOMM */);

	if (fd >= 0) {
		close(fd);
		return false;
	}
	return errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT;
}

START_TEST(rfcomm_sockaddr)
{
	struct bq_addr a = addr_of("D8:3A:DD:03:1E:77");
	struct sockaddr_storage ss;
	const uint8_t *p = (const uint8_t *)&ss;
	static const uint8_t le[6] = {0x77, 0x1E, 0x03, 0xDD, 0x3A, 0xD8};
	uint16_t family;
	int n;

	memset(&ss, 0xAA, sizeof(ss));
	n = bq_bt_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss));
	/* Kernel layout: u16 family, 6-byte bdaddr (reversed), u8 channel. */
	ck_assert_int_eq(n, 10);
	memcpy(&family, p, 2);
	ck_assert_uint_eq(family, AF_BLUETOOTH);
	ck_assert_mem_eq(p + 2, le, 6);
	ck_assert_uint_eq(p[8], 1);
#ifdef BQ_HAVE_BLUEZ
	{
		struct sockaddr_rc rc;

		/* The same through BlueZ's own struct definitions. */
		ck_assert_int_eq(n, (int)sizeof(rc));
		memcpy(&rc, &ss, sizeof(rc));
		ck_assert_uint_eq(rc.rc_family, AF_BLUETOOTH);
		ck_assert_uint_eq(rc.rc_channel, 1);
		ck_assert_mem_eq(rc.rc_bdaddr.b, le, 6);
	}
#endif
	a = addr_of("bt-rfcomm://00:11:22:33:44:55/30");
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)), 10);
	ck_assert_uint_eq(p[2], 0x55);
	ck_assert_uint_eq(p[7], 0x00);
	ck_assert_uint_eq(p[8], 30);
}
END_TEST

START_TEST(l2cap_sockaddr)
{
	struct bq_addr a = addr_of("bt-l2cap://D8:3A:DD:03:1E:77/0x1001");
	struct sockaddr_storage ss;
	const uint8_t *p = (const uint8_t *)&ss;
	static const uint8_t le[6] = {0x77, 0x1E, 0x03, 0xDD, 0x3A, 0xD8};
	int n;

	memset(&ss, 0xAA, sizeof(ss));
	n = bq_bt_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss));
	/* u16 family, u16 psm (little-endian), bdaddr, u16 cid, u8 bdaddr type, pad. */
	ck_assert_int_eq(n, 14);
	ck_assert_uint_eq(p[2], 0x01);
	ck_assert_uint_eq(p[3], 0x10);
	ck_assert_mem_eq(p + 4, le, 6);
	ck_assert_uint_eq(p[10], 0);
	ck_assert_uint_eq(p[11], 0);
	ck_assert_uint_eq(p[12], 0); /* BDADDR_BREDR */
#ifdef BQ_HAVE_BLUEZ
	{
		struct sockaddr_l2 l2;

		ck_assert_int_eq(n, (int)sizeof(l2));
		memcpy(&l2, &ss, sizeof(l2));
		ck_assert_uint_eq(l2.l2_family, AF_BLUETOOTH);
		ck_assert_uint_eq(btohs(l2.l2_psm), 0x1001);
		ck_assert_uint_eq(l2.l2_cid, 0);
		ck_assert_uint_eq(l2.l2_bdaddr_type, BDADDR_BREDR);
		ck_assert_mem_eq(l2.l2_bdaddr.b, le, 6);
	}
#endif
	a = addr_of("bt-l2cap://D8:3A:DD:03:1E:77/0xFEFF");
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)&ss, sizeof(ss)), 14);
	ck_assert_uint_eq(p[2], 0xFF);
	ck_assert_uint_eq(p[3], 0xFE);
}
END_TEST

START_TEST(sockaddr_errors)
{
	struct bq_addr a = addr_of("bt-l2cap://D8:3A:DD:03:1E:77/0x1001");
	uint8_t small[13];

	memset(small, 0x5A, sizeof(small));
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)small, sizeof(small)), -ENOSPC);
	ck_assert_uint_eq(small[0], 0x5A); /* nothing written */
	a = addr_of("D8:3A:DD:03:1E:77");
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)small, 9), -ENOSPC);
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)small, 10), 10);
	a = addr_of("tcp://127.0.0.1:1");
	ck_assert_int_eq(bq_bt_sockaddr(&a, (struct sockaddr *)small, sizeof(small)), -EINVAL);
}
END_TEST

static void never_cb(struct bq_conn *c, unsigned events, void *user_data)
{
	ck_abort_msg("callback for a connect that failed");
}

static void never_accept(struct bq_listener *l, struct bq_conn *c, void *user_data)
{
	ck_abort_msg("accept on a listener that failed");
}

START_TEST(no_kernel_support)
{
	static const char *const addrs[] = {
		"D8:3A:DD:03:1E:77",
		"bt-rfcomm://D8:3A:DD:03:1E:77/3",
		"bt-l2cap://D8:3A:DD:03:1E:77/0x1001",
	};
	struct bq_loop *loop;
	size_t i;

	if (!no_bluetooth()) {
		/* Bluetooth present: the failure path cannot be reached here. */
		return;
	}
	loop = bq_loop_new(NULL, NULL);
	ck_assert_ptr_nonnull(loop);
	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		struct bq_addr a = addr_of(addrs[i]);
		struct bq_conn *c = (void *)1;
		struct bq_listener *l = (void *)1;

		err[0] = '\0';
		ck_assert_int_eq(bq_conn_connect(loop, &a, never_cb, NULL, &c, err, sizeof(err)),
				 -EAFNOSUPPORT);
		ck_assert_ptr_null(c);
		ck_assert_str_eq(err, NO_BT);
		err[0] = '\0';
		ck_assert_int_eq(
			bq_listener_new(loop, &a, never_accept, NULL, &l, err, sizeof(err)),
			-EAFNOSUPPORT);
		ck_assert_ptr_null(l);
		ck_assert_str_eq(err, NO_BT);
	}
	/* Nothing was left registered that could call back. */
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(bq_loop_run_once(loop, 0), 0);
	}
	bq_loop_free(loop);
}
END_TEST

static Suite *bt_suite(void)
{
	Suite *s = suite_create("bt");
	TCase *tc = tcase_create("sockets");

	tcase_add_test(tc, rfcomm_sockaddr);
	tcase_add_test(tc, l2cap_sockaddr);
	tcase_add_test(tc, sockaddr_errors);
	tcase_add_test(tc, no_kernel_support);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(bt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
