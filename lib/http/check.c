/* SPDX-License-Identifier: MIT */
#include "http/check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int bq_http_check_url(const char *value, char *err, size_t errlen)
{
	const char *host;

	if (strncasecmp(value, "http://", 7) == 0) {
		host = value + 7;
	} else if (strncasecmp(value, "https://", 8) == 0) {
		host = value + 8;
	} else {
		snprintf(err, errlen, "'%s' is not an http:// or https:// URL", value);
		return -EINVAL;
	}
	if (!host[0] || host[0] == '/' || host[0] == ':' || strlen(value) > 1024 ||
	    strpbrk(value, " \t\r\n?#")) {
		snprintf(err, errlen, "'%s' is not a usable URL (expected http://host:port)",
			 value);
		return -EINVAL;
	}
	return 0;
}

int bq_http_check_listen_host(const char *value, char *err, size_t errlen)
{
	uint8_t buf[16];

	if (strcmp(value, "localhost") == 0 || inet_pton(AF_INET, value, buf) == 1 ||
	    inet_pton(AF_INET6, value, buf) == 1) {
		return 0;
	}
	snprintf(err, errlen, "'%s' is not a numeric IPv4 or IPv6 address", value);
	return -EINVAL;
}
