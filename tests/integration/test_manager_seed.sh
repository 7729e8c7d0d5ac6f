#!/usr/bin/env bash
# The original system's manual start and its three curl commands, verbatim, against
# the simulated Odin: `blueq-manager D8:3A:DD:03:1E:77 http://localhost:5000 8001`
# finds the simulator through its address map, the user reaches ready, the broadcast
# is taken ("sent to mesh") and reaches every bot exactly once.
#
# Port 8001 is fixed by the seed, so the test runs in a network namespace of its own
# when it can (root, iproute2): nothing else on the machine can hold the port there,
# and nothing it starts is reachable from outside.
if [ -z "${BQ_IN_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
	unshare -n true 2>/dev/null; then
	exec env BQ_IN_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi
. "$(dirname "$0")/lib.sh"

if (exec 3<>/dev/tcp/127.0.0.1/8001) 2>/dev/null; then
	echo "SKIP: port 8001 is in use and no network namespace is available" >&2
	exit 77
fi

start_sim --nodes 5 --bot alice@2 --bot bob@4 --bot carol@5
cd "$T"
"$BIN/blueq-manager" D8:3A:DD:03:1E:77 http://localhost:5000 8001 >"$T/mgr.out" 2>"$T/mgr.err" &
MGR_PID=$!
EXTRA_PIDS+=("$MGR_PID")
wait_until 10 "the manager listens on 8001" grep -q 'on=http://127.0.0.1:8001' "$T/mgr.err"

# Check client manager status
status=$(curl http://localhost:8001/api/status)
echo "$status" | grep -q '"odin":{"address":"D8:3A:DD:03:1E:77"' || fail "status: $status"

# Manually connect a user
reply=$(curl -X POST http://localhost:8001/api/connect \
  -H "Content-Type: application/json" \
  -d '{"user_id": "test123", "user_name": "TestUser"}')
echo "$reply" | grep -q '"user_id":"test123"' || fail "connect: $reply"

user_ready() {
	curl -sf http://localhost:8001/api/clients/test123 | grep -q '"state":"ready"'
}
wait_until 10 "test123 ready" user_ready
# The Odin link's round trip is in the status once a heartbeat measured it (every 5 s).
rtt_known() { curl -sf http://localhost:8001/api/status | grep -q '"rtt_ms":[0-9]'; }
wait_until 12 "Odin's round trip in the status" rtt_known
# The initial user scan happened: the manager knows the bots' users.
users=$(curl -sf http://localhost:8001/api/users)
for bot in alice bob carol; do
	echo "$users" | grep -q "\"user_id\":\"$bot\"" || fail "$bot missing from the scan: $users"
done

# Send a test message
reply=$(curl -X POST http://localhost:8001/api/send \
  -H "Content-Type: application/json" \
  -d '{"user_id": "test123", "destination": "broadcast", "message": "Hello World"}')
echo "$reply" | grep -q '"state":"accepted"' || fail "send: $reply"
id=$(echo "$reply" | grep -o '"message_id":"[0-9a-f]*"' | cut -d'"' -f4)
[ ${#id} -eq 16 ] || fail "no message id in: $reply"

bcast_done() {
	curl -sf "http://localhost:8001/api/messages/$id" | grep -q '"state":"broadcast","label":"sent to mesh"'
}
wait_until 10 "the broadcast is taken by Odin" bcast_done
for bot in alice bob carol; do
	wait_until 10 "$bot received the broadcast" [ "$(count_recv $bot "$id")" -ge 1 ]
done
sleep 0.5
for bot in alice bob carol; do
	n=$(count_recv $bot "$id")
	[ "$n" -eq 1 ] || fail "$bot received the broadcast $n times"
done

# The seed's disconnect, then the session is gone.
reply=$(curl -s -X POST http://localhost:8001/api/disconnect -d '{"user_id": "test123"}')
echo "$reply" | grep -q '"state":"disconnected"' || fail "disconnect: $reply"
code=$(curl -s -o /dev/null -w '%{http_code}' http://localhost:8001/api/clients/test123)
[ "$code" = 404 ] || fail "session still there after disconnect ($code)"
stop_manager
echo "PASS: the seed's command line and curl commands work against the simulated Odin"
