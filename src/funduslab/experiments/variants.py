"""The course Task 2–4 studies' shared recipe, their start weights and their table.

A course task beyond Task 1 asks "does X help?": the same full fine-tuning recipe
(:data:`COURSE_RECIPE`) with one thing changed (the loss, the head, …), several seeds each, mean
± std per disease. Each task states its rows as :class:`~funduslab.experiments.study.Row` s;
:func:`run_course_study` runs them under the recipe (from a source-fitted backbone when asked)
and :func:`render_variant_table` writes the Markdown table ``results.md`` carries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import DEFAULT_EPOCHS
from funduslab.experiments.sets import parse_sets
from funduslab.experiments.study import Row, Study, StudyResult, merge_config, run_study
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.runs import RunFolder

__all__ = ["COURSE_QUICK", "COURSE_RECIPE", "course_recipe", "render_variant_table",
           "run_course_study", "source_start_weights"]

TEST_SPLIT = "offsite_test"

#: The engine benchmark's full fine-tuning recipe, the base of the course Task 2–4 studies.
COURSE_RECIPE: dict[str, Any] = {
    "data": {"adapter": "odir_course", "image_size": 256},
    "model": {"backbone": "tf_efficientnet_lite0", "weights": "imagenet"},
    "train": {"setup": "full", "epochs": DEFAULT_EPOCHS, "batch_size": 32,
              "tune_thresholds": True},
    "output": {"figures": True},
}
#: ``--quick`` over the course recipe: 64 px, 2 epochs, batch 8, no figures.
COURSE_QUICK: dict[str, Any] = {"data": {"image_size": 64},
                                "train": {"epochs": 2, "batch_size": 8},
                                "output": {"figures": False}}
#: ``--quick`` over the source-model fit of :func:`source_start_weights`.
SOURCE_QUICK: dict[str, Any] = {"epochs": 1, "image_size": 64}


def course_recipe(backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet",
                  image_size: int = 256, epochs: int = DEFAULT_EPOCHS) -> dict[str, Any]:
    """:data:`COURSE_RECIPE` with the preset options that every row shares."""
    return merge_config(COURSE_RECIPE, {
        "data": {"image_size": image_size}, "model": {"backbone": backbone, "weights": weights},
        "train": {"epochs": epochs}})


def source_start_weights(
    source: Path | None, backbone: str, weights: str, out: Path, quick: bool, image_size: int,
    seed: int, epochs: int = 4,
) -> str:
    """Starting weights of every row: ``weights`` as given, or — with a ``source`` dataset — a
    ``funduslab pretrain`` model fitted on it first (reused when already saved in ``out``)."""
    if source is None:
        return weights
    from funduslab.experiments.pretrain import pretrain_source_model

    fit = merge_config({"epochs": epochs, "image_size": image_size},
                       SOURCE_QUICK if quick else {})
    return str(pretrain_source_model(
        Path(source), backbone=backbone, weights=weights, out=Path(out) / "pretrained_backbone",
        epochs=fit["epochs"], image_size=fit["image_size"], seed=seed, quick=quick))


def run_course_study(
    name: str, rows: tuple[Row, ...], render: Callable[[StudyResult], str], data: Path,
    out: Path, *, team: str, quick: bool, seeds: list[int] | None, source: Path | None,
    sets: Sequence[str], backbone: str, weights: str, image_size: int, epochs: int,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """A course Task 2/3 comparison: :func:`course_recipe` (+ ``overrides``) under every row.

    With ``source``, every row starts from a backbone fitted on it first
    (:func:`source_start_weights`). ``--set`` pairs are checked before that fit.
    """
    parse_sets(sets)
    start = source_start_weights(source, backbone, weights, Path(out), quick, image_size,
                                 (seeds or [0])[0])
    base = merge_config(course_recipe(backbone, start, image_size, epochs), overrides or {})
    study = Study(name, base, rows, render, quick=COURSE_QUICK)
    return run_study(study, Path(data), Path(out), seeds, quick, sets, team)


def _per_class(metrics: list[dict[str, Any]], label: str, key: str, kind: str) -> str:
    values = [split_scores(m, TEST_SPLIT, kind)["per_class"][label][key] for m in metrics]
    return mean_std(values).replace(" ± ", "±")


def render_variant_table(
    title: str, result: StudyResult, intro: str = "",
    extra_columns: dict[str, dict[str, str]] | None = None,
) -> str:
    """Markdown: per row, per-disease recall/F1 and the course average F1, mean ± std.

    Both decision rules are shown: threshold 0.5 and thresholds tuned on val (test untouched).
    ``extra_columns`` maps column name → {row name → cell} (e.g. parameters, images/s).
    """
    results = [(row, result.runs[row.name]) for row in result.study.rows]
    seeds = result.seeds
    metrics0 = RunFolder(results[0][1][0]).metrics
    labels = metrics0["label_names"]
    extra_columns = extra_columns or {}
    header = ["task", "variant", "note"]
    for label in labels:
        header += [f"{label} recall", f"{label} F1"]
    header += ["course avg F1 (0.5)", "course avg F1 (tuned)", "Δ vs first row (0.5)",
               *extra_columns]
    body = []
    baseline = None
    for variant, run_dirs in results:
        metrics = [RunFolder(d).metrics for d in run_dirs]
        row = [variant.task or "—", variant.name, variant.note]
        for label in labels:
            row += [_per_class(metrics, label, "recall", "threshold_0.5"),
                    _per_class(metrics, label, "f1", "threshold_0.5")]
        avg = [split_scores(m, TEST_SPLIT)["course_average_f1"] for m in metrics]
        tuned = [split_scores(m, TEST_SPLIT, "tuned_thresholds")["course_average_f1"]
                 for m in metrics if "tuned_thresholds" in m["splits"][TEST_SPLIT]]
        mean = float(np.mean(avg))
        baseline = mean if baseline is None else baseline
        row += [mean_std(avg), mean_std(tuned), f"{100 * (mean - baseline):+.2f} pt"]
        row += [extra_columns[c].get(variant.name, "—") for c in extra_columns]
        body.append(row)
    seeds_note = ", ".join(str(s) for s in seeds)
    return (
        f"# {title}\n\n{intro}\n\nSplit: {TEST_SPLIT}. Seeds: {seeds_note} (mean ± sample std). "
        "Recall and F1 are the positive class at threshold 0.5; the course average F1 is the mean "
        "over diseases of the two-class macro F1. Tuned thresholds are chosen per class on val "
        "only. Submissions: `submission.csv` in each run folder.\n\n"
        + markdown_table(header, body)
    )
