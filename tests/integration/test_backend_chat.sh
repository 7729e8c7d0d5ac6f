#!/usr/bin/env bash
# Chat through the backend: two web users (alice, bob) and a mesh bot (carol). Alice's
# message reaches bob's live event stream and ends "delivered" in her history; carol's
# message reaches alice's history once; contacts show web and mesh users with their
# Bluetooth state; a stream resumes with Last-Event-ID (or is told to reset); bad
# input is refused; a manager that is down gives 503 and a failed message; the backend
# stops cleanly with a stream still open.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 2 --bot carol@2
# The manager's port is needed before the manager runs: take a free one from the kernel.
"$BIN/bq-fake-backend" --port 0 --events "$T/probe.log" --users "$T/none.json" >"$T/probe.out" 2>"$T/probe.err" &
probe=$!
wait_until 5 "probe port" grep -q 'listening port=' "$T/probe.out"
MPORT=$(grep -o 'port=[0-9]*' "$T/probe.out" | cut -d= -f2)
kill -TERM $probe; wait $probe || true

# Rate limits high: every request here comes from loopback.
start_backend be --port 0 --data-dir "$T/be" --hash-cost minimum \
	--manager-url "http://127.0.0.1:$MPORT" \
	--register-burst 1000 --login-burst 1000
start_manager mgr --api-port "$MPORT" --data-dir "$T/mgr" --poll-interval 60s \
	--backend-token-file "$T/be/service.token" unix:"$T/sim/node-1.sock" "$BE_URL"

register() {
	local reply
	reply=$(curl -s -w ' %{http_code}' -X POST "$BE_URL/api/register" \
		-d "{\"username\":\"$1\",\"password\":\"correct horse\"}")
	[ "${reply##* }" = 201 ] || fail "register $1: $reply"
	echo "$reply" | grep -o '"token":"[A-Za-z0-9_-]*"' | cut -d'"' -f4
}
TA=$(register alice)
TB=$(register bob)
ready() { curl -sf "$MGR_URL/api/clients/$1" | grep -q '"state":"ready"'; }
wait_until 15 "alice ready in the manager" ready alice
wait_until 15 "bob ready in the manager" ready bob

# api TOKEN METHOD PATH [BODY]: prints the body and the status on the last line.
api() {
	if [ $# -ge 4 ]; then
		curl -s -w '\n%{http_code}' -X "$2" -H "Authorization: Bearer $1" "$BE_URL$3" -d "$4"
	else
		curl -s -w '\n%{http_code}' -X "$2" -H "Authorization: Bearer $1" "$BE_URL$3"
	fi
}
status_of() { echo "$1" | tail -n 1; }

# Bob's browser holds a live event stream.
curl -sN -H "Authorization: Bearer $TB" "$BE_URL/api/events" >"$T/bob.sse" 2>/dev/null &
BOB_SSE=$!
EXTRA_PIDS+=("$BOB_SSE")
wait_until 5 "bob's event stream open" grep -q 'blueq-backend events' "$T/bob.sse"

# Alice sends to bob: 202 with the mesh's 16-hex id.
reply=$(api "$TA" POST /api/messages '{"to":"bob","text":"hello bob"}')
[ "$(status_of "$reply")" = 202 ] || fail "send: $reply"
id=$(echo "$reply" | grep -o '"id":"[0-9a-f]*"' | head -n 1 | cut -d'"' -f4)
[ ${#id} -eq 16 ] || fail "no 16-hex message id in: $reply"
bob_saw() { grep -A1 '^event: message$' "$T/bob.sse" | grep -q "\"id\":\"$id\".*\"text\":\"hello bob\""; }
wait_until 5 "bob's stream shows alice's message" bob_saw
delivered() { api "$TA" GET "/api/messages?with=bob" | grep -q "\"id\":\"$id\"[^}]*\"state\":\"delivered\""; }
wait_until 20 "alice's message delivered (the manager's delivery event)" delivered
hist=$(api "$TB" GET "/api/messages?with=alice")
[ "$(echo "$hist" | grep -o "\"id\":\"$id\"" | wc -l)" = 1 ] ||
	fail "bob's history does not hold the message once: $hist"
echo "alice -> bob: accepted, on bob's stream, delivered"

# A mesh bot's message to alice: in her history exactly once.
mesh_knows_alice() { ctl "node 2 users" | grep -q '"alice"'; }
wait_until 15 "the mesh knows alice" mesh_knows_alice
ctl "bot-send carol alice hi from carol" >/dev/null
carol_msg() { api "$TA" GET "/api/messages?with=carol" | grep -q '"text":"hi from carol"'; }
wait_until 15 "carol's message in alice's history" carol_msg
# A second message from carol as a marker: once it is there, any repeat of the first
# (the manager retries its event batches) had its chance to arrive.
ctl "bot-send carol alice second" >/dev/null
wait_until 15 "carol's second message" sh -c "curl -s -H 'Authorization: Bearer $TA' '$BE_URL/api/messages?with=carol' | grep -q '\"text\":\"second\"'"
hist=$(api "$TA" GET "/api/messages?with=carol")
[ "$(echo "$hist" | grep -o '"text":"hi from carol"' | wc -l)" = 1 ] ||
	fail "carol's message not exactly once in alice's history: $hist"
echo "$hist" | grep -q '"from":"carol","to":"alice"' || fail "carol's message fields: $hist"

# History pages: newest first, a cursor while more remain.
page=$(api "$TA" GET "/api/messages?with=carol&limit=1")
echo "$page" | grep -q '"text":"second"' || fail "page 1 is not the newest: $page"
before=$(echo "$page" | grep -o '"next":{"before":[0-9]*' | grep -o '[0-9]*$')
before_id=$(echo "$page" | grep -o '"before_id":"[0-9a-f]*"' | cut -d'"' -f4)
[ -n "$before" ] && [ -n "$before_id" ] || fail "no next cursor: $page"
page=$(api "$TA" GET "/api/messages?with=carol&limit=1&before=$before&before_id=$before_id")
echo "$page" | grep -q '"text":"hi from carol"' || fail "page 2: $page"
echo "$page" | grep -q '"next"' && fail "a last page with a next cursor: $page"

# Contacts: bob (web, ready) and carol (mesh), not alice herself.
contact() { api "$TA" GET /api/contacts | grep -o "{[^{}]*\"user_id\":\"$1\"[^{}]*}"; }
bob_contact() { contact bob | grep -q '"web":true' && contact bob | grep -q '"bluetooth":"ready"'; }
wait_until 10 "bob in alice's contacts, web and ready" bob_contact
carol_contact() { contact carol | grep -q '"web":false'; }
wait_until 15 "carol in alice's contacts as a mesh user" carol_contact
contacts=$(api "$TA" GET /api/contacts)
echo "$contacts" | grep -q '"user_id":"alice"' && fail "alice lists herself: $contacts"
names=$(echo "$contacts" | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | tr '\n' ' ')
[ "$names" = "$(echo "$contacts" | grep -o '"name":"[^"]*"' | cut -d'"' -f4 | sort -f | tr '\n' ' ')" ] ||
	fail "contacts not sorted by name: $names"

# Resume: from the event before alice's message, bob gets it again; from an id the
# ring no longer holds (or another run's), a "reset".
msg_seq=$(grep -B1 '^event: message$' "$T/bob.sse" | grep -o '^id: [0-9]*' | head -n 1 | cut -d' ' -f2)
[ -n "$msg_seq" ] || fail "no id line before the message event"
timeout 2 curl -sN -H "Authorization: Bearer $TB" -H "Last-Event-ID: $((msg_seq - 1))" \
	"$BE_URL/api/events" >"$T/bob2.sse" 2>/dev/null || true
grep -q "\"id\":\"$id\"" "$T/bob2.sse" || fail "resume did not replay the message: $(cat "$T/bob2.sse")"
grep -q '^event: reset$' "$T/bob2.sse" && fail "a resume within the ring was reset"
timeout 2 curl -sN -H "Authorization: Bearer $TB" "$BE_URL/api/events?last_event_id=1" \
	>"$T/bob3.sse" 2>/dev/null || true
grep -q '^event: reset$' "$T/bob3.sse" || fail "an old id was not reset: $(cat "$T/bob3.sse")"
grep -q "\"id\":\"$id\"" "$T/bob3.sse" && fail "a reset stream replayed events"
echo "event stream: resume replays, an old id resets"

# Bad input.
code() { status_of "$(api "$@")"; }
[ "$(code "$TA" POST /api/messages '{"text":"no destination"}')" = 400 ] || fail "missing 'to' not 400"
[ "$(code "$TA" POST /api/messages '{"to":"bob","text":""}')" = 400 ] || fail "empty text not 400"
[ "$(code "$TA" POST /api/messages '{"to":"bad id!","text":"x"}')" = 400 ] || fail "bad 'to' not 400"
[ "$(code "$TA" POST /api/messages '{"to":"bob",')" = 400 ] || fail "malformed JSON not 400"
long=$(head -c 4097 /dev/zero | tr '\0' 'a')
[ "$(code "$TA" POST /api/messages "{\"to\":\"bob\",\"text\":\"$long\"}")" = 413 ] || fail "4097 bytes not 413"
[ "$(code "$TA" POST /api/messages "{\"to\":\"bob\",\"text\":\"${long:1}\"}")" = 202 ] || fail "4096 bytes refused"
for path in /api/contacts "/api/messages?with=bob" /api/events; do
	c=$(curl -s -o /dev/null -w '%{http_code}' -m 2 "$BE_URL$path")
	[ "$c" = 401 ] || fail "GET $path without a token got $c"
done
c=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BE_URL/api/messages" -d '{"to":"bob","text":"x"}')
[ "$c" = 401 ] || fail "POST /api/messages without a token got $c"
[ "$(code "$TA" GET /api/messages)" = 400 ] || fail "history without 'with' not 400"
[ "$(code "$TA" GET "/api/messages?with=bob&limit=0")" = 400 ] || fail "limit=0 not 400"
[ "$(code "$TA" GET "/api/messages?with=bob&limit=201")" = 400 ] || fail "limit=201 not 400"

# The mesh view (GET /api/mesh): the manager's directory and topology, through the backend.
mesh=$(api "$TA" GET /api/mesh)
[ "$(status_of "$mesh")" = 200 ] || fail "mesh view: $mesh"
echo "$mesh" | grep -q '"user_id":"carol"' || fail "carol not in the mesh view: $mesh"
echo "$mesh" | grep -q '"nodes":\[{"address"' || fail "no nodes in the mesh view: $mesh"
[ "$(code "" GET /api/mesh)" = 401 ] || fail "mesh view without a login not 401"
# Status reads are shared for 100 ms, but a call made through the backend makes them
# stale: right after alice (the admin) disconnects bob, the status no longer has him.
st=$(api "$TA" GET /api/bluetooth/manager/status)
echo "$st" | grep -q '"user_id":"bob"' || fail "bob not in the status: $st"
r=$(api "$TA" POST /api/bluetooth/manager/disconnect/bob)
[ "$(status_of "$r")" = 200 ] || fail "disconnect bob: $r"
st=$(api "$TA" GET /api/bluetooth/manager/status)
echo "$st" | grep -q '"user_id":"bob"' && fail "a stale status after the disconnect: $st"
echo "mesh view and a fresh status after a change"

# The manager goes away: 503 naming it, and the message is kept as failed.
stop_manager
reply=$(api "$TA" POST /api/messages '{"to":"bob","text":"while down"}')
[ "$(status_of "$reply")" = 503 ] || fail "send with the manager down: $reply"
echo "$reply" | grep -q '"code":"manager_unreachable"' || fail "no manager_unreachable code: $reply"
echo "$reply" | grep -q "127.0.0.1:$MPORT" || fail "the 503 does not name the manager: $reply"
api "$TA" GET "/api/messages?with=bob" | grep -q '"text":"while down"[^}]*"state":"failed"' ||
	fail "the refused message is not kept as failed"

# A clean stop with bob's stream still open.
alive "$BOB_SSE" || fail "bob's event stream ended early"
kill -TERM "$BE_PID"
wait "$BE_PID" || fail "backend exit status $? after SIGTERM with a stream open"

# A restart keeps accounts, logins and history: alice's token still works and her
# conversation with bob is as it was (delivered, then failed), and so is carol's.
start_backend be2 --port 0 --data-dir "$T/be" --hash-cost minimum \
	--manager-url "http://127.0.0.1:$MPORT" --register-burst 1000 --login-burst 1000
hist=$(api "$TA" GET "/api/messages?with=bob")
[ "$(status_of "$hist")" = 200 ] || fail "history after a restart: $hist"
echo "$hist" | grep -q "\"id\":\"$id\"[^}]*\"state\":\"delivered\"" ||
	fail "alice's delivered message lost in the restart: $hist"
echo "$hist" | grep -q '"text":"while down"[^}]*"state":"failed"' ||
	fail "the failed message lost in the restart: $hist"
api "$TA" GET "/api/messages?with=carol" | grep -q '"text":"hi from carol"' ||
	fail "carol's message lost in the restart"
echo "a restart keeps logins and history"
echo "PASS: chat through the backend: send, deliver, inbound once, contacts, resume, bad input, restart"
