#!/usr/bin/env bash
# GPU machine, second of two commands (with .device/carry2), on the machine that ran setup.sh:
# the fellow-eye full fine-tune of issue 8 at 384 px, seeds 0, 1, 2 side by side on the GPU,
# then the run folders (predictions, metrics, config, history; not the Lightning checkpoints)
# packed into $OUT/screen_gpu.tar.gz and the weights as $OUT/<run>.pt, for collect.sh here.
#
# Knobs (environment): SEEDS (0 1 2), EPOCHS (auto), IMAGE_SIZE (384), WORKERS (4 per seed),
# BUDGET_S (450: a seed still training then is stopped; its history still comes back), PY.
# EPOCHS=auto: as many as fit (3 to 10), from setup.sh's measured training steps per second:
# the seeds share the GPU, and half the budget is kept for data loading, evaluation and the
# image cache (a guess, not a measurement: the logs give the real epoch time for next time).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
PY=${PY:-python3}
SEEDS=${SEEDS:-0 1 2}; EPOCHS=${EPOCHS:-auto}; IMAGE_SIZE=${IMAGE_SIZE:-384}
WORKERS=${WORKERS:-4}; BUDGET_S=${BUDGET_S:-450}
RUNS=runs/gpu_screen_dual${IMAGE_SIZE}
LOGS=$RUNS/device_logs  # packed with the run folders; $OUT holds at most 8 files
DATA=.device/odir5k-source
C2=.device/carry2

[ -d .device/site ] && [ -d "$DATA/images" ] || {
    echo "screening.sh: .device/site or $DATA is missing: this machine did not run setup.sh" \
         "(a fresh machine starts bare). Run setup.sh with carry .device/carry1 first, then this at once." >&2
    exit 2; }
[ -f "$C2/labels.csv" ] || { echo "screening.sh: $C2 missing: carry .device/carry2" >&2; exit 2; }
cp "$C2"/images/* "$DATA/images/"
cp "$C2/labels.csv" "$DATA/labels.csv"
want=$(($(wc -l < "$DATA/labels.csv") - 1)); have=$(ls "$DATA/images" | wc -l)
[ "$have" -eq "$want" ] || { echo "screening.sh: $have images in $DATA but labels.csv lists $want" >&2; exit 2; }

if [ "$EPOCHS" = auto ]; then  # ~3,100 training pairs per epoch, val+test ~1,300 at 1/3 cost
    pps=$(cat .device/smoke_pairs_per_s 2>/dev/null || echo 0)
    EPOCHS=$("$PY" -c "import sys; pps, n, b = float(sys.argv[1]), len(sys.argv[2].split()), float(sys.argv[3])
print(max(3, min(10, int(0.5 * b / (n * 3500 / pps))) if pps else 3))" "$pps" "$SEEDS" "$BUDGET_S")
    echo "EPOCHS=auto: $EPOCHS (smoke test: $pps pairs/s, ${BUDGET_S} s budget)"
fi
export PYTHONPATH="src:.device/site${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
bench() {  # one bench_screening call of this recipe
    "$PY" benchmarks/bench_screening.py --data "$DATA" --out "$RUNS" --setup full --dual concat \
        --image-size "$IMAGE_SIZE" --epochs "$EPOCHS" --workers "$WORKERS" "$@"
}
mkdir -p "$LOGS" && cp .device/setup.log "$LOGS/" 2>/dev/null || true
start=$(date +%s)
pids=()
for s in $SEEDS; do
    timeout "$BUDGET_S" bash -c "$(declare -f bench); $(declare -p PY DATA RUNS IMAGE_SIZE EPOCHS WORKERS); bench --seeds $s" \
        > "$LOGS/seed$s.log" 2>&1 &
    pids+=($!)
done
stopped=0
for p in "${pids[@]}"; do  # bench exits 1 when the target is missed; 124 is the budget
    rc=0; wait "$p" || rc=$?
    if [ "$rc" -eq 124 ]; then stopped=1; fi
done
echo "seeds done in $(( $(date +%s) - start )) s; stopped at BUDGET_S=$BUDGET_S: $stopped"
if [ $stopped = 0 ]; then  # all finished: results.md over every seed (reuses the run folders)
    bench --seeds "$(echo $SEEDS | tr ' ' ',')" > "$LOGS/all.log" 2>&1 || true
else  # a re-run of this script on the same machine resumes them from their checkpoints
    echo "not summarised: a stopped seed would resume training here" > "$LOGS/all.log"
fi
tail -25 "$LOGS/all.log"

tar -czf "$OUT/screen_gpu.tar.gz" --exclude='*.pt' --exclude='*.ckpt' --exclude='.cache' \
    --exclude='lightning_logs' "$RUNS"
for s in $SEEDS; do
    pt=$(ls "$RUNS"/screening_*_s"$s"/*.pt 2>/dev/null | head -1 || true)
    if [ -n "$pt" ]; then cp "$pt" "$OUT/$(basename "$(dirname "$pt")").pt"; fi
done
for s in $SEEDS; do  # last epoch reached: epoch,train_loss,...,val_macro_auroc
    echo "seed $s history: $(tail -1 "$RUNS"/screening_*_s"$s"/history.csv 2>/dev/null || echo none)"
    tail -2 "$LOGS/seed$s.log"
done
ls -la "$OUT"
