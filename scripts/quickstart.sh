#!/usr/bin/env bash
# quickstart.sh: from a fresh clone on Debian 12 to a running job in one command: install the
# packages, build, and run the main job on its built-in data (extra arguments go to the job).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install_deps.sh
echo "quickstart: building (build/)"
log=$(mktemp)
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j "$(nproc)"; } >"$log" 2>&1; then
  grep -vE '^\[ *[0-9]+%\] (Building|Linking|Built target)|^(Consolidate|Scanning)' "$log" | tail -n 100
  rm -f "$log"
  echo "quickstart: the build failed" >&2
  exit 1
fi
rm -f "$log"
echo "quickstart: running scripts/demo.lua"
exec build/ddpm-lua scripts/demo.lua "$@"
