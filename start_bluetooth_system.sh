#!/usr/bin/env bash
# Start the whole blueq system with one command (the original's name and Quick Start):
# install what is missing, build a release, start everything, wait until it is ready,
# print where it is. Ctrl-C or SIGTERM stops everything it started.
#
# Unless --odin ADDR names a real Odin, the mesh is simulated: blueq-sim runs Odin
# (D8:3A:DD:03:1E:77) and four more nodes with three bot users. Run with --help for the
# options; README.md and docs/hardware.md say more.
set -euo pipefail

caller_pwd=$PWD
cd "$(dirname "$0")"
root=$(pwd)
me=start_bluetooth_system.sh
ODIN_MAC=D8:3A:DD:03:1E:77

usage() {
	cat <<EOF
Usage: ./$me [OPTIONS]
       ./$me --status | --stop [--data-dir DIR]

Installs what is missing (scripts/install-deps.sh --runtime), builds a release into
build-release/, starts blueq-backend and blueq-manager (and blueq-sim for a simulated
mesh), waits until they are ready and prints the web address. Ctrl-C or SIGTERM stops
everything; --stop does the same from another terminal.

Options:
  --sim              simulate the mesh (the default when there is no Bluetooth adapter
                     or no --odin): Odin + 4 nodes in a line, bots bot:ann, bot:ben, bot:cat
  --odin ADDR        use a real Odin: a Bluetooth address (needs an adapter),
                     bt-rfcomm://MAC/CH, bt-l2cap://MAC/PSM, tcp://HOST:PORT or unix:/PATH
  --data-dir DIR     everything the system keeps: databases, logs, pid files (default ./data)
  --web-port N       blueq-backend's port (default 5000)
  --api-port N       blueq-manager's port (default 8001)
  --link-mode MODE   dedicated (a link to Odin per user) or shared (a few links for all);
                     default: dedicated when simulated or over tcp/unix, shared over Bluetooth
  --log-level LEVEL  error, warn, info (default) or debug, for every program
  --debug MODULES    debug lines for these modules in the backend and the manager (or all)
  --status           say what is running (exit 0: all of it, 1: some of it, 3: nothing)
  --stop             stop a running system (the one started with the same --data-dir)
  -h, --help         this help

Environment:
  BLUEQ_BIN_DIR      use the programs in this directory: no install, no build (tests)
EOF
}

die() {
	echo "$me: $*" >&2
	exit 1
}

bad_usage() {
	echo "$me: $* (see --help)" >&2
	exit 2
}

# ---- options ----

action=start
mode=auto
sim_flag=0
odin=
data_dir=data
web_port=5000
api_port=8001
link_mode=
log_level=info
debug=
need_value() {
	if [ $# -lt 2 ] || [ -z "$2" ]; then
		bad_usage "$1 needs a value"
	fi
}
while [ $# -gt 0 ]; do
	case "$1" in
	--sim) mode=sim; sim_flag=1; shift ;;
	--odin) need_value "$@"; odin=$2; mode=real; shift 2 ;;
	--data-dir) need_value "$@"; data_dir=$2; shift 2 ;;
	--web-port) need_value "$@"; web_port=$2; shift 2 ;;
	--api-port) need_value "$@"; api_port=$2; shift 2 ;;
	--link-mode) need_value "$@"; link_mode=$2; shift 2 ;;
	--log-level) need_value "$@"; log_level=$2; shift 2 ;;
	--debug) need_value "$@"; debug=$2; shift 2 ;;
	--status) action=status; shift ;;
	--stop) action=stop; shift ;;
	-h | --help) usage; exit 0 ;;
	*) bad_usage "unknown option '$1'" ;;
	esac
done
for p in "$web_port" "$api_port"; do
	if ! [[ $p =~ ^[0-9]+$ ]] || [ "$p" -lt 1 ] || [ "$p" -gt 65535 ]; then
		bad_usage "'$p' is not a port (1..65535)"
	fi
done
[ "$web_port" != "$api_port" ] || bad_usage "--web-port and --api-port must differ"
case $link_mode in "" | dedicated | shared) ;; *) bad_usage "--link-mode: dedicated or shared" ;; esac
case $log_level in error | warn | info | debug) ;; *) bad_usage "--log-level: error, warn, info or debug" ;; esac
if [ $sim_flag = 1 ] && [ -n "$odin" ]; then
	bad_usage "--sim and --odin exclude each other"
fi

# The data directory is taken relative to where the command was typed.
case $data_dir in
/*) ;;
*) data_dir=$caller_pwd/$data_dir ;;
esac
data_dir=$(realpath -m "$data_dir")
run_dir=$data_dir/run
log_dir=$data_dir/logs
sim_dir=$data_dir/sim
state_file=$run_dir/state
start_pid_file=$run_dir/start.pid
PROGS=(blueq-manager blueq-backend blueq-sim) # stop order; started in reverse

# ---- processes ----

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
	local st
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

# pid_of NAME: the pid in run/NAME.pid if that process is alive and is NAME.
pid_of() {
	local f=$run_dir/$1.pid pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
	# A recycled pid belongs to someone else: compare the program's name.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$1" || return 1
	echo "$pid"
}

# stop_pid NAME PID: SIGTERM, up to 10 s for a clean exit, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		echo "$me: $name (pid $pid) still running 10 s after SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

# ---- --status and --stop (from another terminal) ----

# starter_pid: the pid of the running starter (this script) for this data directory.
starter_pid() {
	local pid
	[ -f "$start_pid_file" ] || return 1
	pid=$(cat "$start_pid_file" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$me" || return 1
	echo "$pid"
}

# What the starter wrote once everything was up (run/state).
st_mode=
st_started=
st_web_port=$web_port
st_api_port=$api_port
st_odin=
load_state() {
	[ -f "$state_file" ] || return 1
	# shellcheck disable=SC1090
	. "$state_file"
}

http_ok() {
	curl -s -f -o /dev/null --max-time 2 "$1"
}

# readiness PORT WHY: what GET /ready on PORT says, in words.
readiness() {
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/ready" || true)
	case $code in
	200) echo "ready" ;;
	503) echo "NOT ready ($2)" ;;
	*) echo "not answering on port $1 (another network namespace?)" ;;
	esac
}

show_status() {
	local running=0 total=0 pid line
	if ! load_state; then
		echo "blueq is not running (nothing started from $data_dir)"
		return 3
	fi
	if pid=$(starter_pid); then
		echo "blueq ($st_mode), started $st_started by $me (pid $pid); data in $data_dir"
	else
		echo "blueq ($st_mode), started $st_started; $me itself is gone; data in $data_dir"
	fi
	for name in "${PROGS[@]}"; do
		[ "$name" = blueq-sim ] && [ "$st_mode" != "simulated mesh" ] && continue
		total=$((total + 1))
		if ! pid=$(pid_of "$name"); then
			printf '  %-14s not running       log %s\n' "$name" "$log_dir/$name.log"
			continue
		fi
		running=$((running + 1))
		case $name in
		blueq-backend)
			line="http://localhost:$st_web_port $(readiness "$st_web_port" "the store does not answer")" ;;
		blueq-manager)
			line="http://localhost:$st_api_port $(readiness "$st_api_port" "Odin not reached"), odin $st_odin" ;;
		blueq-sim)
			line="control $sim_dir/sim.ctl" ;;
		esac
		printf '  %-14s pid %-8s %s\n' "$name" "$pid" "$line"
	done
	if pid=$(pid_of blueq-manager); then
		local doc
		doc=$(curl -s --max-time 2 "http://127.0.0.1:$st_api_port/api/status?clients=0" || true)
		if [ -n "$doc" ]; then
			printf '  sessions: %s ready of %s; odin link %s; backend reachable %s\n' \
				"$(json_num "$doc" ready)" "$(json_num "$doc" total)" \
				"$(echo "$doc" | grep -o '"odin":{[^}]*"state":"[a-z_]*"' | sed 's/.*"state":"//; s/"$//')" \
				"$(echo "$doc" | grep -o '"reachable":[a-z]*' | head -n 1 | cut -d: -f2)"
		fi
	fi
	[ "$running" -eq "$total" ] && return 0
	[ "$running" -eq 0 ] && return 3
	return 1
}

# json_num DOC KEY: the first "KEY":NUMBER in a compact JSON document (no jq needed).
json_num() {
	echo "$1" | grep -o "\"$2\":[0-9]*" | head -n 1 | cut -d: -f2
}

stop_running() {
	local pid stopped=0
	if pid=$(starter_pid); then
		# The starter stops its programs in order and waits for them.
		echo "stopping blueq ($me pid $pid) ..."
		kill -TERM "$pid"
		for _ in $(seq 1 300); do
			alive "$pid" || break
			sleep 0.1
		done
		alive "$pid" && echo "$me: pid $pid did not stop within 30 s" >&2
		stopped=1
	fi
	# Programs whose starter was killed outright.
	for name in "${PROGS[@]}"; do
		if pid=$(pid_of "$name"); then
			echo "stopping $name (pid $pid)"
			stop_pid "$name" "$pid"
			stopped=1
		fi
		rm -f "$run_dir/$name.pid"
	done
	rm -f "$state_file" "$start_pid_file"
	if [ $stopped = 1 ]; then
		echo "blueq stopped"
	else
		echo "blueq is not running (nothing started from $data_dir)"
	fi
}

case $action in
status)
	rc=0
	show_status || rc=$?
	exit $rc ;;
stop)
	stop_running
	exit 0 ;;
esac

# ---- start: what kind of mesh ----

bt_adapters() {
	local a out=
	for a in /sys/class/bluetooth/hci*; do
		[ -e "$a" ] && out+="${a##*/} "
	done
	echo "${out% }"
}

# Says why Bluetooth cannot be used, or nothing when an adapter is there and unblocked.
bt_problem() {
	local r
	if [ -z "$(bt_adapters)" ]; then
		echo "no Bluetooth adapter on this machine (/sys/class/bluetooth has no hci device)"
		return
	fi
	for r in /sys/class/rfkill/rfkill*; do
		[ "$(cat "$r/type" 2>/dev/null)" = bluetooth ] || continue
		if [ "$(cat "$r/hard" 2>/dev/null)" = 1 ]; then
			echo "the Bluetooth adapter is switched off by a hardware switch (rfkill hard block)"
			return
		fi
		if [ "$(cat "$r/soft" 2>/dev/null)" = 1 ]; then
			echo "Bluetooth is blocked (rfkill soft block): run 'rfkill unblock bluetooth'"
			return
		fi
	done
}

odin_is_bluetooth() {
	case $1 in
	tcp://* | unix:*) return 1 ;;
	*) return 0 ;;
	esac
}

if [ "$mode" = auto ]; then
	mode=sim
	if [ -n "$(bt_adapters)" ]; then
		echo "note: a Bluetooth adapter is present ($(bt_adapters)); without --odin the mesh is"
		echo "      simulated. For your Odin: ./$me --odin YOUR_ODIN_MAC (docs/hardware.md)"
	fi
fi
if [ "$mode" = real ] && odin_is_bluetooth "$odin"; then
	why=$(bt_problem)
	[ -z "$why" ] || die "--odin $odin: $why. Use --sim for a simulated mesh, or see docs/hardware.md"
fi
if [ -z "$link_mode" ]; then
	link_mode=dedicated
	# One RFCOMM connection per channel between two devices, a handful of ACL links per
	# adapter: over the radio all users share few links (docs/hardware.md).
	[ "$mode" = real ] && odin_is_bluetooth "$odin" && link_mode=shared
fi
manager_link_args=(--link-mode "$link_mode")
if [ "$link_mode" = shared ] && [ "$mode" = real ]; then
	case $odin in
	bt-l2cap://*) ;;
	tcp://* | unix:*) ;;
	*) manager_link_args+=(--shared-links 1) ;; # RFCOMM
	esac
fi

# ---- start: one starter per data directory, ports free ----

mkdir -p "$run_dir" "$log_dir"
exec 9>"$run_dir/start.lock"
if ! flock -n 9; then
	pid=$(cat "$start_pid_file" 2>/dev/null || echo "?")
	die "blueq is already running from $data_dir (pid $pid): ./$me --status, or --stop first"
fi
for name in "${PROGS[@]}"; do
	if pid=$(pid_of "$name"); then
		die "$name from an earlier start is still running (pid $pid): ./$me --stop first"
	fi
done

# port_holder PORT: who listens on tcp PORT where 127.0.0.1:PORT would collide; fails if
# nobody does.
port_holder() {
	local port=$1 line who
	if command -v ss >/dev/null 2>&1; then
		line=$(ss -Hltnp 2>/dev/null | awk -v p="$port" '{
			n = split($4, a, ":"); host = substr($4, 1, length($4) - length(a[n]) - 1)
			if (a[n] == p && (host == "127.0.0.1" || host == "0.0.0.0" || host == "*" ||
			    host == "[::]" || host == "[::ffff:127.0.0.1]")) { print; exit }
		}')
		[ -n "$line" ] || return 1
		who=$(echo "$line" | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -n 1 |
			sed 's/users:(("\([^"]*\)",pid=\([0-9]*\)/\1 (pid \2)/')
		echo "${who:-another program}"
		return 0
	fi
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "another program"
		return 0
	fi
	return 1
}

check_ports() {
	local who
	if who=$(port_holder "$web_port"); then
		die "tcp port $web_port is already in use by $who; blueq-backend needs it. Stop that program or use --web-port N"
	fi
	if who=$(port_holder "$api_port"); then
		die "tcp port $api_port is already in use by $who; blueq-manager needs it. Stop that program or use --api-port N"
	fi
}
check_ports

# ---- start: install and build ----

if [ -n "${BLUEQ_BIN_DIR:-}" ]; then
	bin=$(realpath -m "$BLUEQ_BIN_DIR")
else
	./scripts/install-deps.sh --runtime
	bin=$root/build-release
	echo "building a release in $bin (build log: $log_dir/build.log) ..."
	if ! { cmake -S . -B "$bin" -DCMAKE_BUILD_TYPE=Release -DBQ_WERROR=OFF &&
		cmake --build "$bin" -j "$(nproc 2>/dev/null || echo 2)" \
			--target blueq-node blueq-sim blueq-cli blueq-manager blueq-backend; } \
		>"$log_dir/build.log" 2>&1; then
		tail -n 20 "$log_dir/build.log" >&2
		die "the build failed; the whole log is $log_dir/build.log"
	fi
fi
for p in blueq-backend blueq-manager blueq-cli $([ "$mode" = sim ] && echo blueq-sim blueq-node); do
	[ -x "$bin/$p" ] || die "$bin/$p is missing"
done
check_ports # the build took a while
if [ "$mode" = real ] && ! out=$("$bin/blueq-manager" "$odin" --check-config 2>&1); then
	die "--odin: ${out#blueq-manager: }"
fi

# ---- start: the programs ----

if [ "$mode" = sim ]; then
	export BLUEQ_ADDR_MAP=$data_dir/sim-addrmap
	odin=$ODIN_MAC
else
	# Never a stale simulator's map: the bare MAC must mean the radio.
	export BLUEQ_ADDR_MAP=$run_dir/no-addrmap
	rm -f "$BLUEQ_ADDR_MAP"
fi
declare -A PID=()
stopping=0

stop_all() {
	local name pid rc
	[ $stopping = 0 ] || return 0
	stopping=1
	trap '' INT TERM HUP
	for name in "${PROGS[@]}"; do
		pid=${PID[$name]:-}
		[ -n "$pid" ] || continue
		stop_pid "$name" "$pid"
		rc=0
		wait "$pid" 2>/dev/null || rc=$?
		[ $rc -eq 0 ] || echo "$me: $name exited with status $rc (log: $log_dir/$name.log)" >&2
		rm -f "$run_dir/$name.pid"
	done
	rm -f "$state_file" "$start_pid_file"
}
on_signal() {
	echo
	echo "stopping blueq ..."
	stop_all
	echo "blueq stopped"
	exit 0
}
trap on_signal INT TERM HUP
trap stop_all EXIT

# launch NAME ARGS...: start bin/NAME in a session of its own (a Ctrl-C in this terminal
# reaches only this script, which then stops the programs in order), log to logs/NAME.log.
launch() {
	local name=$1 log=$log_dir/$1.log
	shift
	[ -f "$log" ] && mv -f "$log" "$log.1"
	setsid "$bin/$name" "$@" >"$log" 2>&1 9>&- </dev/null &
	PID[$name]=$!
	echo "${PID[$name]}" >"$run_dir/$name.pid"
}

# failed_start NAME WHAT: the program is gone or not ready in time; show why, stop.
failed_start() {
	echo "$me: $1 $2; the last lines of $log_dir/$1.log:" >&2
	tail -n 8 "$log_dir/$1.log" | sed 's/^/    /' >&2
	echo "    (troubleshooting: README.md)" >&2
	exit 1
}

# wait_ready NAME SECONDS TEST...: poll TEST every 100 ms while NAME runs.
wait_ready() {
	local name=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		"$@" && return 0
		alive "${PID[$name]}" || failed_start "$name" "stopped during start-up"
		sleep 0.1
	done
	return 1
}

echo "$$" >"$start_pid_file"
started=$(date '+%Y-%m-%d %H:%M:%S')
log_args=(--log-level "$log_level")
debug_args=()
[ -z "$debug" ] || debug_args=(--debug "$debug")
bots=(bot:ann@2 bot:ben@4 bot:cat@5)

if [ "$mode" = sim ]; then
	rm -f "$BLUEQ_ADDR_MAP"
	bot_args=()
	for b in "${bots[@]}"; do bot_args+=(--bot "$b"); done
	launch blueq-sim --nodes 5 --topology line --dir "$sim_dir" --addr-map "$BLUEQ_ADDR_MAP" \
		"${bot_args[@]}" --bot-echo --log-level "$log_level" --node-log-level "$log_level"
	wait_ready blueq-sim 30 grep -q 'blueq-sim: ready' "$log_dir/blueq-sim.log" ||
		failed_start blueq-sim "was not ready within 30 s"
fi

# The backend before the manager: the manager's first poll then finds it, and every
# registration reaches the manager at once.
launch blueq-backend --port "$web_port" --manager-url "http://localhost:$api_port" \
	--data-dir "$data_dir" "${log_args[@]}" "${debug_args[@]}"
wait_ready blueq-backend 30 http_ok "http://127.0.0.1:$web_port/ready" ||
	failed_start blueq-backend "did not answer /ready within 30 s"

if [ "$mode" = real ] && odin_is_bluetooth "$odin"; then
	# Before the manager holds the link: over RFCOMM only one connection per channel.
	echo "asking Odin ($odin) for its users ..."
	if out=$("$bin/blueq-cli" --node "$odin" --user blueq-start-probe --timeout 10s users 2>&1); then
		echo "Odin answered: $(echo "$out" | grep -c . || true) lines of users and nodes"
	else
		echo "warning: Odin did not answer: $(echo "$out" | tail -n 1)" >&2
		echo "         the manager keeps trying; see 'Wrong MAC' and 'Bluetooth' in README.md" >&2
	fi
fi

# The manager with the original's command line (ODIN BACKEND_URL API_PORT); the token
# the backend made lets it push events to the backend and poll its users.
manager_cmd=("$odin" "http://localhost:$web_port" "$api_port")
launch blueq-manager "${manager_cmd[@]}" --data-dir "$data_dir" \
	--backend-token-file "$data_dir/service.token" "${manager_link_args[@]}" \
	"${log_args[@]}" "${debug_args[@]}"
wait_ready blueq-manager 30 http_ok "http://127.0.0.1:$api_port/health" ||
	failed_start blueq-manager "did not answer /health within 30 s"
# Ready means: a link to Odin is up, or no user is connected yet (nothing to judge by).
if ! wait_ready blueq-manager 15 http_ok "http://127.0.0.1:$api_port/ready"; then
	echo "warning: blueq-manager has not reached Odin yet; it keeps trying (see $log_dir/blueq-manager.log)" >&2
fi

if [ "$mode" = sim ]; then
	st_mode="simulated mesh"
else
	st_mode="Odin at $odin"
fi
{
	printf 'st_mode=%q\n' "$st_mode"
	printf 'st_started=%q\n' "$started"
	printf 'st_web_port=%q\nst_api_port=%q\nst_odin=%q\n' "$web_port" "$api_port" "$odin"
} >"$state_file"

# ---- ready: say where everything is ----

echo
echo "blueq is running ($st_mode). Open http://localhost:$web_port in a browser."
echo
echo "Processes:"
if [ "$mode" = sim ]; then
	printf '  %-14s pid %-8s Odin %s + 4 nodes in a line; bots bot:ann, bot:ben, bot:cat\n' \
		blueq-sim "${PID[blueq-sim]}" "$ODIN_MAC"
fi
printf '  %-14s pid %-8s http://localhost:%s  web UI and API; data %s\n' \
	blueq-backend "${PID[blueq-backend]}" "$web_port" "$data_dir"
printf '  %-14s pid %-8s http://localhost:%s  blueq-manager %s\n' \
	blueq-manager "${PID[blueq-manager]}" "$api_port" "${manager_cmd[*]}"
echo "Logs:"
echo "  $log_dir/blueq-backend.log, blueq-manager.log$([ "$mode" = sim ] && echo ", blueq-sim.log")"
if [ "$mode" = sim ]; then
	echo "  mesh nodes and bots: $sim_dir/node-*.log, $sim_dir/bots/*.log"
fi
dest=broadcast
[ "$mode" = sim ] && dest=bot:ann
cat <<EOF

Try, in another terminal (the original's commands):
  curl http://localhost:$api_port/api/status
  curl -X POST http://localhost:$api_port/api/connect \\
    -H "Content-Type: application/json" \\
    -d '{"user_id": "test123", "user_name": "TestUser"}'
  curl -X POST http://localhost:$api_port/api/send \\
    -H "Content-Type: application/json" \\
    -d '{"user_id": "test123", "destination": "broadcast", "message": "Hello World"}'
  curl -X POST http://localhost:$api_port/api/send \\
    -H "Content-Type: application/json" \\
    -d '{"user_id": "test123", "destination": "$dest", "message": "Hello"}'
  curl http://localhost:$api_port/api/messages/MESSAGE_ID    # queued, sent, delivered
Register a web user; the manager puts it on the mesh at once:
  curl -X POST http://localhost:$web_port/api/register \\
    -H "Content-Type: application/json" \\
    -d '{"username": "dana", "password": "a long password"}'
  curl http://localhost:$api_port/api/clients/dana           # "state":"ready"

./$me --status shows what runs; Ctrl-C here (or ./$me --stop) stops it all.
EOF
if [ -n "${BLUEQ_BIN_DIR:-}" ] || [ "$bin" != "$root/build-release" ]; then
	echo "(programs from $bin)"
fi

# Stay in the foreground: a program that dies takes the rest down with it, so nothing
# half-running is left behind.
while :; do
	wait -n "${PID[@]}" 2>/dev/null || true
	for name in "${PROGS[@]}"; do
		pid=${PID[$name]:-}
		[ -n "$pid" ] || continue
		if ! alive "$pid"; then
			rc=0
			wait "$pid" 2>/dev/null || rc=$?
			unset "PID[$name]"
			rm -f "$run_dir/$name.pid"
			echo "$me: $name exited unexpectedly (status $rc); the last lines of its log:" >&2
			tail -n 8 "$log_dir/$name.log" | sed 's/^/    /' >&2
			echo "stopping the rest ..." >&2
			stop_all
			exit 1
		fi
	done
done
