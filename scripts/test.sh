#!/usr/bin/env bash
# test.sh - build and run the whole test suite: a release build, then (in CI, or
# with REEL_TEST_SANITIZE=1) an AddressSanitizer + UndefinedBehaviorSanitizer
# build. Warnings are errors in both. Run scripts/setup.sh first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DREEL_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

if [ "${CI:-}" = "true" ] || [ "${REEL_TEST_SANITIZE:-0}" = "1" ]; then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DREEL_SANITIZE=ON -DREEL_WERROR=ON >/dev/null
    cmake --build build-asan -j"$jobs"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j"$jobs"
fi
bash bench/quick.sh || echo "bench quick failed (not a test)"
echo "test: all passed"
