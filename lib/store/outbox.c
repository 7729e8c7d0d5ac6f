/* SPDX-License-Identifier: MIT */
/*
 * outbox: the durable outbox and its writer thread (design: docs/internals/store.md).
 *
 * Threads and what each may touch:
 *   loop thread   everything in struct bq_outbox except the fields under "writer",
 *                 the read connection (rdb), op allocation and freeing, logging.
 *   writer thread the write connection (wdb) and its statements, the id table (w_slots)
 *                 and the ops of the batch it has taken. It never allocates through
 *                 bq_malloc (the alloc test hook counts without a lock) and never logs
 *                 (the logger is not thread-safe): it records errors for the loop thread
 *                 to report.
 *   both          the fields under "shared", only with mu held.
 * An op is handed over through the locked lists, which is what orders every write to
 * it before the other thread's reads.
 */
#include "store/outbox.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "store/db.h"

#define MOD "outbox"

/* Bound on one transaction, so a deep queue still answers its first callers soon. */
#define BATCH_MAX 8192
#define ID_RETRIES 4
/* The id table groups a batch's ops by message: a power of two, at most half full. */
#define W_SLOTS (2 * BATCH_MAX)
_Static_assert((W_SLOTS & (W_SLOTS - 1)) == 0, "W_SLOTS must be a power of two");
/*
 * History entries one statement appends. The usual life (accepted, queued, sent,
 * delivered) fits one INSERT; a longer one in one batch takes a statement per 8 more.
 */
#define STMT_EVENTS 8

enum op_kind {
	OP_INSERT,
	OP_STATE,
};

struct op {
	struct op *next;
	/* Writer, while it runs the batch: the ops of this id in queue order. */
	struct op *gnext; /* the next op of the same id, NULL for the last */
	struct op *gtail; /* on the first op of an id: its last op so far */
	bool glead;	  /* the first op of its id in the batch */
	enum op_kind kind;
	enum bq_outbox_state state;
	bool gen_id;
	int err;
	uint64_t id;
	uint64_t at_ms;
	bq_outbox_accept_cb cb;
	void *user_data;
	/* Strings point into data[] (one allocation per op). */
	const char *user_id;
	size_t user_id_len;
	const char *dest;
	size_t dest_len;
	const char *body;
	size_t body_len;
	const char *reason; /* NULL when none */
	size_t reason_len;
	char data[];
};

struct op_list {
	struct op *head;
	struct op *tail;
};

struct bq_outbox {
	struct bq_loop *loop;
	struct bq_log *log;
	struct bq_async *async;
	struct bq_db *rdb;
	sqlite3_stmt *r_get;
	sqlite3_stmt *r_pending;
	size_t max_ops;
	size_t outstanding;   /* ops allocated and not yet freed (loop thread) */
	uint64_t id_pool[64]; /* random ids, refilled 64 at a time (one getrandom, not 64) */
	size_t id_left;
	bool closing;
	uint64_t rejected;

	/* writer */
	pthread_t thread;
	struct bq_db *wdb;
	sqlite3_stmt *w_insert[STMT_EVENTS]; /* [k]: the accepted entry and k later ones */
	sqlite3_stmt *w_update[STMT_EVENTS]; /* [k]: k + 1 entries */
	struct op **w_slots;		     /* W_SLOTS, allocated at open */

	/* shared */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct op_list queue;
	struct op_list done;
	bool stopping;
	uint64_t accepted;
	uint64_t updates;
	uint64_t commits;
	uint64_t failed_ops;
	size_t max_batch;
	int werr;	    /* last batch error not yet reported, 0 if none */
	char werr_msg[256]; /* SQLite's message for it */
};

static const char *const state_names[] = {
	[BQ_OUTBOX_ACCEPTED] = "accepted", [BQ_OUTBOX_QUEUED] = "queued",
	[BQ_OUTBOX_SENT] = "sent",	   [BQ_OUTBOX_DELIVERED] = "delivered",
	[BQ_OUTBOX_FAILED] = "failed",	   [BQ_OUTBOX_BROADCAST] = "broadcast",
};

#define N_STATES (sizeof(state_names) / sizeof(state_names[0]))

const char *bq_outbox_state_name(enum bq_outbox_state s)
{
	return (size_t)s < N_STATES ? state_names[s] : "unknown";
}

const char *bq_outbox_state_label(enum bq_outbox_state s)
{
	return s == BQ_OUTBOX_BROADCAST ? "sent to mesh" : bq_outbox_state_name(s);
}

int bq_outbox_state_parse(const char *s, enum bq_outbox_state *out)
{
	for (size_t i = 0; s && i < N_STATES; i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum bq_outbox_state)i;
			return 0;
		}
	}
	return -EINVAL;
}

bool bq_outbox_state_terminal(enum bq_outbox_state s)
{
	return s == BQ_OUTBOX_DELIVERED || s == BQ_OUTBOX_FAILED || s == BQ_OUTBOX_BROADCAST;
}

void bq_outbox_id_format(uint64_t id, char *out)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = BQ_OUTBOX_ID_LEN - 1; i >= 0; i--) {
		out[i] = hex[id & 0xf];
		id >>= 4;
	}
	out[BQ_OUTBOX_ID_LEN] = '\0';
}

int bq_outbox_id_parse(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; s && s[i] && i < BQ_OUTBOX_ID_LEN + 1; i++) {
		char c = s[i];
		unsigned d;

		if (c >= '0' && c <= '9') {
			d = (unsigned)(c - '0');
		} else if (c >= 'a' && c <= 'f') {
			d = (unsigned)(c - 'a' + 10);
		} else if (c >= 'A' && c <= 'F') {
			d = (unsigned)(c - 'A' + 10);
		} else {
			return -EINVAL;
		}
		v = v << 4 | d;
	}
	if (i != BQ_OUTBOX_ID_LEN || v == 0) {
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* ---- schema ------------------------------------------------------------------------ */

/*
 * Portable SQL (PostgreSQL later): text ids generated by the program, BIGINT times,
 * no AUTOINCREMENT. History order is seq per message, not time: two events in the
 * same millisecond must still come back in the order they happened.
 */
static const struct bq_db_migration migrations[] = {
	{1, "CREATE TABLE messages ("
	    " id TEXT NOT NULL PRIMARY KEY,"
	    " user_id TEXT NOT NULL,"
	    " destination TEXT NOT NULL,"
	    " body TEXT NOT NULL,"
	    " state TEXT NOT NULL,"
	    " reason TEXT,"
	    " created_ms BIGINT NOT NULL,"
	    " updated_ms BIGINT NOT NULL,"
	    " attempts INTEGER NOT NULL DEFAULT 0);"
	    "CREATE INDEX messages_state ON messages (state);"
	    "CREATE TABLE message_events ("
	    " message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,"
	    " seq INTEGER NOT NULL,"
	    " state TEXT NOT NULL,"
	    " reason TEXT,"
	    " at_ms BIGINT NOT NULL,"
	    " PRIMARY KEY (message_id, seq));"},
	/*
	 * v2: one B-tree per message instead of four. The history moves into the row as a
	 * JSON array of [state, at_ms, reason] (appended by each state change in the same
	 * UPDATE), the table is keyed by its id alone (WITHOUT ROWID), and only messages
	 * still to be sent are indexed (partial index): a state change costs one seek and
	 * one row write, where v1 touched the row, its id index, the state index, an event
	 * row, its index and a foreign-key check. Measured in docs/internals/store.md.
	 */
	{2, "CREATE TABLE outbox ("
	    " id TEXT NOT NULL PRIMARY KEY,"
	    " user_id TEXT NOT NULL,"
	    " destination TEXT NOT NULL,"
	    " body TEXT NOT NULL,"
	    " state TEXT NOT NULL,"
	    " reason TEXT,"
	    " created_ms BIGINT NOT NULL,"
	    " updated_ms BIGINT NOT NULL,"
	    " attempts INTEGER NOT NULL DEFAULT 0,"
	    " history TEXT NOT NULL) WITHOUT ROWID;"
	    "INSERT INTO outbox SELECT m.id, m.user_id, m.destination, m.body, m.state, m.reason,"
	    " m.created_ms, m.updated_ms, m.attempts,"
	    " COALESCE((SELECT json_group_array(json_array(e.state, e.at_ms, e.reason))"
	    "  FROM (SELECT * FROM message_events WHERE message_id = m.id ORDER BY seq) e),"
	    "  '[]') FROM messages m;"
	    "DROP TABLE message_events;"
	    "DROP TABLE messages;"
	    "CREATE INDEX outbox_pending ON outbox (created_ms, id)"
	    " WHERE state IN ('accepted', 'queued', 'sent');"},
};

/*
 * The statements the writer runs are built at open for 1..STMT_EVENTS history entries
 * (prepare_writer). An insert carries the state its first changes in
 * the batch lead to: ?5 created_ms (also the accepted entry's time), ?6 state, ?7
 * reason, ?8 updated_ms, ?9 attempts, then state, at_ms, reason of each later entry
 * from ?10 on.
 */
#define SQL_INSERT_HEAD                                                                            \
	"INSERT INTO outbox (id, user_id, destination, body, state, reason, created_ms,"           \
	" updated_ms, attempts, history) VALUES (?1, ?2, ?3, ?4, ?6, ?7, ?5, ?8, ?9,"              \
	" json_array(json_array('accepted', ?5, NULL)"
/*
 * ?2 state, ?3 reason, ?4 updated_ms, ?5 attempts to add, then the entries from ?6 on,
 * appended in order by one json_insert with a '$[#]' path each. The terminal states are
 * spelled out rather than written as NOT IN (...): SQLite builds a temporary B-tree for
 * an IN list of three or more constants at every execution.
 */
#define SQL_UPDATE_HEAD                                                                            \
	"UPDATE outbox SET state = ?2, reason = ?3, updated_ms = ?4,"                              \
	" attempts = attempts + ?5, history = json_insert(history"
#define SQL_UPDATE_TAIL                                                                            \
	") WHERE id = ?1 AND state <> 'delivered' AND state <> 'failed'"                           \
	" AND state <> 'broadcast'"
#define SQL_GET                                                                                    \
	"SELECT id, user_id, destination, body, state, reason, created_ms, updated_ms,"            \
	" attempts, history FROM outbox WHERE id = ?1"
#define SQL_PENDING                                                                                \
	"SELECT id, user_id, destination, body, state, reason, created_ms, updated_ms,"            \
	" attempts FROM outbox WHERE state IN ('accepted', 'queued', 'sent')"                      \
	" ORDER BY created_ms, id"

/* ---- writer thread ----------------------------------------------------------------- */

static int bind_id(sqlite3_stmt *st, int idx, uint64_t id, char *buf)
{
	bq_outbox_id_format(id, buf);
	return bq_db_bind_text(st, idx, buf, BQ_OUTBOX_ID_LEN);
}

static int bind_opt_text(sqlite3_stmt *st, int idx, const char *s, size_t len)
{
	if (!s) {
		return sqlite3_bind_null(st, idx) == SQLITE_OK ? 0 : -EINVAL;
	}
	return bq_db_bind_text(st, idx, s, len);
}

static bool counts_attempt(enum bq_outbox_state s)
{
	return s == BQ_OUTBOX_SENT || s == BQ_OUTBOX_BROADCAST;
}

/* One history entry [state, at_ms, reason] at parameters idx, idx + 1, idx + 2. */
static void bind_event(sqlite3_stmt *st, int idx, const struct op *op)
{
	const char *name = bq_outbox_state_name(op->state);

	bq_db_bind_text(st, idx, name, strlen(name));
	bq_db_bind_i64(st, idx + 1, (int64_t)op->at_ms);
	bind_opt_text(st, idx + 2, op->reason, op->reason_len);
}

/*
 * One UPDATE per STMT_EVENTS of the n changes from first on (n > 0). The row keeps
 * the last one's state, reason and time. Only the group's last change can be terminal,
 * so a chunk after the first finds the row as the previous chunk left it.
 */
static int w_update_group(struct bq_outbox *ob, struct op *first, size_t n)
{
	char idbuf[BQ_OUTBOX_ID_LEN + 1];
	struct op *op = first;

	while (n > 0) {
		size_t k = n < STMT_EVENTS ? n : STMT_EVENTS;
		sqlite3_stmt *st = ob->w_update[k - 1];
		const struct op *last = op;
		const char *name;
		int64_t attempts = 0;
		int err;

		bind_id(st, 1, first->id, idbuf);
		for (size_t j = 0; j < k; j++, op = op->gnext) {
			bind_event(st, 6 + 3 * (int)j, op);
			attempts += counts_attempt(op->state);
			last = op;
		}
		name = bq_outbox_state_name(last->state);
		bq_db_bind_text(st, 2, name, strlen(name));
		bind_opt_text(st, 3, last->reason, last->reason_len);
		bq_db_bind_i64(st, 4, (int64_t)last->at_ms);
		bq_db_bind_i64(st, 5, attempts);
		/* Unknown id or terminal state: no row changes, so no history either. */
		err = bq_db_step_done(ob->wdb, st);
		if (err < 0) {
			return err == -EEXIST ? -EIO : err;
		}
		n -= k;
	}
	return 0;
}

/*
 * The new row with its first n changes (first, first->gnext, ...) already applied:
 * one INSERT with the final state and the whole history, or more statements when
 * the history is longer than one carries. -EEXIST when the id is taken (nothing
 * written).
 */
static int w_insert_group(struct bq_outbox *ob, struct op *ins, struct op *first, size_t n)
{
	char idbuf[BQ_OUTBOX_ID_LEN + 1];
	size_t k = n < STMT_EVENTS - 1 ? n : STMT_EVENTS - 1;
	sqlite3_stmt *st = ob->w_insert[k];
	const struct op *last = ins;
	struct op *op = first;
	const char *name;
	int64_t attempts = 0;
	int err;

	bind_id(st, 1, ins->id, idbuf);
	bq_db_bind_text(st, 2, ins->user_id, ins->user_id_len);
	bq_db_bind_text(st, 3, ins->dest, ins->dest_len);
	bq_db_bind_text(st, 4, ins->body, ins->body_len);
	bq_db_bind_i64(st, 5, (int64_t)ins->at_ms);
	for (size_t j = 0; j < k; j++, op = op->gnext) {
		bind_event(st, 10 + 3 * (int)j, op);
		attempts += counts_attempt(op->state);
		last = op;
	}
	name = bq_outbox_state_name(last->state);
	bq_db_bind_text(st, 6, name, strlen(name));
	bind_opt_text(st, 7, last->reason, last->reason_len);
	bq_db_bind_i64(st, 8, (int64_t)last->at_ms);
	bq_db_bind_i64(st, 9, attempts);
	err = bq_db_step_done(ob->wdb, st);
	if (err == 0 && n > k) {
		err = w_update_group(ob, op, n - k);
	}
	return err;
}

/* A generated id that collides (2^-64 per pair) gets a new one, not an error. */
static int w_insert_regen(struct bq_outbox *ob, struct op *ins)
{
	int err = -EEXIST;

	for (int i = 0; err == -EEXIST && i < ID_RETRIES; i++) {
		do {
			randombytes_buf(&ins->id, sizeof(ins->id));
		} while (ins->id == 0);
		err = w_insert_group(ob, ins, NULL, 0);
	}
	return err;
}

/*
 * Link the batch's ops of each id in queue order (gnext), the first one marked glead,
 * through an open-addressing table by id sized for the batch. Grouping uses the ids
 * as queued: a state change names the id its caller was given.
 */
static void w_group(struct bq_outbox *ob, struct op *batch, size_t n)
{
	unsigned bits = 4;
	size_t cap, mask;

	while ((size_t)1 << bits < 2 * n) {
		bits++;
	}
	cap = (size_t)1 << bits;
	mask = cap - 1;
	memset(ob->w_slots, 0, cap * sizeof(*ob->w_slots));
	for (struct op *op = batch; op; op = op->next) {
		/* Fibonacci hashing: caller-given ids may be sequential, not random. */
		size_t i = (size_t)((op->id * 0x9e3779b97f4a7c15ULL) >> (64 - bits));
		struct op *lead;

		while (ob->w_slots[i] && ob->w_slots[i]->id != op->id) {
			i = (i + 1) & mask;
		}
		lead = ob->w_slots[i];
		op->gnext = NULL;
		op->glead = !lead;
		if (lead) {
			lead->gtail->gnext = op;
			lead->gtail = op;
		} else {
			ob->w_slots[i] = op;
			op->gtail = op;
		}
	}
}

/*
 * All ops of one id, with one statement per run of them: an insert and the changes
 * after it up to the next insert of the id, or changes alone. Changes after a terminal
 * one are dropped here, as the UPDATE's WHERE would drop them one by one; a run of
 * changes on a row that is terminal already is dropped whole by that WHERE.
 */
static int w_run_group(struct bq_outbox *ob, struct op *op)
{
	while (op) {
		struct op *ins = NULL, *first;
		size_t n = 0;
		bool ended = false;
		int err;

		if (op->kind == OP_INSERT) {
			ins = op;
			op = op->gnext;
		}
		first = op;
		for (; op && op->kind == OP_STATE; op = op->gnext) {
			op->err = 0;
			if (!ended) {
				n++;
				ended = bq_outbox_state_terminal(op->state);
			}
		}
		if (ins) {
			err = w_insert_group(ob, ins, first, n);
			if (err != -EEXIST) {
				ins->err = err;
				if (err < 0) {
					return err;
				}
				continue;
			}
			/*
			 * Taken (SQLite undid the statement): the insert fails alone, or a
			 * generated id is inserted alone under a new one. The changes were
			 * queued for the id as given, so they go to the row already there,
			 * exactly as they would have one by one.
			 */
			ins->err = ins->gen_id ? w_insert_regen(ob, ins) : -EEXIST;
			if (ins->err < 0 && ins->err != -EEXIST) {
				return ins->err;
			}
		}
		if (n > 0) {
			err = w_update_group(ob, first, n);
			if (err < 0) {
				return err;
			}
		}
	}
	return 0;
}

static void fail_batch(struct op *batch, int err)
{
	for (struct op *op = batch; op; op = op->next) {
		op->err = err;
	}
}

/*
 * One transaction for the whole batch, one statement per message (w_run_group). A
 * duplicate caller-given id fails only its own op (SQLite undoes just that statement);
 * any other error fails the whole batch, because after an I/O error or a full disk
 * SQLite may have rolled back already. Ops of different ids touch different rows, so
 * running them grouped by id instead of interleaved changes nothing but the cost.
 */
static int w_run_batch(struct bq_outbox *ob, struct op *batch, size_t n)
{
	int err;

	w_group(ob, batch, n);
	err = bq_db_begin(ob->wdb);
	if (err < 0) {
		goto fail;
	}
	for (struct op *op = batch; op; op = op->next) {
		if (op->glead) {
			err = w_run_group(ob, op);
			if (err < 0) {
				goto fail;
			}
		}
	}
	err = bq_db_commit(ob->wdb);
	if (err < 0) {
		goto fail;
	}
	return 0;
fail:
	bq_db_rollback(ob->wdb);
	fail_batch(batch, err);
	return err;
}

static void *writer_main(void *arg)
{
	struct bq_outbox *ob = arg;

	pthread_mutex_lock(&ob->mu);
	for (;;) {
		struct op *batch, *last;
		size_t n = 0, n_ins = 0;
		int err;

		while (!ob->queue.head && !ob->stopping) {
			pthread_cond_wait(&ob->cond, &ob->mu);
		}
		if (!ob->queue.head) {
			break; /* stopping, and everything is committed */
		}
		/*
		 * Take what is queued now. While this batch waits for its fsync the next one
		 * collects: that is the group commit, with no timer and no added latency.
		 */
		batch = ob->queue.head;
		last = batch;
		for (n = 1; last->next && n < BATCH_MAX; n++) {
			last = last->next;
		}
		ob->queue.head = last->next;
		if (!ob->queue.head) {
			ob->queue.tail = NULL;
		}
		last->next = NULL;
		pthread_mutex_unlock(&ob->mu);

		err = w_run_batch(ob, batch, n);

		pthread_mutex_lock(&ob->mu);
		for (struct op *op = batch; op; op = op->next) {
			n_ins += op->kind == OP_INSERT && op->err == 0;
		}
		if (err < 0) {
			ob->failed_ops += n;
			ob->werr = err;
			snprintf(ob->werr_msg, sizeof(ob->werr_msg), "%s",
				 sqlite3_errmsg(bq_db_handle(ob->wdb)));
		} else {
			ob->commits++;
			ob->accepted += n_ins;
			for (struct op *op = batch; op; op = op->next) {
				ob->updates += op->kind == OP_STATE;
			}
		}
		if (n > ob->max_batch) {
			ob->max_batch = n;
		}
		if (ob->done.tail) {
			ob->done.tail->next = batch;
		} else {
			ob->done.head = batch;
		}
		ob->done.tail = last;
		bq_async_send(ob->async);
	}
	pthread_mutex_unlock(&ob->mu);
	return NULL;
}

/* ---- loop thread ------------------------------------------------------------------- */

static void report_writer_error(struct bq_outbox *ob)
{
	char msg[256];
	char q[300];
	int err;

	pthread_mutex_lock(&ob->mu);
	err = ob->werr;
	memcpy(msg, ob->werr_msg, sizeof(msg));
	ob->werr = 0;
	pthread_mutex_unlock(&ob->mu);
	if (err) {
		bq_err(ob->log, MOD, "msg=\"commit failed\" err=%d detail=%s", err,
		       bq_log_quote(msg, q, sizeof(q)));
	}
}

static void dispatch_done(struct bq_outbox *ob)
{
	struct op *list, *next;

	pthread_mutex_lock(&ob->mu);
	list = ob->done.head;
	ob->done.head = ob->done.tail = NULL;
	pthread_mutex_unlock(&ob->mu);
	report_writer_error(ob);
	for (struct op *op = list; op; op = next) {
		next = op->next;
		if (op->kind == OP_INSERT) {
			op->cb(ob, op->err, op->id, op->user_data);
		} else if (op->err < 0) {
			char idbuf[BQ_OUTBOX_ID_LEN + 1];

			bq_outbox_id_format(op->id, idbuf);
			bq_warn(ob->log, MOD, "msg=\"state change lost\" id=%s state=%s err=%d",
				idbuf, bq_outbox_state_name(op->state), op->err);
		}
		bq_free(op);
		ob->outstanding--;
	}
}

static void async_cb(struct bq_async *a, void *user_data)
{
	dispatch_done(user_data);
}

static void enqueue(struct bq_outbox *ob, struct op *op)
{
	ob->outstanding++;
	pthread_mutex_lock(&ob->mu);
	if (ob->queue.tail) {
		ob->queue.tail->next = op;
	} else {
		ob->queue.head = op;
		/* Only an empty queue can have a sleeping writer. */
		pthread_cond_signal(&ob->cond);
	}
	ob->queue.tail = op;
	pthread_mutex_unlock(&ob->mu);
}

static bool name_ok(const char *s)
{
	size_t n = s ? strnlen(s, BQ_OUTBOX_MAX_NAME + 1) : 0;

	return n > 0 && n <= BQ_OUTBOX_MAX_NAME;
}

/* Loop thread only. */
static uint64_t next_random_id(struct bq_outbox *ob)
{
	if (ob->id_left == 0) {
		randombytes_buf(ob->id_pool, sizeof(ob->id_pool));
		ob->id_left = sizeof(ob->id_pool) / sizeof(ob->id_pool[0]);
	}
	return ob->id_pool[--ob->id_left];
}

int bq_outbox_accept(struct bq_outbox *ob, const struct bq_outbox_new *msg, bq_outbox_accept_cb cb,
		     void *user_data, uint64_t *id_out)
{
	struct op *op;
	size_t ulen, dlen;
	char *p;

	if (!ob || !msg || !cb || !name_ok(msg->user_id) || !name_ok(msg->destination) ||
	    (msg->body_len && !msg->body)) {
		return -EINVAL;
	}
	if (msg->body_len > BQ_OUTBOX_MAX_BODY) {
		return -EMSGSIZE;
	}
	if (ob->closing) {
		return -ESHUTDOWN;
	}
	if (ob->outstanding >= ob->max_ops) {
		ob->rejected++;
		return -EAGAIN;
	}
	ulen = strlen(msg->user_id);
	dlen = strlen(msg->destination);
	op = bq_malloc(sizeof(*op) + ulen + 1 + dlen + 1 + msg->body_len + 1);
	if (!op) {
		return -ENOMEM;
	}
	memset(op, 0, sizeof(*op));
	op->kind = OP_INSERT;
	op->state = BQ_OUTBOX_ACCEPTED;
	op->id = msg->id;
	op->gen_id = msg->id == 0;
	while (op->id == 0) {
		op->id = next_random_id(ob);
	}
	op->at_ms = bq_wall_ms();
	op->cb = cb;
	op->user_data = user_data;
	p = op->data;
	memcpy(p, msg->user_id, ulen + 1);
	op->user_id = p;
	op->user_id_len = ulen;
	p += ulen + 1;
	memcpy(p, msg->destination, dlen + 1);
	op->dest = p;
	op->dest_len = dlen;
	p += dlen + 1;
	if (msg->body_len) {
		memcpy(p, msg->body, msg->body_len);
	}
	p[msg->body_len] = '\0';
	op->body = p;
	op->body_len = msg->body_len;
	if (id_out) {
		*id_out = op->id;
	}
	enqueue(ob, op);
	return 0;
}

int bq_outbox_set_state(struct bq_outbox *ob, uint64_t id, enum bq_outbox_state state,
			const char *reason)
{
	struct op *op;
	size_t rlen = reason ? strnlen(reason, BQ_OUTBOX_MAX_REASON) : 0;

	if (!ob || id == 0 || (size_t)state >= N_STATES || state == BQ_OUTBOX_ACCEPTED) {
		return -EINVAL;
	}
	if (ob->closing) {
		return -ESHUTDOWN;
	}
	if (ob->outstanding >= 2 * ob->max_ops) {
		ob->rejected++;
		return -EAGAIN;
	}
	op = bq_malloc(sizeof(*op) + rlen + 1);
	if (!op) {
		return -ENOMEM;
	}
	memset(op, 0, sizeof(*op));
	op->kind = OP_STATE;
	op->state = state;
	op->id = id;
	op->at_ms = bq_wall_ms();
	if (reason) {
		memcpy(op->data, reason, rlen);
		op->data[rlen] = '\0';
		op->reason = op->data;
		op->reason_len = rlen;
	}
	enqueue(ob, op);
	return 0;
}

/* ---- reads ------------------------------------------------------------------------- */

/* Columns of SQL_GET / SQL_PENDING into m, borrowing SQLite's text (valid until step). */
static int row_to_msg(sqlite3_stmt *st, struct bq_outbox_msg *m)
{
	const char *id = (const char *)sqlite3_column_text(st, 0);
	const char *state = (const char *)sqlite3_column_text(st, 4);
	int64_t attempts;

	memset(m, 0, sizeof(*m));
	if (!id || bq_outbox_id_parse(id, &m->id) < 0 || !state ||
	    bq_outbox_state_parse(state, &m->state) < 0) {
		return -EBADMSG;
	}
	m->user_id = (char *)sqlite3_column_text(st, 1);
	m->destination = (char *)sqlite3_column_text(st, 2);
	m->body = (char *)sqlite3_column_text(st, 3);
	m->body_len = (size_t)sqlite3_column_bytes(st, 3);
	m->reason = (char *)sqlite3_column_text(st, 5);
	m->created_ms = (uint64_t)sqlite3_column_int64(st, 6);
	m->updated_ms = (uint64_t)sqlite3_column_int64(st, 7);
	attempts = sqlite3_column_int64(st, 8);
	m->attempts = attempts < 0 ? 0 : attempts > UINT32_MAX ? UINT32_MAX : (uint32_t)attempts;
	if (!m->user_id || !m->destination || !m->body) {
		return m->user_id && m->destination ? -ENOMEM : -EBADMSG;
	}
	return 0;
}

void bq_outbox_msg_free(struct bq_outbox_msg *m)
{
	if (!m) {
		return;
	}
	for (size_t i = 0; i < m->n_events; i++) {
		bq_free(m->events[i].reason);
	}
	bq_free(m->events);
	bq_free(m->user_id);
	bq_free(m->destination);
	bq_free(m->body);
	bq_free(m->reason);
	bq_free(m);
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (s) {
		*out = bq_strdup(s);
		if (!*out) {
			return -ENOMEM;
		}
	}
	return 0;
}

/*
 * The history column: a JSON array of [state, at_ms, reason|null], oldest first, written
 * only by the writer's INSERT and UPDATE. Anything else in it means a damaged row: -EBADMSG.
 */
static int read_events(const char *history, size_t len, struct bq_outbox_msg *m)
{
	json_error_t jerr;
	json_t *arr = json_loadb(history, len, 0, &jerr), *ev;
	size_t i;
	int err = 0;

	if (!json_is_array(arr)) {
		json_decref(arr);
		return -EBADMSG;
	}
	if (json_array_size(arr) > 0) {
		m->events = bq_calloc(json_array_size(arr), sizeof(*m->events));
		if (!m->events) {
			json_decref(arr);
			return -ENOMEM;
		}
	}
	json_array_foreach(arr, i, ev)
	{
		struct bq_outbox_event *out = &m->events[m->n_events];
		json_t *at = json_array_get(ev, 1), *why = json_array_get(ev, 2);

		if (!json_is_array(ev) || !json_is_integer(at) ||
		    bq_outbox_state_parse(json_string_value(json_array_get(ev, 0)), &out->state) <
			    0) {
			err = -EBADMSG;
			break;
		}
		out->at_ms = (uint64_t)json_integer_value(at);
		err = dup_opt(json_is_string(why) ? json_string_value(why) : NULL, &out->reason);
		if (err < 0) {
			break;
		}
		m->n_events++;
	}
	json_decref(arr);
	return err;
}

int bq_outbox_get(struct bq_outbox *ob, uint64_t id, struct bq_outbox_msg **out)
{
	char idbuf[BQ_OUTBOX_ID_LEN + 1];
	struct bq_outbox_msg row;
	struct bq_outbox_msg *m = NULL;
	sqlite3_stmt *st = ob->r_get;
	int rc;
	int err;

	*out = NULL;
	bind_id(st, 1, id, idbuf);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		err = rc == SQLITE_DONE ? -ENOENT : bq_db_errno(bq_db_handle(ob->rdb), rc);
		goto out;
	}
	err = row_to_msg(st, &row);
	if (err < 0) {
		goto out;
	}
	m = bq_calloc(1, sizeof(*m));
	if (!m) {
		err = -ENOMEM;
		goto out;
	}
	m->id = row.id;
	m->state = row.state;
	m->created_ms = row.created_ms;
	m->updated_ms = row.updated_ms;
	m->attempts = row.attempts;
	m->body_len = row.body_len;
	m->user_id = bq_strdup(row.user_id);
	m->destination = bq_strdup(row.destination);
	m->body = bq_malloc(row.body_len + 1);
	if (!m->user_id || !m->destination || !m->body || dup_opt(row.reason, &m->reason) < 0) {
		err = -ENOMEM;
		goto out;
	}
	memcpy(m->body, row.body, row.body_len);
	m->body[row.body_len] = '\0';
	/* The history comes from the same row, in the same read: always consistent. */
	err = read_events((const char *)sqlite3_column_text(st, 9),
			  (size_t)sqlite3_column_bytes(st, 9), m);
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (err < 0) {
		bq_outbox_msg_free(m);
		return err;
	}
	*out = m;
	return 0;
}

long bq_outbox_pending(struct bq_outbox *ob, bq_outbox_pending_cb fn, void *user_data)
{
	sqlite3_stmt *st = ob->r_pending;
	long n = 0;
	int rc;
	int err = 0;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct bq_outbox_msg m;

		err = row_to_msg(st, &m);
		if (err < 0) {
			break;
		}
		n++;
		if (fn(user_data, &m) != 0) {
			break;
		}
	}
	if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE) {
		err = bq_db_errno(bq_db_handle(ob->rdb), rc);
	}
	sqlite3_reset(st);
	return err < 0 ? err : n;
}

void bq_outbox_get_stats(struct bq_outbox *ob, struct bq_outbox_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->queued = ob->outstanding;
	out->rejected = ob->rejected;
	pthread_mutex_lock(&ob->mu);
	out->accepted = ob->accepted;
	out->updates = ob->updates;
	out->commits = ob->commits;
	out->failed_ops = ob->failed_ops;
	out->max_batch = ob->max_batch;
	pthread_mutex_unlock(&ob->mu);
}

/* ---- open / close ------------------------------------------------------------------ */

static void sql_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Append to buf; on overflow *len becomes cap, which the caller checks once. */
static void sql_add(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (*len >= cap) {
		return;
	}
	va_start(ap, fmt);
	r = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	*len = r < 0 || (size_t)r >= cap - *len ? cap : *len + (size_t)r;
}

/* Append the json_array of each of k entries whose parameters start at idx. */
static void sql_add_events(char *buf, size_t cap, size_t *len, const char *sep, int idx, size_t k)
{
	for (size_t j = 0; j < k; j++, idx += 3) {
		sql_add(buf, cap, len, "%sjson_array(?%d, ?%d, ?%d)", sep, idx, idx + 1, idx + 2);
	}
}

static int prepare_writer(struct bq_outbox *ob)
{
	char sql[2048];
	int err = 0;

	for (size_t k = 0; k < STMT_EVENTS && err == 0; k++) {
		size_t len = 0;

		sql_add(sql, sizeof(sql), &len, "%s", SQL_INSERT_HEAD);
		sql_add_events(sql, sizeof(sql), &len, ", ", 10, k);
		sql_add(sql, sizeof(sql), &len, "))");
		err = len < sizeof(sql) ? bq_db_prepare(ob->wdb, sql, &ob->w_insert[k]) : -EINVAL;
		if (err < 0) {
			break;
		}
		len = 0;
		sql_add(sql, sizeof(sql), &len, "%s", SQL_UPDATE_HEAD);
		sql_add_events(sql, sizeof(sql), &len, ", '$[#]', ", 6, k + 1);
		sql_add(sql, sizeof(sql), &len, "%s", SQL_UPDATE_TAIL);
		err = len < sizeof(sql) ? bq_db_prepare(ob->wdb, sql, &ob->w_update[k]) : -EINVAL;
	}
	return err;
}

static int prepare_all(struct bq_outbox *ob)
{
	int err = prepare_writer(ob);

	err = err ? err : bq_db_prepare(ob->rdb, SQL_GET, &ob->r_get);
	err = err ? err : bq_db_prepare(ob->rdb, SQL_PENDING, &ob->r_pending);
	return err;
}

/* The writer must never take a process signal: the loop handles them via signalfd. */
static int start_writer(struct bq_outbox *ob)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&ob->thread, NULL, writer_main, ob);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -rc;
}

int bq_outbox_open(const char *path, struct bq_loop *loop, struct bq_log *log,
		   const struct bq_outbox_opts *opts, struct bq_outbox **out)
{
	struct bq_outbox *ob;
	unsigned wflags = opts && opts->sync_normal ? BQ_DB_SYNC_NORMAL : 0;
	bool locks = false;
	int err;

	*out = NULL;
	if (!path || !loop) {
		return -EINVAL;
	}
	if (sodium_init() < 0) {
		return -EIO;
	}
	ob = bq_calloc(1, sizeof(*ob));
	if (!ob) {
		return -ENOMEM;
	}
	ob->loop = loop;
	ob->log = log;
	ob->max_ops = opts && opts->max_ops ? opts->max_ops : BQ_OUTBOX_DEFAULT_MAX_OPS;
	/* Generous: only the loop ever waits on the write lock, and only at open. */
	err = bq_db_open(path, wflags, 5000, log, &ob->wdb);
	if (err < 0) {
		goto err;
	}
	err = bq_db_migrate(ob->wdb, migrations, sizeof(migrations) / sizeof(migrations[0]));
	if (err < 0) {
		goto err;
	}
	/* Short: a reader in WAL waits only in rare recovery cases, and it blocks the loop. */
	err = bq_db_open(path, BQ_DB_READONLY, 100, log, &ob->rdb);
	if (err < 0) {
		goto err;
	}
	err = prepare_all(ob);
	if (err < 0) {
		goto err;
	}
	ob->w_slots = bq_calloc(W_SLOTS, sizeof(*ob->w_slots));
	if (!ob->w_slots) {
		err = -ENOMEM;
		goto err;
	}
	ob->async = bq_async_new(loop, async_cb, ob);
	if (!ob->async) {
		err = -ENOMEM;
		goto err;
	}
	if (pthread_mutex_init(&ob->mu, NULL) != 0) {
		err = -ENOMEM;
		goto err;
	}
	if (pthread_cond_init(&ob->cond, NULL) != 0) {
		pthread_mutex_destroy(&ob->mu);
		err = -ENOMEM;
		goto err;
	}
	locks = true;
	/* From here on the writer owns wdb; it reports through us, not the logger. */
	bq_db_set_log(ob->wdb, NULL);
	err = start_writer(ob);
	if (err < 0) {
		bq_db_set_log(ob->wdb, log);
		goto err;
	}
	*out = ob;
	return 0;
err:
	if (locks) {
		pthread_cond_destroy(&ob->cond);
		pthread_mutex_destroy(&ob->mu);
	}
	bq_async_free(ob->async);
	bq_free(ob->w_slots);
	bq_db_close(ob->rdb);
	bq_db_close(ob->wdb);
	bq_free(ob);
	return err;
}

void bq_outbox_close(struct bq_outbox *ob)
{
	if (!ob) {
		return;
	}
	ob->closing = true;
	pthread_mutex_lock(&ob->mu);
	ob->stopping = true;
	pthread_cond_signal(&ob->cond);
	pthread_mutex_unlock(&ob->mu);
	pthread_join(ob->thread, NULL);
	/* The writer drained the queue before it stopped, so every op is in done now. */
	dispatch_done(ob);
	bq_async_free(ob->async);
	pthread_cond_destroy(&ob->cond);
	pthread_mutex_destroy(&ob->mu);
	/* The write connection closes last, so it checkpoints and removes the WAL. */
	bq_db_close(ob->rdb);
	bq_db_set_log(ob->wdb, ob->log);
	bq_db_close(ob->wdb);
	bq_free(ob->w_slots);
	bq_free(ob);
}
