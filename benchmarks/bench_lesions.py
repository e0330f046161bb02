"""Benchmark: lesion-patch F1 on synthetic IDRiD-layout data (funduslab issue 8).

Writes a synthetic IDRiD layout (the generator's exact per-lesion masks are the truth), runs the
``lesion-patches`` preset on it (lesion-centred 128-px patches, ``lesion_seed`` rebalancing,
focal loss with per-class inverse-frequency α, thresholds tuned on val), and prints per-class
test F1 / precision / recall / AUROC (mean ± std over the seeds), for the lesion-centred test
patches and for the grid of every test image's patches, beside the F1 of predicting "present"
for every patch: a lesion positive in most test patches scores high F1 by that alone, so its
AUROC and the grid figures are the ones to read. Target: mean lesion-centred F1 ≥ 0.8 for MA,
HE and EX; exits 1 on a miss, 2 when ``--out`` holds data of other generator settings.

    python benchmarks/bench_lesions.py --seeds 0,1,2 --out runs/bench_lesions
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from _common import verdict
from funduslab.config import atomic_write_text
from funduslab.data.patches import LESIONS
from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments.lesion_patches import lesion_patches
from funduslab.reporting.tables import mean_std

TARGET_LESIONS = ("MA", "HE", "EX")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/bench_lesions")
    ap.add_argument("--images", type=int, default=60, help="synthetic images (⅔ train+val, ⅓ test)")
    ap.add_argument("--size", type=int, default=512, help="synthetic image side in px")
    ap.add_argument("--data-seed", type=int, default=0, help="generator seed")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--target", type=float, default=0.8)
    args = ap.parse_args()
    out = Path(args.out)
    data = out / "idrid"
    settings = {"layout": "idrid", "n": args.images, "seed": args.data_seed, "size": args.size}
    record = data / "generator.json"
    if not (data / "A. Segmentation").is_dir():
        write_layout("idrid", data, n=args.images, seed=args.data_seed, size=args.size)
        atomic_write_text(record, json.dumps(settings))
    elif not record.is_file() or json.loads(record.read_text()) != settings:
        print(f"{data} holds data of other or unknown generator settings than {settings}; "
              f"pass another --out", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")]
    lesion_patches(data, out=out, seeds=seeds, epochs=args.epochs, patch_size=args.patch)
    doc = json.loads((out / "lesion_patches.json").read_text())
    print(f"\nsynthetic IDRiD: {args.images} images at {args.size} px, generator seed "
          f"{args.data_seed}; {args.patch}-px lesion-centred patches, {args.epochs} epochs, "
          f"seeds {args.seeds}")
    mean_f1 = {}
    for key, what in (("patch_test", "lesion-centred test patches, the target"),
                      ("grid_test", "grid test patches, every tile of each test image")):
        print(f"\n{what} (mean ± sample std over the seeds)\n{'lesion':6s} {'F1':>17s} "
              f"{'precision':>17s} {'recall':>17s} {'AUROC':>17s} {'prevalence':>10s} "
              f"{'F1 all-present':>14s}")
        for name in LESIONS:
            cls = [r[key]["per_class"][name] for r in doc["runs"]]
            stat = {m: [c[m] for c in cls] for m in ("f1", "precision", "recall", "auroc")}
            p = cls[0]["support"] / doc["runs"][0][key]["n_samples"]
            if key == "patch_test":
                mean_f1[name] = float(np.mean(stat["f1"]))
            print(f"{name:6s} " + " ".join(f"{mean_std(v):>17s}" for v in stat.values())
                  + f" {p:10.2f} {2 * p / (1 + p):14.3f}")
    missed = [k for k in TARGET_LESIONS if not mean_f1[k] >= args.target]
    return verdict(not missed, f"mean test F1 {', '.join(f'{k} {mean_f1[k]:.3f}' for k in TARGET_LESIONS)}"
                               f" vs target {args.target}" + (f"; missed: {missed}" if missed else ""))


if __name__ == "__main__":
    sys.exit(main())
