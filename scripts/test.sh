#!/usr/bin/env bash
# Builds nnc and runs every test: `bash scripts/test.sh` (what CI runs).
# Installs missing Debian packages first (scripts/setup.sh). Two passes: a
# normal build, then an AddressSanitizer + UBSan build of the same suite
# (skip it with NN_NO_SANITIZE=1). Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() { # build-dir, extra cmake flags...
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNN_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$jobs"
    (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900)
}

echo "== tests (RelWithDebInfo) =="
run_suite build-test
if [ "${NN_NO_SANITIZE:-0}" != 1 ]; then
    echo "== tests under AddressSanitizer + UBSan =="
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_suite build-asan -DNN_SANITIZE=ON
fi
