"""Full fine-tuning of ImageNet EfficientNet-Lite0 on the real course split, several seeds.

Target (issue 3): mean course average F1 on offsite test >= 0.80 at threshold 0.5.
Prints per-disease P/R/F1 per seed, the mean ± std and the seed spread; exits 1 on a miss.

    python benchmarks/bench_course_finetune.py --seeds 0,1,2 --out runs/bench_finetune
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from _common import course_root, verdict
from funduslab.config import config_from_dict
from funduslab.reporting.run_folder import read_metrics
from funduslab.training.runner import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="runs/bench_finetune")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (GPU: 4-8)")
    ap.add_argument("--target", type=float, default=0.80)
    args = ap.parse_args()
    data = course_root(args.data)
    scores, rows = [], []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        cfg = config_from_dict({
            "data": {"root": str(data), "image_size": args.image_size,
                     "num_workers": args.workers},
            "model": {"backbone": args.backbone, "weights": "imagenet"},
            "train": {"setup": "full", "epochs": args.epochs, "seed": seed},
            "output": {"out": args.out, "name": f"{args.backbone}_full_s{seed}"},
        })
        metrics = read_metrics(run(cfg, progress=False))
        test = metrics["splits"]["offsite_test"]["threshold_0.5"]
        scores.append(test["course_average_f1"])
        per = {k: {m: round(v[m], 3) for m in ("precision", "recall", "f1")}
               for k, v in test["per_class"].items()}
        rows.append({"seed": seed, "course_average_f1": round(test["course_average_f1"], 4),
                     "per_class": per, "minutes": round((time.time() - t0) / 60, 1)})
        print(json.dumps(rows[-1]), flush=True)
    mean, std = float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
    print(f"offsite course average F1: mean {mean:.4f} ± {std:.4f} (n={len(scores)}), "
          f"range {min(scores):.4f}–{max(scores):.4f}")
    return verdict(mean >= args.target, f"mean {mean:.4f} vs target {args.target}")


if __name__ == "__main__":
    sys.exit(main())
