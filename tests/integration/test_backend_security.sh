#!/usr/bin/env bash
# The backend's browser-facing safety: the HttpOnly SameSite=Strict login cookie works
# for /api/me and /api/events; a state-changing request authenticated by the cookie alone
# needs Content-Type: application/json (403 cross_site otherwise); logout clears the
# cookie; security headers on every response; register and login are rate limited per
# client address (429 with Retry-After); /ready and /metrics answer. No manager runs:
# the backend is pointed at a port nothing listens on.
. "$(dirname "$0")/lib.sh"

# A port nothing listens on, from the kernel.
"$BIN/bq-fake-backend" --port 0 --events "$T/probe.log" --users "$T/none.json" >"$T/probe.out" 2>"$T/probe.err" &
probe=$!
wait_until 5 "probe port" grep -q 'listening port=' "$T/probe.out"
MPORT=$(grep -o 'port=[0-9]*' "$T/probe.out" | cut -d= -f2)
kill -TERM $probe; wait $probe || true

# A web directory of our own: the served page is this one, whatever web/ holds.
mkdir -p "$T/web/js"
printf '<!doctype html><title>blueq test page</title>' >"$T/web/index.html"
printf 'export const ok = true;\n' >"$T/web/js/app.js"
start_backend be --port 0 --data-dir "$T/be" --hash-cost minimum \
	--manager-url "http://127.0.0.1:$MPORT" --web-dir "$T/web" \
	--register-rate 100000 --register-burst 100000 --login-rate 100000 --login-burst 100000
JSON='Content-Type: application/json'

# hdr FILE NAME: the value of a response header in a curl -D dump (first one).
hdr() { grep -i "^$2:" "$1" | head -n 1 | cut -d: -f2- | sed 's/^ //; s/\r$//'; }

# Register: the body's token and the cookie are the same; the cookie's attributes.
reply=$(curl -s -D "$T/reg.h" -c "$T/jar" -w ' %{http_code}' -X POST -H "$JSON" \
	"$BE_URL/api/register" -d '{"username":"alice","password":"correct horse"}')
[ "${reply##* }" = 201 ] || fail "register: $reply"
token=$(echo "$reply" | grep -o '"token":"[A-Za-z0-9_-]*"' | cut -d'"' -f4)
[ ${#token} -eq 43 ] || fail "no token in: $reply"
cookie=$(hdr "$T/reg.h" Set-Cookie)
[ "$cookie" = "blueq_token=$token; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000" ] ||
	fail "register's Set-Cookie: $cookie"
grep -q "blueq_token	$token" "$T/jar" || fail "curl's jar does not hold the cookie: $(cat "$T/jar")"

# The cookie alone: /api/me, and the event stream (EventSource cannot send headers).
me=$(curl -sf -b "$T/jar" "$BE_URL/api/me") || fail "GET /api/me with the cookie failed"
echo "$me" | grep -q '"username":"alice"' || fail "me by cookie: $me"
curl -sN -m 2 -b "$T/jar" "$BE_URL/api/events" >"$T/alice.sse" 2>/dev/null || true
grep -q 'blueq-backend events' "$T/alice.sse" || fail "no event stream by cookie: $(cat "$T/alice.sse")"

# Cookie parsing: several cookies and blanks; a malformed blueq_token before a good one;
# a longer name that ends in blueq_token is another cookie.
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code -H "Cookie: a=1;  blueq_token=$token ;b=2" "$BE_URL/api/me")" = 200 ] ||
	fail "cookie among others with blanks"
[ "$(code -H "Cookie: blueq_token=nope; blueq_token=\"$token\"" "$BE_URL/api/me")" = 200 ] ||
	fail "a malformed cookie first, then a good (quoted) one"
[ "$(code -H "Cookie: xblueq_token=$token" "$BE_URL/api/me")" = 401 ] || fail "xblueq_token accepted"
[ "$(code -H "Cookie: blueq_token=${token}x" "$BE_URL/api/me")" = 401 ] || fail "a long token accepted"
# The Authorization header comes first: a bad one is not rescued by the cookie.
[ "$(code -b "$T/jar" -H "Authorization: Bearer nope" "$BE_URL/api/me")" = 401 ] ||
	fail "a bad Authorization header was overridden by the cookie"

# State-changing requests by cookie alone need application/json (403 cross_site).
reply=$(curl -s -w ' %{http_code}' -b "$T/jar" -X POST "$BE_URL/api/messages" -d '{"to":"broadcast","text":"x"}')
[ "${reply##* }" = 403 ] || fail "a cookie-only form POST got: $reply"
echo "$reply" | grep -q '"code":"cross_site"' || fail "no cross_site code: $reply"
for ct in 'text/plain' 'multipart/form-data; boundary=x' 'application/jsonx' 'application/x-www-form-urlencoded'; do
	c=$(code -b "$T/jar" -X POST -H "Content-Type: $ct" "$BE_URL/api/messages" -d '{"to":"broadcast","text":"x"}')
	[ "$c" = 403 ] || fail "a cookie-only POST as $ct got $c"
done
c=$(code -b "$T/jar" -X POST "$BE_URL/api/bluetooth/manager/connect/alice")
[ "$c" = 403 ] || fail "a cookie-only bodyless POST got $c"
# With the JSON type it gets past authentication (the manager is down: 503).
for ct in 'application/json' 'Application/JSON; charset=utf-8'; do
	reply=$(curl -s -w ' %{http_code}' -b "$T/jar" -X POST -H "Content-Type: $ct" \
		"$BE_URL/api/messages" -d '{"to":"broadcast","text":"by cookie"}')
	[ "${reply##* }" = 503 ] || fail "a cookie POST as $ct got: $reply"
done
# The bearer header needs no such proof (not sent automatically).
c=$(code -H "Authorization: Bearer $token" -X POST "$BE_URL/api/messages" -d '{"to":"broadcast","text":"x"}')
[ "$c" = 503 ] || fail "a bearer form POST got $c"
# A browser that says it comes from another site may not log in.
c=$(code -X POST -H "$JSON" -H 'Sec-Fetch-Site: cross-site' "$BE_URL/api/login" \
	-d '{"username":"alice","password":"correct horse"}')
[ "$c" = 403 ] || fail "a cross-site login got $c"
echo "cookie: /api/me and /api/events work; cookie-only POSTs need application/json"

# Login sets a new cookie; logout by cookie clears it (and needs the JSON type too).
curl -sf -D "$T/login.h" -c "$T/jar2" -X POST -H "$JSON" "$BE_URL/api/login" \
	-d '{"username":"alice","password":"correct horse"}' >"$T/login.json" || fail "login"
token2=$(grep -o '"token":"[A-Za-z0-9_-]*"' "$T/login.json" | cut -d'"' -f4)
[ "$(hdr "$T/login.h" Set-Cookie)" = "blueq_token=$token2; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000" ] ||
	fail "login's Set-Cookie: $(hdr "$T/login.h" Set-Cookie)"
[ "$(code -b "$T/jar2" -X POST "$BE_URL/api/logout")" = 403 ] || fail "a cookie-only form logout was not refused"
[ "$(code -b "$T/jar2" "$BE_URL/api/me")" = 200 ] || fail "the refused logout ended the session"
c=$(curl -s -o /dev/null -D "$T/logout.h" -w '%{http_code}' -b "$T/jar2" -c "$T/jar2" -X POST -H "$JSON" "$BE_URL/api/logout")
[ "$c" = 200 ] || fail "logout by cookie got $c"
[ "$(hdr "$T/logout.h" Set-Cookie)" = "blueq_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0" ] ||
	fail "logout's Set-Cookie: $(hdr "$T/logout.h" Set-Cookie)"
grep -q blueq_token "$T/jar2" && fail "curl kept the cookie after logout: $(cat "$T/jar2")"
[ "$(code -H "Cookie: blueq_token=$token2" "$BE_URL/api/me")" = 401 ] || fail "a logged-out cookie still works"
[ "$(code -b "$T/jar" "$BE_URL/api/me")" = 200 ] || fail "logout ended the other session"
echo "login sets the cookie, logout clears it"

# Security headers on a 200, a 404, a 401 and a 429 (below), and on the event stream.
check_headers() {
	[ "$(hdr "$1" X-Content-Type-Options)" = nosniff ] || fail "$2: X-Content-Type-Options"
	[ "$(hdr "$1" X-Frame-Options)" = DENY ] || fail "$2: X-Frame-Options"
	[ "$(hdr "$1" Referrer-Policy)" = no-referrer ] || fail "$2: Referrer-Policy"
	[ "$(hdr "$1" Content-Security-Policy)" = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'" ] ||
		fail "$2: Content-Security-Policy: $(hdr "$1" Content-Security-Policy)"
}
[ "$(code -D "$T/h200" "$BE_URL/health")" = 200 ] || fail "health"
check_headers "$T/h200" "200 /health"
[ "$(code -D "$T/h404" "$BE_URL/nope")" = 404 ] || fail "404"
check_headers "$T/h404" "404"
[ "$(code -D "$T/h401" "$BE_URL/api/me")" = 401 ] || fail "401"
check_headers "$T/h401" "401"
curl -s -m 2 -D "$T/hsse" -o /dev/null -b "$T/jar" "$BE_URL/api/events" || true
check_headers "$T/hsse" "event stream"

# The web UI's files: the page under the same headers, its type, an ETag and a 304.
[ "$(curl -s -D "$T/hpage" -o "$T/page" -w '%{http_code}' "$BE_URL/")" = 200 ] || fail "GET /"
grep -q 'blueq test page' "$T/page" || fail "GET / is not our index.html: $(cat "$T/page")"
check_headers "$T/hpage" "GET /"
[ "$(hdr "$T/hpage" Content-Type)" = "text/html; charset=utf-8" ] || fail "page type"
etag=$(hdr "$T/hpage" ETag)
[ -n "$etag" ] || fail "no ETag on the page"
[ "$(code -H "If-None-Match: $etag" "$BE_URL/index.html")" = 304 ] || fail "no 304 for its ETag"
[ "$(code -D "$T/hjs" "$BE_URL/js/app.js")" = 200 ] || fail "GET /js/app.js"
[ "$(hdr "$T/hjs" Content-Type)" = "text/javascript; charset=utf-8" ] || fail "script type"
[ "$(code "$BE_URL/api/nope")" = 404 ] || fail "an unknown API path is not 404"
rc=0
out=$("$BIN/blueq-backend" --port 0 --data-dir "$T/be3" --web-dir "$T/no-such-dir" 2>&1) || rc=$?
[ $rc = 2 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q -- '--web-dir' ||
	fail "a missing --web-dir: exit $rc, '$out'"
echo "web files: served with the headers, a type, an ETag and 304"

# /ready and /metrics.
ready=$(curl -sf "$BE_URL/ready") || fail "/ready"
echo "$ready" | grep -q '"ready":true' && echo "$ready" | grep -q '"store":true' &&
	echo "$ready" | grep -q '"manager_reachable":false' || fail "ready: $ready"
metrics=$(curl -sf -D "$T/hmetrics" "$BE_URL/metrics") || fail "/metrics"
hdr "$T/hmetrics" Content-Type | grep -q '^text/plain' || fail "metrics content type"
for line in 'blueq_backend_users 1' 'blueq_backend_pending_connects 1' \
	'blueq_backend_rate_limited_total 0' 'blueq_backend_manager_reachable 0' \
	'blueq_backend_streams 0' 'blueq_backend_events_total{result="applied"} 0' \
	'blueq_backend_connects_total{result="failed"} '; do
	echo "$metrics" | grep -qF "$line" || fail "metrics lack '$line': $metrics"
done
echo "$metrics" | grep -q '^blueq_http_requests_total{class="2xx"} [1-9]' || fail "no 2xx count: $metrics"
echo "$metrics" | grep -q '^blueq_http_requests_total{class="4xx"} [1-9]' || fail "no 4xx count: $metrics"
echo "headers on every response; /ready and /metrics answer"

# Rate limits, on a second backend with low ones: a burst of 2, then 429 + Retry-After.
[ "$("$BIN/blueq-backend" --register-rate -1 --check-config >/dev/null 2>&1; echo $?)" = 2 ] ||
	fail "a negative --register-rate is not exit 2"
kill -TERM "$BE_PID"; wait "$BE_PID" || fail "backend exit status $? after SIGTERM"
start_backend be2 --port 0 --data-dir "$T/be2" --hash-cost minimum \
	--manager-url "http://127.0.0.1:$MPORT" \
	--register-rate 1 --register-burst 2 --login-rate 2 --login-burst 2
for i in 1 2; do
	c=$(code -X POST -H "$JSON" "$BE_URL/api/register" -d "{\"username\":\"user$i\",\"password\":\"correct horse\"}")
	[ "$c" = 201 ] || fail "register $i within the burst got $c"
done
reply=$(curl -s -D "$T/h429" -w ' %{http_code}' -X POST -H "$JSON" "$BE_URL/api/register" \
	-d '{"username":"user3","password":"correct horse"}')
[ "${reply##* }" = 429 ] || fail "the third registration got: $reply"
echo "$reply" | grep -q '"error":"too many attempts; try again in [0-9]* s","code":"rate_limited"' ||
	fail "429 body: $reply"
ra=$(hdr "$T/h429" Retry-After)
[ -n "$ra" ] && [ "$ra" -ge 59 ] && [ "$ra" -le 60 ] || fail "Retry-After '$ra' (1 per minute)"
echo "$reply" | grep -q "try again in $ra s" || fail "the body and Retry-After disagree: $reply"
check_headers "$T/h429" "429"
# Login has its own bucket: two wrong passwords (401), then 429.
for i in 1 2; do
	c=$(code -X POST -H "$JSON" "$BE_URL/api/login" -d '{"username":"user1","password":"wrong horse"}')
	[ "$c" = 401 ] || fail "login $i within the burst got $c"
done
c=$(code -D "$T/h429b" -X POST -H "$JSON" "$BE_URL/api/login" -d '{"username":"user1","password":"correct horse"}')
[ "$c" = 429 ] || fail "the third login got $c"
ra=$(hdr "$T/h429b" Retry-After)
[ -n "$ra" ] && [ "$ra" -ge 29 ] && [ "$ra" -le 30 ] || fail "login Retry-After '$ra' (2 per minute)"
curl -sf "$BE_URL/metrics" | grep -q '^blueq_backend_rate_limited_total 2$' ||
	fail "rate-limited count: $(curl -s "$BE_URL/metrics" | grep rate_limited)"
curl -sf "$BE_URL/metrics" | grep -q '^blueq_backend_rate_limit_addresses 1$' || fail "address count"
echo "PASS: cookie auth with a cross-site check, security headers, rate limits, /ready, /metrics"
