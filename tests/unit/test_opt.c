/* SPDX-License-Identifier: MIT */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/opt.h"
#include "testutil.h"

/* Modelled on the manager: blueq-manager [ODIN_MAC] [BACKEND_URL] [API_PORT]. */
struct mcfg {
	char *odin;
	char *backend;
	int64_t api_port;
	uint64_t connect_timeout;
	bool verbose;
	bool color;
	int log_level;
	struct bq_strlist peers;
	char *name;
};

static int hexdigit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
}

static int check_odin(const char *v, char *err, size_t errlen)
{
	size_t n = strlen(v);

	if (strncmp(v, "tcp://", 6) == 0 || strncmp(v, "unix:", 5) == 0) {
		return 0;
	}
	if (n == 17) {
		int ok = 1;

		for (size_t i = 0; i < 17; i++) {
			ok &= (i % 3 == 2) ? v[i] == ':' : hexdigit(v[i]);
		}
		if (ok) {
			return 0;
		}
	}
	snprintf(err, errlen, "invalid Bluetooth address '%s' (expected XX:XX:XX:XX:XX:XX)", v);
	return -EINVAL;
}

static int check_url(const char *v, char *err, size_t errlen)
{
	if (strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0) {
		return 0;
	}
	snprintf(err, errlen, "'%s' is not an http:// or https:// URL", v);
	return -EINVAL;
}

static const char *const levels[] = { "error", "warn", "info", "debug", NULL };

#define M(f) offsetof(struct mcfg, f)
static const struct bq_opt table[] = {
	{ "odin", 'o', BQ_OPT_STRING, M(odin), "D8:3A:DD:03:1E:77", 0, 0, NULL, check_odin, 1,
	  "ODIN_MAC", "Odin's address" },
	{ "backend-url", 'b', BQ_OPT_STRING, M(backend), "http://localhost:5000", 0, 0, NULL,
	  check_url, 2, "BACKEND_URL", "where the backend listens" },
	{ "api-port", 'p', BQ_OPT_INT, M(api_port), "8001", 1, 65535, NULL, NULL, 3, "API_PORT",
	  "HTTP API port" },
	{ "connect-timeout", 0, BQ_OPT_DURATION, M(connect_timeout), "10s", 1, 3600 * 1000, NULL,
	  NULL, 0, "DURATION", "give up connecting after this long" },
	{ "verbose", 'v', BQ_OPT_BOOL, M(verbose), NULL, 0, 0, NULL, NULL, 0, NULL,
	  "log more" },
	{ "color", 0, BQ_OPT_BOOL, M(color), "true", 0, 0, NULL, NULL, 0, NULL,
	  "colour output | pipes" },
	{ "log-level", 0, BQ_OPT_ENUM, M(log_level), "info", 0, 0, levels, NULL, 0, NULL,
	  "how much to log" },
	{ "peer", 0, BQ_OPT_LIST, M(peers), NULL, 0, 0, NULL, check_odin, 0, "ADDR",
	  "extra peer (repeatable)" },
	{ "name", 'n', BQ_OPT_STRING, M(name), NULL, 0, 0, NULL, NULL, 0, "NAME", "display name" },
	{ "config", 'c', BQ_OPT_CONFIG, 0, NULL, 0, 0, NULL, NULL, 0, NULL,
	  "read options from FILE" },
	{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
};

#define PROG "blueq-manager"
#define SYN "[OPTIONS] [ODIN_MAC] [BACKEND_URL] [API_PORT]"

static char err[512];

/* Parse a NULL-terminated list of arguments (argv[0] added). */
static int parse_v(struct mcfg *c, const char *const *args)
{
	char *argv[32];
	int argc = 0;

	argv[argc++] = (char *)PROG;
	for (; *args; args++) {
		argv[argc++] = (char *)*args;
	}
	argv[argc] = NULL;
	err[0] = '\0';
	return bq_opt_parse(table, c, argc, argv, PROG, SYN, err, sizeof(err));
}

#define PARSE(c, ...) parse_v((c), (const char *const[]){ __VA_ARGS__, NULL })

static char *write_file(const char *name, const char *text)
{
	const char *dir = bq_test_tmpdir();
	char *path = malloc(512);
	FILE *f;

	ck_assert_ptr_nonnull(dir);
	snprintf(path, 512, "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

START_TEST(test_defaults)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(parse_v(&c, (const char *const[]){ NULL }), 0);
	ck_assert_str_eq(c.odin, "D8:3A:DD:03:1E:77");
	ck_assert_str_eq(c.backend, "http://localhost:5000");
	ck_assert_int_eq(c.api_port, 8001);
	ck_assert_uint_eq(c.connect_timeout, 10000);
	ck_assert(!c.verbose);
	ck_assert(c.color);
	ck_assert_int_eq(c.log_level, 2);
	ck_assert_uint_eq(c.peers.n, 0);
	ck_assert_ptr_null(c.name);
	bq_opt_free(table, &c);
	ck_assert_ptr_null(c.odin);
	ck_assert_ptr_null(c.backend);
}
END_TEST

/* The seed's command line: blueq-manager ODIN_MAC BACKEND_URL API_PORT. */
START_TEST(test_positional)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "AA:BB:CC:DD:EE:FF", "http://10.0.0.2:5000", "9000"), 0);
	ck_assert_str_eq(c.odin, "AA:BB:CC:DD:EE:FF");
	ck_assert_str_eq(c.backend, "http://10.0.0.2:5000");
	ck_assert_int_eq(c.api_port, 9000);
	/* Fewer positionals leave the rest at their defaults. */
	ck_assert_int_eq(PARSE(&c, "tcp://127.0.0.1:7000"), 0);
	ck_assert_str_eq(c.odin, "tcp://127.0.0.1:7000");
	ck_assert_str_eq(c.backend, "http://localhost:5000");
	ck_assert_int_eq(c.api_port, 8001);
	bq_opt_free(table, &c);
}
END_TEST

START_TEST(test_named_forms)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "--api-port", "9001"), 0);
	ck_assert_int_eq(c.api_port, 9001);
	ck_assert_int_eq(PARSE(&c, "--api-port=9002"), 0);
	ck_assert_int_eq(c.api_port, 9002);
	ck_assert_int_eq(PARSE(&c, "-p", "9003"), 0);
	ck_assert_int_eq(c.api_port, 9003);
	ck_assert_int_eq(PARSE(&c, "-p9004"), 0);
	ck_assert_int_eq(c.api_port, 9004);
	ck_assert_int_eq(PARSE(&c, "--connect-timeout", "250ms", "--log-level=debug", "-n",
			       "Gw"),
			 0);
	ck_assert_uint_eq(c.connect_timeout, 250);
	ck_assert_int_eq(c.log_level, 3);
	ck_assert_str_eq(c.name, "Gw");
	/* "=" keeps an empty value, and a value may itself contain '='. */
	ck_assert_int_eq(PARSE(&c, "--name=", "--backend-url=http://x/?a=b"), 0);
	ck_assert_str_eq(c.name, "");
	ck_assert_str_eq(c.backend, "http://x/?a=b");
	bq_opt_free(table, &c);
}
END_TEST

/* Named and positional for the same entry: the later one wins. */
START_TEST(test_named_vs_positional)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "--odin", "11:11:11:11:11:11", "22:22:22:22:22:22"), 0);
	ck_assert_str_eq(c.odin, "22:22:22:22:22:22");
	ck_assert_int_eq(PARSE(&c, "22:22:22:22:22:22", "--odin", "11:11:11:11:11:11"), 0);
	ck_assert_str_eq(c.odin, "11:11:11:11:11:11");
	ck_assert_int_eq(PARSE(&c, "-p", "1", "a1:b2:c3:d4:e5:f6", "http://h", "2"), 0);
	ck_assert_int_eq(c.api_port, 2);
	bq_opt_free(table, &c);
}
END_TEST

START_TEST(test_bools)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "--verbose", "--no-color"), 0);
	ck_assert(c.verbose);
	ck_assert(!c.color);
	ck_assert_int_eq(PARSE(&c, "--verbose=false", "--color=yes"), 0);
	ck_assert(!c.verbose);
	ck_assert(c.color);
	ck_assert_int_eq(PARSE(&c, "--verbose=1", "--color=0"), 0);
	ck_assert(c.verbose);
	ck_assert(!c.color);
	ck_assert_int_eq(PARSE(&c, "--verbose=no", "--color=TRUE"), 0);
	ck_assert(!c.verbose);
	ck_assert(c.color);
	/* A bool never swallows the next argument. */
	ck_assert_int_eq(PARSE(&c, "--verbose", "AA:BB:CC:DD:EE:FF"), 0);
	ck_assert(c.verbose);
	ck_assert_str_eq(c.odin, "AA:BB:CC:DD:EE:FF");
	/* Short bundles: -v then -p with its value attached. */
	ck_assert_int_eq(PARSE(&c, "-vp7000"), 0);
	ck_assert(c.verbose);
	ck_assert_int_eq(c.api_port, 7000);
	ck_assert_int_eq(PARSE(&c, "-vn", "bob"), 0);
	ck_assert_str_eq(c.name, "bob");
	bq_opt_free(table, &c);
}
END_TEST

START_TEST(test_double_dash_ends_options)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "--", "unix:/tmp/-odin", "http://h", "-5"), -EINVAL);
	ck_assert_str_eq(err, "--api-port: -5 is below the minimum 1");
	ck_assert_int_eq(PARSE(&c, "-v", "--", "unix:--verbose"), 0);
	ck_assert_str_eq(c.odin, "unix:--verbose");
	/* A lone "-" is an argument (stdin by convention), not an option. */
	ck_assert_int_eq(PARSE(&c, "tcp://h:1", "-"), -EINVAL);
	ck_assert_str_eq(err, "--backend-url: '-' is not an http:// or https:// URL");
	bq_opt_free(table, &c);
}
END_TEST

START_TEST(test_list)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(PARSE(&c, "--peer", "tcp://a:1", "--peer=tcp://b:2"), 0);
	ck_assert_uint_eq(c.peers.n, 2);
	ck_assert_str_eq(c.peers.v[0], "tcp://a:1");
	ck_assert_str_eq(c.peers.v[1], "tcp://b:2");
	/* A second parse starts over. */
	ck_assert_int_eq(PARSE(&c, "--peer", "tcp://c:3"), 0);
	ck_assert_uint_eq(c.peers.n, 1);
	ck_assert_str_eq(c.peers.v[0], "tcp://c:3");
	ck_assert_int_eq(PARSE(&c, "--peer", "nope"), -EINVAL);
	ck_assert_str_eq(err,
			 "--peer: invalid Bluetooth address 'nope' (expected XX:XX:XX:XX:XX:XX)");
	bq_opt_free(table, &c);
	ck_assert_ptr_null(c.peers.v);
	ck_assert_uint_eq(c.peers.n, 0);
}
END_TEST

/* A LIST default is replaced by the first explicit use, file or command line. */
START_TEST(test_list_default_replaced)
{
	struct lcfg {
		struct bq_strlist l;
	} c = { { NULL, 0 } };
	static const struct bq_opt t[] = {
		{ "item", 'i', BQ_OPT_LIST, 0, "dflt", 0, 0, NULL, NULL, 0, NULL, "x" },
		{ "config", 0, BQ_OPT_CONFIG, 0, NULL, 0, 0, NULL, NULL, 0, NULL, "f" },
		{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
	};
	char *path = write_file("list.conf", "item = f1\nitem = f2\n");
	char *argv1[] = { (char *)"p", NULL };
	char *argv2[] = { (char *)"p", (char *)"-i", (char *)"a", (char *)"--item=b", NULL };
	char *argv3[] = { (char *)"p", (char *)"-i", (char *)"c", (char *)"--config", path, NULL };

	ck_assert_int_eq(bq_opt_parse(t, &c, 1, argv1, "p", "", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.l.n, 1);
	ck_assert_str_eq(c.l.v[0], "dflt");
	ck_assert_int_eq(bq_opt_parse(t, &c, 4, argv2, "p", "", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.l.n, 2);
	ck_assert_str_eq(c.l.v[0], "a");
	ck_assert_str_eq(c.l.v[1], "b");
	ck_assert_int_eq(bq_opt_parse(t, &c, 5, argv3, "p", "", err, sizeof(err)), 0);
	ck_assert_uint_eq(c.l.n, 3);
	ck_assert_str_eq(c.l.v[0], "f1");
	ck_assert_str_eq(c.l.v[1], "f2");
	ck_assert_str_eq(c.l.v[2], "c");
	bq_opt_free(t, &c);
	unlink(path);
	free(path);
}
END_TEST

/* Every command-line error, word for word. */
START_TEST(test_error_messages)
{
	static const struct {
		const char *args[6];
		const char *msg;
	} cases[] = {
		{ { "--foo" }, "unknown option --foo (see --help)" },
		{ { "--foo=1" }, "unknown option --foo (see --help)" },
		{ { "-x" }, "unknown option -x (see --help)" },
		{ { "-vx" }, "unknown option -x (see --help)" },
		{ { "--no-api-port" }, "unknown option --no-api-port (see --help)" },
		{ { "--api-port", "70000" }, "--api-port: 70000 is above the maximum 65535" },
		{ { "--api-port=0" }, "--api-port: 0 is below the minimum 1" },
		{ { "-p", "-1" }, "-p: -1 is below the minimum 1" },
		{ { "--api-port", "abc" }, "--api-port: 'abc' is not a whole number" },
		{ { "--api-port", "80 " }, "--api-port: '80 ' is not a whole number" },
		{ { "--api-port", "99999999999999999999" },
		  "--api-port: 99999999999999999999 is out of range" },
		{ { "a1:b2:c3:d4:e5:f6", "http://h", "70000" },
		  "--api-port: 70000 is above the maximum 65535" },
		{ { "--connect-timeout", "abc" },
		  "--connect-timeout: 'abc' is not a duration (e.g. 250ms, 10s, 5m)" },
		{ { "--connect-timeout", "-5s" },
		  "--connect-timeout: '-5s' is not a duration (e.g. 250ms, 10s, 5m)" },
		{ { "--connect-timeout", "2h" }, "--connect-timeout: 2h is above the maximum 1h" },
		{ { "--connect-timeout", "0" }, "--connect-timeout: 0 is below the minimum 1ms" },
		{ { "--connect-timeout", "99999999999999999999h" },
		  "--connect-timeout: 99999999999999999999h is too long a duration" },
		{ { "--odin", "xyz" },
		  "--odin: invalid Bluetooth address 'xyz' (expected XX:XX:XX:XX:XX:XX)" },
		{ { "xyz" },
		  "--odin: invalid Bluetooth address 'xyz' (expected XX:XX:XX:XX:XX:XX)" },
		{ { "-o", "xyz" },
		  "-o: invalid Bluetooth address 'xyz' (expected XX:XX:XX:XX:XX:XX)" },
		{ { "--verbose=maybe" },
		  "--verbose: 'maybe' is not a boolean (true/false, yes/no, 1/0)" },
		{ { "--no-color=1" }, "--no-color: takes no value" },
		{ { "--log-level", "loud" },
		  "--log-level: 'loud' is not one of: error, warn, info, debug" },
		{ { "--api-port" }, "--api-port: missing value" },
		{ { "--odin", "--api-port", "1" }, "--odin: missing value" },
		{ { "-p" }, "-p: missing value" },
		{ { "a1:b2:c3:d4:e5:f6", "http://h", "1", "extra" },
		  "unexpected argument 'extra' (at most 3 positional arguments; see --help)" },
		{ { "--config", "/nonexistent/blueq.conf" },
		  "cannot read config file '/nonexistent/blueq.conf': No such file or directory" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mcfg c = { 0 };
		int r = parse_v(&c, cases[i].args);

		ck_assert_msg(r == -EINVAL, "case %zu: r=%d", i, r);
		ck_assert_msg(strcmp(err, cases[i].msg) == 0, "case %zu: got '%s' want '%s'", i,
			      err, cases[i].msg);
		bq_opt_free(table, &c);
	}
}
END_TEST

/* A table with no positional entries says so differently. */
START_TEST(test_no_positionals)
{
	struct {
		bool f;
	} c = { false };
	static const struct bq_opt t[] = {
		{ "flag", 0, BQ_OPT_BOOL, 0, NULL, 0, 0, NULL, NULL, 0, NULL, "x" },
		{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
	};
	char *argv[] = { (char *)"p", (char *)"stray", NULL };

	ck_assert_int_eq(bq_opt_parse(t, &c, 2, argv, "p", "", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unexpected argument 'stray' (see --help)");
}
END_TEST

START_TEST(test_bad_default)
{
	struct {
		int64_t v;
	} c = { 0 };
	static const struct bq_opt t[] = {
		{ "v", 0, BQ_OPT_INT, 0, "zz", 0, 0, NULL, NULL, 0, NULL, "x" },
		{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
	};

	ck_assert_int_eq(bq_opt_defaults(t, &c, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "--v: bad default: 'zz' is not a whole number");
}
END_TEST

START_TEST(test_config_file)
{
	struct mcfg c = { 0 };
	char *path = write_file("m.conf", "# manager\n"
					  "\n"
					  "   odin = 11:22:33:44:55:66   \n"
					  "api-port=7000\r\n"
					  "\tname = \"  spaced name \"\n"
					  "  # indented comment = still a comment\n"
					  "verbose = yes\n"
					  "peer = tcp://p:1\n"
					  "connect-timeout = 5m");

	ck_assert_int_eq(PARSE(&c, "--config", path), 0);
	ck_assert_str_eq(c.odin, "11:22:33:44:55:66");
	ck_assert_int_eq(c.api_port, 7000);
	ck_assert_str_eq(c.name, "  spaced name ");
	ck_assert(c.verbose);
	ck_assert_uint_eq(c.peers.n, 1);
	ck_assert_uint_eq(c.connect_timeout, 300000);
	ck_assert_str_eq(c.backend, "http://localhost:5000");
	/* bq_opt_load_file on its own, over the existing values: strings are replaced. */
	ck_assert_int_eq(bq_opt_load_file(table, &c, path, err, sizeof(err)), 0);
	ck_assert_str_eq(c.odin, "11:22:33:44:55:66");
	ck_assert_uint_eq(c.peers.n, 2);
	bq_opt_free(table, &c);
	unlink(path);
	free(path);
}
END_TEST

/* Command line beats the file, wherever --config appears. */
START_TEST(test_config_precedence)
{
	struct mcfg c = { 0 };
	char *path = write_file("p.conf", "odin = 11:22:33:44:55:66\napi-port = 7000\n"
					  "name = fromfile\n");

	ck_assert_int_eq(PARSE(&c, "--api-port", "7100", "--config", path), 0);
	ck_assert_int_eq(c.api_port, 7100);
	ck_assert_str_eq(c.odin, "11:22:33:44:55:66");
	ck_assert_str_eq(c.name, "fromfile");
	ck_assert_int_eq(PARSE(&c, "-c", path, "AA:AA:AA:AA:AA:AA"), 0);
	ck_assert_str_eq(c.odin, "AA:AA:AA:AA:AA:AA");
	ck_assert_int_eq(c.api_port, 7000);
	ck_assert_int_eq(PARSE(&c, "--name=cli", "--config="), -EINVAL);
	ck_assert_str_eq(err, "cannot read config file '': No such file or directory");
	bq_opt_free(table, &c);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_config_errors)
{
	static const struct {
		const char *text;
		const char *msg; /* after "PATH:" */
	} cases[] = {
		{ "api-port = 1\nbogus = 2\n", "2: unknown option 'bogus'" },
		{ "odin\n", "1: expected 'name = value'" },
		{ "\n\n= 5\n", "3: expected 'name = value'" },
		{ "# ok\napi-port = 1\napi-port = 70000\n",
		  "3: api-port: 70000 is above the maximum 65535" },
		{ "odin = nope\n",
		  "1: odin: invalid Bluetooth address 'nope' (expected XX:XX:XX:XX:XX:XX)" },
		{ "config = other.conf\n",
		  "1: config: a config file cannot name another config file" },
		{ "--api-port = 1\n", "1: unknown option '--api-port'" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mcfg c = { 0 };
		char *path = write_file("e.conf", cases[i].text);
		char want[600];

		snprintf(want, sizeof(want), "%s:%s", path, cases[i].msg);
		ck_assert_int_eq(PARSE(&c, "--config", path), -EINVAL);
		ck_assert_msg(strcmp(err, want) == 0, "case %zu: got '%s' want '%s'", i, err, want);
		bq_opt_free(table, &c);
		unlink(path);
		free(path);
	}
}
END_TEST

START_TEST(test_config_not_text)
{
	struct mcfg c = { 0 };
	char *path = write_file("bin.conf", "");
	FILE *f = fopen(path, "w");
	char want[600];

	fwrite("odin = a\0b\n", 1, 11, f);
	fclose(f);
	ck_assert_int_eq(bq_opt_load_file(table, &c, path, err, sizeof(err)), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a text file (contains a NUL byte)", path);
	ck_assert_str_eq(err, want);
	/* A directory is not a config file either. */
	*strrchr(path, '/') = '\0';
	ck_assert_int_lt(bq_opt_load_file(table, &c, path, err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s: Is a directory", path);
	ck_assert_str_eq(err, want);
	bq_opt_free(table, &c);
	free(path);
}
END_TEST

/* 1 MiB of config is accepted, one byte more is not. */
START_TEST(test_config_size_limit)
{
	struct mcfg c = { 0 };
	char *path = write_file("big.conf", "");
	size_t max = 1024 * 1024;
	char *text = malloc(max + 2);
	char want[600];
	FILE *f;

	memset(text, '#', max + 1);
	memcpy(text, "name = big\n", 11);
	for (size_t i = 100; i < max; i += 100) {
		text[i] = '\n';
	}
	f = fopen(path, "w");
	ck_assert_uint_eq(fwrite(text, 1, max, f), max);
	fclose(f);
	ck_assert_int_eq(bq_opt_load_file(table, &c, path, err, sizeof(err)), 0);
	ck_assert_str_eq(c.name, "big");
	f = fopen(path, "w");
	ck_assert_uint_eq(fwrite(text, 1, max + 1, f), max + 1);
	fclose(f);
	ck_assert_int_eq(bq_opt_load_file(table, &c, path, err, sizeof(err)), -EMSGSIZE);
	snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", path);
	ck_assert_str_eq(err, want);
	bq_opt_free(table, &c);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

/* A default config path is loaded when present and skipped when absent. */
START_TEST(test_config_default_path)
{
	struct mcfg c = { 0 };
	char *path = write_file("d.conf", "api-port = 6000\n");
	struct bq_opt t[sizeof(table) / sizeof(table[0])];
	char *argv[] = { (char *)PROG, NULL };
	char *argv2[] = { (char *)PROG, (char *)"-p", (char *)"6001", NULL };

	memcpy(t, table, sizeof(table));
	for (struct bq_opt *o = t; o->name; o++) {
		if (o->type == BQ_OPT_CONFIG) {
			o->def = path;
		}
	}
	ck_assert_int_eq(bq_opt_parse(t, &c, 1, argv, PROG, SYN, err, sizeof(err)), 0);
	ck_assert_int_eq(c.api_port, 6000);
	ck_assert_int_eq(bq_opt_parse(t, &c, 3, argv2, PROG, SYN, err, sizeof(err)), 0);
	ck_assert_int_eq(c.api_port, 6001);
	unlink(path);
	ck_assert_int_eq(bq_opt_parse(t, &c, 1, argv, PROG, SYN, err, sizeof(err)), 0);
	ck_assert_int_eq(c.api_port, 8001);
	bq_opt_free(t, &c);
	free(path);
}
END_TEST

START_TEST(test_set)
{
	struct mcfg c = { 0 };

	ck_assert_int_eq(bq_opt_defaults(table, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(bq_opt_set(table, &c, "name", "a", err, sizeof(err)), 0);
	/* Setting a string again frees the old value (LeakSanitizer checks). */
	ck_assert_int_eq(bq_opt_set(table, &c, "name", "b", err, sizeof(err)), 0);
	ck_assert_str_eq(c.name, "b");
	ck_assert_int_eq(bq_opt_set(table, &c, "api-port", "65535", err, sizeof(err)), 0);
	ck_assert_int_eq(c.api_port, 65535);
	ck_assert_int_eq(bq_opt_set(table, &c, "api-port", "65536", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "--api-port: 65536 is above the maximum 65535");
	ck_assert_int_eq(c.api_port, 65535);
	ck_assert_int_eq(bq_opt_set(table, &c, "nope", "1", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "unknown option --nope");
	ck_assert_int_eq(bq_opt_set(table, &c, "odin", "bad", err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(c.odin, "D8:3A:DD:03:1E:77");
	/* A tiny error buffer truncates but stays terminated. */
	{
		char small[8];

		ck_assert_int_eq(bq_opt_set(table, &c, "api-port", "0", small, sizeof(small)),
				 -EINVAL);
		ck_assert_str_eq(small, "--api-p");
		ck_assert_int_eq(bq_opt_set(table, &c, "api-port", "0", NULL, 0), -EINVAL);
	}
	bq_opt_free(table, &c);
}
END_TEST

/* Run parse with stdout redirected to a file; return what was printed (caller frees). */
static char *parse_capture_stdout(struct mcfg *c, const char *arg, int *rc)
{
	char path[256];
	const char *dir = bq_test_tmpdir();
	int fd, saved;
	FILE *f;
	char *text = calloc(1, 65536);

	snprintf(path, sizeof(path), "%s/out", dir);
	fflush(stdout);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	close(fd);
	*rc = PARSE(c, "--api-port=1", arg, "--bogus");
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	f = fopen(path, "r");
	ck_assert_uint_gt(fread(text, 1, 65535, f), 0);
	fclose(f);
	unlink(path);
	return text;
}

/* --help and -h print to stdout and return 1, even with errors later on the line. */
START_TEST(test_help_flag)
{
	const char *forms[] = { "--help", "-h" };

	for (int i = 0; i < 2; i++) {
		struct mcfg c = { 0 };
		int rc = 0;
		char *out = parse_capture_stdout(&c, forms[i], &rc);

		ck_assert_int_eq(rc, 1);
		ck_assert_msg(strncmp(out, "Usage: " PROG " " SYN "\n", strlen(PROG SYN) + 9) == 0,
			      "%s", out);
		ck_assert_ptr_nonnull(strstr(out, "--api-port API_PORT"));
		free(out);
		bq_opt_free(table, &c);
	}
}
END_TEST

/* --help-markdown prints the Markdown table (for the generated docs) and returns 1. */
START_TEST(test_help_markdown_flag)
{
	struct mcfg c = { 0 };
	int rc = 0;
	char *out = parse_capture_stdout(&c, "--help-markdown", &rc);

	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strncmp(out, "| option | default | meaning |\n|---|---|---|\n", 44) == 0, "%s",
		      out);
	ck_assert_ptr_nonnull(strstr(out, "`--api-port API_PORT`"));
	free(out);
	bq_opt_free(table, &c);
}
END_TEST

/* noinline: gcc 12 at -O3 inlines this and misreads the memstream buffer as dangling. */
__attribute__((noinline)) static char *
help_text(void (*fn)(const struct bq_opt *, FILE *, const char *, const char *))
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(f);
	if (fn) {
		fn(table, f, PROG, SYN);
	} else {
		bq_opt_print_markdown(table, f);
	}
	fclose(f);
	return text;
}

START_TEST(test_help_contents)
{
	char *h = help_text(bq_opt_print_help);
	const char *lines[] = {
		"  -o, --odin ODIN_MAC",
		"Odin's address [argument 1] (default: D8:3A:DD:03:1E:77)\n",
		"  -b, --backend-url BACKEND_URL",
		/* Wrapped: it would end past column 100, and "(default: X)" stays whole. */
		("where the backend listens [argument 2]\n"
		 "                                  (default: http://localhost:5000)\n"),
		"  -p, --api-port API_PORT",
		"HTTP API port [argument 3] (default: 8001)\n",
		"      --connect-timeout DURATION",
		"give up connecting after this long (default: 10s)\n",
		"  -v, --verbose ",
		"log more\n",
		"      --[no-]color ",
		"      --log-level {error|warn|info|debug}",
		"how much to log (default: info)\n",
		"      --peer ADDR",
		"  -n, --name NAME",
		"  -c, --config FILE",
		"  -h, --help",
		"show this help and exit\n",
	};
	const char *opt_line, *help_pos;
	size_t col;

	ck_assert_int_eq(strncmp(h, "Usage: blueq-manager [OPTIONS] [ODIN_MAC] [BACKEND_URL] "
				    "[API_PORT]\n",
				 strlen("Usage: blueq-manager [OPTIONS] [ODIN_MAC] [BACKEND_URL] "
					"[API_PORT]\n")),
			 0);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		ck_assert_msg(strstr(h, lines[i]) != NULL, "missing '%s' in:\n%s", lines[i], h);
	}
	/* A default of false is not worth printing. */
	ck_assert_ptr_null(strstr(h, "log more (default"));
	/* Help texts line up in one column. */
	opt_line = strstr(h, "  -p, --api-port");
	help_pos = strstr(opt_line, "HTTP API port");
	col = (size_t)(help_pos - opt_line);
	opt_line = strstr(h, "  -v, --verbose");
	ck_assert_int_eq(strncmp(opt_line + col, "log more", 8), 0);
	opt_line = strstr(h, "  -h, --help");
	ck_assert_int_eq(strncmp(opt_line + col, "show this help", 14), 0);
	free(h);
}
END_TEST

/* Long help texts wrap under their column instead of running past 100 columns. */
START_TEST(test_help_wraps)
{
	struct {
		char *s;
	} c = { 0 };
	static const struct bq_opt t[] = {
		{ "long", 'l', BQ_OPT_STRING, 0, "dflt", 0, 0, NULL, NULL, 0, "X",
		  "one two three four five six seven eight nine ten eleven twelve thirteen "
		  "fourteen fifteen sixteen seventeen eighteen nineteen twenty twenty-one "
		  "twenty-two twenty-three twenty-four twenty-five twenty-six twenty-seven" },
		{ NULL, 0, 0, 0, NULL, 0, 0, NULL, NULL, 0, NULL, NULL },
	};
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	int n = 0;

	bq_opt_print_help(t, f, "p", "[OPTIONS]");
	fclose(f);
	ck_assert_ptr_nonnull(strstr(text, "  -l, --long X  one two three"));
	ck_assert_ptr_nonnull(strstr(text, "twenty-seven (default: dflt)\n"));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		ck_assert_uint_le(strlen(line), 100);
		if (strncmp(line, "                ", 16) == 0) {
			/* Continuation lines start exactly at the help column. */
			ck_assert_int_ne(line[16], ' ');
			n++;
		}
	}
	ck_assert_int_ge(n, 2);
	free(text);
	(void)c;
}
END_TEST

START_TEST(test_markdown)
{
	char *md = help_text(NULL);
	const char *rows[] = {
		"| option | default | meaning |\n|---|---|---|\n",
		"| `-o`, `--odin ODIN_MAC` (argument 1) | `D8:3A:DD:03:1E:77` | Odin's address |\n",
		("| `-p`, `--api-port API_PORT` (argument 3) | `8001` | HTTP API port "
		 "(1 to 65535) |\n"),
		("| `--connect-timeout DURATION` | `10s` | give up connecting after this long "
		 "(1ms to 1h) |\n"),
		"| `--[no-]color` | `true` | colour output \\| pipes |\n",
		"| `-v`, `--verbose` | — | log more |\n",
		"| `--log-level {error\\|warn\\|info\\|debug}` | `info` | how much to log |\n",
	};
	int n = 0;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		ck_assert_msg(strstr(md, rows[i]) != NULL, "missing '%s' in:\n%s", rows[i], md);
	}
	for (const char *p = md; (p = strchr(p, '\n')); p++) {
		n++;
	}
	/* Header, separator, one row per option. */
	ck_assert_int_eq(n, 2 + (int)(sizeof(table) / sizeof(table[0])) - 1);
	free(md);
}
END_TEST

START_TEST(test_parse_duration)
{
	static const struct {
		const char *s;
		int r;
		uint64_t ms;
	} cases[] = {
		{ "250ms", 0, 250 },
		{ "10s", 0, 10000 },
		{ "5m", 0, 300000 },
		{ "1h", 0, 3600000 },
		{ "1500", 0, 1500 },
		{ "0", 0, 0 },
		{ "0s", 0, 0 },
		{ "18446744073709551615", 0, UINT64_MAX },
		{ "18446744073709551616", -ERANGE, 0 },
		{ "18446744073709551615s", -ERANGE, 0 },
		{ "5124095576030432h", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ "-5", -EINVAL, 0 },
		{ "+5", -EINVAL, 0 },
		{ " 5", -EINVAL, 0 },
		{ "5 ", -EINVAL, 0 },
		{ "5x", -EINVAL, 0 },
		{ "5 s", -EINVAL, 0 },
		{ "5sec", -EINVAL, 0 },
		{ "ms", -EINVAL, 0 },
		{ "5.5s", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 777;
		int r = bq_opt_parse_duration(cases[i].s, &ms);

		ck_assert_msg(r == cases[i].r, "'%s': r=%d", cases[i].s, r);
		ck_assert_msg(ms == (r == 0 ? cases[i].ms : 777), "'%s': ms=%llu", cases[i].s,
			      (unsigned long long)ms);
	}
	ck_assert_int_eq(bq_opt_parse_duration(NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_parse_int)
{
	static const struct {
		const char *s;
		int r;
		int64_t v;
	} cases[] = {
		{ "0", 0, 0 },
		{ "-1", 0, -1 },
		{ "+7", 0, 7 },
		{ "007", 0, 7 },
		{ "9223372036854775807", 0, INT64_MAX },
		{ "-9223372036854775808", 0, INT64_MIN },
		{ "9223372036854775808", -ERANGE, 0 },
		{ "-9223372036854775809", -ERANGE, 0 },
		{ "", -EINVAL, 0 },
		{ " 1", -EINVAL, 0 },
		{ "\t1", -EINVAL, 0 },
		{ "1 ", -EINVAL, 0 },
		{ "1x", -EINVAL, 0 },
		{ "0x10", -EINVAL, 0 },
		{ "abc", -EINVAL, 0 },
		{ "-", -EINVAL, 0 },
		{ "1.0", -EINVAL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t v = 777;
		int r = bq_opt_parse_int(cases[i].s, &v);

		ck_assert_msg(r == cases[i].r, "'%s': r=%d", cases[i].s, r);
		ck_assert_msg(v == (r == 0 ? cases[i].v : 777), "'%s': v=%lld", cases[i].s,
			      (long long)v);
	}
	ck_assert_int_eq(bq_opt_parse_int(NULL, NULL), -EINVAL);
}
END_TEST

/*
 * Fail each allocation of a full parse in turn: every run ends in 0 or -ENOMEM, never
 * a crash or a leak (LeakSanitizer), and once n passes the total, parsing succeeds.
 */
START_TEST(test_alloc_failure_sweep)
{
	char *path = write_file("s.conf", "name = x\npeer = tcp://f:1\n");
	int ok_runs = 0;

	for (unsigned long n = 1; n < 60; n++) {
		struct mcfg c = { 0 };
		int r;

		bq_alloc_fail_nth(n);
		r = PARSE(&c, "--config", path, "--peer", "tcp://a:1", "--peer", "tcp://b:2", "-n",
			  "y", "11:22:33:44:55:66");
		bq_alloc_fail_nth(0);
		ck_assert_msg(r == 0 || r == -ENOMEM, "n=%lu r=%d err=%s", n, r, err);
		if (r == 0) {
			ok_runs++;
			ck_assert_uint_eq(c.peers.n, 3);
			ck_assert_str_eq(c.name, "y");
			ck_assert_str_eq(c.odin, "11:22:33:44:55:66");
		}
		bq_opt_free(table, &c);
	}
	ck_assert_int_gt(ok_runs, 10);
	unlink(path);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("opt");
	TCase *tc = tcase_create("opt");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_positional);
	tcase_add_test(tc, test_named_forms);
	tcase_add_test(tc, test_named_vs_positional);
	tcase_add_test(tc, test_bools);
	tcase_add_test(tc, test_double_dash_ends_options);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_list_default_replaced);
	tcase_add_test(tc, test_error_messages);
	tcase_add_test(tc, test_no_positionals);
	tcase_add_test(tc, test_bad_default);
	tcase_add_test(tc, test_config_file);
	tcase_add_test(tc, test_config_precedence);
	tcase_add_test(tc, test_config_errors);
	tcase_add_test(tc, test_config_not_text);
	tcase_add_test(tc, test_config_size_limit);
	tcase_add_test(tc, test_config_default_path);
	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_help_flag);
	tcase_add_test(tc, test_help_markdown_flag);
	tcase_add_test(tc, test_help_contents);
	tcase_add_test(tc, test_help_wraps);
	tcase_add_test(tc, test_markdown);
	tcase_add_test(tc, test_parse_duration);
	tcase_add_test(tc, test_parse_int);
	tcase_add_test(tc, test_alloc_failure_sweep);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
