# Shared helpers for the integration tests: start the simulator in a private temp
# directory, talk to its control socket, wait for conditions with a deadline, and
# clean up every process the test started, whatever happens.
set -euo pipefail

BIN=${BQ_BIN_DIR:?BQ_BIN_DIR must point at the build directory}
T=$(mktemp -d "${TMPDIR:-/tmp}/bq-it.XXXXXX")
SIM_PID=
EXTRA_PIDS=() # other daemons a test starts; cleanup stops them
export BLUEQ_ADDR_MAP=$T/addrmap

# alive PID: the process exists and is not a zombie waiting for us to reap it.
alive() {
	local st
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

cleanup() {
	local rc=$?
	for pid in "${EXTRA_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	# Wait (bounded) for them to exit: a sanitizer writes its leak report at exit.
	for pid in "${EXTRA_PIDS[@]}"; do
		for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
	done
	if [ -n "$SIM_PID" ] && alive "$SIM_PID"; then
		kill -TERM "$SIM_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do alive "$SIM_PID" || break; sleep 0.1; done
		kill -KILL "$SIM_PID" 2>/dev/null || true
	fi
	# In the sanitizer build every daemon reports through its log: any report fails
	# the test even when the scenario itself passed.
	if [ $rc -eq 0 ] && grep -l -E 'AddressSanitizer|LeakSanitizer|runtime error:' \
		"$T"/*.err "$T"/sim/node-*.log 2>/dev/null; then
		echo "FAIL: sanitizer report in the logs above" >&2
		rc=1
	fi
	if [ $rc -ne 0 ]; then
		echo "--- test failed; logs from $T ---"
		for f in "$T"/*.err "$T"/sim/node-*.log "$T"/sim/bots/*.log; do
			[ -f "$f" ] || continue
			echo "--- $f (last 15 lines)"; tail -n 15 "$f"
		done
	fi
	[ -n "${BQ_KEEP:-}" ] || rm -rf "$T"
	exit $rc
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# start_sim ARGS...: start blueq-sim with fast timers, wait for its ready line.
start_sim() {
	"$BIN/blueq-sim" --dir "$T/sim" --addr-map "$BLUEQ_ADDR_MAP" \
		--announce-interval 1s --expiry 4s "$@" >"$T/sim.out" 2>"$T/sim.err" &
	SIM_PID=$!
	for _ in $(seq 1 150); do
		grep -q 'ready' "$T/sim.out" 2>/dev/null && return 0
		kill -0 "$SIM_PID" 2>/dev/null || fail "blueq-sim exited during start-up"
		sleep 0.1
	done
	fail "blueq-sim not ready within 15 s"
}

# ctl LINE: one command to the simulator's control socket; prints the reply.
ctl() {
	"$BIN/blueq-cli" ctl "$T/sim/sim.ctl" "$1"
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll every 100 ms until COMMAND succeeds.
wait_until() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	fail "timed out after ${secs}s waiting for: $what"
}

bot_log() {
	echo "$T/sim/bots/$1.log"
}

# count_recv BOT MSG_ID: how many times BOT logged receiving MSG_ID.
count_recv() {
	local f
	f=$(bot_log "$1")
	[ -f "$f" ] || { echo 0; return; }
	grep -c "^recv msg_id=$2 " "$f" || true
}

# msg_id_of REPLY: the msg_id=HEX field of a control reply.
msg_id_of() {
	echo "$1" | grep -o 'msg_id=[0-9a-f]*' | head -n 1 | cut -d= -f2
}

# start_http_daemon PROGRAM NAME ARGS...: start PROGRAM (logs $T/NAME.err) and wait until
# it logs msg="listening" on=http://ADDR:PORT; sets DAEMON_PID and DAEMON_URL
# (http://127.0.0.1:PORT). The manager and the backend both log that line.
start_http_daemon() {
	local prog=$1 name=$2 port
	shift 2
	"$BIN/$prog" "$@" >"$T/$name.out" 2>"$T/$name.err" &
	DAEMON_PID=$!
	EXTRA_PIDS+=("$DAEMON_PID")
	for _ in $(seq 1 100); do
		port=$(grep -o 'msg="listening" on=http://[0-9.]*:[0-9]*' "$T/$name.err" 2>/dev/null |
			head -n 1 | sed 's/.*://') || true
		if [ -n "$port" ]; then
			DAEMON_URL=http://127.0.0.1:$port
			return 0
		fi
		alive "$DAEMON_PID" || { cat "$T/$name.err" >&2; fail "$prog exited during start-up"; }
		sleep 0.1
	done
	fail "$prog not listening within 10 s"
}

# start_manager NAME ARGS...: blueq-manager; sets MGR_PID and MGR_URL.
start_manager() {
	start_http_daemon blueq-manager "$@"
	MGR_PID=$DAEMON_PID
	MGR_URL=$DAEMON_URL
}

# stop_manager: SIGTERM and wait (bounded) for a clean exit; fails on a bad status.
stop_manager() {
	local rc=0
	kill -TERM "$MGR_PID" 2>/dev/null || return 0
	for _ in $(seq 1 50); do alive "$MGR_PID" || break; sleep 0.1; done
	if alive "$MGR_PID"; then
		fail "blueq-manager still running 5 s after SIGTERM"
	fi
	wait "$MGR_PID" || rc=$?
	[ $rc -eq 0 ] || fail "blueq-manager exited with status $rc after SIGTERM"
}

# mgr_stat KEY: one number from the manager's status (the stats block: ready, total,
# peak_connect_rate, ...), read with grep from the compact JSON (no jq on a bare machine).
mgr_stat() {
	curl -sf "$MGR_URL/api/status?clients=0" | grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2
}

# start_backend NAME ARGS...: blueq-backend; sets BE_PID and BE_URL.
start_backend() {
	start_http_daemon blueq-backend "$@"
	BE_PID=$DAEMON_PID
	BE_URL=$DAEMON_URL
}
