"""Frozen-backbone fitting on cached features (course Task 1.2 style) on the real course split.

Target (issue 3): fitting the classifier takes <= 60 s once features are extracted. Prints the
feature-extraction time, the head-fitting time and the offsite course average F1; exits 1 on a
miss. A second invocation reuses the cached features (extraction ~0 s).

    python benchmarks/bench_frozen.py --out runs/bench_frozen
"""

from __future__ import annotations

import argparse
import sys

from _common import course_root, verdict
from funduslab.config import config_from_dict
from funduslab.reporting.run_folder import read_metrics
from funduslab.training.runner import run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", default="runs/bench_frozen")
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-s", type=float, default=60.0)
    args = ap.parse_args()
    cfg = config_from_dict({
        "data": {"root": str(course_root(args.data)), "image_size": 256},
        "model": {"backbone": args.backbone, "weights": "imagenet"},
        "train": {"setup": "frozen", "epochs": args.epochs, "lr": 3e-3, "warmup_epochs": 0,
                  "seed": args.seed},
        "output": {"out": args.out, "name": f"{args.backbone}_frozen_s{args.seed}", "resume": False},
    })
    metrics = read_metrics(run(cfg, progress=False))
    fit = metrics["fit"]
    test = metrics["splits"]["offsite_test"]
    print(f"feature extraction: {fit['feature_extraction_s']:.1f} s; head fit ({args.epochs} epochs): "
          f"{fit['head_fit_s']:.1f} s")
    print(f"offsite course average F1: {test['threshold_0.5']['course_average_f1']:.4f} (0.5), "
          f"{test['tuned_thresholds']['course_average_f1']:.4f} (thresholds tuned on val)")
    return verdict(fit["head_fit_s"] <= args.target_s,
                   f"head fit {fit['head_fit_s']:.1f} s vs target {args.target_s} s")


if __name__ == "__main__":
    sys.exit(main())
