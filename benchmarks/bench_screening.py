"""Many-label screening on real ODIR-5K eyes (labels N, D, C, H, M), patient-level test split.

Target (issue 8): macro AUROC >= 0.90 on test, mean of the seeds. Prints per-label AUROC with
95 % CIs (the preset's results.md) and exits 1 on a miss.

    python benchmarks/bench_screening.py --seeds 0,1,2 --out runs/bench_screening
    python benchmarks/bench_screening.py --seeds 0 --epochs 4 --image-size 192   # a shorter CPU run
    python benchmarks/bench_screening.py --setup frozen --dual concat --epochs 30  # fellow eye
    python benchmarks/bench_screening.py --setup frozen ... \
        --with-runs "runs/bench_screening/screening_tf_efficientnet_lite0_s{seed}"  # + fine-tune
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import verdict
from funduslab.experiments.screening import screening, screening_run_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent
                                          / "shared" / "data" / "odir5k-source"))
    ap.add_argument("--out", default="runs/bench_screening")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",
                    help="backbone; several joined by | are soft-voted per seed (with every "
                         "--preprocess pipeline)")
    ap.add_argument("--sampler", default="random")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers (GPU: 4-8)")
    ap.add_argument("--setup", default="full", choices=["full", "frozen"])
    ap.add_argument("--dual", default="none", help="fellow-eye fusion: none | concat | mean | "
                                                   "attention")
    ap.add_argument("--preprocess", default="none",
                    help="data.preprocess pipeline; several joined by | (none|ben_graham) are "
                         "soft-voted per seed")
    ap.add_argument("--tta", action="store_true", help="evaluate with flip TTA")
    ap.add_argument("--with-runs", default="",
                    help="finished run folders of other recipes to vote with, a path with {seed} "
                         "each, several joined by | (e.g. a full fine-tune beside frozen members)")
    ap.add_argument("--target", type=float, default=0.90)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = screening(Path(args.data), out=Path(args.out), seeds=seeds, epochs=args.epochs,
                        image_size=args.image_size, backbone=args.backbone, sampler=args.sampler,
                        batch_size=args.batch_size, num_workers=args.workers,
                        setup=args.setup, dual=args.dual, preprocess=args.preprocess,
                        tta=args.tta, with_runs=args.with_runs)
    print(results.read_text())
    stem = screening_run_name(args.backbone, args.setup, args.dual, args.preprocess, args.tta,
                              args.with_runs)
    macro = [json.loads((Path(args.out) / f"{stem}_s{s}" / "long_tail.json").read_text())
             ["macro_auroc"]["value"] for s in seeds]
    mean = float(np.mean(macro))
    return verdict(mean >= args.target, f"macro AUROC mean {mean:.4f} over {len(macro)} seed(s) "
                                        f"vs target {args.target}")


if __name__ == "__main__":
    sys.exit(main())
