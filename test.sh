#!/usr/bin/env bash
# Install what is missing, build, and run every test suite through ctest:
# a normal build (warnings are errors) and an ASan+UBSan build of the same tests.
#   ./test.sh            everything
#   ./test.sh -L unit    pass ctest arguments (label filter etc.) to both runs
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
	local dir=$1; shift
	local flags=("$@")
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${flags[@]}" >/dev/null
	cmake --build "$dir" -j "$jobs" >/dev/null
	(cd "$dir" && ctest --output-on-failure -j "$jobs" "${CTEST_ARGS[@]}")
}

CTEST_ARGS=("$@")
echo "== build and test (build/) =="
run_suite build
echo "== sanitizer build and test (build-asan/, ASan + UBSan) =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_suite build-asan -DBQ_SANITIZE=ON
