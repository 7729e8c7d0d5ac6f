#!/usr/bin/env bash
# Run the libFuzzer targets for a bounded time each (default 60 s), starting from the
# committed corpora. New inputs go to a scratch directory; copy interesting ones into
# tests/fuzz/corpus/<target>/ so every build replays them.
#   scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
./scripts/install-deps.sh --fuzz
CC=clang cmake -S . -B build-fuzz -DBQ_FUZZ=ON -DBQ_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
for bin in build-fuzz/tests/fuzz_*; do
	name=$(basename "$bin")
	corpus=tests/fuzz/corpus/${name#fuzz_}
	scratch=$(mktemp -d)
	echo "== $name for ${secs}s (corpus $corpus) =="
	"$bin" -max_total_time="$secs" -print_final_stats=1 "$scratch" "$corpus" 2>&1 | tail -n 12
	rm -rf "$scratch"
done
