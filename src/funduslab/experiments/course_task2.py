"""Course Task 2: losses for class imbalance on the fine-tuned backbone.

The same full fine-tuning recipe with only the training loss changed, several seeds each:

* ``bce`` — the baseline, binary cross-entropy;
* 2-1 ``focal`` — sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection",
  ICCV 2017), γ focusing, no α;
* 2-2 ``class_balanced`` — effective-number class weights (Cui et al., "Class-Balanced Loss Based
  on Effective Number of Samples", CVPR 2019) on top of the same focal term. Focal is the base
  because it is Cui et al.'s best variant and because it makes row 2-2 differ from row 2-1 only
  by the class weights, so the table reads as bce → +focusing → +re-weighting;
* ``asymmetric`` (extra row) — ASL (Ridnik et al., "Asymmetric Loss For Multi-Label
  Classification", ICCV 2021) with the paper's γ⁻ = 4, γ⁺ = 1, margin 0.05.

Losses live in :mod:`funduslab.losses`; the training order (``sampler``) is the same for every row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from funduslab.config import DEFAULT_EPOCHS
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, StudyResult, select_rows
from funduslab.experiments.variants import render_variant_table, run_course_study
from funduslab.losses import ClassCounts, build_loss
from funduslab.training.samplers import SAMPLERS

__all__ = ["course_task2", "task2_variants"]

ASL_OPTIONS: dict[str, float] = {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05}


def task2_variants(gamma: float = 2.0, beta: float = 0.999) -> tuple[Row, ...]:
    """The rows of the Task 2 table, in order: bce, focal (2-1), class_balanced (2-2), asymmetric.

    Args:
        gamma: Focusing parameter γ of the focal and class-balanced rows.
        beta: Effective-number β of the class-balanced row.
    """
    return (
        Row("bce", "baseline: binary cross-entropy", {"train": {"loss": "bce"}}),
        Row("focal", f"sigmoid focal loss, γ={gamma:g}, no α",
            {"train": {"loss": "focal", "loss_options": {"gamma": gamma, "alpha": None}}},
            task="2-1"),
        Row("class_balanced", f"class-balanced focal, β={beta:g}, γ={gamma:g}; weights per class "
            "and polarity from the train counts",
            {"train": {"loss": "class_balanced",
                       "loss_options": {"beta": beta, "base": "focal", "gamma": gamma}}},
            task="2-2"),
        Row("asymmetric", f"asymmetric loss, γ⁻={ASL_OPTIONS['gamma_neg']:g}, "
            f"γ⁺={ASL_OPTIONS['gamma_pos']:g}, margin {ASL_OPTIONS['clip']:g}",
            {"train": {"loss": "asymmetric", "loss_options": dict(ASL_OPTIONS)}}),
    )


@PRESETS.register("course-task2")
def course_task2(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = DEFAULT_EPOCHS, sampler: str = "random", gamma: float = 2.0, beta: float = 0.999,
    rows: str = "",
    baseline_runs: str = "", sets: Sequence[str] = (),
) -> Path:
    """Run every Task 2 loss for every seed; write ``<out>/results.md``; return its path.

    Args:
        data: Course data folder (``odir_course`` layout).
        team: Team name for the ``<team>_task2-1.pt`` / ``<team>_task2-2.pt`` weights.
        out: Output folder (one run folder per variant and seed).
        quick: Tiny settings for tests and demos (64 px, 2 epochs, batch 8).
        seeds: Seeds per variant (default 0, 1, 2).
        source: Optional source dataset (ODIR-5K layout); the backbone is first fitted on it
            (``funduslab pretrain``) and every row starts from that model.
        backbone: Backbone name (default EfficientNet-Lite0).
        weights: Starting weights of the backbone (``imagenet``, ``none`` or a path).
        image_size: Training resolution in pixels.
        epochs: Fine-tuning epochs.
        sampler: Training sampler of every row (``random``, ``class_aware``, ``patient`` …).
        gamma: Focal γ of rows 2-1 and 2-2.
        beta: Class-balanced β of row 2-2 (typical 0.9 … 0.9999).
        rows: Comma-separated subset of rows to run (``bce,focal,class_balanced,asymmetric``);
            empty runs all.
        baseline_runs: Glob of finished run folders to use as the ``bce`` row instead of
            training it (e.g. the engine benchmark's seeds); each must have been trained under
            exactly the row's recipe for its seed, else a ``ValueError`` names the differences.
        sets: ``key=value`` config overrides of every row (``train.epochs=6``).
    """
    chosen = select_rows(task2_variants(gamma, beta), rows, "course-task2")
    SAMPLERS.get(sampler)  # an unknown sampler or a bad γ/β fails here, before any training
    for row in chosen:
        train = row.overrides["train"]
        build_loss(train["loss"], ClassCounts(np.ones(1), np.ones(1)),
                   **train.get("loss_options", {}))
    if baseline_runs:
        chosen = tuple(dataclasses.replace(r, reuse=baseline_runs) if r.name == "bce" else r
                       for r in chosen)
    render = partial(_render, gamma=gamma, beta=beta, baseline_runs=baseline_runs)
    return run_course_study(
        "course-task2", chosen, render, data, out, team=team, quick=quick, seeds=seeds,
        source=source, sets=sets, backbone=backbone, weights=weights, image_size=image_size,
        epochs=epochs, overrides={"train": {"sampler": sampler}})


def _render(result: StudyResult, gamma: float, beta: float, baseline_runs: str) -> str:
    cfg, asl = result.config(), ASL_OPTIONS
    intro = (
        f"Backbone {cfg.model.backbone} ({cfg.model.weights} start), {cfg.data.image_size} px, "
        f"full fine-tuning for {cfg.train.epochs} epochs, sampler `{cfg.train.sampler}`; only "
        f"the training loss changes between rows. Focal: γ={gamma:g}, no α (Lin et al. 2017). "
        f"Class-balanced: β={beta:g} on the focal term with γ={gamma:g} (Cui et al. 2019); one "
        "weight per disease for its positives and one for its negatives, from the train split's "
        f"counts, jointly scaled to mean 1. Asymmetric: γ⁻={asl['gamma_neg']:g}, "
        f"γ⁺={asl['gamma_pos']:g}, probability margin {asl['clip']:g} (Ridnik et al. 2021). "
        "Decision thresholds: 0.5, and per-class thresholds tuned on val only (the test split is "
        "never used to choose anything)."
        + (f" The bce row reuses finished runs `{baseline_runs}`, checked to have been trained "
           "under this exact recipe and seed." if baseline_runs else "")
    )
    return render_variant_table("Course Task 2 — losses for class imbalance (offsite test)",
                                result, intro)
