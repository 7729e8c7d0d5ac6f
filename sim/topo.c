/* SPDX-License-Identifier: MIT */
/* Topologies: which node pairs are neighbours (edges, a < b, 1-based). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/cursor.h"
#include "core/opt.h"
#include "sim.h"

#define TOPO_FILE_MAX (256 * 1024)

static bool has_edge(const struct sim *s, int a, int b)
{
	for (int i = 0; i < s->n_edges; i++) {
		if (s->edges[i].a == a && s->edges[i].b == b) {
			return true;
		}
	}
	return false;
}

/* Adds (min, max) once; self-loops and repeats are ignored. */
static int add_edge(struct sim *s, int x, int y)
{
	int a = x < y ? x : y, b = x < y ? y : x;
	struct sim_edge *e;

	if (a == b || has_edge(s, a, b)) {
		return 0;
	}
	e = bq_realloc(s->edges, (size_t)(s->n_edges + 1) * sizeof(*e));
	if (!e) {
		return -ENOMEM;
	}
	s->edges = e;
	e = &s->edges[s->n_edges++];
	memset(e, 0, sizeof(*e));
	e->a = a;
	e->b = b;
	return 0;
}

static int topo_file(struct sim *s, const char *path, char *err, size_t errlen)
{
	static char data[TOPO_FILE_MAX + 1];
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct bq_cur cur;
	char line[256];
	size_t ll = 0;
	int lineno = 0;

	if (fd < 0) {
		snprintf(err, errlen, "--topology: '%s' is not line, ring, grid, random or a "
			 "readable file (%s)", path, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, data + len, sizeof(data) - len);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		len += (size_t)n;
		if (len > TOPO_FILE_MAX) {
			close(fd);
			snprintf(err, errlen, "--topology: %s is larger than %d bytes", path,
				 TOPO_FILE_MAX);
			return -1;
		}
	}
	close(fd);
	bq_cur_init(&cur, data, len);
	for (;;) {
		uint8_t ch = '\n';
		bool end = bq_cur_left(&cur) == 0;

		if (!end) {
			bq_cur_u8(&cur, &ch);
		}
		if (ch != '\n') {
			if (ll + 1 >= sizeof(line)) {
				snprintf(err, errlen, "--topology: %s:%d: line too long", path,
					 lineno + 1);
				return -1;
			}
			line[ll++] = (char)ch;
			continue;
		}
		line[ll] = '\0';
		ll = 0;
		lineno++;
		{
			char *p = line, *words[3];
			int nw = 0;
			int64_t v[2];
			char *hash = strchr(line, '#');

			if (hash) {
				*hash = '\0';
			}
			while (*p && nw < 3) {
				while (*p == ' ' || *p == '\t' || *p == '\r') {
					*p++ = '\0';
				}
				if (!*p) {
					break;
				}
				words[nw++] = p;
				while (*p && *p != ' ' && *p != '\t' && *p != '\r') {
					p++;
				}
			}
			while (*p == ' ' || *p == '\t' || *p == '\r') {
				p++;
			}
			if (nw == 0) {
				if (end) {
					break;
				}
				continue;
			}
			if (nw != 2 || *p) {
				snprintf(err, errlen, "--topology: %s:%d: expected 'A B' (two node "
					 "numbers)", path, lineno);
				return -1;
			}
			for (int i = 0; i < 2; i++) {
				if (bq_opt_parse_int(words[i], &v[i]) < 0 || v[i] < 1 ||
				    v[i] > s->n_nodes) {
					snprintf(err, errlen,
						 "--topology: %s:%d: '%s' is not a node "
						 "number 1..%d",
						 path, lineno, words[i], s->n_nodes);
					return -1;
				}
			}
			if (v[0] == v[1]) {
				snprintf(err, errlen, "--topology: %s:%d: a node cannot be its own "
					 "neighbour", path, lineno);
				return -1;
			}
			if (add_edge(s, (int)v[0], (int)v[1]) < 0) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
		}
		if (end) {
			break;
		}
	}
	return 0;
}

int sim_topology(struct sim *s, const char *spec, char *err, size_t errlen)
{
	int n = s->n_nodes;
	int rc = 0;

	if (strcmp(spec, "line") == 0 || strcmp(spec, "ring") == 0) {
		for (int i = 1; i < n && rc == 0; i++) {
			rc = add_edge(s, i, i + 1);
		}
		if (rc == 0 && strcmp(spec, "ring") == 0 && n >= 3) {
			rc = add_edge(s, n, 1);
		}
	} else if (strcmp(spec, "grid") == 0) {
		int cols = 1;

		while (cols * cols < n) {
			cols++;
		}
		for (int k = 0; k < n && rc == 0; k++) {
			if ((k + 1) % cols != 0 && k + 1 < n) {
				rc = add_edge(s, k + 1, k + 2);
			}
			if (rc == 0 && k + cols < n) {
				rc = add_edge(s, k + 1, k + cols + 1);
			}
		}
	} else if (strcmp(spec, "random") == 0) {
		/* A random spanning tree (connected), plus about n/2 extra edges. */
		for (int i = 2; i <= n && rc == 0; i++) {
			rc = add_edge(s, i, 1 + (int)(sim_random(s) % (uint64_t)(i - 1)));
		}
		for (int k = 0; k < n / 2 && rc == 0; k++) {
			rc = add_edge(s, 1 + (int)(sim_random(s) % (uint64_t)n),
				      1 + (int)(sim_random(s) % (uint64_t)n));
		}
	} else {
		return topo_file(s, spec, err, errlen);
	}
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}
