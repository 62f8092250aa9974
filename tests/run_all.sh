#!/usr/bin/env bash
# run_all.sh: configure, build and run every test (C tests and busted specs through ctest), then
# print one line "N passed, N failed" summing the checks of all test binaries.
# Usage: tests/run_all.sh [build-dir]   (env: JOBS, CTEST_ARGS)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
jobs=${JOBS:-$(nproc)}
# The build is quiet: nothing on success but compiler warnings; on failure the log without the
# progress lines, so the errors are what one sees.
blog=$(mktemp)
if ! cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$blog" 2>&1; then
  cat "$blog"; rm -f "$blog"; echo "configure failed"; echo "0 passed, 1 failed"; exit 1
fi
if ! cmake --build "$build" -j "$jobs" >"$blog" 2>&1; then
  grep -vE '^\[ *[0-9]+%\] (Building|Linking|Built target)|^(Consolidate|Scanning|-- )' "$blog" | tail -n 100
  rm -f "$blog"; echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi
grep -E 'warning' "$blog" | head -n 40
rm -f "$blog"
log=$(mktemp)
ctest --test-dir "$build" -j "$jobs" -V ${CTEST_ARGS:-} >"$log" 2>&1
rc=$?
# echo each test's own report (ctest -V prefixes lines with "<test number>: ")
grep -E '^[0-9]+: ' "$log" | sed -E 's/^[0-9]+: //' | grep -vE '^(Test command|Working Directory|Environment variables|Test timeout| +[A-Z_]+=)' 
grep -E '^[0-9]+/[0-9]+ Test|tests passed|FAILED|Failed|Not Run|Timeout' "$log" | grep -vE '^[0-9]+: '
passed=0 failed=0
while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done < <(
  grep -oE '^[0-9]+: .*\b([0-9]+) passed, ([0-9]+) failed$' "$log" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1 \2/')
# a test binary that crashed or never reported still counts as a failure
crashed=$(grep -cE '\*\*\*(Failed|Exception|Timeout)|Not Run' "$log" || true)
reported_fail=$(grep -E '^[0-9]+/[0-9]+ Test .*\*\*\*Failed' "$log" | wc -l)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=$((failed + (crashed > 0 ? crashed : 1))); fi
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
