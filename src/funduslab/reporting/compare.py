"""Compare finished run folders: one row per recipe, mean ± std over its seeds.

Runs are grouped by their *recipe* — every ``data``/``model``/``train`` field of the saved
``config.yaml`` except the seed and the bookkeeping in ``_NOT_RECIPE`` — so the
three seeds of a loss end up in one row and a changed loss, head or flip-TTA setting in
another. A ``setup: none`` run only evaluates the weights it was given, so its weights path is
not part of its recipe (the TTA re-evaluations of three seeds form one row). Ensemble run folders
are their own recipe (``ensemble <method>``). The ``recipe`` column names only the fields that
differ between the rows, which is what a reader wants to see.

This is ``funduslab report``; with 200-image val and test splits (the course), read a
difference smaller than the seed spread as noise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.reporting.tables import mean_std
from funduslab.runs import RunFolder

__all__ = ["RunSummary", "compare_runs", "summarize_run"]

#: Not part of a recipe: the seed, where and how images were decoded, the hardware, the task kind
#: (older folders say ``auto``; mixing kinds is refused) and whether the submission used tuned
#: thresholds (both threshold rules are always reported).
_NOT_RECIPE = frozenset({"train.seed", "data.cache_dir", "data.num_workers", "train.devices",
                         "train.strategy", "train.accelerator", "train.task",
                         "train.tune_thresholds", "train.threshold_objective"})


@dataclass
class RunSummary:
    """What one run folder scored, and the recipe it was trained under."""

    run_dir: Path
    task: str
    recipe: dict[str, Any]
    seed: int | None
    scores: dict[str, float | None] = field(default_factory=dict)
    recall: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None


def _recipe(folder: RunFolder) -> tuple[dict[str, Any], int | None]:
    from funduslab.training.resume import recipe_fields

    raw = folder.config
    if "ensemble" in raw:
        ens = raw["ensemble"] or {}
        return {"ensemble": f"{ens.get('method')} of {len(ens.get('members') or [])} runs"}, None
    cfg = folder.run_config
    fields = {k: v for k, v in recipe_fields(cfg).items() if k not in _NOT_RECIPE}
    if cfg.train.setup == "none":
        fields.pop("model.weights", None)
    return fields, cfg.train.seed


def summarize_run(run_dir: Path | str, split: str = "offsite_test",
                  val_split: str = "val") -> RunSummary:
    """Read one finished run folder.

    Raises:
        FileNotFoundError: no ``metrics.json`` or ``config.yaml`` (an unfinished run).
        ValueError: an unreadable config.
    """
    from funduslab.training.task_kinds import task_kind  # loads torch: only when a run is read

    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    metrics = folder.metrics  # FileNotFoundError names an unfinished folder
    recipe, seed = _recipe(folder)
    splits = metrics.get("splits", {})
    summary = RunSummary(run_dir, metrics.get("task", "multilabel"), recipe, seed,
                         seconds=(metrics.get("timing_s") or {}).get("total"))
    summary.scores, recall = task_kind(summary.task).summary_scores(splits, val_split, split)
    if recall is not None:
        summary.recall = recall
    return summary


def _key(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True, default=str)


def _label(recipe: dict[str, Any], varying: Sequence[str]) -> str:
    if "ensemble" in recipe:
        return f"ensemble {recipe['ensemble']}"
    shown = [f"{k.split('.', 1)[1]}={recipe.get(k)}" for k in varying if k in recipe]
    return ", ".join(shown) or str(recipe.get("model.backbone", "—"))


def compare_runs(run_dirs: Sequence[Path | str], split: str = "offsite_test",
                 group: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (recipes in first-seen order).

    Args:
        run_dirs: Finished run folders (single models, TTA re-evaluations, ensembles).
        split: The split reported as "test".
        group: One row per recipe (mean ± std over its runs); ``False`` gives one row per run.

    Raises:
        ValueError: no run folders, or single-model runs of different task kinds mixed.
    """
    summaries = [summarize_run(d, split) for d in run_dirs]
    if not summaries:
        raise ValueError("no run folders to compare")
    tasks = {s.task for s in summaries}
    if len(tasks) > 1:
        raise ValueError(f"the runs mix task kinds {sorted(tasks)}; compare them separately")
    groups: dict[str, list[RunSummary]] = {}
    for s in summaries:
        groups.setdefault(_key(s.recipe) if group else str(s.run_dir), []).append(s)
    recipes = [g[0].recipe for g in groups.values() if "ensemble" not in g[0].recipe]
    keys = sorted({k for r in recipes for k in r})
    varying = [k for k in keys if len({json.dumps(r.get(k), default=str) for r in recipes}) > 1]
    score_names = list(summaries[0].scores)
    labels = list(dict.fromkeys(k for s in summaries for k in s.recall))
    header = ["recipe", "runs", "seeds", *score_names, *(f"{k} recall" for k in labels),
              "minutes / run"]
    rows = []
    for members in groups.values():
        first = members[0]
        name = _label(first.recipe, varying) if group else first.run_dir.name
        seeds = ",".join(str(s.seed) for s in members if s.seed is not None) or "—"
        cells = [name, str(len(members)), seeds]
        cells += [mean_std([s.scores.get(n) for s in members]) for n in score_names]
        cells += [mean_std([s.recall.get(k) for s in members]).replace(" ± ", "±")
                  for k in labels]
        minutes = [s.seconds / 60 for s in members if s.seconds]
        cells.append(f"{np.mean(minutes):.1f}" if minutes else "—")
        rows.append(cells)
    return header, rows
