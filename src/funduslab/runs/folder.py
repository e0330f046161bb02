"""One reader of run folders, so every tool agrees on what a run folder holds.

Training (``training/runner.py``) and ``funduslab ensemble`` write run folders; reports,
ensembles, Grad-CAM, the presets and ``funduslab predict`` read them. Before :class:`RunFolder`
each reader parsed ``config.yaml`` and guessed the weights file its own way, and they drifted
(one assumed ``model.pt`` while course runs save ``<team>_task<k>-<j>.pt``). A compact record
(``results/…``, :mod:`funduslab.reporting.record`) is a run folder without weights and reads the
same way.

Parsed files are read once per :class:`RunFolder` and handed out as copies, so a caller may edit
what it gets; make a new :class:`RunFolder` after writing into the folder.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from funduslab.config import RunConfig, config_from_dict
from funduslab.runs.files import (
    BUNDLE_FILENAME,
    CONFIG_FILE,
    FAILED_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RECORD_FILE,
    read_metrics,
    read_predictions,
    weights_filename,
)
from funduslab.runs.lock import LOCK_FILE
from funduslab.runs.record_check import check_record

__all__ = ["RunFolder", "find_run_folders"]

log = logging.getLogger(__name__)


class RunFolder:
    """A run folder (single model, ensemble, cross-validation folds) or a compact record.

    Args:
        path: The folder. Nothing is read until a property asks for it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._config: dict[str, Any] | None = None
        self._metrics: dict[str, Any] | None = None
        self._label_names: list[str] | None = None
        self._record_checked = False

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def config(self) -> dict[str, Any]:
        """``config.yaml`` as a dict (a copy: edit freely).

        Raises:
            FileNotFoundError: no ``config.yaml`` (names the folder).
            ValueError: not valid YAML, or not a mapping (names the file).
        """
        if self._config is None:
            self._check_record()
            path = self.config_path
            if not path.is_file():
                raise FileNotFoundError(
                    f"{self.path} has no config.yaml: is it a finished funduslab run?")
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as err:
                raise ValueError(f"{path} is not valid YAML: {err}") from None
            if not isinstance(doc, dict):
                raise ValueError(
                    f"{path} holds no mapping: is it a funduslab run folder's config.yaml?")
            self._config = doc
        return copy.deepcopy(self._config)

    @property
    def run_config(self) -> RunConfig:
        """The config of a single-model run, validated (``ValueError`` names the file and the
        fields); ``provenance`` is dropped. Ensemble folders have no :class:`RunConfig`."""
        return config_from_dict(self.config, origin=str(self.config_path))

    @property
    def provenance(self) -> dict[str, Any]:
        """``config.yaml``'s ``provenance`` section (seed, data fingerprint, label names, …)."""
        return dict(self.config.get("provenance") or {})

    @property
    def label_names(self) -> list[str]:
        """Label names, from the provenance, else from the first predictions file's ``p_``
        columns (older folders); ``FileNotFoundError`` when neither is there."""
        if self._label_names is None:
            names = self.provenance.get("label_names") if self.config_path.is_file() else None
            if not names:
                splits = self.prediction_splits
                if not splits:
                    raise FileNotFoundError(f"{self.path}/predictions has no <split>.csv files")
                path = self.path / "predictions" / f"{splits[0]}.csv"
                names = [c[2:] for c in pd.read_csv(path, nrows=0).columns if c.startswith("p_")]
            self._label_names = [str(n) for n in names]
        return list(self._label_names)

    @property
    def has_metrics(self) -> bool:
        """``metrics.json`` is there (evaluation finished)."""
        return (self.path / METRICS_FILE).is_file()

    @property
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` (a copy); ``FileNotFoundError`` names the folder."""
        if self._metrics is None:
            self._check_record()
            self._metrics = read_metrics(self.path)
        return copy.deepcopy(self._metrics)

    @property
    def prediction_splits(self) -> list[str]:
        """Splits with a ``predictions/<split>.csv``, sorted."""
        return sorted(p.stem for p in (self.path / "predictions").glob("*.csv"))

    def predictions(self, split: str,
                    label_names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Ids and ``(N, K)`` probabilities of ``split``, columns in ``label_names`` order
        (default :attr:`label_names`).

        Raises:
            FileNotFoundError: no predictions for ``split``.
            ValueError: a label's ``p_<label>`` column is missing.
        """
        names = self.label_names if label_names is None else list(label_names)
        self._check_record()
        return read_predictions(self.path, split, names)

    def _check_record(self) -> None:
        """Once per instance: warn, naming each file, when a record's files are missing or differ
        from the SHA-256 written with it (a record has no source to be rebuilt from)."""
        if self._record_checked or not self.is_record:
            return
        self._record_checked = True
        for problem in check_record(self.path):
            log.warning("record %s is not as it was written: %s", self.path, problem)

    @property
    def history(self) -> pd.DataFrame | None:
        """``history.csv`` (one row per epoch), or ``None`` (ensembles, records of such)."""
        path = self.path / HISTORY_FILE
        return pd.read_csv(path) if path.is_file() else None

    @property
    def weights(self) -> Path | None:
        """The single model's weights file: the name ``config.yaml``'s ``output`` implies
        (``<team>_task<k>-<j>.pt`` or ``model.pt``), else the only ``*.pt`` at the top level.
        ``ensemble.pt`` and ``checkpoints/`` never count. ``None`` when there is none (an
        ensemble, a record, an unfinished run).

        Raises:
            ValueError: several candidate ``.pt`` files and none with the configured name (names
                them), or an unreadable ``config.yaml``.
        """
        named = self.path / self._configured_weights_name()
        if named.is_file():
            return named
        found = [p for p in sorted(self.path.glob("*.pt"))
                 if p.name != BUNDLE_FILENAME and p.is_file()]
        if len(found) > 1:
            raise ValueError(f"{self.path} holds several weights files {[p.name for p in found]} "
                             f"and none is {named.name}; keep one")
        return found[0] if found else None

    def require_weights(self) -> Path:
        """:attr:`weights`, or ``FileNotFoundError`` naming the folder and the expected file."""
        path = self.weights
        if path is None:
            raise FileNotFoundError(f"{self.path} has no weights file "
                                    f"({self._configured_weights_name()} or *.pt): did the run "
                                    "finish?")
        return path

    def _configured_weights_name(self) -> str:
        out = (self.config.get("output") or {}) if self.config_path.is_file() else {}
        return weights_filename(out.get("team"), out.get("task"))

    @property
    def bundle(self) -> Path | None:
        """The ensemble bundle ``ensemble.pt`` (members' weights + combiner), if saved."""
        path = self.path / BUNDLE_FILENAME
        return path if path.is_file() else None

    @property
    def bf16(self) -> bool:
        """The run evaluated under bf16 autocast (``metrics.json``'s ``fit.precision``, else the
        configured ``train.precision``), so predicting it again should too."""
        fit = (self.metrics.get("fit") or {}) if self.has_metrics else {}
        train = self.config.get("train") or {}
        return (fit.get("precision") or train.get("precision")) == "bf16-mixed"

    @property
    def tta(self) -> bool:
        """The run predicted with flip TTA (``train.tta``)."""
        return bool((self.config.get("train") or {}).get("tta", False))

    @property
    def is_finished(self) -> bool:
        """``metrics.json`` and ``config.yaml`` are there: a reader may trust the folder."""
        return self.has_metrics and self.config_path.is_file()

    @property
    def is_ensemble(self) -> bool:
        """``config.yaml`` has an ``ensemble`` section (``False`` without a config)."""
        return self.config_path.is_file() and "ensemble" in self.config

    @property
    def is_record(self) -> bool:
        """A compact record (``record.json``): text files only, no weights."""
        return (self.path / RECORD_FILE).is_file()

    @property
    def failed(self) -> dict[str, Any] | None:
        """``failed.json`` (``error``, ``time``, ``resume``) after a failed run, else ``None``.

        Raises:
            ValueError: the file is not a JSON object (names it).
        """
        path = self.path / FAILED_FILE
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path} is unreadable: {err}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path} holds no JSON object")
        return doc


def _looks_like_run(path: Path) -> bool:
    """A run folder in the making (or left empty by a failure), not a cache or figures folder."""
    marks = (CONFIG_FILE, FAILED_FILE, "checkpoints")
    return (any((path / m).exists() for m in marks)
            or not any(p.name != LOCK_FILE for p in path.iterdir()))


def _why_unfinished(run_dir: Path) -> str:
    try:
        failed = RunFolder(run_dir).failed
    except ValueError:
        return "failed (unreadable failed.json)"
    if failed is not None:
        return "failed: " + str(failed.get("error", "unknown error"))
    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "unfinished: interrupted during training; re-run its command to resume"
    return "unfinished: no metrics.json"


def find_run_folders(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Finished run folders among ``paths`` (a folder that is not a run contributes its
    sub-folders), and the sub-folders skipped with the reason.

    Raises:
        FileNotFoundError: a path does not exist, or holds no finished run at all (the skipped
            sub-folders and reasons are named).
    """
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if RunFolder(path).has_metrics:
            found.append(path)
        elif not path.is_dir():
            raise FileNotFoundError(f"run folder not found: {path}")
        else:
            subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            inner = [p for p in subs if RunFolder(p).has_metrics]
            here = [(p, _why_unfinished(p)) for p in subs if p not in inner and _looks_like_run(p)]
            if not inner:
                detail = "; ".join(f"{p.name}: {why}" for p, why in here) or "no sub-folders"
                raise FileNotFoundError(
                    f"{path} is not a finished run folder and holds none ({detail})")
            found += inner
            skipped += here
    return list(dict.fromkeys(found)), skipped
