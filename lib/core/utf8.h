/* SPDX-License-Identifier: MIT */
/*
 * utf8: strict decoding of one UTF-8 sequence, for every validator of peer text (mesh
 * names, passwords). Strict means RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF.
 */
#ifndef BQ_CORE_UTF8_H
#define BQ_CORE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Length (1..4) of the UTF-8 sequence at s[i] (i < len) and its code point in *cp, or 0
 * if it is not a shortest-form encoding of a scalar value (*cp then untouched).
 */
size_t bq_utf8_next(const unsigned char *s, size_t len, size_t i, uint32_t *cp);

#endif
