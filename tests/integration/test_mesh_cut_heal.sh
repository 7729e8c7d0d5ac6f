#!/usr/bin/env bash
# Cut the link between nodes 2 and 3 of a 5-node line: messages from node 1 to node 5
# are held; after the link heals they arrive, each exactly once, and are acknowledged.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 5 --topology line --bot a@1 --bot e@5
e_known() { ctl "node 1 users" | grep -Eq '"id": ?"e"'; }
wait_until 15 "node 1 learns about e" e_known

ctl "cut 2 3" | grep -q '^ok' || fail "cut refused"
sleep 0.5
ids=()
for i in 1 2 3 4 5; do
	reply=$(ctl "bot-send a e held-$i")
	id=$(msg_id_of "$reply")
	[ -n "$id" ] || fail "bot-send gave no msg_id: $reply"
	ids+=("$id")
done
sleep 2
for id in "${ids[@]}"; do
	[ "$(count_recv e "$id")" -eq 0 ] || fail "$id crossed a cut link"
done

ctl "heal 2 3" | grep -q '^ok' || fail "heal refused"
all_arrived() {
	for id in "${ids[@]}"; do [ "$(count_recv e "$id")" -ge 1 ] || return 1; done
}
wait_until 20 "held messages arrive after the heal" all_arrived
all_acked() {
	for id in "${ids[@]}"; do grep -q "^ack msg_id=$id status=delivered" "$(bot_log a)" || return 1; done
}
wait_until 20 "every held message is acknowledged" all_acked
sleep 1
for id in "${ids[@]}"; do
	n=$(count_recv e "$id")
	[ "$n" -eq 1 ] || fail "$id delivered $n times"
done
echo "5 messages held across a cut arrived once each after the heal"
