"""Multi-seed comparisons of config variants against one base recipe (course Tasks 2–4).

A course task beyond Task 1 asks "does X help?": the same full fine-tuning recipe with one thing
changed (the loss, the head, …), several seeds each, mean ± std per disease. This module holds
that loop once: a :class:`Variant` is a named set of config overrides, :func:`run_variants` runs
every variant for every seed through :func:`funduslab.training.runner.run` (finished run folders
are reused, so an interrupted suite resumes), and :func:`render_variant_table` writes the Markdown
table ``results.md`` carries.
"""

from __future__ import annotations

import copy
import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import DEFAULT_EPOCHS, RunConfig, config_from_dict
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.runs import RunFolder
from funduslab.training.runner import run

__all__ = ["Variant", "base_course_config", "merge_config", "render_variant_table", "reuse_runs", "run_variants",
           "select_variants", "source_start_weights", "variant_config"]

TEST_SPLIT = "offsite_test"


@dataclass
class Variant:
    """One row of a comparison.

    Args:
        name: Short row name, also the run-folder prefix (``focal``, ``se``).
        overrides: Nested config dict merged over the base (``{"train": {"loss": "focal"}}``).
        task: Course task id (``"2-1"``) → weights saved as ``<team>_task2-1.pt``; ``None`` for
            extra rows.
        note: What the row is, for the table.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    note: str = ""


def base_course_config(
    data: Path, out: Path, quick: bool = False, *, backbone: str = "tf_efficientnet_lite0",
    weights: str = "imagenet", image_size: int = 256, epochs: int = DEFAULT_EPOCHS,
    adapter: str = "odir_course",
) -> dict[str, Any]:
    """The engine benchmark's full fine-tuning recipe (``quick``: 64 px, 2 epochs, batch 8)."""
    cfg: dict[str, Any] = {
        "data": {"adapter": adapter, "root": str(data), "image_size": 64 if quick else image_size},
        "model": {"backbone": backbone, "weights": weights},
        "train": {"setup": "full", "epochs": 2 if quick else epochs,
                  "batch_size": 8 if quick else 32, "tune_thresholds": True},
        "output": {"out": str(out), "figures": not quick},
    }
    return cfg


def source_start_weights(
    source: Path | None, backbone: str, weights: str, out: Path, quick: bool, image_size: int,
    seed: int, epochs: int = 4,
) -> str:
    """Starting weights of every row: ``weights`` as given, or — with a ``source`` dataset — a
    ``funduslab pretrain`` model fitted on it first (reused when already saved in ``out``)."""
    if source is None:
        return weights
    from funduslab.experiments.pretrain import pretrain_source_model

    return str(pretrain_source_model(
        Path(source), backbone=backbone, weights=weights, out=Path(out) / "pretrained_backbone",
        epochs=1 if quick else epochs, image_size=64 if quick else image_size, seed=seed,
        quick=quick))


def select_variants(variants: list[Variant], rows: str) -> list[Variant]:
    """The variants named in ``rows`` (comma-separated, table order kept); ``""`` keeps all.

    Lets a user spend CPU on the rows that matter (e.g. one seed of every row first, then more
    seeds of the row that was best on val). An unknown name raises ``ValueError`` listing them.
    """
    wanted = [r.strip() for r in rows.split(",") if r.strip()]
    if not wanted:
        return list(variants)
    names = [v.name for v in variants]
    unknown = [r for r in wanted if r not in names]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; this preset's rows are: "
                         f"{', '.join(names)}")
    return [v for v in variants if v.name in wanted]


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, nested sections merged key by key (inputs untouched).

    How a preset row's overrides meet the preset's base config (and the quick overlay).
    """
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_variants(
    base: dict[str, Any], variants: list[Variant], seeds: list[int], team: str | None = None,
    progress: bool = True, reuse: dict[str, str] | None = None,
) -> list[tuple[Variant, list[Path]]]:
    """Run every variant for every seed; return ``(variant, run folders)`` in the given order.

    ``reuse`` maps a variant name to a glob of finished run folders that stand in for its runs
    (e.g. the engine benchmark's seeds as the BCE baseline): each is used only when it was
    trained under exactly this variant's recipe for that seed (see :func:`reuse_runs`).
    """
    reuse = reuse or {}
    results = []
    for variant in variants:
        if variant.name in reuse:
            results.append((variant, reuse_runs(reuse[variant.name], base, variant, seeds)))
            continue
        run_dirs = []
        for seed in seeds:
            run_dirs.append(run(variant_config(base, variant, seed, team), progress=progress))
        results.append((variant, run_dirs))
    return results


def variant_config(base: dict[str, Any], variant: Variant, seed: int,
                   team: str | None = None) -> RunConfig:
    """The validated config of one variant and seed (run folder ``<variant>_s<seed>``)."""
    raw = merge_config(base, variant.overrides)
    raw = merge_config(raw, {"train": {"seed": seed},
                       "output": {"name": f"{variant.name}_s{seed}",
                                  "team": team if variant.task else None,
                                  "task": variant.task}})
    return config_from_dict(raw)


def reuse_runs(pattern: str, base: dict[str, Any], variant: Variant,
               seeds: list[int]) -> list[Path]:
    """Finished run folders matching ``pattern``, one per seed, that were trained under exactly
    ``variant``'s recipe (output and evaluation-only fields aside).

    Raises:
        ValueError: no folder for a seed, or a folder whose config differs (fields named).
    """
    from funduslab.training.resume import config_differences

    by_seed: dict[int, tuple[Path, RunConfig]] = {}
    for hit in sorted(glob.glob(pattern)):
        folder = RunFolder(hit)
        if not folder.is_finished:
            continue
        cfg = folder.run_config
        by_seed.setdefault(cfg.train.seed, (folder.path, cfg))
    found = []
    for seed in seeds:
        if seed not in by_seed:
            raise ValueError(f"no finished run folder matching {pattern!r} has seed {seed} "
                             f"(seeds found: {sorted(by_seed) or 'none'})")
        folder, old = by_seed[seed]
        want = variant_config(base, variant, seed)
        if want.train.task == "auto":  # saved configs hold the resolved task kind
            want.train.task = old.train.task
        diffs = config_differences(old, want)
        if diffs:
            raise ValueError(f"{folder} was not trained with row {variant.name!r}'s recipe "
                             f"({'; '.join(diffs[:6])}); train the row instead")
        found.append(folder)
    return found


def _per_class(metrics: list[dict[str, Any]], label: str, key: str, kind: str) -> str:
    values = [split_scores(m, TEST_SPLIT, kind)["per_class"][label][key] for m in metrics]
    return mean_std(values).replace(" ± ", "±")


def render_variant_table(
    title: str, results: list[tuple[Variant, list[Path]]], seeds: list[int], intro: str = "",
    extra_columns: dict[str, dict[str, str]] | None = None,
) -> str:
    """Markdown: per variant, per-disease recall/F1 and the course average F1, mean ± std.

    Both decision rules are shown: threshold 0.5 and thresholds tuned on val (test untouched).
    ``extra_columns`` maps column name → {variant name → cell} (e.g. parameters, images/s).
    """
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
