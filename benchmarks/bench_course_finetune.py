"""Full fine-tuning of ImageNet EfficientNet-Lite0 on the real course split, several seeds.

The recipe is the one ``funduslab train --setup full`` uses (``train.recipe: fast`` with the
config's default epochs: early stages frozen and a smaller size for the first 5/8 of the epochs,
precision auto); ``--epochs``, ``--freeze-stages``
and ``--progressive-size/--progressive-epochs`` override it, ``--reference`` runs the recipe of
before 2026-12-05 (12 epochs at 256 px, nothing frozen, per-image augmentation, bf16 where the
CPU has it).

Targets: mean course average F1 on offsite test >= 0.81 at threshold 0.5 and, with
``--max-minutes``, every seed's wall time at most that (the data cache warm: run once first).
Prints the CPU's capability, per-disease P/R/F1 and minutes per seed, the mean ± std and the
seed spread; exits 1 on a miss.

    python benchmarks/bench_course_finetune.py --seeds 0,1,2 --out runs/bench_finetune --max-minutes 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from _common import cap_isa, course_root, kernels, verdict
from funduslab.config import config_from_dict
from funduslab.reporting.run_folder import read_metrics
from funduslab.training.fit import native_cpu_bf16
from funduslab.training.recipe import resolve_recipe
from funduslab.training.runner import run

_RECIPE_KEYS = {"recipe", "epochs", "freeze_stages", "freeze_epochs", "progressive_size",
                "progressive_epochs", "precision", "lr", "backbone_lr", "schedule", "warmup_epochs"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="runs/bench_finetune")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--freeze-stages", type=int, default=None)
    ap.add_argument("--freeze-epochs", type=int, default=None)
    ap.add_argument("--progressive-size", type=int, default=None, help="0 = off")
    ap.add_argument("--progressive-epochs", type=int, default=None)
    ap.add_argument("--reference", action="store_true",
                    help="the recipe before 2026-12-05 (12 epochs, 256 px throughout, bf16 auto)")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (GPU: 4-8)")
    ap.add_argument("--target", type=float, default=0.81)
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="fail when a seed takes longer (wall time)")
    ap.add_argument("--isa", default=None,
                    help="cap the kernels at this ISA (avx2: an AVX2-only VM's code paths)")
    args = ap.parse_args()
    cap_isa(args.isa)
    data = course_root(args.data)
    train: dict = {"setup": "full"}
    if args.reference:
        train.update(epochs=12, recipe="plain",
                     precision="bf16-mixed" if native_cpu_bf16() else "32")
    for key in ("epochs", "freeze_stages", "freeze_epochs", "progressive_size",
                "progressive_epochs"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    augment = "fundus_per_image" if args.reference else "fundus"
    kind = "reference" if args.reference else "full"  # a finished seed is reused: name per recipe
    def config(seed: int):
        return config_from_dict({
            "data": {"root": str(data), "image_size": args.image_size,
                     "num_workers": args.workers, "augment": augment},
            "model": {"backbone": args.backbone, "weights": "imagenet"},
            "train": {**train, "seed": seed},
            "output": {"out": args.out, "name": f"{args.backbone}_{kind}_s{seed}"},
        })

    recipe = resolve_recipe(config(0)).train.model_dump(include=_RECIPE_KEYS)
    print(f"torch {torch.__version__}, {kernels()}, {torch.get_num_threads()} threads; "
          f"recipe {recipe}, augment {augment}", flush=True)
    scores, rows = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        cfg = config(seed)
        metrics = read_metrics(run(cfg, progress=False))
        test = metrics["splits"]["offsite_test"]["threshold_0.5"]
        scores.append(test["course_average_f1"])
        per = {k: {m: round(v[m], 3) for m in ("precision", "recall", "f1")}
               for k, v in test["per_class"].items()}
        rows.append({"seed": seed, "course_average_f1": round(test["course_average_f1"], 4),
                     "per_class": per, "minutes": round((time.time() - t0) / 60, 1)})
        print(json.dumps(rows[-1]), flush=True)
    minutes = [r["minutes"] for r in rows]
    mean, std = float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
    print(f"offsite course average F1: mean {mean:.4f} ± {std:.4f} (n={len(scores)}), "
          f"range {min(scores):.4f}–{max(scores):.4f}")
    print(f"minutes per seed: {', '.join(f'{m:.1f}' for m in minutes)}")
    fast = args.max_minutes is None or max(minutes) <= args.max_minutes
    return verdict(mean >= args.target and fast,
                   f"mean {mean:.4f} vs target {args.target}"
                   + (f"; slowest seed {max(minutes):.1f} min vs {args.max_minutes}"
                      if args.max_minutes is not None else ""))


if __name__ == "__main__":
    sys.exit(main())
