/* SPDX-License-Identifier: MIT */
/*
 * map: a string-keyed hash map (open addressing, linear probing, backward-shift
 * deletion), for directories of users and nodes that reach tens of thousands of
 * entries. Keys are copied; values are borrowed pointers the owner frees.
 */
#ifndef BQ_CORE_MAP_H
#define BQ_CORE_MAP_H

#include <stddef.h>

struct bq_map;

struct bq_map *bq_map_new(void);
/* Frees the map and its key copies, not the values. */
void bq_map_free(struct bq_map *m);

/* Insert or replace. 0 or -ENOMEM (map unchanged). Replaced values are not freed. */
int bq_map_set(struct bq_map *m, const char *key, size_t key_len, void *value);
void *bq_map_get(const struct bq_map *m, const char *key, size_t key_len);
/* Remove and return the value (NULL if absent). */
void *bq_map_remove(struct bq_map *m, const char *key, size_t key_len);
size_t bq_map_size(const struct bq_map *m);

/*
 * Iterate: start with *pos = 0; each call returns the next value and its key (not
 * NUL-terminated; *key_len set), or NULL at the end. The map must not change during
 * a walk (collect keys first, then remove).
 */
void *bq_map_next(const struct bq_map *m, size_t *pos, const char **key, size_t *key_len);

#endif
