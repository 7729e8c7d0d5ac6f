/* SPDX-License-Identifier: MIT */
/*
 * directory: the node's picture of the mesh: one record per user (id, name, home node,
 * presence, version, last confirmation) and one per node (address, name, neighbours,
 * announce sequence, last heard), for tens of thousands of users.
 *
 * Every change gets a local change number (the SCAN cursor) and moves the record to
 * the tail of a change list, so "every record changed after cursor C" is a walk from
 * the first record past C to the tail: O(changes), in change order. That one list
 * serves SCAN answers, pushes to subscribed clients and delta announces.
 *
 * Conflicts between views of a user are settled by the record's version, stamped by
 * the user's home node: higher wins (bq_dir_apply_user). A node stamps a change to
 * its own user with bq_dir_stamp, so a restarted node never goes below a version it
 * issued before.
 *
 * Records are owned by the directory and live until bq_dir_free (users are never
 * removed: a user who leaves is offline; nodes stay, marked down). The fields marked
 * "node engine" are the engine's to use; the directory only initialises them and
 * clears the FIFOs on free.
 */
#ifndef BQ_MESH_DIRECTORY_H
#define BQ_MESH_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/store.h"
#include "proto/frame.h"

struct bq_dir;

/* A record's place in the change list; the first member of both record types. */
struct bq_dchg {
	struct bq_dchg *prev, *next;
	uint64_t chg;  /* 0 until the first bq_dir_touch */
	uint8_t kind;  /* BQ_DIR_USER or BQ_DIR_NODE */
};

struct bq_duser {
	struct bq_dchg ch;
	char id[BQ_USER_ID_MAX + 1];
	uint8_t id_len;
	char name[BQ_NAME_MAX + 1];
	uint8_t name_len;
	uint8_t home[BQ_NODE_ADDR_LEN];
	uint8_t presence;       /* enum bq_presence */
	bool derived;           /* presence inferred here (home node expired), not announced */
	uint32_t version;
	uint64_t confirmed_ms;  /* loop clock */
	/* node engine */
	void *link;                    /* the client link the user is attached on, or NULL */
	struct bq_duser *lprev, *lnext; /* that link's users */
	struct bq_fifo store;          /* held messages while offline (home = this node) */
};

struct bq_dnode {
	struct bq_dchg ch;
	uint8_t addr[BQ_NODE_ADDR_LEN];
	char name[BQ_NAME_MAX + 1];
	uint8_t name_len;
	uint8_t n_neigh;
	uint8_t *neigh;        /* owned; n_neigh * BQ_NODE_ADDR_LEN bytes */
	uint32_t seq;          /* last announce sequence seen */
	uint64_t heard_ms;     /* loop clock */
	bool up;
	/* node engine */
	void *route;           /* next-hop link, or NULL */
	uint8_t hops;
	uint64_t route_ms;     /* when the route was last confirmed */
	uint32_t route_seq;    /* announce sequence that last confirmed it */
	struct bq_fifo hold;   /* frames waiting for a route to this node */
};

/* max_users / max_nodes bound the maps (a peer cannot grow them without limit). */
struct bq_dir *bq_dir_new(const uint8_t self[BQ_NODE_ADDR_LEN], size_t max_users,
			  size_t max_nodes);
void bq_dir_free(struct bq_dir *d);

struct bq_duser *bq_dir_user(const struct bq_dir *d, const char *id, size_t id_len);
/*
 * A new record: offline, version 0, home = this node, not yet in the change list
 * (touch it once filled). NULL with *err = -ENOSPC (full), -EINVAL (bad id) or -ENOMEM.
 */
struct bq_duser *bq_dir_user_add(struct bq_dir *d, const char *id, size_t id_len, int *err);
struct bq_dnode *bq_dir_node(const struct bq_dir *d, const uint8_t addr[BQ_NODE_ADDR_LEN]);
struct bq_dnode *bq_dir_node_add(struct bq_dir *d, const uint8_t addr[BQ_NODE_ADDR_LEN],
				 int *err);
/* Replace the neighbour list. 1 if it changed, 0 if the same, -ENOMEM. */
int bq_dir_node_set_neigh(struct bq_dnode *n, const uint8_t *neigh, uint8_t count);
/* Copy a name in (truncated to BQ_NAME_MAX). true if it changed. */
bool bq_dir_set_name(char *dst, uint8_t *dst_len, const char *name, size_t len);

size_t bq_dir_user_count(const struct bq_dir *d);
size_t bq_dir_node_count(const struct bq_dir *d);
/* Iterate: *pos = 0 first; NULL at the end. The maps must not grow during a walk. */
struct bq_duser *bq_dir_next_user(const struct bq_dir *d, size_t *pos);
struct bq_dnode *bq_dir_next_node(const struct bq_dir *d, size_t *pos);

/* Give the record a new change number (moves it to the tail of the change list). */
void bq_dir_touch(struct bq_dir *d, struct bq_dchg *c);
/* The newest change number handed out (0 when nothing changed yet). */
uint64_t bq_dir_cursor(const struct bq_dir *d);
/* The oldest record changed after cursor (walk on with ->next), or NULL. */
struct bq_dchg *bq_dir_changes_after(const struct bq_dir *d, uint64_t cursor);

static inline struct bq_duser *bq_dchg_user(struct bq_dchg *c)
{
	return (struct bq_duser *)c;
}

static inline struct bq_dnode *bq_dchg_node(struct bq_dchg *c)
{
	return (struct bq_dnode *)c;
}

/* Wire views; the entry points into the record. */
void bq_dir_user_entry(const struct bq_duser *u, uint64_t now_ms, struct bq_dir_entry *e);
void bq_dir_node_entry(const struct bq_dnode *n, uint64_t now_ms, struct bq_dir_entry *e);

/* The version a home node gives a change: max(prev + 1, wall-clock seconds). */
uint32_t bq_dir_stamp(uint32_t prev, uint64_t wall_ms);

/*
 * Apply another node's view of a user whose home is `home` (an announce: the origin;
 * a DIRECTORY entry: its home field). Accepted when the user is new, the version is
 * higher, or the version is equal and our presence was only derived. Equal or higher
 * versions refresh the confirmation time (now_ms - age). Returns 1 when the record
 * changed (and was touched), 0 when not, -ENOSPC / -EINVAL / -ENOMEM. *out gets the
 * record when there is one. The caller handles users homed at this node itself.
 */
int bq_dir_apply_user(struct bq_dir *d, const struct bq_dir_entry *e,
		      const uint8_t home[BQ_NODE_ADDR_LEN], uint64_t now_ms,
		      struct bq_duser **out);

#endif
