#!/usr/bin/env bash
# The web UI in headless Chromium (Debian's, driven by playwright-core from
# tests/browser): two web users register in two browser contexts and chat live, a third
# broadcasts, mesh bots write in, a script in a message stays text; Odin, the backend
# and the manager go away and come back while the pages show it. The scenario is
# tests/browser/web_ui.test.mjs; this script starts the daemons it needs and gives it a
# hook to stop and start them. Screenshots: $BQ_BIN_DIR/screenshots/.
. "$(dirname "$0")/lib.sh"

SRC=${BQ_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BROWSER_DIR=$SRC/tests/browser
CHROMIUM=${BQ_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
command -v node >/dev/null || fail "node is not installed (Debian: apt-get install nodejs)"
[ -n "$CHROMIUM" ] || fail "chromium is not installed (Debian: apt-get install chromium)"
[ -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] ||
	fail "playwright-core is missing: run 'npm ci' in $BROWSER_DIR"

# Daemons the hook (re)starts are not in EXTRA_PIDS (the hook is another process): stop
# them first, then the usual cleanup, handing it the exit status (errexit off: the
# '(exit $rc)' that does so must not end the trap).
stop_hooked() {
	local pid
	[ -f "$T/hook.pids" ] || return 0
	while read -r pid; do
		kill -TERM "$pid" 2>/dev/null || true
	done <"$T/hook.pids"
	while read -r pid; do
		for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
	done <"$T/hook.pids"
}
trap 'rc=$?; set +e; stop_hooked; (exit $rc); cleanup' EXIT

start_sim --nodes 4 --topology line --bot carol@2 --bot dave@4
# Both daemons get fixed ports (from the kernel) so that they can be restarted on them.
free_port() {
	"$BIN/bq-fake-backend" --port 0 --events "$T/probe.log" --users "$T/none.json" \
		>"$T/probe.out" 2>"$T/probe.err" &
	local probe=$!
	wait_until 5 "probe port" grep -q 'listening port=' "$T/probe.out"
	grep -o 'port=[0-9]*' "$T/probe.out" | cut -d= -f2
	kill -TERM $probe
	wait $probe || true
	rm -f "$T/probe.out"
}
MPORT=$(free_port)
BPORT=$(free_port)

BE_ARGS=(--port "$BPORT" --data-dir "$T/be" --hash-cost minimum --web-dir "$SRC/web"
	--manager-url "http://127.0.0.1:$MPORT" --register-burst 1000 --login-burst 1000)
# Fast heartbeats and a short backoff cap: Odin's restart is noticed and healed in
# about a second.
MGR_ARGS=(--api-port "$MPORT" --data-dir "$T/mgr" --poll-interval 60s
	--backend-token-file "$T/be/service.token" --ping-interval 500ms --dead-after 2s
	--backoff-cap 1s unix:"$T/sim/node-1.sock" "http://127.0.0.1:$BPORT")
start_backend be "${BE_ARGS[@]}"
start_manager mgr "${MGR_ARGS[@]}"
echo "$BE_PID" >"$T/be.pid"
echo "$MGR_PID" >"$T/mgr.pid"

# The hook the scenario calls: stop-backend, start-backend, stop-manager, start-manager.
{
	declare -p T BIN BE_ARGS MGR_ARGS
	declare -f alive
	cat <<'EOF'
set -eu
stop() { # NAME: SIGTERM and wait up to 5 s for the exit
	local pid
	pid=$(cat "$T/$1.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 50); do alive "$pid" || return 0; sleep 0.1; done
	echo "$1 still running 5 s after SIGTERM" >&2
	exit 1
}
start() { # NAME PROGRAM ARGS...: start on its old port, wait for its listening line
	local name=$1 prog=$2 n pid
	shift 2
	n=$(ls "$T/$name".*.err 2>/dev/null | wc -l)
	"$BIN/$prog" "$@" >"$T/$name.$n.out" 2>"$T/$name.$n.err" &
	pid=$!
	echo "$pid" >"$T/$name.pid"
	echo "$pid" >>"$T/hook.pids"
	for _ in $(seq 1 100); do
		grep -q 'msg="listening"' "$T/$name.$n.err" 2>/dev/null && return 0
		alive "$pid" || { cat "$T/$name.$n.err" >&2; exit 1; }
		sleep 0.1
	done
	echo "$prog not listening within 10 s" >&2
	exit 1
}
case $1 in
stop-backend) stop be ;;
start-backend) start be blueq-backend "${BE_ARGS[@]}" ;;
stop-manager) stop mgr ;;
start-manager) start mgr blueq-manager "${MGR_ARGS[@]}" ;;
*) echo "unknown hook $1" >&2; exit 2 ;;
esac
EOF
} >"$T/hook.sh"

mkdir -p "$BIN/screenshots"
rm -f "$BIN"/screenshots/*.png
t0=$(date +%s%N)
BE_URL=$BE_URL SIM_CTL="$T/sim/sim.ctl" BQ_BIN_DIR="$BIN" CHROMIUM="$CHROMIUM" \
	HOOK="$T/hook.sh" SHOTS="$BIN/screenshots" \
	timeout -k 5 75 node "$BROWSER_DIR/web_ui.test.mjs" || fail "the browser scenario failed (status $?)"
echo "browser scenario: $((($(date +%s%N) - t0) / 1000000)) ms; screenshots in $BIN/screenshots"
# The README shows two of them: refresh them on request only (they are tracked files).
if [ -n "${BQ_UPDATE_SCREENSHOTS:-}" ]; then
	mkdir -p "$SRC/docs/screenshots"
	cp "$BIN/screenshots/chat.png" "$BIN/screenshots/status.png" "$SRC/docs/screenshots/"
	echo "docs/screenshots/chat.png and status.png updated"
fi
echo "PASS: web UI in Chromium: register, live chat and ticks, broadcast, mesh bot, XSS as text, banners for Odin, backend and manager"
