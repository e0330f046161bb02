"""Joining other labelled datasets to the train split: one rule, labels matched by name.

A run may learn from more than its own dataset — the course split's 800 training eyes plus the
ODIR-5K eyes of other patients. ``data.extra_sources`` names such sources;
:func:`join_extra_sources` (called by :func:`funduslab.training.runner.decode_splits`) appends
their rows to the run's table under these rules:

* **train only.** Every joined row gets the run's ``data.train_split``; validation and test rows
  come from the main dataset alone, so every figure used for selection or reporting is measured
  on it as before.
* **all of the source's splits, by default.** Nothing of the source is used for selection or
  reporting in this run, so its own train/val/test partition (e.g. the ``odir5k`` adapter's
  patient split) would only hold labelled eyes back; ``splits: [train]`` restricts the join when
  the source's other splits must stay unseen (say, to evaluate on them elsewhere). Unlabelled
  rows (a template split) never join.
* **labels by name.** Each of the main table's labels is taken from the source's label of the
  same name (``label_names`` of the source's table, which the adapter's options choose:
  ``odir5k`` with ``labels: [D, G, A]``). A label the source lacks is missing — NaN for its
  rows — and the losses mask it out (:class:`funduslab.losses.base.MaskedMultiLabelLoss`); it
  is never guessed. The source's other labels are dropped. A source sharing no label is an
  error.
* **kept apart.** Ids and patients are prefixed ``<adapter>/`` (``odir5k/0_left.jpg``), so they
  are recognisable in ``predictions/train.csv`` and a patient sampler never mixes a source's
  patient with a main one. A source image whose file is also one of the main table's images is an
  error; ids that merely coincide with main val/test ids are logged as a warning (ODIR-style
  names such as ``913_right.jpg`` may be the same eye).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from funduslab.config import DataConfig, ExtraSource
from funduslab.data.adapters import load_table
from funduslab.data.table import SampleTable

__all__ = ["extra_rows", "join_extra_sources", "observed_rows", "source_prefixes"]

log = logging.getLogger(__name__)

_PAIR = "pair"


def source_prefixes(sources: Sequence[ExtraSource]) -> list[str]:
    """Id prefix of each source: its adapter name, numbered when an adapter repeats."""
    names = [s.adapter.replace("-", "_") for s in sources]
    return [f"{n}/" if names.count(n) == 1 else f"{n}.{i}/" for i, n in enumerate(names)]


def extra_rows(
    main: SampleTable, source: SampleTable, prefix: str, train_split: str,
    splits: Sequence[str] | None = None, where: str = "data.extra_sources",
) -> pd.DataFrame:
    """The rows of ``source`` that join ``main``'s train split, in ``main``'s columns.

    Args:
        main: The run's table (its label names and columns decide the joined frame's).
        source: The extra dataset's table.
        prefix: Prefix of the joined ids and patients (``"odir5k/"``).
        train_split: The split name the rows get.
        splits: The source's splits to take (``None``: all); labelled rows only.
        where: Config field named in errors.

    Returns:
        Frame with ``main``'s required columns, its label columns (float; NaN where the source
        lacks the label), ``pair`` when ``main`` has one, and ``source_id`` (the original id).

    Raises:
        ValueError: a grading table, no shared label, an unknown split, or an image file that is
            also in ``main``.
    """
    for table in (main, source):
        if table.task != "multilabel":
            raise ValueError(f"{where}: joining needs multi-label tables; "
                             f"{table.source or 'a table'} is {table.task}")
    shared = [n for n in main.label_names if n in source.label_names]
    if not shared:
        raise ValueError(f"{where}: {source.source} has labels {source.label_names}, none of the "
                         f"run's {main.label_names}; choose its labels with the adapter's options "
                         "(odir5k: labels: [D, G, A])")
    frame = source.frame
    if splits is not None:
        unknown = [s for s in splits if s not in source.splits]
        if unknown:
            raise ValueError(f"{where}: splits {unknown} are not in {source.source}; its splits: "
                             f"{source.splits}")
        frame = frame[frame["split"].isin(list(splits))]
    frame = frame[frame["labelled"].astype(bool)].reset_index(drop=True)
    _check_no_shared_images(main, frame, train_split, source.source, where)
    rows = pd.DataFrame({
        "id": prefix + frame["id"].astype(str),
        "path": frame["path"].astype(str),
        "patient": prefix + frame["patient"].astype(str),
        "eye": frame["eye"].fillna("").astype(str),
        "split": train_split,
        "labelled": True,
    })
    for name in main.label_names:
        rows[name] = frame[name].astype(np.float64) if name in shared else np.nan
    if _PAIR in main.frame.columns:
        rows[_PAIR] = (prefix + frame[_PAIR].astype(str)) if _PAIR in frame.columns else ""
    rows["source_id"] = frame["id"].astype(str)
    missing = [n for n in main.label_names if n not in shared]
    log.info("%s: %d rows of %s join split %r%s", where, len(rows), source.source, train_split,
             f"; labels {missing} missing (masked out of the loss)" if missing else "")
    return rows


def _check_no_shared_images(main: SampleTable, frame: pd.DataFrame, train_split: str, what: str,
                            where: str) -> None:
    """Same file in both tables → ``ValueError``; same id as a main val/test image → warning."""
    main_paths = {str(Path(p).resolve()) for p in main.frame["path"]}
    shared = [p for p in frame["path"] if str(Path(p).resolve()) in main_paths]
    if shared:
        raise ValueError(f"{where}: {len(shared)} image(s) of {what} are also images of the run's "
                         f"own table, e.g. {shared[0]}; a joined source must not contain them")
    held_out = main.frame.loc[main.frame["split"] != train_split, "id"].astype(str)
    same_ids = sorted(set(held_out) & set(frame["id"].astype(str)))
    if same_ids:
        log.warning("%s: %d id(s) of %s also name images outside the main train split, e.g. %s; "
                    "if they are the same eyes, val/test figures are no longer independent",
                    where, len(same_ids), what, same_ids[:3])


def join_extra_sources(table: SampleTable, data: DataConfig) -> tuple[SampleTable, str]:
    """``table`` with every ``data.extra_sources`` row appended to ``data.train_split``.

    Returns:
        ``(joined table, fingerprint key)``; the key hashes the joined ids and labels, so a
        change of the source or of its label options changes the run's data fingerprint.

    Raises:
        ValueError: see :func:`extra_rows`; an unknown adapter (lists the valid ones).
        FileNotFoundError: a source root or image is missing.
    """
    parts = [table.frame]
    digest = hashlib.sha256()
    prefixes = source_prefixes(data.extra_sources)
    for i, (source, prefix) in enumerate(zip(data.extra_sources, prefixes)):
        where = f"data.extra_sources[{i}] ({source.adapter} at {source.root})"
        extra = load_table(source.adapter, Path(source.root), **source.options)
        rows = extra_rows(table, extra, prefix, data.train_split, source.splits, where)
        digest.update(pd.util.hash_pandas_object(rows[["id", *table.label_names]],
                                                 index=False).values.tobytes())
        parts.append(rows)
    frame = pd.concat(parts, ignore_index=True)
    joined = SampleTable(frame=frame, label_names=list(table.label_names), task=table.task,
                         num_grades=table.num_grades, source=table.source,
                         submission_columns=list(table.submission_columns))
    return joined, digest.hexdigest()[:16]


def observed_rows(targets: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: rows whose every label is observed (no NaN), the rows a metric may score.

    Metrics take complete 0/1 matrices; a joined row with a missing label is left out of the
    train split's figures rather than given a guessed label.
    """
    y = np.asarray(targets, dtype=np.float64)
    return ~np.isnan(y).reshape(len(y), -1).any(axis=1)
