#!/usr/bin/env bash
# The headline path: a user registers in the backend and is ready on the mesh through
# the manager within a second, with the manager's poll set to 60 s (so the backend's
# push did it, not the poll). Registration while the manager is down is kept and done
# when it returns; the manager's poll sees every user; accounts work.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 2
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
[ "$(stat -c %a "$T/be/service.token")" = 600 ] || fail "service token not mode 0600"

# Registration while the manager is down: accepted, the connect waits.
reply=$(curl -s -w ' %{http_code}' -X POST "$BE_URL/api/register" -d '{"username":"early","password":"correct horse"}')
[ "${reply##* }" = 201 ] || fail "register early: $reply"

start_manager mgr --api-port "$MPORT" --data-dir "$T/mgr" --poll-interval 60s \
	--backend-token-file "$T/be/service.token" unix:"$T/sim/node-1.sock" "$BE_URL"
ready() { curl -sf "$MGR_URL/api/clients/$1" | grep -q '"state":"ready"'; }
wait_until 15 "the user registered while the manager was down is connected" ready early

t0=$(date +%s%N)
reply=$(curl -s -w ' %{http_code}' -X POST "$BE_URL/api/register" -d '{"username":"alice","password":"correct horse"}')
[ "${reply##* }" = 201 ] || fail "register: $reply"
for _ in $(seq 1 100); do ready alice && break; sleep 0.01; done
t1=$(date +%s%N)
ready alice || fail "alice not ready 1 s after registering (the poll is at 60 s)"
echo "registration -> ready in the manager: $(((t1 - t0) / 1000000)) ms"
token=$(echo "$reply" | grep -o '"token":"[A-Za-z0-9_-]*"' | cut -d'"' -f4)
[ ${#token} -eq 43 ] || fail "no token in: $reply"

# Accounts.
me=$(curl -sf -H "Authorization: Bearer $token" "$BE_URL/api/me")
echo "$me" | grep -q '"username":"alice"' || fail "me: $me"
echo "$(curl -sf "$BE_URL/api/me" -H "Authorization: Bearer $token")" | grep -q '"admin":false' ||
	fail "alice is admin but 'early' registered first"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BE_URL/api/register" -d '{"username":"ALICE","password":"another pass"}')
[ "$code" = 409 ] || fail "a taken name (other case) got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BE_URL/api/register" -d '{"username":"x","password":"correct horse"}')
[ "$code" = 400 ] || fail "a short name got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BE_URL/api/register" -d '{"username":"bob","password":"short"}')
[ "$code" = 400 ] || fail "a short password got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BE_URL/api/login" -d '{"username":"alice","password":"wrong horse"}')
[ "$code" = 401 ] || fail "a wrong password got $code"
login=$(curl -sf -X POST "$BE_URL/api/login" -d '{"username":"alice","password":"correct horse"}')
echo "$login" | grep -q '"token":"' || fail "login: $login"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" "$BE_URL/api/logout")
[ "$code" = 200 ] || fail "logout got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$BE_URL/api/me")
[ "$code" = 401 ] || fail "a logged-out token got $code"

# The manager's poll: needs the service token, sees both users.
code=$(curl -s -o /dev/null -w '%{http_code}' "$BE_URL/api/bluetooth/users?since=0")
[ "$code" = 401 ] || fail "the poll without the service token got $code"
users=$(curl -sf -H "Authorization: Bearer $(cat "$T/be/service.token")" "$BE_URL/api/bluetooth/users?since=0")
echo "$users" | grep -q '"user_id":"early"' && echo "$users" | grep -q '"user_id":"alice"' ||
	fail "poll: $users"

# The backend restarts: accounts stay.
kill -TERM "$BE_PID"; wait "$BE_PID" || fail "backend exit status $? after SIGTERM"
start_backend be2 --port 0 --data-dir "$T/be" --hash-cost minimum --manager-url "http://127.0.0.1:$MPORT" \
	--register-burst 1000 --login-burst 1000
login=$(curl -sf -X POST "$BE_URL/api/login" -d '{"username":"alice","password":"correct horse"}')
echo "$login" | grep -q '"token":"' || fail "login after restart: $login"
# The new backend listens on another port, so no event from the manager reaches it: the
# Bluetooth state in its contacts can only come from its snapshot of the manager.
token=$(echo "$login" | grep -o '"token":"[A-Za-z0-9_-]*"' | cut -d'"' -f4)
early_known() {
	curl -sf -H "Authorization: Bearer $token" "$BE_URL/api/contacts" |
		grep -q '"user_id":"early","name":"early","web":true,"presence":"online","bluetooth":"ready"'
}
wait_until 5 "early's presence and Bluetooth state after the restart" early_known
stop_manager
echo "PASS: registration connects the user through the manager at once; accounts work"
