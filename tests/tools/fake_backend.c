/* SPDX-License-Identifier: MIT */
/*
 * bq-fake-backend: the two backend endpoints the manager calls, for integration tests
 * (the real blueq-backend is a later issue). Built on the library's HTTP server.
 *   POST /api/bluetooth/events  {"events":[...]}: each event with an id not seen before
 *                               is appended as one line to --events FILE; repeats are
 *                               counted (the backend is idempotent by event id)
 *   GET  /api/bluetooth/users?since=N  entries N.. of the JSON array in --users FILE
 *                               (re-read at every call), "cursor" = the array's length
 * --fail-events makes the events endpoint answer 503 (a backend that is up but sick).
 * Prints "listening port=P" on stdout when ready.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/map.h"
#include "core/opt.h"
#include "http/json.h"
#include "http/server.h"

struct fb_opts {
	int64_t port;
	char *events;
	char *users;
	char *token;
	bool fail_events;
};

struct fb {
	const struct fb_opts *o;
	struct bq_map *seen;
	FILE *events;
	unsigned long dups;
};

#define OFF(f) offsetof(struct fb_opts, f)
static const struct bq_opt options[] = {
	{"port", 'p', BQ_OPT_INT, OFF(port), "0", 0, 65535, NULL, NULL, 0, "PORT", "listen here"},
	{"events", 0, BQ_OPT_STRING, OFF(events), "events.log", 0, 0, NULL, NULL, 0, "FILE",
	 "append received events here"},
	{"users", 0, BQ_OPT_STRING, OFF(users), "users.json", 0, 0, NULL, NULL, 0, "FILE",
	 "the users to serve (a JSON array)"},
	{"token", 0, BQ_OPT_STRING, OFF(token), NULL, 0, 0, NULL, NULL, 0, "TOKEN",
	 "require this bearer token"},
	{"fail-events", 0, BQ_OPT_BOOL, OFF(fail_events), "false", 0, 0, NULL, NULL, 0, NULL,
	 "answer 503 to event pushes"},
	{0},
};

static void h_events(struct bq_http_req *req, void *ud)
{
	struct fb *fb = bq_http_req_user_data(req);
	char err[300];
	size_t len, i;
	const void *body = bq_http_req_body(req, &len);
	json_t *doc = NULL, *evs, *ev;

	if (fb->o->fail_events) {
		bq_http_reply_error(req, 503, "sick", "configured to fail");
		return;
	}
	if (bq_json_parse_object(body, len, &doc, err, sizeof(err)) < 0) {
		bq_http_reply_error(req, 400, "bad_json", "%s", err);
		return;
	}
	evs = json_object_get(doc, "events");
	if (!json_is_array(evs)) {
		json_decref(doc);
		bq_http_reply_error(req, 400, "bad_field", "field 'events' must be an array");
		return;
	}
	json_array_foreach(evs, i, ev)
	{
		const char *id = json_string_value(json_object_get(ev, "id"));
		char *line;

		if (!id) {
			continue;
		}
		if (bq_map_get(fb->seen, id, strlen(id))) {
			fb->dups++;
			continue;
		}
		bq_map_set(fb->seen, id, strlen(id), fb);
		line = json_dumps(ev, JSON_COMPACT);
		if (line) {
			fprintf(fb->events, "%s\n", line);
			free(line);
		}
	}
	fflush(fb->events);
	json_decref(doc);
	bq_http_reply(req, 200, NULL, "{\"ok\":true}", 11);
}

static void h_users(struct bq_http_req *req, void *ud)
{
	struct fb *fb = bq_http_req_user_data(req);
	const char *since = bq_http_req_query(req, "since");
	json_error_t jerr;
	json_t *all = json_load_file(fb->o->users, 0, &jerr), *out, *doc;
	int64_t from = 0;
	char *text;

	if (!all) {
		all = json_array();
	}
	if (since && bq_opt_parse_int(since, &from) < 0) {
		from = 0;
	}
	out = json_array();
	for (size_t i = (size_t)(from < 0 ? 0 : from); i < json_array_size(all); i++) {
		json_array_append(out, json_array_get(all, i));
	}
	doc = json_pack("{s:o, s:I}", "users", out, "cursor", (json_int_t)json_array_size(all));
	text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	json_decref(all);
	if (!text) {
		bq_http_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	bq_http_reply(req, 200, NULL, text, strlen(text));
	free(text);
}

static const struct bq_http_route routes[] = {
	{BQ_HTTP_POST, "/api/bluetooth/events", h_events},
	{BQ_HTTP_GET, "/api/bluetooth/users", h_users},
	{0, NULL, NULL},
};

static void on_signal(struct bq_loop *loop, int signo, void *ud)
{
	bq_loop_stop(loop);
}

int main(int argc, char **argv)
{
	struct fb_opts o = {0};
	struct fb fb = {.o = &o};
	struct bq_http_server_config cfg;
	struct bq_http_server *srv = NULL;
	struct bq_log *log = bq_log_new("bq-fake-backend");
	struct bq_loop *loop = NULL;
	char err[300];
	int rc = 1;

	if (bq_opt_parse(options, &o, argc, argv, "bq-fake-backend", "[OPTIONS]", err,
			 sizeof(err)) != 0) {
		fprintf(stderr, "bq-fake-backend: %s\n", err);
		return 2;
	}
	fb.seen = bq_map_new();
	fb.events = fopen(o.events, "ae");
	loop = bq_loop_new(NULL, log);
	if (!fb.seen || !fb.events || !loop) {
		fprintf(stderr, "bq-fake-backend: cannot start\n");
		goto out;
	}
	bq_loop_signal(loop, SIGTERM, on_signal, NULL);
	bq_loop_signal(loop, SIGINT, on_signal, NULL);
	bq_http_server_config_defaults(&cfg);
	cfg.port = (uint16_t)o.port;
	cfg.routes = routes;
	cfg.user_data = &fb;
	cfg.bearer_token = o.token;
	if (bq_http_server_start(loop, log, &cfg, &srv, err, sizeof(err)) < 0) {
		fprintf(stderr, "bq-fake-backend: %s\n", err);
		goto out;
	}
	printf("listening port=%u\n", bq_http_server_port(srv));
	fflush(stdout);
	rc = bq_loop_run(loop) < 0;
	fprintf(stderr, "bq-fake-backend: duplicates=%lu\n", fb.dups);
out:
	bq_http_server_free(srv);
	bq_loop_free(loop);
	if (fb.events) {
		fclose(fb.events);
	}
	bq_map_free(fb.seen);
	bq_log_free(log);
	bq_opt_free(options, &o);
	return rc;
}
