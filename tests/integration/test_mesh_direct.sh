#!/usr/bin/env bash
# A direct message across 4 hops (node 1 -> node 5) arrives exactly once and its
# end-to-end ACK comes back to the sender.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 5 --topology line --bot a@1 --bot e@5
e_known() { ctl "node 1 users" | grep -Eq '"id": ?"e"'; }
wait_until 15 "node 1 learns about e" e_known

reply=$(ctl "bot-send a e hello-across-four-hops")
id=$(msg_id_of "$reply")
[ -n "$id" ] || fail "bot-send gave no msg_id: $reply"
delivered() { grep -q "^ack msg_id=$id status=delivered" "$(bot_log a)"; }
wait_until 10 "a gets the delivered ACK for $id" delivered
received=$(count_recv e "$id")
[ "$received" -eq 1 ] || fail "e received $id $received times, expected exactly 1"
grep "^recv msg_id=$id " "$(bot_log e)" | grep -q 'src=a' || fail "e's log lacks src=a"
grep "^recv msg_id=$id " "$(bot_log e)" | grep -q 'hello-across-four-hops' || fail "text lost"
# Give stray retransmissions a moment, then check again: still exactly once.
sleep 1
[ "$(count_recv e "$id")" -eq 1 ] || fail "duplicate delivery of $id"
echo "direct message $id: delivered once across 4 hops, ACK returned"
