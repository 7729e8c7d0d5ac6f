#!/usr/bin/env bash
# 1,000 users in each link mode reach ready; then Odin is killed: every session leaves
# ready, and after Odin restarts all are ready again, with the busiest second of dials
# within the configured connect rate + burst (a restarted Odin is not stormed).
. "$(dirname "$0")/lib.sh"

USERS=${BQ_MANY_USERS:-1000}
RATE=500
BURST=50
start_sim --nodes 3 --bot alice@3

# One curl process for all connects: a config file with one request per user.
conf=$T/connect.curl
connect_all() {
	: >"$conf"
	for i in $(seq 1 "$USERS"); do
		[ "$i" -eq 1 ] || echo next >>"$conf"
		printf 'url = "%s/api/connect"\ndata = "{\\"user_id\\":\\"u%d\\",\\"user_name\\":\\"User %d\\"}"\noutput = "/dev/null"\n' \
			"$MGR_URL" "$i" "$i" >>"$conf"
	done
	curl -sS --no-progress-meter -Z --parallel-max 32 -K "$conf" >/dev/null
}

ready_is() { [ "$(mgr_stat ready)" = "$1" ]; }
not_ready() { [ "$(mgr_stat ready)" = 0 ]; }

for mode in dedicated shared; do
	start_manager "mgr-$mode" --api-port 0 --backend-url "" --data-dir "$T/data-$mode" \
		--link-mode "$mode" --connect-rate $RATE --connect-burst $BURST \
		--ping-interval 500ms --dead-after 2s --backoff-cap 1s unix:"$T/sim/node-1.sock"
	t0=$(date +%s%N)
	connect_all
	wait_until 60 "$USERS $mode sessions ready" ready_is "$USERS"
	t1=$(date +%s%N)
	echo "$mode: $USERS sessions ready in $(((t1 - t0) / 1000000)) ms"
	[ "$(mgr_stat total)" = "$USERS" ] || fail "$mode: total is not $USERS"

	ctl "kill 1" | grep -q '^ok' || fail "kill refused"
	wait_until 20 "$mode: every session leaves ready when Odin dies" not_ready
	ctl "start 1" | grep -q '^ok' || fail "start refused"
	t0=$(date +%s%N)
	wait_until 60 "$mode: all $USERS ready again after Odin restarts" ready_is "$USERS"
	t1=$(date +%s%N)
	peak=$(mgr_stat peak_connect_rate)
	dials=$(mgr_stat dials)
	echo "$mode: ready again $(((t1 - t0) / 1000000)) ms after the restart; dials=$dials peak=$peak/s (bound $RATE/s + $BURST)"
	[ "$peak" -ge 1 ] || fail "$mode: no dial was measured"
	# The gate reserves evenly spaced slots; a loop that falls behind (a loaded CI machine,
	# the sanitizer build) can only make dials late, which may bunch a few into one
	# second: 10 % on top of rate + burst, far below an unbounded storm (all at once).
	[ "$peak" -le $(((RATE + BURST) * 11 / 10)) ] || fail "$mode: peak connect rate $peak/s above the bound"
	if [ "$mode" = dedicated ]; then
		# Every user has its own link: the restart made one reconnect each.
		[ "$dials" -ge $((2 * USERS)) ] || fail "dedicated: only $dials dials for $USERS users"
	else
		[ "$dials" -le 64 ] || fail "shared: $dials dials for a pool of 4 links"
	fi
	stop_manager
done
echo "PASS: $USERS users per mode ready; Odin restart recovered within the connect bound"
