/* SPDX-License-Identifier: MIT */
/*
 * auth: frame authentication with the mesh network key: a keyed BLAKE2b tag
 * (libsodium crypto_generichash, 16-byte output, 32-byte key) over every byte of the
 * frame after the length field and before the tag. Relays change ttl and hops, so
 * they verify, patch, then re-sign.
 */
#ifndef BQ_PROTO_AUTH_H
#define BQ_PROTO_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define BQ_KEY_LEN 32

struct bq_auth;

/* Copies the key (wiped with sodium_memzero on free). NULL on failure. */
struct bq_auth *bq_auth_new(const uint8_t key[BQ_KEY_LEN]);
void bq_auth_free(struct bq_auth *a);

/* frame: a whole encoded frame with BQ_FF_AUTH set. 0 or -EINVAL. */
int bq_auth_sign(const struct bq_auth *a, uint8_t *frame, size_t len);
/* 0 if the tag matches (constant-time compare), -EBADMSG otherwise. */
int bq_auth_verify(const struct bq_auth *a, const uint8_t *frame, size_t len);

/*
 * Load the key file at path, or create it (32 random bytes, mode 0600, written to a
 * temporary file then renamed) when it does not exist. A key file readable by group
 * or others is refused with -EPERM. 0 or a negative errno; err gets one line.
 */
int bq_auth_load_or_create_key(const char *path, uint8_t key[BQ_KEY_LEN], char *err,
			       size_t errlen);

#endif
