#!/usr/bin/env bash
# quickstart.sh: from a fresh clone on Debian 12 to a trained sprite model in one command: install
# the packages, build, train the class-conditional model on the built-in Angband sprites with
# settings that finish in about ten minutes on 2 CPU cores, and write its labelled sample grid.
# Extra arguments go to the training script (e.g. --epochs 10, --out DIR, --tileset bolt).
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

# Idle OpenMP threads sleep instead of spinning: on a shared, busy machine spinning threads burn
# the CPU time the others need (measured: 3x less CPU per training step under load).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
out=runs/quickstart
prev=
for a in "$@"; do  # the job's own --out, when given, is where the grid goes
  case "$a" in --out=*) out=${a#--out=} ;; esac
  [ "$prev" = --out ] && out=$a
  prev=$a
done
echo "quickstart: training the conditional sprite model (docs/training.md explains the settings)"
# The quick recipe: a smaller UNet than the tutorial's, batch 32 with flips, 1000 noise levels,
# an EMA of the weights, Min-SNR loss weighting, label dropout for classifier-free guidance, and
# 25-step DPM-Solver++ sampling with guidance 2.  It starts over in runs/quickstart each time
# (continue an interrupted run with: build/ddpm-lua scripts/train_conditional.lua --resume runs/quickstart).
build/ddpm-lua scripts/train_conditional.lua \
  --channels 32,64 --layers-per-block 1 --norm-groups 8 --attention-heads 4 --cross-attention-dim 64 \
  --batch-size 32 --epochs 80 --lr 1e-3 --lr-schedule cosine --warmup-steps 100 \
  --timesteps 1000 --flip --label-dropout 0.1 --ema --snr-gamma 5 \
  --sample-scheduler dpm --sample-steps 25 --guidance 2 \
  --out "$out" --overwrite "$@"
echo "quickstart: the sample grid is $out/samples.png (one row per class; Angband tiles by David Gervais, CC-BY-3.0, and Adam Bolt)"
echo "quickstart: more samples: build/ddpm-lua scripts/sample.lua --checkpoint $out --scheduler dpm --steps 25 --guidance 2 --seed 1 --out grid.png"
