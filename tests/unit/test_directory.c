/* SPDX-License-Identifier: MIT */
/* The node's directory: version rules, the change list behind SCAN cursors, bounds. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mesh/directory.h"

static const uint8_t SELF[BQ_NODE_ADDR_LEN] = { 0xD8, 0x3A, 0xDD, 0x03, 0x1E, 0x77 };
static const uint8_t B[BQ_NODE_ADDR_LEN] = { 2, 0, 0, 0, 0, 2 };
static const uint8_t C[BQ_NODE_ADDR_LEN] = { 2, 0, 0, 0, 0, 3 };

static struct bq_dir_entry user(const char *id, uint8_t presence, uint32_t version)
{
	struct bq_dir_entry e = {
		.kind = BQ_DIR_USER,
		.id = id,
		.id_len = (uint8_t)strlen(id),
		.presence = presence,
		.name = "Name",
		.name_len = 4,
		.version = version,
	};

	return e;
}

START_TEST(test_version_rules)
{
	struct bq_dir *d = bq_dir_new(SELF, 100, 10);
	struct bq_dir_entry e = user("alice", BQ_PRES_ONLINE, 10);
	struct bq_duser *u;

	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 5000, &u), 1);
	ck_assert_ptr_nonnull(u);
	ck_assert_mem_eq(u->home, B, BQ_NODE_ADDR_LEN);
	ck_assert_uint_eq(u->version, 10);
	ck_assert_uint_eq(u->confirmed_ms, 5000);
	/* Same version again: no change, but it confirms the record. */
	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 6000, &u), 0);
	ck_assert_uint_eq(u->confirmed_ms, 6000);
	/* Lower version: ignored, whatever it says. */
	e = user("alice", BQ_PRES_OFFLINE, 9);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, C, 7000, &u), 0);
	ck_assert_uint_eq(u->presence, BQ_PRES_ONLINE);
	ck_assert_mem_eq(u->home, B, BQ_NODE_ADDR_LEN);
	/* Equal version with a different presence: the first view stays... */
	e = user("alice", BQ_PRES_OFFLINE, 10);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 7000, &u), 0);
	ck_assert_uint_eq(u->presence, BQ_PRES_ONLINE);
	/* ...unless our presence was only derived (the home node expired). */
	u->presence = BQ_PRES_OFFLINE;
	u->derived = true;
	e = user("alice", BQ_PRES_ONLINE, 10);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 8000, &u), 1);
	ck_assert_uint_eq(u->presence, BQ_PRES_ONLINE);
	ck_assert(!u->derived);
	/* Higher version: moves home. */
	e = user("alice", BQ_PRES_ONLINE, 11);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, C, 9000, &u), 1);
	ck_assert_mem_eq(u->home, C, BQ_NODE_ADDR_LEN);
	/* Age: the confirmation time is the sender's, not ours. */
	e = user("alice", BQ_PRES_ONLINE, 11);
	e.age_s = 3;
	ck_assert_int_eq(bq_dir_apply_user(d, &e, C, 20000, &u), 0);
	ck_assert_uint_eq(u->confirmed_ms, 17000);
	bq_dir_free(d);
}
END_TEST

START_TEST(test_stamp)
{
	ck_assert_uint_eq(bq_dir_stamp(0, 1700000000123ull), 1700000000u);
	ck_assert_uint_eq(bq_dir_stamp(1700000005u, 1700000000123ull), 1700000006u);
	ck_assert_uint_eq(bq_dir_stamp(UINT32_MAX, 0), UINT32_MAX);
}
END_TEST

static size_t walk(struct bq_dir *d, uint64_t cursor, char *out, size_t cap)
{
	size_t n = 0;

	out[0] = '\0';
	for (struct bq_dchg *c = bq_dir_changes_after(d, cursor); c; c = c->next) {
		size_t len = strlen(out);

		if (c->kind == BQ_DIR_USER) {
			snprintf(out + len, cap - len, "%s ", bq_dchg_user(c)->id);
		} else {
			snprintf(out + len, cap - len, "node%u ", bq_dchg_node(c)->addr[5]);
		}
		n++;
	}
	return n;
}

START_TEST(test_change_list)
{
	struct bq_dir *d = bq_dir_new(SELF, 100, 10);
	struct bq_dir_entry a = user("a", BQ_PRES_ONLINE, 1), b = user("b", BQ_PRES_ONLINE, 1),
			    c = user("c", BQ_PRES_ONLINE, 1);
	struct bq_duser *u;
	struct bq_dnode *n;
	char out[256];
	uint64_t mid;
	int err = 0;

	ck_assert_uint_eq(bq_dir_cursor(d), 0);
	ck_assert_ptr_null(bq_dir_changes_after(d, 0));
	bq_dir_apply_user(d, &a, B, 1, &u);
	bq_dir_apply_user(d, &b, B, 1, &u);
	mid = bq_dir_cursor(d);
	bq_dir_apply_user(d, &c, B, 1, &u);
	n = bq_dir_node_add(d, B, &err);
	ck_assert_ptr_nonnull(n);
	bq_dir_touch(d, &n->ch);
	ck_assert_uint_eq(walk(d, 0, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "a b c node2 ");
	ck_assert_uint_eq(walk(d, mid, out, sizeof(out)), 2);
	ck_assert_str_eq(out, "c node2 ");
	/* A change moves the record to the end, with a new number. */
	a = user("a", BQ_PRES_OFFLINE, 2);
	ck_assert_int_eq(bq_dir_apply_user(d, &a, B, 1, &u), 1);
	ck_assert_uint_eq(walk(d, 0, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "b c node2 a ");
	ck_assert_uint_eq(walk(d, mid, out, sizeof(out)), 3);
	ck_assert_str_eq(out, "c node2 a ");
	ck_assert_uint_eq(walk(d, bq_dir_cursor(d), out, sizeof(out)), 0);
	ck_assert_uint_eq(bq_dir_cursor(d), 5);
	bq_dir_free(d);
}
END_TEST

START_TEST(test_bounds_and_nodes)
{
	struct bq_dir *d = bq_dir_new(SELF, 2, 1);
	struct bq_dir_entry e = user("a", BQ_PRES_ONLINE, 1);
	struct bq_duser *u;
	struct bq_dnode *n;
	uint8_t neigh[12] = { 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 3 };
	int err = 0;

	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 1, &u), 1);
	e = user("b", BQ_PRES_ONLINE, 1);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 1, &u), 1);
	e = user("c", BQ_PRES_ONLINE, 1);
	ck_assert_int_eq(bq_dir_apply_user(d, &e, B, 1, &u), -ENOSPC);
	ck_assert_ptr_null(u);
	ck_assert_ptr_null(bq_dir_user_add(d, "bad id!", 7, &err));
	ck_assert_uint_eq(bq_dir_user_count(d), 2);

	n = bq_dir_node_add(d, B, &err);
	ck_assert_ptr_nonnull(n);
	ck_assert_ptr_null(bq_dir_node_add(d, C, &err));
	ck_assert_int_eq(err, -ENOSPC);
	ck_assert_ptr_eq(bq_dir_node(d, B), n);
	ck_assert_int_eq(bq_dir_node_set_neigh(n, neigh, 2), 1);
	ck_assert_int_eq(bq_dir_node_set_neigh(n, neigh, 2), 0);
	ck_assert_int_eq(bq_dir_node_set_neigh(n, neigh, 1), 1);
	ck_assert_int_eq(bq_dir_node_set_neigh(n, NULL, 0), 1);
	ck_assert_uint_eq(n->n_neigh, 0);
	ck_assert(bq_dir_set_name(n->name, &n->name_len, "Odin", 4));
	ck_assert(!bq_dir_set_name(n->name, &n->name_len, "Odin", 4));
	ck_assert_str_eq(n->name, "Odin");
	bq_dir_free(d);
}
END_TEST

START_TEST(test_entries)
{
	struct bq_dir *d = bq_dir_new(SELF, 10, 10);
	struct bq_dir_entry e = user("alice", BQ_PRES_ONLINE, 7), out;
	struct bq_duser *u;
	uint8_t buf[256];
	struct bq_dirw w;
	struct bq_dir_iter it;

	bq_dir_apply_user(d, &e, B, 1000, &u);
	bq_dir_user_entry(u, 4500, &out);
	ck_assert_uint_eq(out.age_s, 3);
	ck_assert_uint_eq(out.version, 7);
	ck_assert_mem_eq(out.home, B, BQ_NODE_ADDR_LEN);
	/* The entry survives the wire format. */
	ck_assert_int_eq(bq_dirw_init_directory(&w, buf, sizeof(buf), 0, 0), 0);
	ck_assert_int_eq(bq_dirw_add(&w, &out), 0);
	bq_dirw_finish(&w, 9);
	bq_dir_iter_init(&it, buf + 11, w.off - 11, 1);
	ck_assert_int_eq(bq_dir_iter_next(&it, &e), 1);
	ck_assert_int_eq(e.id_len, 5);
	ck_assert_mem_eq(e.id, "alice", 5);
	bq_dir_free(d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("directory");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_version_rules);
	tcase_add_test(tc, test_stamp);
	tcase_add_test(tc, test_change_list);
	tcase_add_test(tc, test_bounds_and_nodes);
	tcase_add_test(tc, test_entries);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
