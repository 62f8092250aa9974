#!/usr/bin/env bash
# cuda_gpu_bundle.sh: pack a built tree and everything its tests need (LuaJIT, busted and their
# modules) into one folder, for GPU machines that have the CUDA libraries but not the Lua tool
# chain.  On the GPU machine run DEST/run.sh (env PATTERN='cuda_*' selects the specs; the C tests
# always run; DDPM_REQUIRE_GPU defaults to 1 there, so a missing GPU fails instead of skipping).
# Usage: tests/cuda_gpu_bundle.sh DEST [build-dir]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: cuda_gpu_bundle.sh DEST [build-dir]}
build=${2:-$here/build}
arch=$(gcc -dumpmachine)
rm -rf "$dest"
mkdir -p "$dest"/{bin,lib,lua51,clib/term,clib/system,build/lua/ddpm,build/tests,src}
cp "$build"/libddpm.so "$build"/libddpm_cuda.so "$build"/ddpm-lua "$dest/build/"
[ -f "$build/libddpm_nocuda.so" ] && cp "$build/libddpm_nocuda.so" "$dest/build/"
cp "$build"/tests/test_* "$dest/build/tests/"
cp "$build/lua/ddpm/cdef.lua" "$dest/build/lua/ddpm/"
cp -r "$here/lua" "$here/tests" "$dest/src/"
cp "$(readlink -f "$(command -v luajit)")" "$dest/bin/luajit"
cp -L "/usr/lib/$arch/libluajit-5.1.so.2" "$dest/lib/"
# the non-CUDA libraries libddpm and ddpm-lua link (GPU images rarely have OpenMP OpenBLAS, libpng
# or readline); CUDA, cuBLAS and cuDNN come from the GPU machine itself
for lib in $(ldd "$build/libddpm.so" "$build/ddpm-lua" | awk '/=>/ {print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libopenblas*|libgfortran*|libquadmath*|libgomp*|libpng16*|libreadline*|libtinfo*|libz.so*) cp -L "$lib" "$dest/lib/" ;;
  esac
done
cp -r /usr/share/lua/5.1/. "$dest/lua51/"
cp -L "/usr/lib/$arch/lua/5.1/term/core.so" "$dest/clib/term/"
cp -L "/usr/lib/$arch/lua/5.1/system/core.so" "$dest/clib/system/"
cp -L "/usr/lib/$arch/lua/5.1/lfs.so" "$dest/clib/"
cp "$(command -v busted)" "$dest/bin/busted.lua"
cat > "$dest/run.sh" <<'RUN'
#!/usr/bin/env bash
# run.sh: the C tests and the busted specs of this bundle; ends with "N passed, N failed".
cd "$(dirname "$0")"
R=$PWD
# cuDNN/cuBLAS may live in the Python wheels of the GPU image rather than in /usr/local/cuda
pylibs=$(python3 -c 'import glob,site; print(":".join(sorted(set(p.rsplit("/",1)[0] for s in site.getsitepackages() for p in glob.glob(s+"/nvidia/*/lib/*.so*")))))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$R/lib:$R/build:/usr/local/cuda/lib64:${pylibs}:${LD_LIBRARY_PATH:-}"
echo "return { libpath = '$R/build/libddpm.so', cuda = true }" > "$R/build/lua/ddpm/build_config.lua"
export DDPM_LIB="$R/build/libddpm.so" DDPM_LUA="$R/build/ddpm-lua" DDPM_SOURCE_DIR="$R/src"
export LUA_PATH="$R/src/lua/?.lua;$R/src/lua/?/init.lua;$R/build/lua/?.lua;$R/src/tests/lua/?.lua;$R/lua51/?.lua;$R/lua51/?/init.lua"
export LUA_CPATH="$R/clib/?.so"
export DDPM_REQUIRE_GPU=${DDPM_REQUIRE_GPU:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
passed=0 failed=0
tally() { # last "N passed, N failed" line of a test's output
  local line; line=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then failed=$((failed + 1)); echo "  (no summary: counted as a failure)"; return; fi
  passed=$((passed + $(echo "$line" | cut -d' ' -f1))); failed=$((failed + $(echo "$line" | cut -d' ' -f3)))
}
for t in build/tests/${CTESTS:-test_*}; do
  echo "== $t"; "$t" > /tmp/out.$$ 2>&1; cat /tmp/out.$$; tally /tmp/out.$$
done
for s in src/tests/lua/${PATTERN:-cuda_*}_spec.lua; do
  echo "== $s"; (cd src && "$R/bin/luajit" "$R/bin/busted.lua" -o tests/lua/count_output.lua "$R/$s") > /tmp/out.$$ 2>&1
  cat /tmp/out.$$; tally /tmp/out.$$
done
rm -f /tmp/out.$$
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
RUN
chmod +x "$dest/run.sh"
du -sh "$dest"
