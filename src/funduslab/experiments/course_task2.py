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

import logging
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import DEFAULT_EPOCHS, atomic_write_text
from funduslab.experiments import PRESETS
from funduslab.experiments.variants import (
    Variant,
    base_course_config,
    render_variant_table,
    run_variants,
    select_variants,
    source_start_weights,
)
from funduslab.losses import ClassCounts, build_loss
from funduslab.training.samplers import SAMPLERS

__all__ = ["course_task2", "task2_variants"]

log = logging.getLogger(__name__)

ASL_OPTIONS: dict[str, float] = {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05}


def task2_variants(gamma: float = 2.0, beta: float = 0.999) -> list[Variant]:
    """The rows of the Task 2 table, in order: bce, focal (2-1), class_balanced (2-2), asymmetric.

    Args:
        gamma: Focusing parameter γ of the focal and class-balanced rows.
        beta: Effective-number β of the class-balanced row.
    """
    return [
        Variant("bce", {"train": {"loss": "bce"}}, None, "baseline: binary cross-entropy"),
        Variant("focal", {"train": {"loss": "focal",
                                    "loss_options": {"gamma": gamma, "alpha": None}}},
                "2-1", f"sigmoid focal loss, γ={gamma:g}, no α"),
        Variant("class_balanced",
                {"train": {"loss": "class_balanced",
                           "loss_options": {"beta": beta, "base": "focal", "gamma": gamma}}},
                "2-2", f"class-balanced focal, β={beta:g}, γ={gamma:g}; weights per class and "
                "polarity from the train counts"),
        Variant("asymmetric", {"train": {"loss": "asymmetric", "loss_options": dict(ASL_OPTIONS)}},
                None, f"asymmetric loss, γ⁻={ASL_OPTIONS['gamma_neg']:g}, "
                f"γ⁺={ASL_OPTIONS['gamma_pos']:g}, margin {ASL_OPTIONS['clip']:g}"),
    ]


@PRESETS.register("course-task2")
def course_task2(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = DEFAULT_EPOCHS, sampler: str = "random", gamma: float = 2.0, beta: float = 0.999,
    rows: str = "",
    baseline_runs: str = "",
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
    """
    seeds = list(seeds) if seeds else [0, 1, 2]
    out = Path(out)
    size = 64 if quick else image_size
    variants = select_variants(task2_variants(gamma, beta), rows)
    SAMPLERS.get(sampler)  # an unknown sampler or a bad γ/β fails here, before any training
    for variant in variants:
        train = variant.overrides["train"]
        build_loss(train["loss"], ClassCounts(np.ones(1), np.ones(1)),
                   **train.get("loss_options", {}))
    weights = source_start_weights(source, backbone, weights, out, quick, image_size, seeds[0])
    base: dict[str, Any] = base_course_config(Path(data), out, quick, backbone=backbone,
                                              weights=weights, image_size=image_size,
                                              epochs=epochs)
    base["train"]["sampler"] = sampler
    reuse = {"bce": baseline_runs} if baseline_runs else None
    results = run_variants(base, variants, seeds, team=team, progress=not quick, reuse=reuse)
    asl = ASL_OPTIONS
    intro = (
        f"Backbone {backbone} ({weights} start), {size} px, full fine-tuning for "
        f"{base['train']['epochs']} epochs, sampler `{sampler}`; only the training loss changes "
        f"between rows. Focal: γ={gamma:g}, no α (Lin et al. 2017). Class-balanced: β={beta:g} "
        f"on the focal term with γ={gamma:g} (Cui et al. 2019); one weight per disease for its "
        "positives and one for its negatives, from the train split's counts, jointly scaled to "
        f"mean 1. Asymmetric: γ⁻={asl['gamma_neg']:g}, γ⁺={asl['gamma_pos']:g}, probability "
        f"margin {asl['clip']:g} (Ridnik et al. 2021). Decision thresholds: 0.5, and per-class "
        "thresholds tuned on val only (the test split is never used to choose anything)."
        + (f" The bce row reuses finished runs `{baseline_runs}`, checked to have been trained "
           "under this exact recipe and seed." if baseline_runs else "")
    )
    text = render_variant_table("Course Task 2 — losses for class imbalance (offsite test)",
                                results, seeds, intro)
    path = out / "results.md"
    atomic_write_text(path, text)
    log.info("wrote %s", path)
    return path
