/* SPDX-License-Identifier: MIT */
#include "core/utf8.h"

size_t bq_utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
	unsigned char c = s[i];
	size_t n;
	uint32_t v, min;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		v = c & 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		v = c & 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		v = c & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n > len - i) {
		return 0;
	}
	for (size_t k = 1; k < n; k++) {
		if ((s[i + k] & 0xc0) != 0x80) {
			return 0;
		}
		v = (v << 6) | (s[i + k] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
		return 0;
	}
	*cp = v;
	return n;
}
