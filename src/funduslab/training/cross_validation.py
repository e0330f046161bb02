"""k-fold cross-validation of one recipe: out-of-fold scores to choose with, a fold ensemble to
test with.

One run folder per fold (``<out>/<name>/fold<k>``, each an ordinary run trained on the other
folds of train + val, :mod:`funduslab.data.folds`), then the cross-validation folder itself
(``<out>/<name>``) — readable by ``funduslab report``, ``predict`` and ``explain``-style tools like
any run folder:

* ``predictions/val.csv`` and ``metrics.json["splits"]["val"]``: the **out-of-fold** predictions
  — every train + val image scored by the one model that did not train on it. Thresholds are
  tuned on these when ``train.tune_thresholds`` is set, so they are chosen on 1,000 course images
  instead of 200.
* every other split (the tests): the mean of the fold models' probabilities (soft voting),
  thresholded at 0.5 or at the out-of-fold thresholds; ``submission.csv`` for an unlabelled
  split.
* ``config.yaml``: the recipe with ``data.folds`` set; its ``provenance.cross_validation`` names
  the fold folders, which :func:`funduslab.inference.saved_model.load_saved_model` loads as a
  soft-voting ensemble.

Multi-label tasks only (grading folds work as single runs; their cut points would need pooling).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import RunConfig, config_from_dict, save_config
from funduslab.training.config_names import validate_names
from funduslab.data.adapters import load_table
from funduslab.data.table import SampleTable
from funduslab.metrics import multilabel_metrics, tune_thresholds
from funduslab.reporting.run_folder import (
    environment_info,
    read_metrics,
    read_predictions,
    write_json,
    write_predictions,
    write_submission,
)
from funduslab.training.runner import run

__all__ = ["cross_validate", "fold_config"]

log = logging.getLogger(__name__)


def fold_config(cfg: RunConfig, folds: int, fold: int, fold_seed: int = 0) -> RunConfig:
    """``cfg`` for one fold: data re-split, run folder ``<out>/<name>/fold<fold>``."""
    raw = cfg.model_dump(mode="json")
    raw["data"].update(folds=folds, fold=fold, fold_seed=fold_seed)
    raw["output"].update(out=str(cfg.run_dir), name=f"fold{fold}", team=None, task=None)
    return config_from_dict(raw, origin=f"fold {fold} of {folds}")


def _mean_probs(run_dirs: list[Path], split: str, labels: list[str]) -> tuple[list[str], np.ndarray]:
    ids0, probs = None, []
    for d in run_dirs:
        ids, p = read_predictions(d, split, labels)
        if ids0 is not None and ids != ids0:
            raise ValueError(f"{d} predicted other {split} images than {run_dirs[0]}")
        ids0 = ids
        probs.append(p)
    return list(ids0 or []), np.mean(probs, axis=0)


def cross_validate(cfg: RunConfig, folds: int = 5, fold_seed: int = 0,
                   progress: bool = True) -> Path:
    """Train ``folds`` runs of ``cfg`` and write the cross-validation folder; return it.

    Interrupted? Run it again: finished folds are reused, a partial one resumes.

    Raises:
        ValueError: ``folds`` < 2, a grading dataset, or fold runs that disagree.
    """
    validate_names(cfg)  # every registry name, before any data or model
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    started = time.time()
    table = _load_multilabel_table(cfg)
    labels = table.label_names
    fold_dirs = [run(fold_config(cfg, folds, k, fold_seed), progress=progress)
                 for k in range(folds)]
    cv_dir = cfg.run_dir
    val = cfg.data.val_split

    ids, oof, truth = _out_of_fold_predictions(cfg, table, fold_dirs)
    tuned = tune_thresholds(truth, oof, objective=cfg.train.threshold_objective)
    chosen = tuned if cfg.train.tune_thresholds else np.full(len(labels), 0.5)

    metrics: dict[str, Any] = {"label_names": labels, "splits": {}, "cross_validation": {
        "folds": folds, "fold_seed": fold_seed, "fold_runs": [str(d) for d in fold_dirs],
        "fold_val_course_average_f1": [
            read_metrics(d)["splits"][val]["threshold_0.5"]["course_average_f1"]
            for d in fold_dirs],
    }}
    write_predictions(cv_dir / "predictions" / f"{val}.csv", ids, oof,
                      (oof >= chosen).astype(int), labels)
    metrics["splits"][val] = {"threshold_0.5": multilabel_metrics(truth, oof, 0.5, labels),
                              "tuned_thresholds": multilabel_metrics(truth, oof, tuned, labels)}
    metrics["splits"].update(_write_test_splits(cfg, table, fold_dirs, chosen, tuned))
    metrics["thresholds"] = {"used": "tuned_on_out_of_fold" if cfg.train.tune_thresholds
                             else "0.5", "tuned_on_val": [float(t) for t in tuned],
                             "objective": cfg.train.threshold_objective}
    metrics["timing_s"] = {"total": round(sum(
        float(read_metrics(d).get("timing_s", {}).get("total", 0.0)) for d in fold_dirs)
        + time.time() - started, 1)}
    write_json(cv_dir / "metrics.json", metrics)
    _write_cv_config(cfg, folds, fold_seed, fold_dirs, labels, chosen)
    log.info("cross-validation of %d folds written to %s", folds, cv_dir)
    return cv_dir


def _load_multilabel_table(cfg: RunConfig) -> SampleTable:
    table = load_table(cfg.data.adapter, Path(cfg.data.root), **cfg.data.options)
    if table.task != "multilabel":
        raise ValueError("cross-validation summarises multi-label runs; for a grading dataset "
                         "train the folds one by one (data.folds / data.fold)")
    return table


def _out_of_fold_predictions(
    cfg: RunConfig, table: SampleTable, fold_dirs: list[Path],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every fold's validation predictions, stacked: ``(ids, probabilities, true labels)``.

    Raises:
        ValueError: the folds' validation images do not cover train + val exactly once.
    """
    val, train = cfg.data.val_split, cfg.data.train_split
    labels = table.label_names
    ids: list[str] = []
    probs = []
    for d in fold_dirs:
        fold_ids, p = read_predictions(d, val, labels)
        ids += fold_ids
        probs.append(p)
    oof = np.concatenate(probs)
    frame = table.frame.set_index("id")
    pooled = frame.index[frame["split"].isin([train, val])]
    if sorted(ids) != sorted(pooled.astype(str)):
        raise ValueError(f"the fold runs' {val} predictions do not cover {train} + {val} exactly "
                         "once; were they trained with other folds? delete them and re-run")
    truth = frame.loc[ids, labels].to_numpy(dtype=int)
    return ids, oof, truth


def _write_test_splits(
    cfg: RunConfig, table: SampleTable, fold_dirs: list[Path], chosen: np.ndarray,
    tuned: np.ndarray,
) -> dict[str, dict]:
    """Soft-vote the fold models on every split other than train and val; write their
    predictions (and ``submission.csv`` for an unlabelled split); return the labelled splits'
    metrics by split name."""
    cv_dir = cfg.run_dir
    val, train = cfg.data.val_split, cfg.data.train_split
    labels = table.label_names
    frame = table.frame.set_index("id")
    metrics: dict[str, dict] = {}
    for split in table.splits:
        if split in (train, val):
            continue
        split_ids, p = _mean_probs(fold_dirs, split, labels)
        write_predictions(cv_dir / "predictions" / f"{split}.csv", split_ids, p,
                          (p >= chosen).astype(int), labels)
        rows = frame.loc[split_ids]
        if bool(rows["labelled"].all()):
            y = rows[labels].to_numpy(dtype=int)
            metrics[split] = {
                "threshold_0.5": multilabel_metrics(y, p, 0.5, labels),
                "tuned_thresholds": multilabel_metrics(y, p, tuned, labels)}
        elif table.submission_columns:
            write_submission(cv_dir / "submission.csv", split_ids, (p >= chosen).astype(int),
                             table.submission_columns)
    return metrics


def _write_cv_config(cfg: RunConfig, folds: int, fold_seed: int, fold_dirs: list[Path],
                     labels: list[str], chosen: np.ndarray) -> None:
    """``config.yaml`` of the cross-validation folder: the recipe with ``data.folds`` set, and
    the fold folders that :func:`~funduslab.inference.saved_model.load_saved_model` votes over."""
    summary = {**fold_config(cfg, folds, 0, fold_seed).model_dump(mode="json")}
    summary["output"] = cfg.model_dump(mode="json")["output"]
    save_config(config_from_dict(summary), cfg.run_dir / "config.yaml", {
        "seed": cfg.train.seed, "label_names": labels,
        "cross_validation": {"folds": folds, "fold_seed": fold_seed,
                             "fold_runs": [d.name for d in fold_dirs],
                             "thresholds": [float(t) for t in chosen]},
        "environment": environment_info()})
