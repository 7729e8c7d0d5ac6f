#!/usr/bin/env bash
# ./start_bluetooth_system.sh --sim as a new user runs it: it waits until everything is
# ready and says so; the original's curl commands work; a user registered through the
# backend is connected in the manager; --status sees it from another terminal; a second
# start is refused naming the port; SIGTERM stops it all: no process of it is left and
# no port stays bound.
#
# The script needs ports 5000 and 8001, so the test runs in a network namespace of its
# own (as test_manager_seed.sh does): nothing else can hold them there. BLUEQ_BIN_DIR
# points the script at the build under test, so it neither installs nor builds.
if [ -z "${BQ_IN_NETNS:-}" ] && command -v unshare >/dev/null; then
	if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
		exec env BQ_IN_NETNS=1 unshare -n bash -c 'ip link set lo up && exec bash "$0"' "$0"
	elif unshare -rn true 2>/dev/null; then
		exec env BQ_IN_NETNS=1 unshare -rn bash -c 'ip link set lo up && exec bash "$0"' "$0"
	fi
fi
. "$(dirname "$0")/lib.sh"

SRC=${BQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
START=$SRC/start_bluetooth_system.sh
D=$T/data
OUT=$T/start.out
for port in 5000 8001; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "SKIP: port $port is in use and no network namespace is available" >&2
		exit 77
	fi
done

# The script's logs live in its data directory; lib.sh only knows $T/*.err.
finish() {
	local rc=$?
	if [ -n "${SP:-}" ] && alive "$SP"; then
		kill -TERM "$SP" 2>/dev/null || true
		for _ in $(seq 1 100); do alive "$SP" || break; sleep 0.1; done
	fi
	if [ $rc -eq 0 ] && grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' \
		"$D"/logs/*.log "$D"/sim/node-*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in the logs above" >&2
		rc=1
	fi
	if [ $rc -ne 0 ]; then
		echo "--- $OUT"
		cat "$OUT" 2>/dev/null || true
		for f in "$D"/logs/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 15 lines)"
			tail -n 15 "$f"
		done
	fi
	(exit $rc)
	cleanup
}
trap finish EXIT

# descendants PID: PID and every process below it.
descendants() {
	local p kids
	echo "$1"
	kids=$(grep -l -E "^[0-9]+ \(.*\) . $1 " /proc/[0-9]*/stat 2>/dev/null |
		cut -d/ -f3 || true)
	for p in $kids; do
		descendants "$p"
	done
}

t0=$SECONDS
cd "$T"
BLUEQ_BIN_DIR=$BIN bash "$START" --sim --data-dir "$D" >"$OUT" 2>&1 &
SP=$!

started() {
	alive "$SP" || fail "the start script exited: $(tail -n 20 "$OUT")"
	grep -q 'blueq is running' "$OUT"
}
wait_until 45 "the start script says blueq is running" started
echo "ready after $((SECONDS - t0)) s"

# What it printed: the web address, the processes, the logs, the commands to try.
grep -q 'Open http://localhost:5000 in a browser' "$OUT" || fail "no web address printed"
for p in blueq-sim blueq-backend blueq-manager; do
	grep -q -E "^  $p +pid [0-9]+" "$OUT" || fail "$p not listed with its pid"
	[ -f "$D/logs/$p.log" ] || fail "no log $D/logs/$p.log"
done
grep -q 'blueq-manager D8:3A:DD:03:1E:77 http://localhost:5000 8001' "$OUT" ||
	fail "the manager was not started with the original's command line"
grep -q 'curl http://localhost:8001/api/status' "$OUT" || fail "the original's commands not printed"
grep -q "$D/logs/blueq-manager.log" "$OUT" || grep -q "$D/logs/blueq-backend.log" "$OUT" ||
	fail "the log locations not printed"

# Every process the script started (the simulator's nodes included), for the end.
mapfile -t PIDS < <(descendants "$SP")
[ "${#PIDS[@]}" -ge 9 ] || fail "expected the script, sim, 5 nodes, backend, manager: ${PIDS[*]}"

# --status from another terminal.
status=$(bash "$START" --status --data-dir "$D") || fail "--status: exit $? while running: $status"
for p in blueq-sim blueq-backend blueq-manager; do
	echo "$status" | grep -q -E "^  $p +pid [0-9]+" || fail "--status does not list $p: $status"
done

# Check client manager status
status=$(curl http://localhost:8001/api/status)
echo "$status" | grep -q '"odin":{"address":"D8:3A:DD:03:1E:77"' || fail "status: $status"

# Manually connect a user
reply=$(curl -X POST http://localhost:8001/api/connect \
  -H "Content-Type: application/json" \
  -d '{"user_id": "test123", "user_name": "TestUser"}')
echo "$reply" | grep -q '"user_id":"test123"' || fail "connect: $reply"
ready_in_manager() {
	curl -sf "http://localhost:8001/api/clients/$1" | grep -q '"state":"ready"'
}
wait_until 10 "test123 ready" ready_in_manager test123

# Send a test message
reply=$(curl -X POST http://localhost:8001/api/send \
  -H "Content-Type: application/json" \
  -d '{"user_id": "test123", "destination": "broadcast", "message": "Hello World"}')
echo "$reply" | grep -q '"state":"accepted"' || fail "send: $reply"
bid=$(echo "$reply" | grep -o '"message_id":"[0-9a-f]*"' | cut -d'"' -f4)
[ ${#bid} -eq 16 ] || fail "no message id in: $reply"

# A direct message to a bot comes back delivered (the bots were renamed so that web
# users can never take their names).
reply=$(curl -s -X POST http://localhost:8001/api/send -H "Content-Type: application/json" \
	-d '{"user_id": "test123", "destination": "bot:ann", "message": "Hello"}')
did=$(echo "$reply" | grep -o '"message_id":"[0-9a-f]*"' | cut -d'"' -f4)
[ ${#did} -eq 16 ] || fail "direct send: $reply"
msg_state() {
	curl -sf "http://localhost:8001/api/messages/$1" | grep -q "\"state\":\"$2\""
}
wait_until 10 "the broadcast is taken by Odin" msg_state "$bid" broadcast
wait_until 10 "the message to bot:ann is delivered" msg_state "$did" delivered
received() {
	grep -q "^recv msg_id=$2 " "$D/sim/bots/$1.log" 2>/dev/null
}
for bot in bot:ann bot:ben bot:cat; do
	wait_until 10 "$bot received the broadcast" received "$bot" "$bid"
done

# A web user registered through the backend is connected in the manager.
code=$(curl -s -o "$T/reg.json" -w '%{http_code}' -X POST http://localhost:5000/api/register \
	-H "Content-Type: application/json" -d '{"username": "erin", "password": "a long password"}')
[ "$code" = 201 ] || fail "register: HTTP $code $(cat "$T/reg.json")"
wait_until 10 "erin ready in the manager" ready_in_manager erin
in_directory() {
	curl -sf http://localhost:8001/api/users | grep -q "\"user_id\":\"$1\""
}
wait_until 10 "erin in the mesh directory" in_directory erin

# A second start is refused and names the port; the first one keeps running.
rc=0
BLUEQ_BIN_DIR=$BIN bash "$START" --sim --data-dir "$T/other" >"$T/second.out" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "a second start on the same ports succeeded"
grep -q 'tcp port 5000 is already in use' "$T/second.out" ||
	fail "the refusal does not name the port: $(cat "$T/second.out")"
rc=0
BLUEQ_BIN_DIR=$BIN bash "$START" --sim --data-dir "$D" >"$T/third.out" 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q 'already running' "$T/third.out" ||
	fail "a second start on the same data directory: $(cat "$T/third.out")"
alive "$SP" || fail "the first start died after the refused ones"

# SIGTERM: everything stops, cleanly and completely.
kill -TERM "$SP"
for _ in $(seq 1 150); do alive "$SP" || break; sleep 0.1; done
alive "$SP" && fail "the start script still runs 15 s after SIGTERM"
rc=0
wait "$SP" || rc=$?
[ $rc -eq 0 ] || fail "the start script exited with $rc after SIGTERM"
grep -q 'blueq stopped' "$OUT" || fail "no 'blueq stopped' line"
grep -q 'exited with status' "$OUT" && fail "a program did not exit cleanly: $(grep 'exited with' "$OUT")"
left=()
for p in "${PIDS[@]}"; do
	alive "$p" && left+=("$p $(cat "/proc/$p/comm" 2>/dev/null)")
done
[ ${#left[@]} -eq 0 ] || fail "still running after SIGTERM: ${left[*]}"
bound=$(ss -Hltn | awk '$4 ~ /:(5000|8001)$/' || true)
[ -z "$bound" ] || fail "ports still bound: $bound"
bound=$(ss -Hlx | grep -F "$D" || true)
[ -z "$bound" ] || fail "UNIX sockets still bound: $bound"
ls "$D"/run/*.pid >/dev/null 2>&1 && fail "pid files left: $(ls "$D"/run/*.pid)"
rc=0
bash "$START" --status --data-dir "$D" >/dev/null || rc=$?
[ $rc -eq 3 ] || fail "--status after the stop: exit $rc, expected 3 (not running)"
[ $((SECONDS - t0)) -lt 60 ] || fail "took $((SECONDS - t0)) s (bound: 60 s)"
echo "PASS: ./start_bluetooth_system.sh --sim: ready, the original's commands, a registered user connected, refused second start, clean stop ($((SECONDS - t0)) s)"
