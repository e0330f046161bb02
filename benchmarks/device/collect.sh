#!/usr/bin/env bash
# Here, after screening.sh ran on the GPU machine: unpack its run folders into runs/, put each seed's
# weights back in its folder, and vote them per seed with the frozen four-member screening vote
# (the preset's with_runs; the frozen members train here on cached features, 20–30 min the first
# time on 2 CPU cores, seconds after). Prints the vote's results.md and its PASS/FAIL line.
#
#   bash benchmarks/device/collect.sh <folder holding what screening.sh wrote to $OUT> [image size, 384]
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:?usage: collect.sh <folder with screen_gpu.tar.gz> [image size]}
SIZE=${2:-384}
PY=${PY:-.venv/bin/python}
[ -f "$FILES/screen_gpu.tar.gz" ] || { echo "collect.sh: $FILES has no screen_gpu.tar.gz" >&2; exit 2; }
tar -xzf "$FILES/screen_gpu.tar.gz"  # runs/gpu_screen_dual<size>/ (device_logs/ inside)
RUNS=runs/gpu_screen_dual$SIZE
for pt in "$FILES"/screening_*.pt; do
    if [ -e "$pt" ]; then cp "$pt" "$RUNS/$(basename "$pt" .pt)/model.pt"; fi
done
# The frozen members of the adopted vote (docs/results.md, "Four-way vote"); the environment can
# shrink them for a quick check of this script (FROZEN_SIZE, BACKBONES, PREPROCESS, SEEDS).
"$PY" benchmarks/bench_screening.py --setup frozen --dual concat --image-size "${FROZEN_SIZE:-384}" \
    --epochs 30 --seeds "${SEEDS:-0,1,2}" --preprocess "${PREPROCESS:-none|ben_graham}" \
    --backbone "${BACKBONES:-tf_efficientnet_lite0|tf_efficientnet_lite2}" --out "${VOTE_OUT:-runs/screen_multi}" \
    --with-runs "$RUNS/screening_tf_efficientnet_lite0_concat_s{seed}"
