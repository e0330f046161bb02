#!/usr/bin/env bash
# GPU machine, first of two commands (with .device/carry1): install the carried packages into
# .device/site, lay out the first half of the images, and smoke-test funduslab on the GPU (20
# timed bf16 training steps of the fellow-eye Lite0 with its ImageNet weights). .device/ is
# ignored by git; what this writes must still be there when screening.sh runs on the same
# machine. See benchmarks/device/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
PY=${PY:-python3}
C1=.device/carry1
[ -d "$C1/images" ] || { echo "setup.sh: $C1 is missing: run benchmarks/device/prepare.sh here and carry .device/carry1" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "setup.sh: no nvidia-smi (CPU dry run?)"

rm -rf .device/site && mkdir -p .device/site
if [ -n "$(ls $C1/wheels/*.whl 2>/dev/null)" ] && "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target .device/site "$C1"/wheels/*.whl
fi
cp -r "$C1"/site/. .device/site/
mkdir -p .device/odir5k-source/images
cp "$C1"/images/* .device/odir5k-source/images/
echo "images so far: $(ls .device/odir5k-source/images | wc -l)"

export PYTHONPATH="src:.device/site${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONUNBUFFERED=1
"$PY" - <<'PYEOF' 2>&1 | tee "$OUT/setup.log" .device/setup.log
"""Versions, then 20 timed training steps of the screening model (fellow eye, Lite0, 384 px)."""
import platform, time
from pathlib import Path
import lightning, timm, torch
from funduslab.config import ModelConfig
from funduslab.models.factory import build_model

gpu = torch.cuda.is_available()
print("python", platform.python_version(), "| torch", torch.__version__, "| timm", timm.__version__,
      "| lightning", lightning.__version__, "|", torch.cuda.get_device_name(0) if gpu else "no GPU")
dev, size, batch = ("cuda", 384, 32) if gpu else ("cpu", 64, 2)
model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet", dual="concat"),
                    num_outputs=5, image_size=size).to(dev).to(memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.rand(batch, 2, 3, size, size, device=dev)
y = torch.randint(0, 2, (batch, 5), device=dev).float()
def step():
    with torch.autocast(dev, dtype=torch.bfloat16):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return loss
for _ in range(3):
    step()
if gpu: torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(20):
    loss = step()
if gpu: torch.cuda.synchronize()
dt = (time.perf_counter() - t) / 20
assert torch.isfinite(loss), "non-finite loss in the smoke test"
Path(".device/smoke_pairs_per_s").write_text(f"{batch / dt:.1f}\n")  # screening.sh sizes epochs
print(f"smoke: {batch} eye pairs at {size} px per step, {dt * 1e3:.1f} ms/step, "
      f"{batch / dt:.0f} pairs/s (model only, no data loading)")
PYEOF
