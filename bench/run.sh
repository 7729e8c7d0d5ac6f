#!/usr/bin/env bash
# Run every benchmark against a release build and print their tables.
# Benchmarks measure; they do not pass or fail on a figure.
set -euo pipefail
cd "$(dirname "$0")/.."
# --bench adds the Flask baseline (python3-flask, gunicorn); without them (no root)
# bench_backend still runs and says the baseline was not measured.
./scripts/install-deps.sh --bench || ./scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DBQ_WERROR=OFF >/dev/null
cmake --build build-release -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
echo "== bench_mesh: node relay throughput and 1-hop latency =="
build-release/bench/bench_mesh build-release/blueq-node "${BENCH_FRAMES:-300000}"
echo
echo "== bench_manager: blueq-manager sessions, restart, throughput, latency, HTTP =="
BENCH_SESSIONS="${BENCH_SESSIONS:-10000}" build-release/bench/bench_manager build-release
echo
echo "== bench_backend: blueq-backend beside the Flask baseline (bench/baseline), registration -> ready =="
build-release/bench/bench_backend build-release bench/baseline
