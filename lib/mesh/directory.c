/* SPDX-License-Identifier: MIT */
#include "mesh/directory.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/map.h"

struct bq_dir {
	uint8_t self[BQ_NODE_ADDR_LEN];
	struct bq_map *users; /* id -> struct bq_duser */
	struct bq_map *nodes; /* 6 address bytes -> struct bq_dnode */
	size_t max_users, max_nodes;
	/* The change list, oldest change first. */
	struct bq_dchg *chg_head, *chg_tail;
	uint64_t chg;
};

struct bq_dir *bq_dir_new(const uint8_t self[BQ_NODE_ADDR_LEN], size_t max_users,
			  size_t max_nodes)
{
	struct bq_dir *d = bq_calloc(1, sizeof(*d));

	if (!d) {
		return NULL;
	}
	memcpy(d->self, self, BQ_NODE_ADDR_LEN);
	d->max_users = max_users;
	d->max_nodes = max_nodes;
	d->users = bq_map_new();
	d->nodes = bq_map_new();
	if (!d->users || !d->nodes) {
		bq_dir_free(d);
		return NULL;
	}
	return d;
}

void bq_dir_free(struct bq_dir *d)
{
	size_t pos = 0;
	struct bq_duser *u;
	struct bq_dnode *n;

	if (!d) {
		return;
	}
	while (d->users && (u = bq_dir_next_user(d, &pos))) {
		bq_fifo_clear(&u->store);
		bq_free(u);
	}
	pos = 0;
	while (d->nodes && (n = bq_dir_next_node(d, &pos))) {
		bq_fifo_clear(&n->hold);
		bq_free(n->neigh);
		bq_free(n);
	}
	bq_map_free(d->users);
	bq_map_free(d->nodes);
	bq_free(d);
}

struct bq_duser *bq_dir_user(const struct bq_dir *d, const char *id, size_t id_len)
{
	return bq_map_get(d->users, id, id_len);
}

struct bq_duser *bq_dir_user_add(struct bq_dir *d, const char *id, size_t id_len, int *err)
{
	struct bq_duser *u;

	if (id_len == 0 || id_len > BQ_USER_ID_MAX || !bq_user_id_valid(id, id_len)) {
		*err = -EINVAL;
		return NULL;
	}
	if (bq_map_size(d->users) >= d->max_users) {
		*err = -ENOSPC;
		return NULL;
	}
	u = bq_calloc(1, sizeof(*u));
	if (!u) {
		*err = -ENOMEM;
		return NULL;
	}
	u->ch.kind = BQ_DIR_USER;
	memcpy(u->id, id, id_len);
	u->id_len = (uint8_t)id_len;
	memcpy(u->home, d->self, BQ_NODE_ADDR_LEN);
	u->presence = BQ_PRES_OFFLINE;
	bq_fifo_init(&u->store);
	if (bq_map_set(d->users, u->id, id_len, u) < 0) {
		bq_free(u);
		*err = -ENOMEM;
		return NULL;
	}
	return u;
}

struct bq_dnode *bq_dir_node(const struct bq_dir *d, const uint8_t addr[BQ_NODE_ADDR_LEN])
{
	return bq_map_get(d->nodes, (const char *)addr, BQ_NODE_ADDR_LEN);
}

struct bq_dnode *bq_dir_node_add(struct bq_dir *d, const uint8_t addr[BQ_NODE_ADDR_LEN],
				 int *err)
{
	struct bq_dnode *n;

	if (bq_map_size(d->nodes) >= d->max_nodes) {
		*err = -ENOSPC;
		return NULL;
	}
	n = bq_calloc(1, sizeof(*n));
	if (!n) {
		*err = -ENOMEM;
		return NULL;
	}
	n->ch.kind = BQ_DIR_NODE;
	memcpy(n->addr, addr, BQ_NODE_ADDR_LEN);
	bq_fifo_init(&n->hold);
	if (bq_map_set(d->nodes, (const char *)n->addr, BQ_NODE_ADDR_LEN, n) < 0) {
		bq_free(n);
		*err = -ENOMEM;
		return NULL;
	}
	return n;
}

int bq_dir_node_set_neigh(struct bq_dnode *n, const uint8_t *neigh, uint8_t count)
{
	size_t len = (size_t)count * BQ_NODE_ADDR_LEN;
	uint8_t *copy = NULL;

	if (count == n->n_neigh && (len == 0 || memcmp(n->neigh, neigh, len) == 0)) {
		return 0;
	}
	if (len) {
		copy = bq_malloc(len);
		if (!copy) {
			return -ENOMEM;
		}
		memcpy(copy, neigh, len);
	}
	bq_free(n->neigh);
	n->neigh = copy;
	n->n_neigh = count;
	return 1;
}

bool bq_dir_set_name(char *dst, uint8_t *dst_len, const char *name, size_t len)
{
	if (len > BQ_NAME_MAX) {
		len = BQ_NAME_MAX;
	}
	if (*dst_len == len && memcmp(dst, name, len) == 0) {
		return false;
	}
	memcpy(dst, name, len);
	dst[len] = '\0';
	*dst_len = (uint8_t)len;
	return true;
}

size_t bq_dir_user_count(const struct bq_dir *d)
{
	return bq_map_size(d->users);
}

size_t bq_dir_node_count(const struct bq_dir *d)
{
	return bq_map_size(d->nodes);
}

struct bq_duser *bq_dir_next_user(const struct bq_dir *d, size_t *pos)
{
	const char *k;
	size_t klen;

	return bq_map_next(d->users, pos, &k, &klen);
}

struct bq_dnode *bq_dir_next_node(const struct bq_dir *d, size_t *pos)
{
	const char *k;
	size_t klen;

	return bq_map_next(d->nodes, pos, &k, &klen);
}

void bq_dir_touch(struct bq_dir *d, struct bq_dchg *c)
{
	if (c->chg) {
		if (c->prev) {
			c->prev->next = c->next;
		} else {
			d->chg_head = c->next;
		}
		if (c->next) {
			c->next->prev = c->prev;
		} else {
			d->chg_tail = c->prev;
		}
	}
	c->chg = ++d->chg;
	c->next = NULL;
	c->prev = d->chg_tail;
	if (d->chg_tail) {
		d->chg_tail->next = c;
	} else {
		d->chg_head = c;
	}
	d->chg_tail = c;
}

uint64_t bq_dir_cursor(const struct bq_dir *d)
{
	return d->chg;
}

struct bq_dchg *bq_dir_changes_after(const struct bq_dir *d, uint64_t cursor)
{
	struct bq_dchg *c = d->chg_tail;

	/* From the tail: recent cursors (pushes, delta announces) touch few records. */
	if (!c || c->chg <= cursor) {
		return NULL;
	}
	if (cursor == 0) {
		return d->chg_head;
	}
	while (c->prev && c->prev->chg > cursor) {
		c = c->prev;
	}
	return c;
}

static uint32_t age_s(uint64_t since_ms, uint64_t now_ms)
{
	uint64_t a = now_ms > since_ms ? (now_ms - since_ms) / 1000 : 0;

	return a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
}

void bq_dir_user_entry(const struct bq_duser *u, uint64_t now_ms, struct bq_dir_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = BQ_DIR_USER;
	e->id = u->id;
	e->id_len = u->id_len;
	memcpy(e->home, u->home, BQ_NODE_ADDR_LEN);
	e->presence = u->presence;
	e->name = u->name;
	e->name_len = u->name_len;
	e->version = u->version;
	e->age_s = age_s(u->confirmed_ms, now_ms);
}

void bq_dir_node_entry(const struct bq_dnode *n, uint64_t now_ms, struct bq_dir_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->kind = BQ_DIR_NODE;
	memcpy(e->node, n->addr, BQ_NODE_ADDR_LEN);
	e->name = n->name;
	e->name_len = n->name_len;
	e->version = n->seq;
	e->age_s = age_s(n->heard_ms, now_ms);
	e->n_neigh = n->n_neigh;
	e->neigh = n->neigh;
}

uint32_t bq_dir_stamp(uint32_t prev, uint64_t wall_ms)
{
	uint64_t s = wall_ms / 1000;
	uint32_t next = prev == UINT32_MAX ? prev : prev + 1;

	if (s > UINT32_MAX) {
		s = UINT32_MAX;
	}
	return (uint32_t)s > next ? (uint32_t)s : next;
}

int bq_dir_apply_user(struct bq_dir *d, const struct bq_dir_entry *e,
		      const uint8_t home[BQ_NODE_ADDR_LEN], uint64_t now_ms,
		      struct bq_duser **out)
{
	struct bq_duser *u = bq_dir_user(d, e->id, e->id_len);
	uint64_t age_ms = (uint64_t)e->age_s * 1000;
	uint64_t confirmed = now_ms > age_ms ? now_ms - age_ms : 0;
	bool changed = false;
	int err = 0;

	*out = NULL;
	if (!u) {
		u = bq_dir_user_add(d, e->id, e->id_len, &err);
		if (!u) {
			return err;
		}
		changed = true;
	} else if (e->version < u->version || (e->version == u->version && !u->derived)) {
		*out = u;
		if (e->version == u->version && confirmed > u->confirmed_ms) {
			u->confirmed_ms = confirmed;
		}
		return 0;
	}
	*out = u;
	if (e->version != u->version || e->presence != u->presence ||
	    memcmp(home, u->home, BQ_NODE_ADDR_LEN) != 0) {
		changed = true;
	}
	if (bq_dir_set_name(u->name, &u->name_len, e->name ? e->name : "", e->name_len)) {
		changed = true;
	}
	u->version = e->version;
	u->presence = e->presence;
	u->derived = false;
	memcpy(u->home, home, BQ_NODE_ADDR_LEN);
	if (confirmed > u->confirmed_ms) {
		u->confirmed_ms = confirmed;
	}
	if (changed) {
		bq_dir_touch(d, &u->ch);
	}
	return changed ? 1 : 0;
}
