#!/usr/bin/env bash
# Install what blueq needs to build, test and run, and only what is missing.
# Idempotent; works as root on a fresh Debian 12 (debootstrap minbase).
#   scripts/install-deps.sh           build + test dependencies (chromium, Node and
#                                     tests/browser's npm packages for the browser test)
#   scripts/install-deps.sh --runtime only what running the system needs
#   scripts/install-deps.sh --fuzz    build + test dependencies and clang's libFuzzer
#   scripts/install-deps.sh --bench   build + test dependencies and the Flask baseline of
#                                     bench/baseline (python3-flask under gunicorn) and wrk; only
#                                     bench/run.sh needs it, never the tests
set -euo pipefail

build_pkgs=(
	gcc libc6-dev make cmake pkg-config
	libsodium-dev libbluetooth-dev check
	libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsqlite3-dev
	curl ca-certificates procps iproute2 psmisc
	chromium
)
runtime_pkgs=(
	gcc libc6-dev make cmake pkg-config
	libsodium-dev libbluetooth-dev check
	libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsqlite3-dev
	curl ca-certificates procps iproute2
)

pkgs=("${build_pkgs[@]}")
# The browser test drives chromium from Node (playwright-core, tests/browser): Debian's
# Node 18 when the machine has no node and npm of its own.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
mode=${1:-}
case "$mode" in
--runtime) pkgs=("${runtime_pkgs[@]}") ;;
--fuzz) pkgs+=(clang libclang-rt-14-dev) ;;
--bench) pkgs+=(python3-flask gunicorn python3-requests wrk) ;;
"") ;;
*) echo "install-deps: unknown option '$1' (use --runtime, --fuzz or --bench)" >&2; exit 2 ;;
esac

install_apt() {
	local missing=() p stamp
	for p in "${pkgs[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0

	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Update the package lists once per day at most; a fresh machine has none.
	stamp=/var/lib/apt/periodic/blueq-update-stamp
	if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +1440 2>/dev/null)" ] || \
		! apt-cache show "${missing[0]}" >/dev/null 2>&1; then
		apt-get update -qq
		mkdir -p "$(dirname "$stamp")" && touch "$stamp"
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# playwright-core at the version tests/browser/package-lock.json pins (no browser
# download: Debian's chromium is used), again only when the lock file changed.
install_npm() {
	local dir
	dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
	[ -f "$dir/package-lock.json" ] || return 0
	if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then
		return 0
	fi
	echo "install-deps: npm ci in tests/browser (playwright-core)"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}

install_apt
case "$mode" in
--runtime) ;;
*) install_npm ;;
esac
