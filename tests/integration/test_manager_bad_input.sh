#!/usr/bin/env bash
# Bad input to blueq-manager (ARCHITECTURE.md section 10): on the command line, exit 2
# with one line naming the problem; over HTTP, JSON errors with the right status that
# name the field; a port in use is named; the token mode refuses requests without it.
. "$(dirname "$0")/lib.sh"

# expect_exit2 WHAT PATTERN ARGS...: exit status 2 and exactly one line matching PATTERN.
expect_exit2() {
	local what=$1 pattern=$2 rc=0
	shift 2
	"$BIN/blueq-manager" "$@" >"$T/cl.out" 2>"$T/cl.err" || rc=$?
	[ $rc -eq 2 ] || fail "$what: exit status $rc, expected 2 ($(cat "$T/cl.err"))"
	[ "$(wc -l <"$T/cl.err")" -eq 1 ] || fail "$what: not one line: $(cat "$T/cl.err")"
	grep -q -- "$pattern" "$T/cl.err" || fail "$what: '$(cat "$T/cl.err")' does not say '$pattern'"
}
cd "$T"
expect_exit2 "invalid MAC" "invalid Bluetooth address 'D8:3A:DD:03:1E'" D8:3A:DD:03:1E http://localhost:5000 8001
expect_exit2 "bad backend URL" "not an http:// or https:// URL" D8:3A:DD:03:1E:77 ftp://x 8001
expect_exit2 "port out of range" "70000 is above the maximum 65535" D8:3A:DD:03:1E:77 http://localhost:5000 70000
expect_exit2 "public without token" "needs --api-token" --api-host 0.0.0.0
expect_exit2 "short token" "16.." --api-token short
expect_exit2 "unknown option" "nonsense" --nonsense
expect_exit2 "bad link mode" "link-mode" --link-mode party
out=$("$BIN/blueq-manager" --check-config D8:3A:DD:03:1E:77 http://localhost:5000 8001)
echo "$out" | grep -q "configuration OK" || fail "--check-config: $out"
[ ! -e "$T/data" ] || fail "--check-config created the data directory"

start_sim --nodes 2
start_manager mgr --api-port 0 --backend-url "" --data-dir "$T/data" unix:"$T/sim/node-1.sock"
PORT=${MGR_URL##*:}
expect_exit2 "port in use" "tcp port $PORT is already in use" --api-port "$PORT" --backend-url "" --data-dir "$T/data2"

# req METHOD PATH BODY: prints "STATUS BODY".
req() {
	local args=(-s -o "$T/body" -w '%{http_code}' -X "$1" "$MGR_URL$2")
	[ -z "${3:-}" ] || args+=(--data-binary "$3")
	local code
	code=$(curl "${args[@]}")
	echo "$code $(cat "$T/body")"
}
# expect STATUS PATTERN METHOD PATH [BODY]
expect() {
	local want=$1 pattern=$2 got
	shift 2
	got=$(req "$@")
	[ "${got%% *}" = "$want" ] || fail "$*: got '$got', expected status $want"
	echo "$got" | grep -q -- "$pattern" || fail "$*: '$got' does not contain '$pattern'"
}
expect 400 '"code":"bad_json"' POST /api/connect '{"user_id":'
expect 400 'malformed JSON' POST /api/connect 'not json'
expect 400 'the body must be a JSON object' POST /api/connect '["x"]'
expect 400 'the body is empty' POST /api/connect ''
expect 400 "missing field 'user_id'" POST /api/connect '{"user_name":"x"}'
expect 400 "field 'user_id' must be a string or an integer" POST /api/connect '{"user_id":[1]}'
expect 400 "field 'user_name' must be a string" POST /api/connect '{"user_id":"a","user_name":5}'
expect 400 "field 'user_id' must be 1..64 characters" POST /api/connect '{"user_id":"has space"}'
expect 202 '"state":' POST /api/connect '{"user_id":42,"user_name":"Numeric"}'
expect 404 '"code":"unknown_user"' POST /api/disconnect '{"user_id":"nobody"}'
expect 404 "no session for user 'nobody'" POST /api/send '{"user_id":"nobody","destination":"broadcast","message":"x"}'
expect 400 "field 'destination'" POST /api/send '{"user_id":"42","destination":"a b","message":"x"}'
expect 400 "missing field 'message'" POST /api/send '{"user_id":"42","destination":"broadcast"}'
expect 400 "field 'message' must not be empty" POST /api/send '{"user_id":"42","destination":"broadcast","message":""}'
long=$(head -c 4097 /dev/zero | tr '\0' 'a')
expect 413 '"code":"too_large"' POST /api/send "{\"user_id\":\"42\",\"destination\":\"broadcast\",\"message\":\"$long\"}"
big=$(head -c 70000 /dev/zero | tr '\0' 'a')
expect 413 '"error":' POST /api/connect "{\"user_id\":\"$big\"}"
# Batches: every entry is checked before any is accepted, and the error names it.
expect 400 "messages\[1\]: field 'destination'" POST /api/send/batch '{"messages":[{"user_id":"42","destination":"broadcast","message":"x"},{"user_id":"42","destination":"a b","message":"y"}]}'
expect 400 "field 'messages' must be a non-empty array" POST /api/send/batch '{"messages":{}}'
expect 404 "messages\[0\]: no session for user 'nobody'" POST /api/send/batch '{"messages":[{"user_id":"nobody","destination":"broadcast","message":"x"}]}'
many=$(printf '{"user_id":"42","destination":"broadcast","message":"m"},%.0s' $(seq 1 1001))
expect 413 'at most 1000 per request' POST /api/send/batch "{\"messages\":[${many%,}]}"
expect 202 '"messages":\[{"message_id":"[0-9a-f]*","state":"accepted"},{"message_id"' POST /api/send/batch '{"messages":[{"user_id":"42","destination":"broadcast","message":"x"},{"user_id":42,"destination":"broadcast","message":"y"}]}'
expect 404 '"code":"not_found"' GET /api/nothing
expect 405 '"code":"method_not_allowed"' DELETE /api/status
expect 405 '"code":"method_not_allowed"' GET /api/send
expect 400 '"code":"bad_id"' GET /api/messages/xyz
expect 404 '"code":"unknown_message"' GET /api/messages/00000000000000aa
expect 404 '"code":"unknown_user"' GET /api/clients/nobody
# The manager still works after all of that.
expect 200 '"status":"ok"' GET /health
expect 200 '"total":1' GET /api/status
expect 200 'blueq_messages_total{state="accepted"} 2' GET /metrics
stop_manager

# Token mode: everything but /health needs the bearer token.
TOKEN=0123456789abcdef-test-token
start_manager mgr-token --api-port 0 --backend-url "" --data-dir "$T/data3" \
	--api-token "$TOKEN" unix:"$T/sim/node-1.sock"
expect 401 '"code":"unauthorized"' GET /api/status
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong-token-wrong-token" "$MGR_URL/api/status")
[ "$code" = 401 ] || fail "a wrong token got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$MGR_URL/api/status")
[ "$code" = 200 ] || fail "the right token got $code"
expect 200 '"status":"ok"' GET /health
if grep -q "$TOKEN" "$T"/mgr-token.err; then
	fail "the API token appears in the log"
fi
stop_manager
echo "PASS: bad input is refused with clear errors; nothing accepted is lost"
