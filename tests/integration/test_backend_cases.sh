#!/usr/bin/env bash
# blueq-backend's answers, case by case: every tests/cases/backend/*.case file (a request
# written out and the status, headers and JSON expected; format in tests/cases/README.md)
# run by bq-http-cases against one backend, in file order. No manager runs: the backend
# is pointed at a loopback port nothing listens on, so the seed's endpoints and sends
# answer 503 manager_unreachable. High register/login bursts: the cases register users.
. "$(dirname "$0")/lib.sh"
SRC=${BQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CASES=("$SRC"/tests/cases/backend/*.case)
[ -f "${CASES[0]}" ] || fail "no case files in $SRC/tests/cases/backend"

# A port nothing listens on, from the kernel (bound, then released).
"$BIN/bq-fake-backend" --port 0 --events "$T/probe.log" --users "$T/none.json" >"$T/probe.out" 2>"$T/probe.err" &
probe=$!
wait_until 5 "probe port" grep -q 'listening port=' "$T/probe.out"
MPORT=$(grep -o 'port=[0-9]*' "$T/probe.out" | cut -d= -f2)
kill -TERM $probe; wait $probe || true
MURL=http://127.0.0.1:$MPORT

start_backend be --port 0 --data-dir "$T/be" --hash-cost minimum --manager-url "$MURL" \
	--register-rate 100000 --register-burst 100000 --login-rate 100000 --login-burst 100000
[ -s "$T/be/service.token" ] || fail "no service token in $T/be"

rc=0
"$BIN/bq-http-cases" --var manager_url="$MURL" --var-file service_token="$T/be/service.token" \
	"$BE_URL" "${CASES[@]}" >"$T/cases.out" 2>"$T/cases.err" || rc=$?
cat "$T/cases.out"
[ -s "$T/cases.err" ] && cat "$T/cases.err" >&2
[ $rc -eq 0 ] || fail "bq-http-cases exited with $rc (failed cases above)"
# Every case printed a line, and the summary agrees (a tool that stopped early fails).
n_ok=$(grep -c '^ok ' "$T/cases.out" || true)
grep -q "^# $n_ok cases: $n_ok ok, 0 failed\$" "$T/cases.out" || fail "summary does not match $n_ok ok lines"
[ "$n_ok" -ge 100 ] || fail "only $n_ok cases ran"

# The tool itself can fail: one wrong expectation of each kind, every one must FAIL (exit
# 1); a file that does not parse is exit 2 before any request.
cat >"$T/wrong.case" <<'CASES'
GET /health
--- expect
201
===
GET /health
--- expect
200
X-Frame-Options: SAMEORIGIN
===
GET /health
--- expect
200
!X-Frame-Options
===
GET /metrics
--- expect
200
~ no_such_metric
===
GET /health
--- expect
200
{"status": "bad"}
===
GET /health
--- expect
200
{"status": "ok", "missing": "*"}
===
GET /api/bluetooth/users?since=999999
Authorization: Bearer {{var:service_token}}
--- expect
200
{"users": ["*", "..."]}
CASES
rc=0
"$BIN/bq-http-cases" --var-file service_token="$T/be/service.token" "$BE_URL" "$T/wrong.case" \
	>"$T/wrong.out" 2>>"$T/cases.err" || rc=$?
[ $rc -eq 1 ] && grep -q '^# 7 cases: 0 ok, 7 failed$' "$T/wrong.out" ||
	fail "wrong expectations were not all caught (exit $rc): $(cat "$T/wrong.out")"
printf 'GET /health\n--- expect\n2000\n' >"$T/broken.case"
rc=0
"$BIN/bq-http-cases" "$BE_URL" "$SRC/tests/cases/backend/09-operators.case" "$T/broken.case" >"$T/broken.out" 2>"$T/broken.txt" || rc=$?
[ $rc -eq 2 ] && [ ! -s "$T/broken.out" ] && grep -q 'broken.case:3: expected a status' "$T/broken.txt" ||
	fail "a broken case file: exit $rc, $(cat "$T/broken.out" "$T/broken.txt")"
echo "bq-http-cases catches wrong expectations (exit 1) and broken files (exit 2)"

kill -TERM "$BE_PID"
wait "$BE_PID" || fail "backend exit status $? after SIGTERM"
echo "PASS: $n_ok backend cases from ${#CASES[@]} files"
