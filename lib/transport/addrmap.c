/* SPDX-License-Identifier: MIT */
#include "transport/addrmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/cursor.h"
#include "core/file.h"

static bool is_bt(const struct bq_addr *a)
{
	return a->kind == BQ_ADDR_RFCOMM || a->kind == BQ_ADDR_L2CAP;
}

const char *bq_addrmap_default_path(char *buf, size_t cap)
{
	const char *env = getenv(BQ_ADDRMAP_ENV);

	if (env && env[0]) {
		snprintf(buf, cap, "%s", env);
	} else if (access(BQ_ADDRMAP_RUN_PATH, F_OK) == 0) {
		snprintf(buf, cap, "%s", BQ_ADDRMAP_RUN_PATH);
	} else {
		snprintf(buf, cap, "%s", BQ_ADDRMAP_TMP_PATH);
	}
	return buf;
}

const char *bq_addrmap_default_write_path(char *buf, size_t cap)
{
	const char *env = getenv(BQ_ADDRMAP_ENV);
	struct stat st;

	if (env && env[0]) {
		snprintf(buf, cap, "%s", env);
	} else if (stat("/run/blueq", &st) == 0 && S_ISDIR(st.st_mode)) {
		snprintf(buf, cap, "%s", BQ_ADDRMAP_RUN_PATH);
	} else {
		snprintf(buf, cap, "%s", BQ_ADDRMAP_TMP_PATH);
	}
	return buf;
}

/*
 * Read the whole file into a fresh buffer (caller frees). -ENOENT when it does not exist,
 * -EFBIG over the limit. The size is checked while reading too, since a file may grow
 * between fstat and read.
 */
static int read_bounded(const char *path, uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc != -ENOENT) {
			snprintf(err, errlen, "cannot open address map %s: %s", path,
				 strerror(-rc));
		}
		return rc;
	}
	/*
	 * The map decides where a Bluetooth address is dialled, and its default place is
	 * in /tmp: a map another user wrote (or could rewrite) would let them put their
	 * socket behind Odin's address. Only ours or root's, and not writable by others.
	 */
	{
		struct stat st;

		if (fstat(fd, &st) < 0) {
			rc = -errno;
			snprintf(err, errlen, "cannot stat address map %s: %s", path,
				 strerror(-rc));
			goto out;
		}
		if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & S_IWOTH)) {
			rc = -EPERM;
			snprintf(err, errlen,
				 "address map %s is not trusted (owner uid %u, mode %04o): it must "
				 "belong to this user or root and not be writable by others",
				 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
			goto out;
		}
	}
	buf = bq_malloc(BQ_ADDRMAP_FILE_MAX + 1);
	if (!buf) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory reading address map %s", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, BQ_ADDRMAP_FILE_MAX + 1 - len);

		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			rc = -errno;
			snprintf(err, errlen, "cannot read address map %s: %s", path,
				 strerror(-rc));
			goto out;
		}
		if (n == 0) {
			break;
		}
		len += (size_t)n;
		if (len > BQ_ADDRMAP_FILE_MAX) {
			rc = -EFBIG;
			snprintf(err, errlen, "address map %s is larger than %d bytes", path,
				 BQ_ADDRMAP_FILE_MAX);
			goto out;
		}
	}
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	bq_free(buf);
	close(fd);
	return rc;
}

static bool is_space(uint8_t ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

/*
 * Split one line (NUL-terminated copy, modified in place) into two whitespace-separated
 * fields; false for a comment, a blank line or anything but exactly two fields.
 */
static bool split_fields(char *line, char **mac, char **target)
{
	char *f[3] = {NULL, NULL, NULL};
	size_t nf = 0;
	char *p = line;

	for (;;) {
		while (*p && is_space((uint8_t)*p)) {
			p++;
		}
		if (!*p || *p == '#') {
			break;
		}
		if (nf == 3) {
			return false;
		}
		f[nf++] = p;
		while (*p && !is_space((uint8_t)*p) && *p != '#') {
			p++;
		}
		if (*p == '#') {
			*p = '\0';
			break;
		}
		if (*p) {
			*p++ = '\0';
		}
	}
	if (nf != 2) {
		return false;
	}
	*mac = f[0];
	*target = f[1];
	return true;
}

/* 1 with *out filled when this line maps bdaddr, else 0 (malformed lines included). */
static int match_line(char *line, const uint8_t bdaddr[BQ_BDADDR_LEN], struct bq_addr *out)
{
	char *mac, *target;
	uint8_t b[BQ_BDADDR_LEN];
	struct bq_addr a;
	char perr[160];

	if (!split_fields(line, &mac, &target)) {
		return 0;
	}
	if (bq_bdaddr_parse(mac, b) < 0 || memcmp(b, bdaddr, BQ_BDADDR_LEN) != 0) {
		return 0;
	}
	if (bq_addr_parse(target, &a, perr, sizeof(perr)) < 0) {
		return 0;
	}
	if (a.kind != BQ_ADDR_UNIX && a.kind != BQ_ADDR_TCP) {
		return 0;
	}
	*out = a;
	return 1;
}

int bq_addrmap_resolve_file(const char *path, const struct bq_addr *in, struct bq_addr *out,
			    char *err, size_t errlen)
{
	struct bq_addr orig = *in;
	uint8_t *data = NULL;
	size_t len = 0;
	struct bq_cur cur;
	char line[BQ_ADDRMAP_LINE_MAX + 1];
	size_t ll = 0;
	bool too_long = false;
	int rc;

	*out = orig;
	if (!is_bt(&orig)) {
		return 0;
	}
	rc = read_bounded(path, &data, &len, err, errlen);
	if (rc == -ENOENT) {
		return 0;
	}
	if (rc < 0) {
		return rc;
	}
	bq_cur_init(&cur, data, len);
	rc = 0;
	/* One pass, byte by byte; the final line need not end in a newline. */
	for (;;) {
		uint8_t ch = '\n';
		bool end = bq_cur_left(&cur) == 0;

		if (!end) {
			bq_cur_u8(&cur, &ch);
		}
		if (ch == '\n') {
			line[ll] = '\0';
			if (!too_long && ll > 0 && match_line(line, orig.bdaddr, out) == 1) {
				rc = 1;
				break;
			}
			ll = 0;
			too_long = false;
			if (end) {
				break;
			}
			continue;
		}
		if (ch == '\0' || ll >= BQ_ADDRMAP_LINE_MAX) {
			too_long = true; /* skipped whole, like any malformed line */
			continue;
		}
		line[ll++] = (char)ch;
	}
	bq_free(data);
	return rc;
}

int bq_addrmap_resolve(const struct bq_addr *in, struct bq_addr *out, char *err, size_t errlen)
{
	char path[BQ_ADDR_PATH_MAX + 256];

	if (!is_bt(in)) {
		*out = *in;
		return 0;
	}
	return bq_addrmap_resolve_file(bq_addrmap_default_path(path, sizeof(path)), in, out, err,
				       errlen);
}

int bq_addrmap_write(const char *path, const struct bq_addrmap_entry *entries, size_t n, char *err,
		     size_t errlen)
{
	struct bq_buf text;
	const char *hdr = "# blueq address map: Bluetooth address -> simulated node socket\n"
			  "# written by blueq-sim; removed when it exits\n";
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct bq_addr a;
		char perr[160];

		if (!entries[i].target ||
		    bq_addr_parse(entries[i].target, &a, perr, sizeof(perr)) < 0 ||
		    (a.kind != BQ_ADDR_UNIX && a.kind != BQ_ADDR_TCP)) {
			snprintf(err, errlen,
				 "address map target '%s' is not a unix: or tcp:// address",
				 entries[i].target ? entries[i].target : "(null)");
			return -EINVAL;
		}
	}
	bq_buf_init(&text, BQ_ADDRMAP_FILE_MAX);
	rc = bq_buf_append(&text, hdr, strlen(hdr));
	for (size_t i = 0; i < n && rc == 0; i++) {
		char mac[BQ_BDADDR_STRLEN];

		rc = bq_buf_printf(&text, "%s %s\n", bq_bdaddr_format(entries[i].bdaddr, mac),
				   entries[i].target);
	}
	if (rc == 0) {
		rc = bq_file_write_atomic(path, text.data, text.len, 0644, true);
	}
	bq_buf_free(&text);
	if (rc < 0) {
		snprintf(err, errlen, "cannot write address map %s: %s", path, strerror(-rc));
	}
	return rc;
}
