"""Write an ensemble's run folder, the same shape as a single model's.

``config.yaml`` (the first member's ``data`` section, so the folder can itself be an ensemble
member, plus ``ensemble``: method, parameters, learned values, members), ``metrics.json`` (every
labelled split at threshold 0.5 and at thresholds tuned on validation, plus each member's course
average F-score for comparison), ``predictions/<split>.csv`` and ``submission.csv`` (the
unlabelled split, in the members' — i.e. the template's — row order). Only the validation
split's labels reach ``fit``; for stacking, validation metrics use its out-of-fold predictions.

Members are recorded relative to the ensemble folder (``ensemble.members``), so members and
ensemble can be moved or copied together, with their absolute paths at writing time as a
fallback (``ensemble.members_absolute``); see :func:`~funduslab.ensemble.members.resolve_member`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from funduslab.config import atomic_write_text
from funduslab.ensemble.combiners import ENSEMBLES
from funduslab.ensemble.members import EnsembleData, member_record
from funduslab.metrics import course_average_f1, multilabel_metrics, tune_thresholds
from funduslab.runs.files import (
    BUNDLE_FILENAME,
    environment_info,
    write_json,
    write_predictions,
    write_submission,
)

__all__ = ["BUNDLE_FILENAME", "build_combiner", "combine", "write_ensemble_run"]

log = logging.getLogger(__name__)


def build_combiner(method: str, **params: Any):
    """The registered combiner ``method`` with ``params`` (``ValueError`` names bad ones)."""
    cls = ENSEMBLES.get(method)
    valid = set(cls().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(f"ensemble method {method!r} has no parameter(s) {unknown}; "
                         f"valid: {sorted(valid) or 'none'}")
    return cls(**params)


def combine(data: EnsembleData, combiner) -> tuple[Any, dict[str, np.ndarray]]:
    """Fit ``combiner`` on the validation split; ensemble probabilities ``(N, K)`` per split.

    Raises:
        ValueError: if the validation split is missing or unlabelled and the method needs labels.
    """
    val = data.val_split
    if val not in data.probs:
        raise ValueError(f"members have no {val!r} predictions to fit the ensemble on; "
                         f"splits: {sorted(data.probs)}")
    combiner.fit(data.probs[val], data.targets.get(val))
    probs = {s: combiner.predict_proba(p) for s, p in data.probs.items()}
    oof = getattr(combiner, "oof_proba_", None)
    if oof is not None:
        probs[val] = oof
    return combiner, probs


def _learned(combiner) -> dict[str, Any]:
    out = {}
    for key, value in vars(combiner).items():
        if key.endswith("_") and not key.startswith("_") and key not in ("models_", "oof_proba_"):
            out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def write_ensemble_run(
    data: EnsembleData,
    method: str,
    out_dir: Path,
    params: dict[str, Any] | None = None,
    tune: bool = False,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Fit ``method`` on the members in ``data`` and write its run folder to ``out_dir``.

    Args:
        data: Loaded members (:func:`funduslab.ensemble.members.load_members`).
        method: Registered combiner name (``ENSEMBLES``).
        out_dir: The ensemble's run folder (created).
        params: Combiner parameters.
        tune: Use thresholds tuned on validation for ``predictions``/``submission`` labels
            (metrics always report both 0.5 and tuned thresholds).
        extra_config: More entries for ``config.yaml``'s ``ensemble`` section (e.g. bagging's).

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    combiner, probs = combine(data, build_combiner(method, **(params or {})))
    _remove_stale_bundle(out_dir)
    names, val = data.label_names, data.val_split
    tuned = tune_thresholds(data.targets[val], probs[val]) if val in data.targets else None
    chosen = tuned if (tune and tuned is not None) else np.full(len(names), 0.5)

    records = [member_record(d, out_dir) for d in data.run_dirs]
    metrics: dict[str, Any] = {
        "label_names": names,
        "splits": _write_split_predictions(data, probs, chosen, tuned, out_dir),
        "members": _member_scores(data, records),
    }
    metrics["thresholds"] = {
        "used": "tuned_on_val" if chosen is tuned else "0.5",
        "tuned_on_val": None if tuned is None else [float(t) for t in tuned],
        "objective": "f1_macro",  # the course figure (tune_thresholds' default)
    }
    learned = _learned(combiner)
    metrics["ensemble"] = {"method": method, "params": combiner.get_params(), "learned": learned}
    write_json(out_dir / "metrics.json", metrics)

    doc = _ensemble_config(data, method, combiner.get_params(), learned, records, tune,
                           extra_config)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(_plain(doc), sort_keys=False))
    log.info("ensemble %s of %d members written to %s", method, len(data.run_dirs), out_dir)
    return out_dir


def _ensemble_config(
    data: EnsembleData, method: str, params: dict[str, Any], learned: dict[str, Any],
    records: list[str], tune: bool, extra_config: dict[str, Any] | None,
) -> dict[str, Any]:
    """``config.yaml`` of an ensemble folder: the first member's ``data`` section (so the folder
    can itself be a member), the ensemble and its members, and provenance."""
    return {
        "data": data.data,
        "ensemble": {
            "method": method,
            "params": params,
            "learned": learned,
            "members": records,
            "members_absolute": [str(Path(d).resolve()) for d in data.run_dirs],
            "fit_on": data.val_split,
            "tune_thresholds": bool(tune),
            **(extra_config or {}),
        },
        "provenance": {
            "label_names": data.label_names,
            "split_sizes": {s: len(i) for s, i in data.ids.items()},
            "environment": environment_info(),
        },
    }


def _remove_stale_bundle(out_dir: Path) -> None:
    """Delete an ``ensemble.pt`` left in ``out_dir``: it bundled the ensemble this folder held
    before, and ``funduslab predict`` would use it instead of the new one."""
    stale = out_dir / BUNDLE_FILENAME
    if stale.is_file():
        stale.unlink()
        log.info("removed %s: it bundled the ensemble this folder held before", stale)


def _write_split_predictions(
    data: EnsembleData, probs: dict[str, np.ndarray], chosen: np.ndarray,
    tuned: np.ndarray | None, out_dir: Path,
) -> dict[str, dict]:
    """Write ``predictions/<split>.csv`` for every split (and ``submission.csv`` for an
    unlabelled one); return the labelled splits' metrics by split name."""
    names = data.label_names
    splits: dict[str, dict] = {}
    for split, p in probs.items():
        preds = (p >= chosen).astype(int)
        write_predictions(out_dir / "predictions" / f"{split}.csv", data.ids[split], p, preds,
                          names)
        if split in data.targets:
            y = data.targets[split]
            entry = {"threshold_0.5": multilabel_metrics(y, p, 0.5, names)}
            if tuned is not None:
                entry["tuned_thresholds"] = multilabel_metrics(y, p, tuned, names)
            splits[split] = entry
        elif data.submission_columns:
            write_submission(out_dir / "submission.csv", data.ids[split], preds,
                             data.submission_columns)
    return splits


def _member_scores(data: EnsembleData, records: list[str]) -> dict[str, dict]:
    """Each member's course average F-score at 0.5 on every labelled split, for comparison."""
    return {
        record: {
            s: {"course_average_f1": course_average_f1(y, (data.probs[s][m] >= 0.5).astype(int))}
            for s, y in data.targets.items()
        }
        for m, record in enumerate(records)
    }


def _plain(value: Any) -> Any:
    """YAML-safe copy (numpy → Python, tuples → lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value
