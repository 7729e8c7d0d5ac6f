#!/usr/bin/env bash
# A 5-node line: the directory converges on every node (all five bots known and online
# everywhere) and every node knows the whole topology.
. "$(dirname "$0")/lib.sh"

start_sim --nodes 5 --topology line --bot a@1 --bot b@2 --bot c@3 --bot d@4 --bot e@5

node_knows_all() {
	local users
	users=$(ctl "node $1 users")
	for u in a b c d e; do
		echo "$users" | grep -Eq "\"id\": ?\"$u\"" || return 1
	done
	[ "$(echo "$users" | grep -Eo '"presence": ?"online"' | wc -l)" -ge 5 ]
}
node_knows_topology() {
	local topo
	topo=$(ctl "node $1 topology")
	for mac in D8:3A:DD:03:1E:77 02:00:00:00:00:02 02:00:00:00:00:03 02:00:00:00:00:04 02:00:00:00:00:05; do
		echo "$topo" | grep -q "$mac" || return 1
	done
}
for n in 1 2 3 4 5; do
	wait_until 15 "node $n knows all five users online" node_knows_all "$n"
	wait_until 15 "node $n knows all five nodes" node_knows_topology "$n"
done
# Node 3 sits in the middle of the line: its neighbours are exactly nodes 2 and 4.
topo=$(ctl "node 1 topology")
echo "$topo" | grep -q '02:00:00:00:00:03' || fail "node 1 topology lacks node 3: $topo"
echo "directory and topology converged on all 5 nodes"
