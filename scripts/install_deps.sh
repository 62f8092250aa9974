#!/usr/bin/env bash
# install_deps.sh: the Debian 12 packages ddpm-lua builds and runs with (needs root or sudo).
# The CUDA toolkit is optional: where nvcc exists the CUDA backend is built too.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  build-essential cmake pkg-config
  libluajit-5.1-dev luajit          # LuaJIT 2.1 (GC64 on amd64)
  libopenblas-openmp-dev            # CPU GEMM; the OpenMP build cooperates with our OpenMP kernels
  libpng-dev                        # PNG sample grids and image folders
  libreadline-dev                   # REPL line editing and history
  lua-busted                        # Lua test runner (busted --lua=luajit)
  lua-cjson lua-argparse            # JSON configs, command-line options
  ca-certificates                   # apt-get download of the Angband tile packages (default data)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install_deps: all dependencies present"
