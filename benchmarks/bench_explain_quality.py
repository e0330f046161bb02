"""Benchmark: do funduslab's CAMs point at the lesions? Every CAM method, two backbones, D and A.

The synthetic generator knows where it drew every lesion, so explanations can be scored against
the truth (issue 32). The script writes two synthetic course datasets with fixed generator
seeds: one to train on (the course's 800 / 200 / 200 / 250 split), and a larger one whose
``offsite_test`` keeps ``--per-label`` images positive for D and as many for A, with their lesion
masks. For each training seed it trains Lite0 (ImageNet start), ResNet18 (from scratch: no
offline ImageNet weights; every layer at the head's learning rate) and Lite0 with the
attention-guidance loss (flip-consistent CAMs), then scores every CAM method on the held-out
images (:func:`funduslab.explain.score.score_run`): the pointing-game hit rate (the map's
maximum inside the dilated mask) and the energy inside the mask, beside two baselines, a random
map and a Gaussian on the fovea (what chance looks like).
Score-CAM costs about 100× Grad-CAM (one forward pass per channel of the last map), so it is
scored on the first ``--scorecam-images`` images of the ``--scorecam-seeds`` runs only.
Target: the whole benchmark in ≤ ``--max-minutes`` (30) on 2 CPU cores; exit 1 beyond.

    python benchmarks/bench_explain_quality.py --seeds 0,1,2 --out runs/explain_quality
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import verdict
from funduslab.config import atomic_write_text, config_from_dict
from funduslab.data.synthetic_layouts import write_layout
from funduslab.explain.cams import CAMS
from funduslab.explain.score import score_run
from funduslab.reporting.tables import markdown_table
from funduslab.runs import RunFolder
from funduslab.training.runner import run

LABELS = ("D", "A")
#: row name -> (backbone, weights, extra train settings)
ROWS = {
    "lite0": ("tf_efficientnet_lite0", "imagenet", {}),
    "resnet18": ("resnet18", "none", {"backbone_lr": 1e-3}),  # from scratch: the head's rate
    "lite0_guided": ("tf_efficientnet_lite0", "imagenet", {"attention_consistency": 0.5}),
}
#: Runs of an earlier invocation reused by this one (their time is not in this one's).
REUSED: list[str] = []
QUICK_ROWS = {"tiny": ("tiny_cnn", "none", {}),
              "tiny_guided": ("tiny_cnn", "none", {"attention_consistency": 0.5})}


def _dataset(root: Path, n: int, seed: int, size: int, masks: bool) -> Path:
    """Write (or reuse, when its settings match) one synthetic course dataset."""
    settings = {"layout": "odir-course", "n": n, "seed": seed, "size": size, "masks": masks}
    record = root / "generator.json"
    if record.is_file() and json.loads(record.read_text()) == settings:
        return root
    write_layout("odir-course", root, n=n, seed=seed, size=size, masks=masks)
    atomic_write_text(record, json.dumps(settings))
    return root


def _keep_positives(root: Path, per_label: int) -> dict[str, int]:
    """Cut ``offsite_test.csv`` of the scoring set to the first ``per_label`` positives of each
    label (the original is kept as ``offsite_test_full.csv``); the positives kept per label."""
    full = root / "offsite_test_full.csv"
    if not full.is_file():
        (root / "offsite_test.csv").replace(full)
    frame = pd.read_csv(full)
    keep = np.zeros(len(frame), dtype=bool)
    for label in LABELS:
        keep[np.flatnonzero(frame[label].to_numpy() == 1)[:per_label]] = True
    atomic_write_text(root / "offsite_test.csv", frame[keep].to_csv(index=False))
    return {label: int(frame.loc[keep, label].sum()) for label in LABELS}


def _train(data: Path, out: Path, name: str, seed: int, backbone: str, weights: str,
           extra: dict, size: int, epochs: int) -> Path:
    folder = out / "runs" / f"{name}_s{seed}"
    if RunFolder(folder).is_finished and (folder / "explain_quality.csv").is_file():
        REUSED.append(folder.name)
        return folder
    cfg = config_from_dict({
        "data": {"root": str(data), "image_size": size, "cache_dir": str(out / "cache")},
        "model": {"backbone": backbone, "weights": weights},
        "train": {"setup": "full", "epochs": epochs, "seed": seed, **extra},
        "output": {"out": str(out / "runs"), "name": f"{name}_s{seed}", "figures": False},
    })
    return run(cfg, progress=False)


def _score(run_dir: Path, score_data: Path, methods: list[str], scorecam_images: int
           ) -> pd.DataFrame:
    """Every method's rows for ``run_dir`` (cached as ``explain_quality.csv`` in the run);
    Score-CAM on the first ``scorecam_images`` images (0: not at all)."""
    cached = run_dir / "explain_quality.csv"
    if cached.is_file():
        return pd.read_csv(cached)
    common = {"data_root": score_data, "split": "offsite_test", "faithfulness": None,
              "batch_size": 16, "labels": list(LABELS)}
    fast = [m for m in methods if m != "scorecam"]
    frames = [score_run(run_dir, methods=fast, **common)]
    if "scorecam" in methods and scorecam_images > 0:
        slow = score_run(run_dir, methods="scorecam", limit=scorecam_images, **common)
        frames.append(slow[slow["kind"] != "baseline"])
    frame = pd.concat(frames, ignore_index=True)
    atomic_write_text(cached, frame.to_csv(index=False))
    return frame


def _cell(values: list[float]) -> str:
    arr = np.asarray(values, dtype=float)
    if arr.size == 1:
        return f"{arr[0]:.3f}"
    return f"{arr.mean():.3f} ± {arr.std(ddof=1):.3f}"


def _table(scores: dict[tuple[str, int], pd.DataFrame], rows: list[str], methods: list[str],
           seeds: list[int]) -> tuple[list[str], list[list[str]], list[dict]]:
    """One row per (row, method, label): hit rate and energy, mean ± std over seeds."""
    header = ["model", "method", "label", "images", "pointing-game hit", "energy in mask"]
    body, doc = [], []
    for row in rows:
        for method in [*methods, "random", "centre_bias"]:
            for label in LABELS:
                hits, energy, n = [], [], []
                for seed in seeds:
                    f = scores[(row, seed)]
                    f = f[(f["method"] == method) & (f["label"] == label)]
                    if f.empty:
                        continue
                    hits.append(float(f["hit"].mean()))
                    energy.append(float(f["energy"].mean()))
                    n.append(len(f))
                if not hits:
                    continue
                body.append([row, method, label, str(n[0]), _cell(hits), _cell(energy)])
                doc.append({"model": row, "method": method, "label": label, "images": n[0],
                            "hit": hits, "energy": energy})
    return header, body, doc


def _figure(doc: list[dict], rows: list[str], methods: list[str], path: Path) -> Path:
    """Pointing-game hit rate per method (bars: mean over seeds, whiskers: std), one panel per
    model and label, with the random and fovea baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from funduslab.plots.figures import save_figure

    cell = {(c["model"], c["method"], c["label"]): c["hit"] for c in doc}
    fig, axes = plt.subplots(len(LABELS), len(rows), figsize=(3.2 * len(rows), 2.6 * len(LABELS)),
                             sharey=True, squeeze=False)
    for i, label in enumerate(LABELS):
        for j, row in enumerate(rows):
            ax = axes[i][j]
            shown = [m for m in methods if (row, m, label) in cell]
            values = [np.mean(cell[(row, m, label)]) for m in shown]
            spread = [np.std(cell[(row, m, label)], ddof=1) if len(cell[(row, m, label)]) > 1
                      else 0.0 for m in shown]
            few = [len(cell[(row, m, label)]) == 1 for m in shown]  # Score-CAM: one seed
            ax.bar(range(len(shown)), values, yerr=spread, capsize=3,
                   color=["#a6bddb" if f else "#4c72b0" for f in few],
                   hatch=None, edgecolor="white")
            for k, f in enumerate(few):
                if f:
                    ax.text(k, values[k] + 0.03, "few\nimages", ha="center", fontsize=6)
            for base, style in (("random", ":"), ("centre_bias", "--")):
                if (row, base, label) in cell:
                    ax.axhline(np.mean(cell[(row, base, label)]), color="k", linestyle=style,
                               linewidth=1, label="random map" if base == "random"
                               else "Gaussian on the fovea")
            ax.set_xticks(range(len(shown)), shown, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{row}, {label}", fontsize=9)
            ax.set_ylim(0, 1.05)
            if j == 0:
                ax.set_ylabel("pointing-game hit rate")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("CAM maxima inside the lesion masks (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _f1(run_dir: Path) -> tuple[float, float]:
    splits = RunFolder(run_dir).metrics["splits"]
    return (splits["offsite_test"]["threshold_0.5"]["course_average_f1"],
            splits["val"]["threshold_0.5"]["course_average_f1"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/explain_quality")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=128, help="image side in px (made and trained)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-images", type=int, default=1450, help="the course split's size")
    ap.add_argument("--score-images", type=int, default=9000,
                    help="images generated for scoring (its offsite_test is cut to --per-label)")
    ap.add_argument("--per-label", type=int, default=200, help="positive images of D and of A")
    ap.add_argument("--scorecam-images", type=int, default=8)
    ap.add_argument("--scorecam-seeds", default="0", help="training seeds whose runs Score-CAM")
    ap.add_argument("--methods", default="all", help="CAM methods (comma list) or 'all'")
    ap.add_argument("--max-minutes", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: tiny_cnn rows, 64 px, small sets; figures mean nothing")
    args = ap.parse_args()
    tic = time.perf_counter()
    out = Path(args.out)
    rows = QUICK_ROWS if args.quick else ROWS
    if args.quick:
        args.size, args.epochs, args.train_images = 64, 1, 145
        args.score_images, args.per_label, args.scorecam_images = 300, 12, 2
    methods = CAMS.names() if args.methods == "all" else args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    train_data = _dataset(out / "train_data", args.train_images, 32, args.size, masks=False)
    score_data = _dataset(out / "score_data", args.score_images, 33, args.size, masks=True)
    kept = _keep_positives(score_data, args.per_label)
    print(f"scoring images: {kept} positives of {', '.join(LABELS)} "
          f"(generator seed 33, {args.size} px)", flush=True)
    scores, f1 = {}, {}
    for seed in seeds:
        for row, (backbone, weights, extra) in rows.items():
            run_dir = _train(train_data, out, row, seed, backbone, weights, extra, args.size,
                             args.epochs)
            slow = args.scorecam_images if str(seed) in args.scorecam_seeds.split(",") else 0
            scores[(row, seed)] = _score(run_dir, score_data, methods, slow)
            f1[(row, seed)] = _f1(run_dir)
            print(f"{row} seed {seed}: {(time.perf_counter() - tic) / 60:.1f} min", flush=True)
    header, body, doc = _table(scores, list(rows), methods, seeds)
    f1_rows = [[row, *(_cell([f1[(row, s)][k] for s in seeds]) for k in (0, 1))] for row in rows]
    minutes = (time.perf_counter() - tic) / 60
    timing = (f"{minutes:.1f} min in all" if not REUSED else
              f"{minutes:.1f} min for this invocation, which reused {len(REUSED)} finished runs "
              "of an earlier one (not a timing of the benchmark)")
    text = (f"# CAMs against lesion masks (synthetic course data, {args.size} px)\n\n"
            f"Seeds {', '.join(map(str, seeds))}; {args.epochs} epochs; scored on {kept} "
            f"held-out positives per label (Score-CAM: the first {args.scorecam_images} images, "
            f"seeds {args.scorecam_seeds}); {timing}.\n\n" + markdown_table(header, body) + "\n"
            + markdown_table(["model", "offsite course avg F1 (0.5)", "val (0.5)"], f1_rows))
    _figure(doc, list(rows), methods, out / "hit_rates.png")
    atomic_write_text(out / "results.md", text + "\n![pointing-game hit rates](hit_rates.png)\n")
    atomic_write_text(out / "results.json", json.dumps(
        {"size": args.size, "epochs": args.epochs, "seeds": seeds, "kept": kept,
         "scorecam_images": args.scorecam_images, "minutes": round(minutes, 2),
         "reused_runs": REUSED, "cells": doc,
         "f1": {row: [f1[(row, s)] for s in seeds] for row in rows}}, indent=2))
    print(text)
    if REUSED:
        print(f"timing not checked: {len(REUSED)} runs were reused (a fresh --out times it)")
        return 0
    return verdict(minutes <= args.max_minutes,
                   f"{minutes:.1f} min for the whole benchmark (target ≤ {args.max_minutes:g})")


if __name__ == "__main__":
    sys.exit(main())
