"""Ensemble members: finished run folders' saved probabilities, checked to line up.

A member is any run folder with ``config.yaml`` and ``predictions/<split>.csv`` (a single model
or another ensemble). Prediction files hold ids and probabilities but not the truth, so labels
come from the dataset table named by the first member's ``config.yaml`` (``data.adapter``,
``data.root``, ``data.options``), matched to the predictions by id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.data.adapters import load_table
from funduslab.data.table import SampleTable
from funduslab.runs import RunFolder

__all__ = ["EnsembleData", "load_members", "member_record", "read_run_config", "resolve_member"]

log = logging.getLogger(__name__)


@dataclass
class EnsembleData:
    """Members' probabilities per split, the truth where known, and what the splits are.

    Attributes:
        run_dirs: Member run folders, in member order ``m = 0 … M-1``.
        label_names: ``K`` label names shared by all members.
        ids: Split name → ``N`` ids in the members' (table) order.
        probs: Split name → ``(M, N, K)`` member probabilities.
        targets: Split name → ``(N, K)`` 0/1 truth, only for labelled splits.
        data: The first member's ``data`` config section (how to find the table again).
        submission_columns: Kaggle submission columns of the unlabelled split (may be empty).
    """

    run_dirs: list[Path]
    label_names: list[str]
    ids: dict[str, list[str]]
    probs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    data: dict[str, Any] = field(default_factory=dict)
    submission_columns: list[str] = field(default_factory=list)

    @property
    def val_split(self) -> str:
        return str(self.data.get("val_split", "val"))

    @property
    def train_split(self) -> str:
        return str(self.data.get("train_split", "train"))


def read_run_config(run_dir: Path | RunFolder) -> dict[str, Any]:
    """``config.yaml`` of a member (:attr:`RunFolder.config`), checked to name its dataset.

    Raises:
        FileNotFoundError: no ``config.yaml`` (names the folder).
        ValueError: bad YAML, or no ``data`` section (names the file).
    """
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    doc = folder.config
    if "data" not in doc:
        raise ValueError(f"{folder.config_path} has no data section: cannot tell which dataset "
                         "it predicted")
    return doc


def member_record(run_dir: Path | str, ensemble_dir: Path | str) -> str:
    """How ``config.yaml`` records a member: relative to the ensemble folder, so copying or
    moving members and ensemble together keeps the link (absolute only across drives)."""
    target, base = Path(run_dir).resolve(), Path(ensemble_dir).resolve()
    try:
        return Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # Windows: another drive has no relative path
        return str(target)


def resolve_member(entry: str, ensemble_dir: Path | str, absolute: str | None = None) -> Path:
    """The run folder a recorded member ``entry`` of ``ensemble_dir`` names.

    Looks relative to the ensemble folder (how members are recorded), then at ``entry`` as it
    stands (absolute, or relative to the working directory: older ensembles), then at
    ``absolute`` (where the member was when the ensemble was written), then in the ensemble's
    own ``members/`` folder (bagging, boosting).

    Raises:
        FileNotFoundError: no finished run folder at any of those places; names the ensemble,
            the recorded path and every place looked at.
    """
    ens, path = Path(ensemble_dir), Path(entry)
    candidates = [path] if path.is_absolute() else [ens / path, path]
    if absolute:
        candidates.append(Path(absolute))
    candidates.append(ens / "members" / path.name)
    seen: list[Path] = []
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.append(candidate)
        if (candidate / "config.yaml").is_file():
            return candidate
    looked = ", ".join(str(c) for c in seen)
    raise FileNotFoundError(
        f"ensemble {ens} records member {entry!r} (config.yaml ensemble.members), but no "
        f"finished run folder is there; looked in: {looked}. Copy or move the member run "
        f"folders together with the ensemble, or predict with its bundle (a .pt that "
        f"`funduslab ensemble --bundle` writes while the members exist)")


def _member_predictions(
    folder: RunFolder, label_names: list[str]
) -> dict[str, tuple[list[str], np.ndarray]]:
    splits = folder.prediction_splits
    if not splits:
        raise FileNotFoundError(f"{folder.path / 'predictions'} has no <split>.csv files: is "
                                f"{folder.path} a finished run?")
    return {s: folder.predictions(s, label_names) for s in splits}


def load_members(run_dirs: Sequence[Path | str]) -> EnsembleData:
    """Read and cross-check the members' predictions; attach the truth from the dataset table.

    Args:
        run_dirs: Two or more run folders predicting the same dataset.

    Raises:
        ValueError: fewer than 2 members, or a member whose label names, split names or ids
            (per split, in order) differ from the first member's — the message names it.
        FileNotFoundError: a member lacks ``config.yaml`` / predictions, or its dataset is gone.
    """
    dirs = [Path(d) for d in run_dirs]
    _check_member_dirs(dirs)
    folders = [RunFolder(d) for d in dirs]
    first_doc = read_run_config(folders[0])
    names = folders[0].label_names
    reference = _member_predictions(folders[0], names)
    stacks: dict[str, list[np.ndarray]] = {s: [p] for s, (_, p) in reference.items()}
    for folder in folders[1:]:
        preds = _matching_predictions(folder, folders[0], first_doc, names, reference)
        for split, (_, probs) in preds.items():
            stacks[split].append(probs)
    table = _load_table(dirs[0], first_doc["data"])
    if table.task != "multilabel":
        raise ValueError(f"{dirs[0]} is a {table.task} run; ensembles combine multi-label "
                         "(per-disease probability) runs only")
    return EnsembleData(
        run_dirs=dirs,
        label_names=names,
        ids={s: ids for s, (ids, _) in reference.items()},
        probs={s: np.stack(v).astype(np.float64) for s, v in stacks.items()},
        targets=_member_targets(table, dirs[0], reference, names),
        data=dict(first_doc["data"]),
        submission_columns=list(table.submission_columns),
    )


def _check_member_dirs(dirs: list[Path]) -> None:
    if len(dirs) < 2:
        raise ValueError(f"an ensemble needs at least 2 run folders; got {len(dirs)}")
    if len(set(d.resolve() for d in dirs)) < len(dirs):
        raise ValueError(f"a run folder is listed twice: {[str(d) for d in dirs]}")


def _matching_predictions(
    folder: RunFolder, first: RunFolder, first_doc: dict[str, Any], names: list[str],
    reference: dict[str, tuple[list[str], np.ndarray]],
) -> dict[str, tuple[list[str], np.ndarray]]:
    """A later member's predictions, checked against the first member's: the same labels,
    splits and ids in the same order (a different data root only warns)."""
    d = folder.path
    doc = read_run_config(folder)
    other = folder.label_names
    if other != names:
        raise ValueError(f"{d} predicts labels {other} but {first.path} predicts {names}")
    if doc["data"].get("root") != first_doc["data"].get("root"):
        log.warning("%s reads data from %s, %s from %s; members are matched by id",
                    d, doc["data"].get("root"), first.path, first_doc["data"].get("root"))
    preds = _member_predictions(folder, names)
    if set(preds) != set(reference):
        raise ValueError(f"{d} has prediction splits {sorted(preds)} but {first.path} has "
                         f"{sorted(reference)}")
    for split, (ids, _) in preds.items():
        ref_ids = reference[split][0]
        if ids != ref_ids:
            diff = next((i for i, (a, b) in enumerate(zip(ids, ref_ids)) if a != b),
                        min(len(ids), len(ref_ids)))
            raise ValueError(
                f"{d}/predictions/{split}.csv does not list the same ids in the same order as "
                f"{first.path} ({len(ids)} vs {len(ref_ids)} rows; first difference at row {diff})"
            )
    return preds


def _member_targets(
    table: SampleTable, first_dir: Path, reference: dict[str, tuple[list[str], np.ndarray]],
    names: list[str],
) -> dict[str, np.ndarray]:
    """``(N, K)`` truth of every fully labelled split, in the members' id order.

    Raises:
        ValueError: a split or an id of the predictions is not in the dataset.
    """
    targets = {}
    for split, (ids, _) in reference.items():
        if split not in table.splits:
            raise ValueError(f"split {split!r} of {first_dir} is not in its dataset {table.source}")
        rows = table.split(split)
        rows.index = rows["id"].astype(str)
        missing = [i for i in ids if i not in rows.index]
        if missing:
            raise ValueError(f"{first_dir}/predictions/{split}.csv has ids missing from the "
                             f"dataset {table.source}, e.g. {missing[:5]}")
        if bool(rows["labelled"].all()):
            targets[split] = rows.loc[ids, names].to_numpy(dtype=np.int64)
    return targets


def _load_table(run_dir: Path, data: dict[str, Any]):
    try:
        return load_table(data.get("adapter", "odir_course"), Path(data.get("root", "data")),
                          **(data.get("options") or {}))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the labels of {run_dir} come from its dataset, which could not be read: {err}"
        ) from None
