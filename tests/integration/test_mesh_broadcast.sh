#!/usr/bin/env bash
# A broadcast from node 1 reaches every other bot exactly once (and not the sender).
. "$(dirname "$0")/lib.sh"

start_sim --nodes 5 --topology line --bot a@1 --bot b@2 --bot c@3 --bot d@4 --bot e@5
all_known() {
	local users
	users=$(ctl "node 5 users")
	for u in a b c d e; do echo "$users" | grep -Eq "\"id\": ?\"$u\"" || return 1; done
}
wait_until 15 "node 5 knows every bot" all_known

reply=$(ctl "bot-send a * hello-everyone")
id=$(msg_id_of "$reply")
[ -n "$id" ] || fail "bot-send gave no msg_id: $reply"
all_got_it() {
	for b in b c d e; do [ "$(count_recv "$b" "$id")" -ge 1 ] || return 1; done
}
wait_until 10 "every bot receives broadcast $id" all_got_it
sleep 1
for b in b c d e; do
	n=$(count_recv "$b" "$id")
	[ "$n" -eq 1 ] || fail "bot $b received broadcast $id $n times"
done
[ "$(count_recv a "$id")" -eq 0 ] || fail "the sender received its own broadcast"
grep -q "^ack msg_id=$id status=accepted" "$(bot_log a)" || fail "broadcast not reported as sent to mesh"
echo "broadcast $id reached b, c, d, e exactly once"
