/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/cursor.h"

static const uint8_t seq[15] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
				 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f };

/* u8 + u16 + u32 + u64 = 15 bytes: reading exactly to the end succeeds. */
START_TEST(test_read_exact_bounds)
{
	struct bq_cur c;
	uint8_t a;
	uint16_t b;
	uint32_t d;
	uint64_t e;

	bq_cur_init(&c, seq, sizeof(seq));
	ck_assert_int_eq(bq_cur_u8(&c, &a), 0);
	ck_assert_int_eq(bq_cur_u16be(&c, &b), 0);
	ck_assert_int_eq(bq_cur_u32be(&c, &d), 0);
	ck_assert_int_eq(bq_cur_u64be(&c, &e), 0);
	ck_assert_uint_eq(a, 0x01);
	ck_assert_uint_eq(b, 0x0203);
	ck_assert_uint_eq(d, 0x04050607);
	ck_assert_uint_eq(e, 0x08090a0b0c0d0e0fULL);
	ck_assert_uint_eq(bq_cur_left(&c), 0);
	ck_assert_int_eq(bq_cur_error(&c), 0);
	/* One past the end. */
	a = 0xaa;
	ck_assert_int_eq(bq_cur_u8(&c, &a), -EBADMSG);
	ck_assert_uint_eq(a, 0xaa);
	ck_assert_int_eq(bq_cur_error(&c), -EBADMSG);
}
END_TEST

/* Each width fails when one byte short, leaves its output alone, and the error sticks. */
START_TEST(test_one_past_is_sticky)
{
	for (int width = 1; width <= 8; width *= 2) {
		struct bq_cur c;
		uint8_t u8 = 0x5a;
		uint16_t u16 = 0x5a5a;
		uint32_t u32 = 0x5a5a5a5a;
		uint64_t u64 = 0x5a5a5a5a5a5a5a5aULL;
		int r;

		bq_cur_init(&c, seq, (size_t)width - 1);
		switch (width) {
		case 1:
			r = bq_cur_u8(&c, &u8);
			break;
		case 2:
			r = bq_cur_u16be(&c, &u16);
			break;
		case 4:
			r = bq_cur_u32be(&c, &u32);
			break;
		default:
			r = bq_cur_u64be(&c, &u64);
			break;
		}
		ck_assert_int_eq(r, -EBADMSG);
		ck_assert_uint_eq(u8, 0x5a);
		ck_assert_uint_eq(u16, 0x5a5a);
		ck_assert_uint_eq(u32, 0x5a5a5a5a);
		ck_assert_uint_eq(u64, 0x5a5a5a5a5a5a5a5aULL);
		ck_assert_uint_eq(bq_cur_left(&c), 0);
		/* Bytes remain for a smaller read, but the error is sticky. */
		if (width > 1) {
			ck_assert_int_eq(bq_cur_u8(&c, &u8), -EBADMSG);
			ck_assert_uint_eq(u8, 0x5a);
		}
		ck_assert_int_eq(bq_cur_skip(&c, 0), -EBADMSG);
	}
}
END_TEST

START_TEST(test_big_endian_values)
{
	static const uint8_t ff[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe };
	struct bq_cur c;
	uint16_t b;
	uint32_t d;
	uint64_t e;

	bq_cur_init(&c, ff, sizeof(ff));
	ck_assert_int_eq(bq_cur_u64be(&c, &e), 0);
	ck_assert_uint_eq(e, 0xfffffffffffffffeULL);
	bq_cur_init(&c, ff + 4, 4);
	ck_assert_int_eq(bq_cur_u32be(&c, &d), 0);
	ck_assert_uint_eq(d, 0xfffffffeU);
	bq_cur_init(&c, ff + 6, 2);
	ck_assert_int_eq(bq_cur_u16be(&c, &b), 0);
	ck_assert_uint_eq(b, 0xfffe);
	bq_cur_init(&c, seq + 8, 2);
	ck_assert_int_eq(bq_cur_u16be(&c, &b), 0);
	ck_assert_uint_eq(b, 0x090a);
}
END_TEST

START_TEST(test_bytes_ref_skip)
{
	struct bq_cur c;
	uint8_t out[16];
	const uint8_t *ref = NULL;

	memset(out, 0xee, sizeof(out));
	bq_cur_init(&c, seq, sizeof(seq));
	ck_assert_int_eq(bq_cur_bytes(&c, out, 0), 0);
	ck_assert_int_eq(bq_cur_skip(&c, 2), 0);
	ck_assert_int_eq(bq_cur_ref(&c, &ref, 3), 0);
	ck_assert_ptr_eq(ref, seq + 2);
	ck_assert_int_eq(bq_cur_bytes(&c, out, 10), 0);
	ck_assert_mem_eq(out, seq + 5, 10);
	ck_assert_uint_eq(bq_cur_left(&c), 0);

	/* Exactly len is fine, len + 1 fails without touching out. */
	memset(out, 0xee, sizeof(out));
	bq_cur_init(&c, seq, 4);
	ck_assert_int_eq(bq_cur_bytes(&c, out, 5), -EBADMSG);
	ck_assert_uint_eq(out[0], 0xee);
	bq_cur_init(&c, seq, 4);
	ref = NULL;
	ck_assert_int_eq(bq_cur_ref(&c, &ref, 5), -EBADMSG);
	ck_assert_ptr_null(ref);
	/* A huge length must not wrap the bounds check. */
	bq_cur_init(&c, seq, 4);
	ck_assert_int_eq(bq_cur_skip(&c, 1), 0);
	ck_assert_int_eq(bq_cur_skip(&c, SIZE_MAX), -EBADMSG);
	ck_assert_uint_eq(bq_cur_left(&c), 0);
}
END_TEST

START_TEST(test_empty_and_null)
{
	struct bq_cur c;
	uint8_t a = 7;

	bq_cur_init(&c, NULL, 100);
	ck_assert_uint_eq(bq_cur_left(&c), 0);
	ck_assert_int_eq(bq_cur_u8(&c, &a), -EBADMSG);
	ck_assert_uint_eq(a, 7);
	bq_cur_init(&c, seq, 0);
	ck_assert_int_eq(bq_cur_skip(&c, 0), 0);
	ck_assert_int_eq(bq_cur_u8(&c, &a), -EBADMSG);
}
END_TEST

/* 7 bytes: u8 + u16 + u32 fill it exactly; the next byte is -ENOSPC and sticks. */
START_TEST(test_writer_at_cap)
{
	uint8_t buf[8];
	struct bq_wcur w;

	memset(buf, 0xcc, sizeof(buf));
	bq_wcur_init(&w, buf, 7);
	ck_assert_int_eq(bq_wcur_u8(&w, 0x11), 0);
	ck_assert_int_eq(bq_wcur_u16be(&w, 0x2233), 0);
	ck_assert_int_eq(bq_wcur_u32be(&w, 0x44556677), 0);
	ck_assert_int_eq(bq_wcur_error(&w), 0);
	ck_assert_uint_eq(w.off, 7);
	ck_assert_int_eq(bq_wcur_u8(&w, 0x88), -ENOSPC);
	ck_assert_int_eq(bq_wcur_error(&w), -ENOSPC);
	ck_assert_int_eq(bq_wcur_bytes(&w, "", 0), -ENOSPC);
	{
		static const uint8_t want[8] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0xcc };

		ck_assert_mem_eq(buf, want, 8);
	}
}
END_TEST

/* A write one byte larger than the room fails whole: nothing partial lands. */
START_TEST(test_writer_cap_plus_one)
{
	uint8_t buf[16];
	struct bq_wcur w;

	memset(buf, 0xcc, sizeof(buf));
	bq_wcur_init(&w, buf, 7);
	ck_assert_int_eq(bq_wcur_u64be(&w, 0x0102030405060708ULL), -ENOSPC);
	for (int i = 0; i < 16; i++) {
		ck_assert_uint_eq(buf[i], 0xcc);
	}
	ck_assert_uint_eq(w.off, 0);
	/* Sticky: even a write that would fit now fails. */
	ck_assert_int_eq(bq_wcur_u8(&w, 1), -ENOSPC);
	ck_assert_uint_eq(buf[0], 0xcc);

	bq_wcur_init(&w, buf, 8);
	ck_assert_int_eq(bq_wcur_u64be(&w, 0x0102030405060708ULL), 0);
	ck_assert_uint_eq(buf[0], 0x01);
	ck_assert_uint_eq(buf[7], 0x08);
	ck_assert_uint_eq(buf[8], 0xcc);

	bq_wcur_init(&w, buf, 3);
	ck_assert_int_eq(bq_wcur_bytes(&w, seq, 4), -ENOSPC);
	ck_assert_uint_eq(buf[0], 0x01);
	bq_wcur_init(&w, buf, 3);
	ck_assert_int_eq(bq_wcur_bytes(&w, seq, 3), 0);
	ck_assert_mem_eq(buf, seq, 3);
	bq_wcur_init(&w, NULL, 10);
	ck_assert_int_eq(bq_wcur_u8(&w, 1), -ENOSPC);
}
END_TEST

START_TEST(test_patch_u16be)
{
	uint8_t buf[8];
	struct bq_wcur w;

	memset(buf, 0, sizeof(buf));
	bq_wcur_init(&w, buf, sizeof(buf));
	ck_assert_int_eq(bq_wcur_u16be(&w, 0), 0); /* length placeholder */
	ck_assert_int_eq(bq_wcur_bytes(&w, "abc", 3), 0);
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, 0, 0x0103), 0);
	ck_assert_uint_eq(buf[0], 0x01);
	ck_assert_uint_eq(buf[1], 0x03);
	ck_assert_uint_eq(buf[2], 'a');
	/* The last two written bytes may be patched; one past what was written may not. */
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, 3, 0x7a79), 0);
	ck_assert_uint_eq(buf[3], 0x7a);
	ck_assert_uint_eq(buf[4], 0x79);
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, 4, 1), -EINVAL);
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, 5, 1), -EINVAL);
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, SIZE_MAX, 1), -EINVAL);
	ck_assert_uint_eq(buf[5], 0);
	/* A failed patch is not sticky; a failed write is, and patches then fail too. */
	ck_assert_int_eq(bq_wcur_error(&w), 0);
	ck_assert_int_eq(bq_wcur_u32be(&w, 1), -ENOSPC);
	ck_assert_int_eq(bq_wcur_patch_u16be(&w, 0, 0xffff), -ENOSPC);
	ck_assert_uint_eq(buf[0], 0x01);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cursor");
	TCase *tc = tcase_create("cursor");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_read_exact_bounds);
	tcase_add_test(tc, test_one_past_is_sticky);
	tcase_add_test(tc, test_big_endian_values);
	tcase_add_test(tc, test_bytes_ref_skip);
	tcase_add_test(tc, test_empty_and_null);
	tcase_add_test(tc, test_writer_at_cap);
	tcase_add_test(tc, test_writer_cap_plus_one);
	tcase_add_test(tc, test_patch_u16be);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
