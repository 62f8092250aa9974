#!/usr/bin/env bash
# gpu_compare.sh: one GPU session's work, run on the GPU machine from the repo root: unpack the test
# bundle (tests/cuda_gpu_bundle.sh, packed as .gpu/bundle.tar.xz), run the CUDA test suite, then the
# ddpm-lua and PyTorch + diffusers GPU benchmarks (scripts/bench/gpu_bench.lua,
# tests/peer/gpu_bench.py) alternately, and a short end-to-end smoke run of the training and
# sampling scripts on the GPU.  Everything lands in $OUT (default /tmp/gpu-out).
# The peer needs diffusers 0.27.2 + huggingface_hub 0.21.4 wheels in .whl/ (pure Python).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
R=/tmp/ddpm-bundle
rm -rf "$R" && mkdir -p "$R" && tar -xJf .gpu/bundle.tar.xz -C "$R" --strip-components=1
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee "$OUT/gpu.txt"

echo "== CUDA test suite"
(cd "$R" && PATTERN="${PATTERN:-cuda_*}" ./run.sh) > "$OUT/tests.log" 2>&1
grep -E '^== |passed, .* failed' "$OUT/tests.log" | tail -40

# the environment run.sh uses, for ddpm-lua in the repo
pylibs=$(python3 -c 'import glob,site; print(":".join(sorted(set(p.rsplit("/",1)[0] for s in site.getsitepackages() for p in glob.glob(s+"/nvidia/*/lib/*.so*")))))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$R/lib:$R/build:/usr/local/cuda/lib64:${pylibs}:${LD_LIBRARY_PATH:-}"
cp "$R/build/lua/ddpm/cdef.lua" lua/ddpm/cdef.lua
export DDPM_LUA_PATH="$PWD/lua" LUA_CPATH="$R/clib/?.so" LUA_PATH="$R/lua51/?.lua;$R/lua51/?/init.lua;;"
LUA="$R/build/ddpm-lua"

echo "== benchmarks (ddpm-lua and the peer alternately)"
rounds=${ROUNDS:-2}
for r in $(seq 1 "$rounds"); do
  timeout 200 "$LUA" scripts/bench/gpu_bench.lua --steps "${STEPS:-30}" >> "$OUT/ours.jsonl" 2>> "$OUT/ours.err"
  modes="eager-fp32,eager-bf16"
  [ "$r" = 1 ] && modes="$modes,compile-fp32,compile-bf16"  # compile once: it is slow to build
  timeout 300 python3 tests/peer/gpu_bench.py --steps "${STEPS:-30}" --modes "$modes" >> "$OUT/peer.jsonl" 2>> "$OUT/peer.err"
done
tail -3 "$OUT/ours.err" "$OUT/peer.err" 2>/dev/null

echo "== end to end on the GPU"
if [ -f scripts/train_conditional.lua ]; then
  timeout 120 "$LUA" scripts/train_conditional.lua --device cuda --epochs 1 --max-steps 30 --out /tmp/e2e-run \
    > "$OUT/e2e.log" 2>&1; echo "train status $?" | tee -a "$OUT/e2e.log"
  timeout 60 "$LUA" scripts/sample.lua --checkpoint /tmp/e2e-run --device cuda --steps 50 --out "$OUT/grid_gpu.png" \
    >> "$OUT/e2e.log" 2>&1; echo "sample status $?" | tee -a "$OUT/e2e.log"
  tail -5 "$OUT/e2e.log"
fi

python3 - "$OUT" <<'PY'
import json, sys, statistics
out = sys.argv[1]
rows = {}
for f in ("ours.jsonl", "peer.jsonl"):
    try:
        lines = open(f"{out}/{f}").read().splitlines()
    except OSError:
        continue
    for l in lines:
        try:
            r = json.loads(l)
        except ValueError:
            continue
        key = (r.get("name"), r.get("impl"), r.get("mode"))
        v = r.get("images_per_s", r.get("seconds"))
        if "error" in r:
            rows.setdefault(key, []).append("error: " + str(r["error"])[:120])
        elif v is not None:
            rows.setdefault(key, []).append(v)
print("%-11s %-18s %-13s %s" % ("what", "impl", "mode", "median (images/s for training, s for sampling 20)"))
for (n, i, m), vs in sorted(rows.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
    nums = [v for v in vs if not isinstance(v, str)]
    val = "%.2f" % statistics.median(nums) if nums else vs[0]
    print("%-11s %-18s %-13s %s" % (n, i, m, val))
PY
