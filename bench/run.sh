#!/usr/bin/env bash
# Run every benchmark against a release build and print their tables.
# Benchmarks measure; they do not pass or fail on a figure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DBQ_WERROR=OFF >/dev/null
cmake --build build-release -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
echo "== bench_mesh: node relay throughput and 1-hop latency =="
build-release/bench/bench_mesh build-release/blueq-node "${BENCH_FRAMES:-300000}"
echo
echo "== bench_manager: blueq-manager sessions, restart, throughput, latency, HTTP =="
BENCH_SESSIONS="${BENCH_SESSIONS:-10000}" build-release/bench/bench_manager build-release
