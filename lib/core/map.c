/* SPDX-License-Identifier: MIT */
#include "core/map.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"

struct map_slot {
	char *key; /* NULL: empty */
	size_t key_len;
	uint64_t hash;
	void *value;
};

struct bq_map {
	struct map_slot *slots;
	size_t cap; /* power of two */
	size_t count;
};

#define MAP_MIN_CAP 16

/* FNV-1a: keys are local identifiers, not attacker-chosen at a scale where flooding matters
 * more than the per-peer limits already in place. */
static uint64_t map_hash(const char *key, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= (uint8_t)key[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 29;
	return h;
}

struct bq_map *bq_map_new(void)
{
	struct bq_map *m = bq_calloc(1, sizeof(*m));

	if (!m) {
		return NULL;
	}
	m->slots = bq_calloc(MAP_MIN_CAP, sizeof(*m->slots));
	if (!m->slots) {
		bq_free(m);
		return NULL;
	}
	m->cap = MAP_MIN_CAP;
	return m;
}

void bq_map_free(struct bq_map *m)
{
	if (!m) {
		return;
	}
	for (size_t i = 0; i < m->cap; i++) {
		bq_free(m->slots[i].key);
	}
	bq_free(m->slots);
	bq_free(m);
}

static size_t map_find(const struct bq_map *m, const char *key, size_t len, uint64_t h)
{
	size_t mask = m->cap - 1;

	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const struct map_slot *s = &m->slots[i];

		if (!s->key) {
			return i;
		}
		if (s->hash == h && s->key_len == len && memcmp(s->key, key, len) == 0) {
			return i;
		}
	}
}

static int map_grow(struct bq_map *m)
{
	size_t ncap = m->cap * 2;
	struct map_slot *ns = bq_calloc(ncap, sizeof(*ns));
	struct map_slot *old = m->slots;
	size_t ocap = m->cap;

	if (!ns) {
		return -ENOMEM;
	}
	m->slots = ns;
	m->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].key) {
			m->slots[map_find(m, old[i].key, old[i].key_len, old[i].hash)] = old[i];
		}
	}
	bq_free(old);
	return 0;
}

int bq_map_set(struct bq_map *m, const char *key, size_t len, void *value)
{
	uint64_t h = map_hash(key, len);
	size_t i = map_find(m, key, len, h);
	char *copy;

	if (m->slots[i].key) {
		m->slots[i].value = value;
		return 0;
	}
	/* Keep the load factor under 3/4 so probe runs stay short. */
	if ((m->count + 1) * 4 > m->cap * 3) {
		if (map_grow(m) < 0) {
			return -ENOMEM;
		}
		i = map_find(m, key, len, h);
	}
	copy = bq_malloc(len + 1);
	if (!copy) {
		return -ENOMEM;
	}
	memcpy(copy, key, len);
	copy[len] = '\0';
	m->slots[i] = (struct map_slot){ .key = copy, .key_len = len, .hash = h, .value = value };
	m->count++;
	return 0;
}

void *bq_map_get(const struct bq_map *m, const char *key, size_t len)
{
	size_t i = map_find(m, key, len, map_hash(key, len));

	return m->slots[i].key ? m->slots[i].value : NULL;
}

void *bq_map_remove(struct bq_map *m, const char *key, size_t len)
{
	size_t mask = m->cap - 1;
	size_t i = map_find(m, key, len, map_hash(key, len));
	void *value;

	if (!m->slots[i].key) {
		return NULL;
	}
	value = m->slots[i].value;
	bq_free(m->slots[i].key);
	m->slots[i].key = NULL;
	m->count--;
	/* Backward-shift deletion: pull later members of the probe run into the hole so
	 * lookups never stop early at it (no tombstones to clean up later). */
	for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
		size_t home = m->slots[j].hash & mask;
		/* Move j into the hole at i unless j's home lies cyclically in (i, j]. */
		int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);

		if (!stays) {
			m->slots[i] = m->slots[j];
			m->slots[j].key = NULL;
			i = j;
		}
	}
	return value;
}

size_t bq_map_size(const struct bq_map *m)
{
	return m->count;
}

void *bq_map_next(const struct bq_map *m, size_t *pos, const char **key, size_t *key_len)
{
	for (size_t i = *pos; i < m->cap; i++) {
		if (m->slots[i].key) {
			*pos = i + 1;
			if (key) {
				*key = m->slots[i].key;
			}
			if (key_len) {
				*key_len = m->slots[i].key_len;
			}
			return m->slots[i].value;
		}
	}
	*pos = m->cap;
	return NULL;
}
