#!/usr/bin/env bash
# Bad input on the command line: exit code 2 and one line naming the problem; an address
# in use: a message naming it; no Bluetooth: the transport's clear message.
. "$(dirname "$0")/lib.sh"

# expect CODE PATTERN COMMAND...: run COMMAND, check its exit code and that stderr has a
# line matching PATTERN; for usage errors (exit 2) stderr must be exactly that one line.
expect() {
	local code=$1 pattern=$2 rc=0
	shift 2
	timeout 10 "$@" >"$T/out" 2>"$T/err" || rc=$? # bounded: a daemon that wrongly starts cannot hang the test
	[ "$rc" -eq "$code" ] || fail "'$*' exited $rc, expected $code (stderr: $(cat "$T/err"))"
	[ "$code" -ne 2 ] || [ "$(wc -l <"$T/err")" -eq 1 ] || fail "'$*' printed $(wc -l <"$T/err") lines on stderr, expected 1: $(cat "$T/err")"
	grep -Eq -e "$pattern" "$T/err" || fail "'$*' said '$(cat "$T/err")', expected /$pattern/"
}

expect 2 "--addr: invalid Bluetooth address 'D8:3A:ZZ:03:1E:77'" \
	"$BIN/blueq-node" --addr D8:3A:ZZ:03:1E:77
expect 2 "unknown option --bogus" "$BIN/blueq-node" --bogus
expect 2 "--listen: invalid address 'tcp://127.0.0.1:99999'" \
	"$BIN/blueq-node" --listen tcp://127.0.0.1:99999
expect 2 "--ttl" "$BIN/blueq-node" --ttl 0
expect 2 "--nodes: 0 is below the minimum 1" "$BIN/blueq-sim" --nodes 0
expect 2 "--topology" "$BIN/blueq-sim" --topology star-of-david
expect 2 "unknown scheme 'ftp'" "$BIN/blueq-cli" --node ftp://x users
expect 2 "" "$BIN/blueq-cli" no-such-command
expect 1 "Bluetooth is not available on this machine \(address family not supported\)" \
	"$BIN/blueq-cli" --node bt-l2cap://D8:3A:DD:03:1E:78/0x1001 users

# A TCP port and a UNIX socket path already in use are named.
"$BIN/blueq-node" --listen tcp://127.0.0.1:0 --key-file "$T/k1" --control "$T/ctl.sock" \
	>"$T/n1.out" 2>"$T/n1.err" &
first=$!
EXTRA_PIDS+=("$first")
wait_until 10 "first node listens" test -S "$T/ctl.sock"
expect 1 "unix socket $T/ctl.sock is already in use" \
	"$BIN/blueq-node" --listen tcp://127.0.0.1:0 --key-file "$T/k2" --control "$T/ctl.sock"
port=$(grep -o 'listening" on=tcp://127.0.0.1:[0-9]*' "$T/n1.err" | head -n 1 | cut -d: -f3)
[ -n "$port" ] && [ "$port" != 0 ] || fail "first node did not log its port: $(cat "$T/n1.err")"
expect 1 "tcp port $port is already in use" \
	"$BIN/blueq-node" --listen "tcp://127.0.0.1:$port" --key-file "$T/k3"
# The key file was created private.
[ "$(stat -c %a "$T/k1")" = 600 ] || fail "key file mode is $(stat -c %a "$T/k1")"
kill -TERM $first
wait $first || fail "blueq-node did not exit 0 on SIGTERM"
[ ! -e "$T/ctl.sock" ] || fail "control socket left behind after SIGTERM"
echo "bad input answered with exit 2 and one line; addresses in use named"
