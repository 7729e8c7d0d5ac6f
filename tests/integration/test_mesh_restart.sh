#!/usr/bin/env bash
# Kill node 3 (SIGKILL) in a 5-node line; restart it; it rejoins: its bot re-attaches,
# the rest of the mesh sees it again, and messages cross it once more.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 5 --topology line --bot a@1 --bot c@3 --bot e@5
c_online_at_1() { ctl "node 1 users" | grep -Eo '\{[^{}]*"id": ?"c"[^{}]*\}' | grep -Eq '"presence": ?"online"'; }
wait_until 15 "node 1 sees c online" c_online_at_1

ctl "kill 3" | grep -q '^ok' || fail "kill refused"
c_not_online_at_1() { ! c_online_at_1; }
wait_until 15 "node 1 notices node 3 is gone" c_not_online_at_1

ctl "start 3" | grep -q '^ok' || fail "start refused"
wait_until 20 "c is online again after node 3 restarts" c_online_at_1
e_online_at_1() { ctl "node 1 users" | grep -Eo '\{[^{}]*"id": ?"e"[^{}]*\}' | grep -Eq '"presence": ?"online"'; }
wait_until 20 "e is reachable again" e_online_at_1

reply=$(ctl "bot-send a e after-restart")
id=$(msg_id_of "$reply")
delivered() { grep -q "^ack msg_id=$id status=delivered" "$(bot_log a)"; }
wait_until 15 "a message crosses the restarted node" delivered
[ "$(count_recv e "$id")" -eq 1 ] || fail "e got $id $(count_recv e "$id") times"
echo "node 3 restarted and rejoined; traffic flows through it again"
