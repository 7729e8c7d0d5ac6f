#!/usr/bin/env bash
# Start the blueq system: installs what is missing, builds a release, then starts
# what exists so far. With no Bluetooth adapter (or --sim) the mesh is simulated:
# blueq-sim runs Odin (D8:3A:DD:03:1E:77) and four more nodes, with three bot users.
#
#   ./start_bluetooth_system.sh [--sim] [--data-dir DIR] [--stop] [--status]
#
# Built so far: blueq-node, blueq-sim, blueq-cli. Not built yet: blueq-manager (port 8001)
# and blueq-backend (port 5000) with the web UI; this script says so when it starts.
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
export BLUEQ_ADDR_MAP=$data_dir/sim-addrmap

running_pid() {
	[ -f "$pid_file" ] || return 1
	local pid
	pid=$(cat "$pid_file")
	kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case $action in
stop)
	if pid=$(running_pid); then
		kill -TERM "$pid"; echo "stopping blueq-sim (pid $pid)"
	else
		echo "blueq is not running"
	fi
	exit 0 ;;
status)
	if pid=$(running_pid); then
		echo "blueq-sim running (pid $pid), control socket $sim_dir/sim.ctl"
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
cmake --build build-release -j "$(nproc 2>/dev/null || echo 2)" --target blueq-node blueq-sim blueq-cli >/dev/null

mkdir -p "$data_dir"
if [ -d /sys/class/bluetooth ] && ls /sys/class/bluetooth 2>/dev/null | grep -q hci; then
	echo "note: a Bluetooth adapter is present, but running against real radios needs"
	echo "      blueq-manager, which is not built yet; starting the simulated mesh instead."
fi

"$root/build-release/blueq-sim" --nodes 5 --topology line --dir "$sim_dir" \
	--addr-map "$BLUEQ_ADDR_MAP" --bot alice@2 --bot bob@4 --bot carol@5 --bot-echo \
	> "$data_dir/blueq-sim.out" 2> "$data_dir/blueq-sim.log" &
sim_pid=$!
echo "$sim_pid" > "$pid_file"
stop_all() {
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

cat <<MSG
blueq is running (simulated mesh).
  mesh:      blueq-sim pid $sim_pid: Odin D8:3A:DD:03:1E:77 + 4 nodes in a line, bots alice, bob, carol
  logs:      $data_dir/blueq-sim.log, $sim_dir/node-*.log, $sim_dir/bots/*.log
  addr map:  export BLUEQ_ADDR_MAP=$BLUEQ_ADDR_MAP
Try, in another terminal:
  export BLUEQ_ADDR_MAP=$BLUEQ_ADDR_MAP
  build-release/blueq-cli users                      # everyone on the mesh, via Odin
  build-release/blueq-cli --user me send carol hello # direct message, waits for the receipt
  build-release/blueq-cli --user me chat             # interactive
Not there yet: blueq-manager (port 8001) and blueq-backend (port 5000, web UI).
Press Ctrl-C to stop.
MSG
wait "$sim_pid"
