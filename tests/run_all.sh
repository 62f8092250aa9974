#!/usr/bin/env bash
# run_all.sh: configure, build and run every test (C tests and busted specs through ctest), then
# the C tests again in a sanitizer build (AddressSanitizer + LeakSanitizer + UBSan, no CUDA, -O1,
# ctest label "asan"), and print one line "N passed, N failed" summing the checks of all test
# binaries of both runs.
# Usage: tests/run_all.sh [build-dir]   (env: JOBS, CTEST_ARGS, DDPM_SKIP_ASAN=1 to skip the
#        sanitizer run, ASAN_BUILD=dir for its build directory, default <build-dir>-asan)
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
asan_build=${ASAN_BUILD:-$build-asan}
jobs=${JOBS:-$(nproc)}
passed=0 failed=0

# Run ctest in $1 with extra arguments $2, echo each test's own report prefixed by $3, and add
# the "N passed, N failed" lines of its binaries to the totals.
run_ctest() {
  local dir=$1 args=$2 prefix=$3 log rc
  log=$(mktemp)
  # shellcheck disable=SC2086
  ctest --test-dir "$dir" -j "$jobs" -V $args ${CTEST_ARGS:-} >"$log" 2>&1
  rc=$?
  # each test's own report (ctest -V prefixes lines with "<test number>: ")
  grep -E '^[0-9]+: ' "$log" | sed -E 's/^[0-9]+: //' |
    grep -vE '^(Test command|Working Directory|Environment variables|Test timeout| *[A-Z_]+=)' | sed "s/^/$prefix/"
  grep -E '^[0-9]+/[0-9]+ Test|tests passed|FAILED|Failed|Not Run|Timeout|No tests were found' "$log" |
    grep -vE '^[0-9]+: ' | sed "s/^/$prefix/"
  local p=0 f=0 np nf
  while read -r np nf; do p=$((p + np)); f=$((f + nf)); done < <(
    grep -oE '^[0-9]+: .*\b([0-9]+) passed, ([0-9]+) failed$' "$log" | sed -E 's/.* ([0-9]+) passed, ([0-9]+) failed$/\1 \2/')
  # a test binary that crashed, leaked under LSan, or never reported still counts as a failure
  local crashed
  crashed=$(grep -cE '\*\*\*(Failed|Exception|Timeout)|Not Run|No tests were found' "$log" || true)
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=$((crashed > 0 ? crashed : 1)); fi
  passed=$((passed + p))
  failed=$((failed + f))
  rm -f "$log"
}

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
run_ctest "$build" "" ""

if [ "${DDPM_SKIP_ASAN:-0}" != "1" ]; then
  echo "---- C tests under AddressSanitizer/LeakSanitizer/UBSan ($asan_build) ----"
  blog=$(mktemp)
  if cmake -S "$here" -B "$asan_build" -DDDPM_SANITIZE=ON -DDDPM_CUDA=OFF -DDDPM_BUILD_LUA=OFF \
      -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-O1 -g" >"$blog" 2>&1 &&
    cmake --build "$asan_build" -j "$jobs" >>"$blog" 2>&1; then
    run_ctest "$asan_build" "-L asan" "asan: "
  else
    grep -E 'error|Error' "$blog" | head -20
    echo "asan: the sanitizer build failed"
    failed=$((failed + 1))
  fi
  rm -f "$blog"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
