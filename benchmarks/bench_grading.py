"""DR grading 0–4 on real ODIR-5K eyes (grades from ``dr_grade``, patient split 70/15/15, seed 0).

Target (issue 7): test quadratic kappa >= 0.60, mean of the seeds. Runs the ``dr-grading`` preset
for one formulation without preprocessing, prints its results.md and exits 1 on a miss.

    python benchmarks/bench_grading.py --seeds 0,1,2 --out runs/bench_grading
    python benchmarks/bench_grading.py --seeds 0 --epochs 10 --dual concat   # fellow eye beside
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import SHARED, verdict
from funduslab.experiments.dr_grading import dr_grading


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(SHARED / "odir5k-source"))
    ap.add_argument("--out", default="runs/bench_grading")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--formulation", default="regression")
    ap.add_argument("--sampler", default="class_sqrt")
    ap.add_argument("--dual", default="none")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (GPU: 4-8)")
    ap.add_argument("--target", type=float, default=0.60)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = dr_grading(Path(args.data), out=Path(args.out), seeds=seeds, epochs=args.epochs,
                         image_size=args.image_size, formulations=args.formulation,
                         study_formulation=args.formulation, preprocess="none",
                         sampler=args.sampler, dual=args.dual,
                         batch_size=args.batch_size, num_workers=args.workers)
    print(results.read_text())
    qwk = [json.loads((Path(args.out) / f"grading_{args.formulation}_none_s{s}" / "metrics.json")
                      .read_text())["splits"]["test"]["grading"]["quadratic_weighted_kappa"]
           for s in seeds]
    mean = float(np.mean(qwk))
    return verdict(mean >= args.target, f"test quadratic kappa mean {mean:.4f} over {len(qwk)} "
                                        f"seed(s) vs target {args.target}")


if __name__ == "__main__":
    sys.exit(main())
