/* SPDX-License-Identifier: MIT */
/*
 * http/check: option-table checks (core/opt.h bq_opt_check_cb) shared by the programs
 * that speak HTTP, so the manager and the backend refuse the same bad values with the
 * same one line.
 */
#ifndef BQ_HTTP_CHECK_H
#define BQ_HTTP_CHECK_H

#include <stddef.h>

/*
 * An http:// or https:// URL with a host (not starting with '/' or ':'), at most 1024
 * bytes, with no blanks, '?' or '#' (paths are appended to it). 0 or -EINVAL.
 */
int bq_http_check_url(const char *value, char *err, size_t errlen);
/* An address to listen on: "localhost" or numeric IPv4/IPv6 (no resolver). 0 or -EINVAL. */
int bq_http_check_listen_host(const char *value, char *err, size_t errlen);

#endif
