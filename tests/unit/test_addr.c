/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "transport/addr.h"

static struct bq_addr a;
static char err[256];

static int parse(const char *s)
{
	memset(err, 0, sizeof(err));
	return bq_addr_parse(s, &a, err, sizeof(err));
}

static const char *fmt(void)
{
	static char buf[BQ_ADDR_STRLEN];

	ck_assert_int_eq(bq_addr_format(&a, buf, sizeof(buf)), 0);
	return buf;
}

/* The parse fails with exactly this message. */
static void bad(const char *s, const char *msg)
{
	ck_assert_int_eq(parse(s), -EINVAL);
	ck_assert_str_eq(err, msg);
	ck_assert_ptr_null(strchr(err, '\n'));
}

START_TEST(bare_mac)
{
	static const uint8_t want[6] = {0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77};

	ck_assert_int_eq(parse("D8:3A:DD:03:1E:77"), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(a.kind, BQ_ADDR_RFCOMM);
	ck_assert_int_eq(a.port, 1);
	ck_assert_int_eq(a.bare_bdaddr, 1);
	ck_assert_mem_eq(a.bdaddr, want, 6);
	ck_assert_str_eq(fmt(), "bt-rfcomm://D8:3A:DD:03:1E:77/1");

	ck_assert_int_eq(parse("d8:3a:dd:03:1e:77"), 0);
	ck_assert_mem_eq(a.bdaddr, want, 6);
}
END_TEST

START_TEST(bad_macs)
{
	bad("D8:3A:ZZ:03:1E:77",
	    "invalid Bluetooth address 'D8:3A:ZZ:03:1E:77': 'ZZ' is not a hex byte");
	bad("D8:3A:DD:03:1E", "invalid Bluetooth address 'D8:3A:DD:03:1E': "
			      "expected six hex bytes separated by ':' (got 5)");
	bad("D8:3A:DD:03:1E:77:00", "invalid Bluetooth address 'D8:3A:DD:03:1E:77:00': "
				    "expected six hex bytes separated by ':' (got 7)");
	bad("D8:3A:DD:3:1E:77",
	    "invalid Bluetooth address 'D8:3A:DD:3:1E:77': '3' is not a hex byte");
	bad("D8:3A:DD:003:1E:77",
	    "invalid Bluetooth address 'D8:3A:DD:003:1E:77': '003' is not a hex byte");
	bad("D8:3A::03:1E:77", "invalid Bluetooth address 'D8:3A::03:1E:77': '' is not a hex byte");
}
END_TEST

START_TEST(bdaddr_helpers)
{
	uint8_t b[6] = {0};
	uint8_t keep[6] = {1, 2, 3, 4, 5, 6};
	char s[BQ_BDADDR_STRLEN];

	ck_assert_int_eq(bq_bdaddr_parse("00:11:22:aa:BB:ff", b), 0);
	ck_assert_str_eq(bq_bdaddr_format(b, s), "00:11:22:AA:BB:FF");
	memcpy(b, keep, 6);
	ck_assert_int_eq(bq_bdaddr_parse("00:11:22:aa:BB:fg", b), -EINVAL);
	ck_assert_mem_eq(b, keep, 6); /* untouched on failure */
	ck_assert_int_eq(bq_bdaddr_parse("00:11:22:aa:BB", b), -EINVAL);
	ck_assert_int_eq(bq_bdaddr_parse("", b), -EINVAL);
	ck_assert_int_eq(bq_bdaddr_parse(" 0:11:22:aa:BB:ff", b), -EINVAL);
	ck_assert_int_eq(bq_bdaddr_parse("00:11:22:aa:BB:ff ", b), -EINVAL);
}
END_TEST

START_TEST(rfcomm)
{
	ck_assert_int_eq(parse("bt-rfcomm://D8:3A:DD:03:1E:77/1"), 0);
	ck_assert_int_eq(a.kind, BQ_ADDR_RFCOMM);
	ck_assert_int_eq(a.port, 1);
	ck_assert_int_eq(a.bare_bdaddr, 0);
	ck_assert_int_eq(parse("bt-rfcomm://D8:3A:DD:03:1E:77/30"), 0);
	ck_assert_int_eq(a.port, 30);
	ck_assert_str_eq(fmt(), "bt-rfcomm://D8:3A:DD:03:1E:77/30");
	ck_assert_int_eq(parse("bt-rfcomm://D8:3A:DD:03:1E:77"), 0);
	ck_assert_int_eq(a.port, BQ_RFCOMM_DEFAULT_CHANNEL);
	ck_assert_int_eq(a.bare_bdaddr, 0);

	bad("bt-rfcomm://D8:3A:DD:03:1E:77/0",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/0': RFCOMM channel 0 is out of range 1..30");
	bad("bt-rfcomm://D8:3A:DD:03:1E:77/31",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/31': RFCOMM channel 31 is out of range 1..30");
	bad("bt-rfcomm://D8:3A:DD:03:1E:77/99999999999",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/99999999999': RFCOMM channel 99999999999 is out "
	    "of range 1..30");
	bad("bt-rfcomm://D8:3A:DD:03:1E:77/x",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/x': RFCOMM channel 'x' is not a number");
	bad("bt-rfcomm://D8:3A:DD:03:1E:77/-1",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/-1': RFCOMM channel '-1' is not a number");
	bad("bt-rfcomm://D8:3A:DD:03:1E:77/",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E:77/': RFCOMM channel is empty");
	bad("bt-rfcomm://D8:3A:DD:03:1E/1",
	    "invalid Bluetooth address "
	    "'bt-rfcomm://D8:3A:DD:03:1E/1': expected six hex bytes separated by ':' (got 5)");
}
END_TEST

START_TEST(l2cap)
{
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0x1001"), 0);
	ck_assert_int_eq(a.kind, BQ_ADDR_L2CAP);
	ck_assert_int_eq(a.port, 0x1001);
	ck_assert_str_eq(fmt(), "bt-l2cap://D8:3A:DD:03:1E:77/0x1001");
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/4097"), 0);
	ck_assert_int_eq(a.port, 0x1001);
	/* Boundaries: 1 (SDP) and 0xFEFF are valid; fixed PSMs like 0x0003 too. */
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/1"), 0);
	ck_assert_int_eq(a.port, 1);
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0xFEFF"), 0);
	ck_assert_int_eq(a.port, 0xFEFF);
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0x00FF"), 0);
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0x0201"), 0);

	bad("bt-l2cap://D8:3A:DD:03:1E:77/0x1002",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0x1002': L2CAP PSM 0x1002 must be odd");
	bad("bt-l2cap://D8:3A:DD:03:1E:77/0",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0': L2CAP PSM 0 is out of range 1..0xFFFF");
	bad("bt-l2cap://D8:3A:DD:03:1E:77/0x10001",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0x10001': L2CAP PSM 0x10001 is out of range 1..0xFFFF");
	bad("bt-l2cap://D8:3A:DD:03:1E:77/0x0101",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0x0101': L2CAP PSM 0x0101 must have the lowest bit "
	    "of its upper byte clear (e.g. 0x1001, 0x1003)");
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0xFFFF"), -EINVAL);
	ck_assert_int_eq(parse("bt-l2cap://D8:3A:DD:03:1E:77/0x1101"), -EINVAL);
	bad("bt-l2cap://D8:3A:DD:03:1E:77",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77': missing L2CAP PSM (bt-l2cap://MAC/PSM)");
	bad("bt-l2cap://D8:3A:DD:03:1E:77/0x",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0x': L2CAP PSM '0x' is not a number");
	bad("bt-l2cap://D8:3A:DD:03:1E:77/0x10g1",
	    "invalid Bluetooth address "
	    "'bt-l2cap://D8:3A:DD:03:1E:77/0x10g1': L2CAP PSM '0x10g1' is not a number");
}
END_TEST

/* Every PSM 1..0xFFFF: accepted exactly when odd with bit 8 clear. */
START_TEST(l2cap_all_psms)
{
	char s[64];
	unsigned psm, ok = 0;

	for (psm = 0; psm <= 0x10000; psm++) {
		bool want = psm >= 1 && psm <= 0xFFFF && (psm & 1) && !(psm & 0x100);

		snprintf(s, sizeof(s), "bt-l2cap://00:11:22:33:44:55/%u", psm);
		ck_assert_int_eq(parse(s) == 0, want);
		if (want) {
			ck_assert_uint_eq(a.port, psm);
			ok++;
		}
	}
	ck_assert_uint_eq(ok, 0x10000 / 4);
}
END_TEST

START_TEST(tcp)
{
	ck_assert_int_eq(parse("tcp://127.0.0.1:7000"), 0);
	ck_assert_int_eq(a.kind, BQ_ADDR_TCP);
	ck_assert_str_eq(a.host, "127.0.0.1");
	ck_assert_int_eq(a.port, 7000);
	ck_assert_str_eq(fmt(), "tcp://127.0.0.1:7000");

	ck_assert_int_eq(parse("tcp://localhost:0"), 0);
	ck_assert_str_eq(a.host, "localhost");
	ck_assert_int_eq(a.port, 0);
	ck_assert_int_eq(parse("tcp://odin-1.mesh.example:65535"), 0);
	ck_assert_int_eq(a.port, 65535);

	ck_assert_int_eq(parse("tcp://[::1]:80"), 0);
	ck_assert_str_eq(a.host, "::1");
	ck_assert_str_eq(fmt(), "tcp://[::1]:80");
	ck_assert_int_eq(parse("tcp://[fe80::1%eth0]:80"), 0);
	ck_assert_str_eq(a.host, "fe80::1%eth0");

	bad("tcp://h:99999",
	    "invalid address 'tcp://h:99999': port 99999 is out of range 0..65535");
	bad("tcp://h:65536",
	    "invalid address 'tcp://h:65536': port 65536 is out of range 0..65535");
	bad("tcp://h:123456789012345678901234567890",
	    "invalid address "
	    "'tcp://h:123456789012345678901234567890': port 123456789012345678901234567890 is "
	    "out of range 0..65535");
	bad("tcp://h:http", "invalid address 'tcp://h:http': port 'http' is not a number");
	bad("tcp://h:", "invalid address 'tcp://h:': port is empty");
	bad("tcp://h", "invalid address 'tcp://h': missing port (tcp://host:port)");
	bad("tcp://:80", "invalid address 'tcp://:80': host is empty");
	bad("tcp://a_b:80", "invalid address 'tcp://a_b:80': host has a character that is not "
			    "allowed ('_')");
	bad("tcp://::1:80", "invalid address 'tcp://::1:80': an IPv6 address must be in brackets "
			    "(tcp://[::1]:port)");
	bad("tcp://[::1:80", "invalid address 'tcp://[::1:80': '[' without a closing ']'");
	bad("tcp://[zz]:80", "invalid address 'tcp://[zz]:80': 'zz' is not an IPv6 address");
	bad("tcp://[::1]", "invalid address 'tcp://[::1]': missing port (tcp://[v6]:port)");
	bad("tcp://h:80/", "invalid address 'tcp://h:80/': port '80/' is not a number");
}
END_TEST

START_TEST(tcp_host_limit)
{
	char s[400], host[300];

	memset(host, 'a', 253);
	host[253] = '\0';
	snprintf(s, sizeof(s), "tcp://%s:1", host);
	ck_assert_int_eq(parse(s), 0);
	ck_assert_str_eq(a.host, host);
	host[253] = 'a';
	host[254] = '\0';
	snprintf(s, sizeof(s), "tcp://%s:1", host);
	ck_assert_int_eq(parse(s), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "host is longer than 253 bytes"));
	/* The echoed input is cut short so the line stays readable. */
	ck_assert_ptr_nonnull(strstr(err, "...'"));
	ck_assert_uint_lt(strlen(err), 200);
}
END_TEST

START_TEST(unix_and_mem)
{
	char s[200], path[150];

	ck_assert_int_eq(parse("unix:/run/blueq/odin.sock"), 0);
	ck_assert_int_eq(a.kind, BQ_ADDR_UNIX);
	ck_assert_str_eq(a.path, "/run/blueq/odin.sock");
	ck_assert_str_eq(fmt(), "unix:/run/blueq/odin.sock");
	ck_assert_int_eq(parse("unix:rel.sock"), 0);
	ck_assert_str_eq(a.path, "rel.sock");
	ck_assert_int_eq(parse("unix:///tmp/x"), 0);
	ck_assert_str_eq(a.path, "/tmp/x");

	memset(path, 'p', 107);
	path[0] = '/';
	path[107] = '\0';
	snprintf(s, sizeof(s), "unix:%s", path);
	ck_assert_int_eq(parse(s), 0);
	ck_assert_str_eq(a.path, path);
	path[107] = 'p';
	path[108] = '\0';
	snprintf(s, sizeof(s), "unix:%s", path);
	ck_assert_int_eq(parse(s), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "': path is 108 bytes, the limit is 107"));
	bad("unix:", "invalid address 'unix:': path is empty");

	ck_assert_int_eq(parse("mem:odin"), 0);
	ck_assert_int_eq(a.kind, BQ_ADDR_MEM);
	ck_assert_str_eq(a.path, "odin");
	ck_assert_str_eq(fmt(), "mem:odin");
	bad("mem:", "invalid address 'mem:': name is empty");
}
END_TEST

START_TEST(unknown)
{
	bad("ftp://x", "invalid address 'ftp://x': unknown scheme 'ftp' (use a Bluetooth address, "
		       "bt-rfcomm://, bt-l2cap://, tcp://, unix:)");
	bad("localhost:8001", "invalid address 'localhost:8001': unknown scheme 'localhost' "
			      "(did you mean tcp://localhost:8001?)");
	bad("hello", "invalid address 'hello': not a Bluetooth address or a URL (use a Bluetooth "
		     "address, bt-rfcomm://, bt-l2cap://, tcp://, unix:)");
	bad("", "invalid address '': it is empty (use a Bluetooth address, bt-rfcomm://, "
		"bt-l2cap://, tcp://, unix:)");
	/* Control characters never reach the one-line message. */
	bad("a\nb", "invalid address 'a?b': not a Bluetooth address or a URL (use a Bluetooth "
		    "address, bt-rfcomm://, bt-l2cap://, tcp://, unix:)");
	ck_assert_int_eq(bq_addr_parse(NULL, &a, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(small_err_buffer)
{
	char small[12];

	ck_assert_int_eq(bq_addr_parse("tcp://h:99999", &a, small, sizeof(small)), -EINVAL);
	ck_assert_str_eq(small, "invalid add");
	ck_assert_int_eq(bq_addr_parse("tcp://h:99999", &a, NULL, 0), -EINVAL);
}
END_TEST

START_TEST(format_and_names)
{
	char small[8];

	ck_assert_int_eq(parse("tcp://127.0.0.1:7000"), 0);
	ck_assert_int_eq(bq_addr_format(&a, small, sizeof(small)), -ENOSPC);
	ck_assert_str_eq(bq_addr_kind_name(BQ_ADDR_TCP), "tcp");
	ck_assert_str_eq(bq_addr_kind_name(BQ_ADDR_UNIX), "unix");
	ck_assert_str_eq(bq_addr_kind_name(BQ_ADDR_RFCOMM), "bt-rfcomm");
	ck_assert_str_eq(bq_addr_kind_name(BQ_ADDR_L2CAP), "bt-l2cap");
	ck_assert_str_eq(bq_addr_kind_name(BQ_ADDR_MEM), "mem");
}
END_TEST

/* Formatting then parsing gives the same address back. */
START_TEST(round_trip)
{
	static const char *const in[] = {
		"D8:3A:DD:03:1E:77",
		"bt-rfcomm://00:00:00:00:00:01/7",
		"bt-l2cap://FF:FF:FF:FF:FF:FF/0x1001",
		"tcp://[2001:db8::1]:8001",
		"tcp://odin:1",
		"unix:/tmp/a b",
		"mem:x",
	};
	struct bq_addr first;
	size_t i;

	for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char text[BQ_ADDR_STRLEN];

		ck_assert_int_eq(parse(in[i]), 0);
		first = a;
		first.bare_bdaddr = 0;
		ck_assert_int_eq(bq_addr_format(&first, text, sizeof(text)), 0);
		ck_assert_int_eq(parse(text), 0);
		ck_assert_int_eq(a.kind, first.kind);
		ck_assert_int_eq(a.port, first.port);
		ck_assert_str_eq(a.host, first.host);
		ck_assert_str_eq(a.path, first.path);
		ck_assert_mem_eq(a.bdaddr, first.bdaddr, 6);
	}
}
END_TEST

START_TEST(check_callback)
{
	ck_assert_int_eq(bq_addr_check("tcp://127.0.0.1:1", err, sizeof(err)), 0);
	ck_assert_int_eq(bq_addr_check("tcp://127.0.0.1:70000", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "invalid address 'tcp://127.0.0.1:70000': port 70000 is out of range "
			      "0..65535");
}
END_TEST

static Suite *addr_suite(void)
{
	Suite *s = suite_create("addr");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, bare_mac);
	tcase_add_test(tc, bad_macs);
	tcase_add_test(tc, bdaddr_helpers);
	tcase_add_test(tc, rfcomm);
	tcase_add_test(tc, l2cap);
	tcase_add_test(tc, l2cap_all_psms);
	tcase_add_test(tc, tcp);
	tcase_add_test(tc, tcp_host_limit);
	tcase_add_test(tc, unix_and_mem);
	tcase_add_test(tc, unknown);
	tcase_add_test(tc, small_err_buffer);
	tcase_add_test(tc, format_and_names);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, check_callback);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(addr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
