#!/usr/bin/env bash
# Start the blueq system: installs what is missing, builds a release, then starts
# what exists so far. With no Bluetooth adapter (or --sim) the mesh is simulated:
# blueq-sim runs Odin (D8:3A:DD:03:1E:77) and four more nodes, with three bot users.
#
#   ./start_bluetooth_system.sh [--sim] [--data-dir DIR] [--stop] [--status]
#
# Then it starts blueq-backend (port 5000) and blueq-manager with the original's command
# line (D8:3A:DD:03:1E:77 http://localhost:5000 8001). Not built yet: the web UI; this
# script says so when it starts.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
data_dir=$root/data
action=start
while [ $# -gt 0 ]; do
	case "$1" in
	--sim) shift ;;
	--data-dir) [ $# -ge 2 ] || { echo "start_bluetooth_system.sh: --data-dir needs a directory" >&2; exit 2; }
		data_dir=$2; shift 2 ;;
	--stop) action=stop; shift ;;
	--status) action=status; shift ;;
	-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "start_bluetooth_system.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
done
sim_dir=$data_dir/sim
pid_file=$data_dir/blueq-sim.pid
mgr_pid_file=$data_dir/blueq-manager.pid
be_pid_file=$data_dir/blueq-backend.pid
API_PORT=8001
WEB_PORT=5000
export BLUEQ_ADDR_MAP=$data_dir/sim-addrmap

running_pid() {
	local f=${1:-$pid_file} pid
	[ -f "$f" ] || return 1
	pid=$(cat "$f")
	kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case $action in
stop)
	stopped=0
	if pid=$(running_pid "$mgr_pid_file"); then
		kill -TERM "$pid"; echo "stopping blueq-manager (pid $pid)"; stopped=1
	fi
	if pid=$(running_pid "$be_pid_file"); then
		kill -TERM "$pid"; echo "stopping blueq-backend (pid $pid)"; stopped=1
	fi
	if pid=$(running_pid); then
		kill -TERM "$pid"; echo "stopping blueq-sim (pid $pid)"; stopped=1
	fi
	[ $stopped = 1 ] || echo "blueq is not running"
	exit 0 ;;
status)
	if pid=$(running_pid); then
		echo "blueq-sim running (pid $pid), control socket $sim_dir/sim.ctl"
		if bpid=$(running_pid "$be_pid_file"); then
			echo "blueq-backend running (pid $bpid), http://127.0.0.1:$WEB_PORT"
		fi
		if mpid=$(running_pid "$mgr_pid_file"); then
			echo "blueq-manager running (pid $mpid), http://127.0.0.1:$API_PORT"
			curl -s "http://127.0.0.1:$API_PORT/api/status?clients=0" || true
			echo
		fi
		"$root/build-release/blueq-cli" ctl "$sim_dir/sim.ctl" status || true
	else
		echo "blueq is not running"; exit 1
	fi
	exit 0 ;;
esac

if pid=$(running_pid); then
	echo "start_bluetooth_system.sh: blueq is already running (pid $pid); use --stop first" >&2
	exit 1
fi

./scripts/install-deps.sh --runtime
echo "building (release) ..."
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DBQ_WERROR=OFF >/dev/null
cmake --build build-release -j "$(nproc 2>/dev/null || echo 2)" \
	--target blueq-node blueq-sim blueq-cli blueq-manager blueq-backend >/dev/null

for port in $WEB_PORT $API_PORT; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		who=blueq-backend
		[ "$port" = "$API_PORT" ] && who=blueq-manager
		echo "start_bluetooth_system.sh: tcp port $port is already in use ($who needs it)" >&2
		exit 1
	fi
done

mkdir -p "$data_dir"
if [ -d /sys/class/bluetooth ] && ls /sys/class/bluetooth 2>/dev/null | grep -q hci; then
	echo "note: a Bluetooth adapter is present; this script still runs the simulated mesh"
	echo "      (real-radio start-up comes with the deployment work). For real radios run"
	echo "      blueq-manager YOUR_ODIN_MAC http://localhost:5000 8001 yourself."
fi

"$root/build-release/blueq-sim" --nodes 5 --topology line --dir "$sim_dir" \
	--addr-map "$BLUEQ_ADDR_MAP" --bot alice@2 --bot bob@4 --bot carol@5 --bot-echo \
	> "$data_dir/blueq-sim.out" 2> "$data_dir/blueq-sim.log" &
sim_pid=$!
echo "$sim_pid" > "$pid_file"
mgr_pid=
be_pid=
stop_all() {
	if [ -n "$mgr_pid" ]; then
		kill -TERM "$mgr_pid" 2>/dev/null || true
		wait "$mgr_pid" 2>/dev/null || true
		rm -f "$mgr_pid_file"
	fi
	if [ -n "$be_pid" ]; then
		kill -TERM "$be_pid" 2>/dev/null || true
		wait "$be_pid" 2>/dev/null || true
		rm -f "$be_pid_file"
	fi
	kill -TERM "$sim_pid" 2>/dev/null || true
	wait "$sim_pid" 2>/dev/null || true
	rm -f "$pid_file"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

for _ in $(seq 1 100); do
	grep -q 'ready' "$data_dir/blueq-sim.out" 2>/dev/null && break
	kill -0 "$sim_pid" 2>/dev/null || { echo "blueq-sim failed to start; see $data_dir/blueq-sim.log" >&2; tail -n 5 "$data_dir/blueq-sim.log" >&2; exit 1; }
	sleep 0.1
done

# The web backend first: registrations then reach the manager at once.
"$root/build-release/blueq-backend" --port $WEB_PORT --data-dir "$data_dir" \
	> "$data_dir/blueq-backend.out" 2> "$data_dir/blueq-backend.log" &
be_pid=$!
echo "$be_pid" > "$be_pid_file"
for _ in $(seq 1 100); do
	grep -q 'msg="listening"' "$data_dir/blueq-backend.log" 2>/dev/null && break
	kill -0 "$be_pid" 2>/dev/null || { echo "blueq-backend failed to start; see $data_dir/blueq-backend.log" >&2; tail -n 5 "$data_dir/blueq-backend.log" >&2; exit 1; }
	sleep 0.1
done

# The client manager, with the original's command line: the address map leads the
# Bluetooth address to the simulated Odin; the backend's service token lets it push
# events to the backend and poll its users.
"$root/build-release/blueq-manager" D8:3A:DD:03:1E:77 http://localhost:5000 $API_PORT \
	--data-dir "$data_dir" --backend-token-file "$data_dir/service.token" \
	> "$data_dir/blueq-manager.out" 2> "$data_dir/blueq-manager.log" &
mgr_pid=$!
echo "$mgr_pid" > "$mgr_pid_file"
for _ in $(seq 1 100); do
	grep -q 'msg="listening"' "$data_dir/blueq-manager.log" 2>/dev/null && break
	kill -0 "$mgr_pid" 2>/dev/null || { echo "blueq-manager failed to start; see $data_dir/blueq-manager.log" >&2; tail -n 5 "$data_dir/blueq-manager.log" >&2; exit 1; }
	sleep 0.1
done

cat <<MSG
blueq is running (simulated mesh).
  mesh:      blueq-sim pid $sim_pid: Odin D8:3A:DD:03:1E:77 + 4 nodes in a line, bots alice, bob, carol
  backend:   blueq-backend pid $be_pid: http://127.0.0.1:$WEB_PORT (API only so far; the web UI is not built yet)
  manager:   blueq-manager pid $mgr_pid: http://127.0.0.1:$API_PORT (D8:3A:DD:03:1E:77 http://localhost:5000 $API_PORT)
  logs:      $data_dir/blueq-backend.log, $data_dir/blueq-manager.log, $data_dir/blueq-sim.log, $sim_dir/node-*.log, $sim_dir/bots/*.log
  addr map:  export BLUEQ_ADDR_MAP=$BLUEQ_ADDR_MAP
Try, in another terminal (the original's commands):
  curl http://localhost:8001/api/status
  curl -X POST http://localhost:8001/api/connect -H "Content-Type: application/json" \\
    -d '{"user_id": "test123", "user_name": "TestUser"}'
  curl -X POST http://localhost:8001/api/send -H "Content-Type: application/json" \\
    -d '{"user_id": "test123", "destination": "carol", "message": "Hello carol"}'
register a web user; the manager connects it to the mesh at once:
  curl -X POST http://localhost:5000/api/register -d '{"username": "dana", "password": "a long password"}'
  curl http://localhost:8001/api/clients/dana
or the terminal client:
  export BLUEQ_ADDR_MAP=$BLUEQ_ADDR_MAP
  build-release/blueq-cli users                      # everyone on the mesh, via Odin
  build-release/blueq-cli --user me chat             # interactive
Not there yet: the web UI (the backend's API works; see docs/backend.md).
Press Ctrl-C to stop.
MSG
wait -n "$sim_pid" "$be_pid" "$mgr_pid" || true
