#!/usr/bin/env bash
# The manager and the web backend: while the backend is down, sessions stay up and
# their events wait in the bounded queue; when it returns, the events arrive (each
# once: the backend is idempotent by event id), the poll connects the users the backend
# knows and removes the ones it deleted, and inbound mesh messages reach it too.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 3 --bot bob@3

# A port with nothing on it: let the fake backend pick one, then stop it.
"$BIN/bq-fake-backend" --port 0 --events "$T/probe.log" --users "$T/none.json" >"$T/probe.out" 2>"$T/probe.err" &
probe=$!
wait_until 5 "probe port" grep -q 'listening port=' "$T/probe.out"
BPORT=$(grep -o 'port=[0-9]*' "$T/probe.out" | cut -d= -f2)
kill -TERM $probe; wait $probe || true

start_manager mgr --api-port 0 --data-dir "$T/data" --poll-interval 1s \
	--backend-token s3cret-service-token unix:"$T/sim/node-1.sock" "http://localhost:$BPORT"
# A live event stream, as a browser or the backend's status page would hold it.
curl -sN "$MGR_URL/api/events" >"$T/sse.out" 2>/dev/null &
EXTRA_PIDS+=($!)
# The manager's stream has no replay: be connected before the sessions change.
wait_until 5 "the event stream is open" grep -q 'blueq-manager events' "$T/sse.out"
for u in u1 u2; do
	curl -sf -X POST "$MGR_URL/api/connect" -d "{\"user_id\":\"$u\",\"user_name\":\"User $u\"}" >/dev/null
done
both_ready() { [ "$(mgr_stat ready)" = 2 ]; }
wait_until 10 "u1 and u2 ready with the backend down" both_ready
status=$(curl -sf "$MGR_URL/api/status?clients=0")
echo "$status" | grep -q '"reachable":false' || fail "backend reported reachable: $status"
queued=$(echo "$status" | grep -o '"queued_events":[0-9]*' | cut -d: -f2)
[ "$queued" -ge 2 ] || fail "no events queued while the backend is down: $status"
echo "backend down: sessions ready, $queued events waiting"
sse_ready() { grep -A1 '^event: session$' "$T/sse.out" | grep -q '"user_id":"u1".*"state":"ready"'; }
wait_until 5 "the event stream shows u1 ready" sse_ready

# A receipt never claims more than is true: bob's message to u1 while the backend is
# down reaches the manager, but bob is told "delivered" only once the backend stored it.
bob_sees_u1() { ctl "node 3 users" | grep -q '"u1"'; }
wait_until 10 "the mesh knows u1" bob_sees_u1
reply=$(ctl "bot-send bob u1 held until stored")
held=$(msg_id_of "$reply")
held_receipt() { grep -q "^ack msg_id=$held status=delivered" "$(bot_log bob)"; }
accepted() { grep -q "^ack msg_id=$held status=accepted" "$(bot_log bob)"; }
wait_until 5 "bob's message accepted by the mesh" accepted
sleep 2 # the bot retransmits meanwhile (1 s, then 2 s): no repeat may get a receipt
held_receipt && fail "bob got DELIVERED for a message the backend never stored"
curl -sf "$MGR_URL/metrics" | grep -q '^blueq_receipts_held [1-9]' ||
	fail "no held receipt in the metrics: $(curl -sf "$MGR_URL/metrics" | grep receipts)"
echo "backend down: bob's message is on its way, not 'delivered'"

# The backend comes back, knowing one more user than the manager.
echo '[{"user_id":"polled1","user_name":"Polled One"}]' >"$T/users.json"
"$BIN/bq-fake-backend" --port "$BPORT" --events "$T/events.log" --users "$T/users.json" \
	--token s3cret-service-token >"$T/backend.out" 2>"$T/backend.err" &
EXTRA_PIDS+=($!)
wait_until 5 "fake backend listening" grep -q 'listening port=' "$T/backend.out"

ready_event() {
	grep '"type":"session"' "$T/events.log" 2>/dev/null | grep "\"user_id\":\"$1\"" |
		grep -q '"state":"ready"'
}
wait_until 20 "u1's ready event reaches the backend" ready_event u1
wait_until 5 "u2's ready event reaches the backend" ready_event u2
polled_ready() { curl -sf "$MGR_URL/api/clients/polled1" | grep -q '"state":"ready"'; }
wait_until 10 "the poll connected polled1" polled_ready
curl -sf "$MGR_URL/api/clients/polled1" | grep -q '"user_name":"Polled One"' || fail "polled1 has the wrong name"
reachable() { curl -sf "$MGR_URL/api/status?clients=0" | grep -q '"reachable":true'; }
wait_until 5 "the manager sees the backend" reachable
wait_until 15 "bob's receipt once the backend stored his message" held_receipt
grep '"type":"message"' "$T/events.log" | grep -q "\"message_id\":\"$held\"" ||
	fail "the receipt went but the backend has no event for the message"

# A mesh user's message to u1 reaches the backend as an event.
reply=$(ctl "bot-send bob u1 hello from the mesh")
id=$(msg_id_of "$reply")
msg_event() { grep '"type":"message"' "$T/events.log" | grep -q "\"message_id\":\"$id\""; }
wait_until 10 "the inbound message reaches the backend" msg_event

# The backend deletes polled1: the next poll removes its session.
echo '[{"user_id":"polled1","user_name":"Polled One"},{"user_id":"polled1","deleted":true}]' >"$T/users.json"
gone() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$MGR_URL/api/clients/polled1")" = 404 ]; }
wait_until 10 "polled1 removed after the backend deleted it" gone

# Every event id arrived once in the log (repeats are counted by the backend, not kept).
dup_ids=$(grep -o '"id":"[0-9a-f]*-[0-9]*"' "$T/events.log" | sort | uniq -d | wc -l)
[ "$dup_ids" -eq 0 ] || fail "$dup_ids event ids logged twice"
echo "events at the backend: $(wc -l <"$T/events.log")"
stop_manager
echo "PASS: events wait for a backend that is down and arrive when it returns; poll and deletes work"
