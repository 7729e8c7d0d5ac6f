#!/usr/bin/env bash
# kill -9 of the manager in the middle of a burst of sends: after a restart on the same
# data directory, every message that was answered 202 reaches the bot exactly once,
# and no message at all reaches it twice (ids persist; the receiver drops duplicates).
. "$(dirname "$0")/lib.sh"

N=${BQ_KILL9_MESSAGES:-600}
start_sim --nodes 3 --bot bob@3
start_manager mgr1 --api-port 0 --backend-url "" --data-dir "$T/data" unix:"$T/sim/node-1.sock"
curl -sf -X POST "$MGR_URL/api/connect" -d '{"user_id":"sender","user_name":"Sender"}' >/dev/null
ready() { curl -sf "$MGR_URL/api/clients/sender" | grep -q '"state":"ready"'; }
wait_until 10 "sender ready" ready
bob_known() { curl -sf "$MGR_URL/api/users" | grep -q '"user_id":"bob"'; }
wait_until 10 "bob in the directory" bob_known

mkdir -p "$T/out"
conf=$T/send.curl
: >"$conf"
for i in $(seq 1 "$N"); do
	[ "$i" -eq 1 ] || echo next >>"$conf"
	printf 'url = "%s/api/send"\ndata = "{\\"user_id\\":\\"sender\\",\\"destination\\":\\"bob\\",\\"message\\":\\"burst %d\\"}"\noutput = "%s/out/%d"\n' \
		"$MGR_URL" "$i" "$T" "$i" >>"$conf"
done
curl -s --no-progress-meter -Z --parallel-max 16 -K "$conf" >/dev/null 2>&1 &
CURL_PID=$!
# Kill once a part of the burst has been answered, so some messages are committed but
# not yet sent, sent but not yet delivered, and some requests get no answer at all.
some_answered() { [ "$(grep -l accepted "$T"/out/* 2>/dev/null | wc -l)" -ge $((N / 4)) ]; }
wait_until 20 "a quarter of the burst answered" some_answered
kill -KILL "$MGR_PID"
wait "$CURL_PID" 2>/dev/null || true

grep -ho '"message_id":"[0-9a-f]*","state":"accepted"' "$T"/out/* 2>/dev/null |
	cut -d'"' -f4 | sort -u >"$T/accepted.ids"
n_acc=$(wc -l <"$T/accepted.ids")
echo "answered 202 before the kill: $n_acc of $N"
[ "$n_acc" -ge 1 ] || fail "no message was answered before the kill"
[ "$n_acc" -lt "$N" ] || echo "note: the whole burst was answered before the kill"

start_manager mgr2 --api-port 0 --backend-url "" --data-dir "$T/data" unix:"$T/sim/node-1.sock"
grep -o 'resent=[0-9]*' "$T/mgr2.err" | head -n 1
all_arrived() {
	local got
	got=$(grep -o '^recv msg_id=[0-9a-f]*' "$(bot_log bob)" | cut -d= -f2 | sort -u)
	[ -z "$(comm -23 "$T/accepted.ids" <(echo "$got"))" ]
}
wait_until 60 "every 202 message reached bob" all_arrived
sleep 1 # late duplicates would arrive now
dups=$(grep -o '^recv msg_id=[0-9a-f]*' "$(bot_log bob)" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "$dups messages reached bob more than once"
total=$(grep -c '^recv msg_id=' "$(bot_log bob)")
echo "bob received $total distinct messages, every one of the $n_acc answered 202, none twice"
# And the restarted manager knows them as delivered.
first=$(head -n 1 "$T/accepted.ids")
delivered() { curl -sf "$MGR_URL/api/messages/$first" | grep -q '"state":"delivered"'; }
wait_until 10 "the outbox records delivery" delivered

# More than a session's window of unsettled messages (1,024) at once: the rest wait in
# the manager and go as receipts come back; all arrive, none twice. Sessions are not
# persisted: when every message was delivered before the kill the restarted manager has
# no session for the sender (a backend's poll would bring it back), so connect it.
curl -sf -X POST "$MGR_URL/api/connect" -d '{"user_id":"sender","user_name":"Sender"}' >/dev/null
wait_until 10 "sender ready after the restart" ready
before=$(grep -c '^recv msg_id=' "$(bot_log bob)")
batch() {
	local from=$1 body='{"messages":[' i
	for i in $(seq "$from" $((from + 999))); do
		body+="{\"user_id\":\"sender\",\"destination\":\"bob\",\"message\":\"window $i\"},"
	done
	local code rc=0
	code=$(curl -s -X POST "$MGR_URL/api/send/batch" --data-binary "${body%,}]}" \
		-o "$T/batch.$from" -w '%{http_code}') || rc=$?
	[ "$rc" = 0 ] && [ "$code" = 202 ] ||
		fail "batch from $from: curl exit $rc, HTTP $code: $(head -c 300 "$T/batch.$from" 2>/dev/null)"
}
batch 1 & b1=$!
batch 1001 & b2=$!
batch 2001
wait $b1 || fail "the batch from 1 failed (above)"
wait $b2 || fail "the batch from 1001 failed (above)"
n_ok=$(cat "$T"/batch.* | grep -o '"state":"accepted"' | wc -l)
[ "$n_ok" -eq 3000 ] || fail "only $n_ok of 3000 batched messages accepted"
window_done() { [ "$(grep -c '^recv msg_id=' "$(bot_log bob)")" -ge $((before + 3000)) ]; }
wait_until 60 "3,000 messages over the session window all reach bob" window_done
dups=$(grep -o '^recv msg_id=[0-9a-f]*' "$(bot_log bob)" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || fail "$dups messages reached bob more than once"
echo "3,000 messages sent at once (window 1,024) all arrived once"
stop_manager
echo "PASS: kill -9 during a burst lost nothing and duplicated nothing"
