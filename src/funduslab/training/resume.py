"""Refuse to resume a run folder whose checkpoints were written under another config.

``output.resume`` restarts an interrupted run from ``checkpoints/last.ckpt``. That is only
sound when the folder's saved ``config.yaml`` describes the same training: resuming a focal-loss
run with BCE, or a 256-px run at 128 px, would silently mix two experiments in one folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funduslab.config import RunConfig
from funduslab.runs import RunFolder
from funduslab.training.recipe import resolve_recipe

__all__ = ["EVALUATION_ONLY", "check_resumable", "config_differences", "is_finished",
           "recipe_fields"]

#: Fields that change what happens after fitting (or where files go), not the weights.
EVALUATION_ONLY = frozenset({
    "data.num_workers", "data.cache_dir", "train.tune_thresholds",
    "train.threshold_objective", "train.tta",
    "train.devices", "train.strategy", "train.accelerator",
})


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def _fields(cfg: RunConfig) -> dict[str, Any]:
    doc = cfg.model_dump(mode="json")
    flat = {k: v for section in ("data", "model", "train")
            for k, v in _flatten(doc[section], f"{section}.").items()}
    if flat.get("data.root"):
        flat["data.root"] = str(Path(flat["data.root"]).resolve())
    return flat


def recipe_fields(cfg: RunConfig) -> dict[str, Any]:
    """Every ``data``/``model``/``train`` field, flattened (``{"train.loss": "focal", …}``)."""
    return _fields(cfg)


def _training_fields(cfg: RunConfig) -> dict[str, Any]:
    return {k: v for k, v in _fields(cfg).items() if k not in EVALUATION_ONLY}


def _saved_config(run_dir: Path) -> RunConfig:
    folder = RunFolder(run_dir)
    try:
        return folder.run_config
    except ValueError as err:
        raise ValueError(f"{folder.config_path} cannot be read as a funduslab config ({err}); "
                         f"delete {run_dir} or set output.resume: false to start over") from None


def config_differences(old: RunConfig, new: RunConfig) -> list[str]:
    """``["train.loss: 'bce' → 'focal'", …]`` for fields that change the fitted weights.

    ``old`` is a saved ``config.yaml`` (its recipe already resolved by the run that wrote it);
    ``new`` gets its recipe resolved here, so a config that leaves the fast recipe's knobs unset
    matches a run trained under them.
    """
    a, b = _training_fields(old), _training_fields(resolve_recipe(new))
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def check_resumable(run_dir: Path, cfg: RunConfig) -> None:
    """Raise ``ValueError`` when ``run_dir`` would resume checkpoints of a different config.

    Nothing to check when resuming is off, or the folder has no ``last.ckpt`` or no
    ``config.yaml`` yet (a fresh run).
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not cfg.output.resume or not (run_dir / "checkpoints" / "last.ckpt").is_file() \
            or not saved_path.is_file():
        return
    diffs = config_differences(_saved_config(run_dir), cfg)
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; … {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise ValueError(
            f"{run_dir} holds checkpoints of a different config ({shown}); resuming would mix "
            "two experiments. Give the run another output.name, delete the folder, or set "
            "output.resume: false to start it over.")


def is_finished(run_dir: Path, cfg: RunConfig, weights_name: str) -> bool:
    """True when ``run_dir`` already holds this exact run's results, evaluation settings included.

    Finished means ``metrics.json``, the weights file and ``config.yaml`` are there and the saved
    config equals ``cfg`` field for field (``data``, ``model``, ``train``). A suite re-run after
    an interruption then skips what is done; a changed evaluation field (``train.tta``, …)
    re-evaluates instead. Resuming must be on (``output.resume``).
    """
    run_dir = Path(run_dir)
    if not cfg.output.resume or not all(
            (run_dir / name).is_file() for name in ("metrics.json", weights_name, "config.yaml")):
        return False
    return _fields(_saved_config(run_dir)) == _fields(cfg)
