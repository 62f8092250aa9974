#!/usr/bin/env bash
# install_deps.sh: the Debian 12 packages ddpm-lua builds, runs and tests with; idempotent (only
# missing packages are installed, nothing at all when none is missing). Needs root or sudo.
# The CUDA toolkit is optional and not installed here: where nvcc exists the CUDA backend is built.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config  # C compiler, make, CMake >= 3.20
  libluajit-5.1-dev luajit          # LuaJIT 2.1 (the library ddpm-lua embeds; luajit runs busted)
  libopenblas-openmp-dev            # CPU GEMM; the OpenMP build cooperates with our OpenMP kernels
  libpng-dev                        # PNG sample grids and image folders
  libreadline-dev                   # REPL line editing and history
  lua-busted                        # Lua test runner (busted --lua=luajit)
  lua-cjson lua-argparse            # JSON configs, command-line options
  bsdutils                          # `script`: the REPL tests drive ddpm-lua on a pseudo-terminal
  ca-certificates                   # apt-get download of the Angband tile packages (default data)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all dependencies present"
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "install_deps: missing ${missing[*]}; run this script as root (sudo is not installed)" >&2
    exit 1
  fi
  SUDO=(sudo)
fi
echo "install_deps: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install_deps: all dependencies present"
