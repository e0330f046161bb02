"""Threshold objectives on finished course runs (or their records): 0.5 vs tuned on val.

For each run, per-disease thresholds are tuned on its saved val probabilities two ways —
positive-class F1 (funduslab before 2026-12-05) and each disease's two-class macro F1 (the
course figure, today's default) — and the course average F1 is printed on val and offsite at
0.5 and at both tuned sets. Nothing is retrained: only ``predictions/<split>.csv`` and the
course labels are read. Exits 1 if the course-figure tuning ever lowers val below 0.5 (it
cannot, unless the tuner is broken).

    python benchmarks/bench_thresholds.py results/course/reference_s*
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from _common import course_root, verdict
from funduslab.data.adapters import load_table
from funduslab.metrics import course_average_f1, tune_thresholds
from funduslab.reporting.run_folder import read_predictions
from funduslab.reporting.tables import mean_std

SPLITS = ("val", "offsite_test")
RULES = ("0.5", "tuned f1 (old)", "tuned macro (course)")


def _scores(run_dir: Path, truth) -> dict[tuple[str, str], float]:
    labels = ["D", "G", "A"]
    data = {}
    for split in SPLITS:
        ids, prob = read_predictions(run_dir, split, labels)
        data[split] = (truth.loc[ids, labels].to_numpy(int), prob)
    y_val, p_val = data["val"]
    thresholds = {"0.5": np.full(3, 0.5),
                  "tuned f1 (old)": tune_thresholds(y_val, p_val, objective="f1"),
                  "tuned macro (course)": tune_thresholds(y_val, p_val, objective="f1_macro")}
    return {(split, rule): course_average_f1(y, (p >= thresholds[rule]).astype(int))
            for split, (y, p) in data.items() for rule in RULES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders or records")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    table = load_table("odir_course", course_root(args.data))
    truth = table.frame.set_index("id")
    per_run = {}
    for run_dir in args.runs:
        per_run[run_dir] = _scores(run_dir, truth)
        cells = "  ".join(f"{s} {r}: {v:.4f}" for (s, r), v in per_run[run_dir].items())
        print(f"{run_dir.name}: {cells}", flush=True)
    print(f"{'split':<14}" + "".join(f"{r:>24}" for r in RULES))
    for split in SPLITS:
        row = [mean_std([per_run[d][(split, r)] for d in per_run]) for r in RULES]
        print(f"{split:<14}" + "".join(f"{c:>24}" for c in row))
    worse = [d.name for d in per_run
             if per_run[d][("val", RULES[2])] < per_run[d][("val", "0.5")] - 1e-12]
    return verdict(not worse, f"course-figure tuning never lowers val below 0.5 ({len(per_run)} "
                              f"runs{'; lowered: ' + ', '.join(worse) if worse else ''})")


if __name__ == "__main__":
    sys.exit(main())
