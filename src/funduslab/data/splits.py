"""Patient-level, multilabel-stratified train/val/test splits.

Images of one patient (both eyes, repeated shots) must never straddle splits, or the test score
measures memorised patients rather than generalisation. Patients are the unit of splitting; each
patient's label vector is the maximum over its images (a patient is positive for a disease if any
of its eyes is), and for grading the one-hot of the patient's maximum grade. Splits are drawn with
iterative stratification so that every label keeps its prevalence in every split:

    Sechidis, Tsoumakas, Vlahavas, "On the Stratification of Multi-Label Data", ECML PKDD 2011.
    Szymański, Kajdanowicz, "A network perspective on stratification of multi-label data", 2017.

via ``iterstrat.ml_stratifiers.MultilabelStratifiedShuffleSplit`` (package
``iterative-stratification``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_FRACTIONS",
    "patient_label_matrix",
    "patient_overlap",
    "patient_split",
    "sort_by_split",
]

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Validate split fractions: non-empty, each in [0, 1], summing to 1."""
    if not fractions:
        raise ValueError("fractions is empty; give e.g. {'train': 0.7, 'val': 0.15, 'test': 0.15}")
    out = {}
    for name, frac in fractions.items():
        try:
            value = float(frac)
        except (TypeError, ValueError):
            raise TypeError(f"fraction for split {name!r} must be a number, got {frac!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fraction for split {name!r} must be in [0, 1], got {value}")
        out[str(name)] = value
    total = sum(out.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {out} (sum {total:.4f})")
    return out


def _exact_size(pool: np.ndarray, chosen: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Trim or top up ``chosen`` (a subset of ``pool``) to exactly ``size`` items, seeded.

    Iterative stratification overshoots the requested size on tiny data (each label's share is
    rounded up); the split sizes should not depend on that.
    """
    rng = np.random.default_rng(seed)
    if len(chosen) > size:
        return np.sort(rng.choice(chosen, size=size, replace=False))
    if len(chosen) < size:
        rest = np.setdiff1d(pool, chosen)
        extra = rng.choice(rest, size - len(chosen), replace=False)
        return np.sort(np.concatenate([chosen, extra]))
    return chosen


def _split_sizes(fracs: dict[str, float], n: int) -> dict[str, int]:
    """Patients in each split after the first (which takes the rest); raise when too few.

    A split with a fraction > 0 gets at least one patient.
    """
    names = list(fracs)
    wanted = {k: (max(1, round(f * n)) if f > 0 else 0) for k, f in fracs.items() if k != names[0]}
    if n - sum(wanted.values()) < (1 if fracs[names[0]] > 0 else 0) or n == 0:
        raise ValueError(
            f"cannot split {n} patient(s) into {fracs}: too few patients; "
            "use fewer splits or more data"
        )
    return wanted


def _draw_patients(remaining: np.ndarray, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of the ``remaining`` patients, stratified on their labels ``y`` when any is set."""
    if size >= len(remaining):
        return remaining
    if y.shape[1] == 0 or not y[remaining].any():
        rng = np.random.default_rng(seed)
        return rng.choice(remaining, size=size, replace=False)
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # sklearn: slow

    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=size, random_state=seed)
    _, test_idx = next(splitter.split(np.zeros((len(remaining), 1)), y[remaining]))
    return _exact_size(remaining, remaining[test_idx], size, seed)


def patient_label_matrix(
    frame: pd.DataFrame,
    label_cols: Sequence[str],
    *,
    patient_col: str = "patient",
    grading: bool = False,
    num_grades: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient label aggregates used for stratification.

    Args:
        frame: One row per image with ``patient_col`` and the label columns.
        label_cols: Label columns (0/1, or one grade column when ``grading``).
        patient_col: Column holding the patient id.
        grading: Treat the single label column as an ordinal grade and one-hot its maximum.
        num_grades: Number of grades (0: inferred as max grade + 1).

    Returns:
        ``(patients, matrix)``: patient ids in first-appearance order, shape ``(P,)``, and a 0/1
        matrix of shape ``(P, L)`` (L = labels, or grades when ``grading``).
    """
    missing = [c for c in (patient_col, *label_cols) if c not in frame.columns]
    if missing:
        raise ValueError(f"cannot split: frame lacks column(s) {missing}")
    patients = pd.unique(frame[patient_col].astype(str))
    if not label_cols:
        return patients, np.zeros((len(patients), 0), dtype=np.int64)
    values = frame[list(label_cols)].astype("int64")
    agg = values.groupby(frame[patient_col].astype(str).to_numpy(), sort=False).max()
    agg = agg.reindex(patients)
    if grading:
        if len(label_cols) != 1:
            raise ValueError(f"grading split needs one grade column, got {list(label_cols)}")
        grades = agg.iloc[:, 0].to_numpy()
        k = max(num_grades, int(grades.max()) + 1 if len(grades) else 1)
        return patients, np.eye(k, dtype=np.int64)[grades]
    return patients, (agg.to_numpy() > 0).astype(np.int64)


def patient_split(
    frame: pd.DataFrame,
    label_cols: Sequence[str],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    *,
    patient_col: str = "patient",
    grading: bool = False,
    num_grades: int = 0,
) -> pd.Series:
    """Assign every row a split so that patients never straddle splits and labels stay balanced.

    The first split in ``fractions`` receives the remainder; the others are peeled off in order,
    each with exactly ``round(fraction × patients)`` patients (at least one when its fraction is
    > 0), by a multilabel-stratified shuffle split on the patients' aggregated labels.

    Args:
        frame: One row per image.
        label_cols: Columns to stratify on (may be empty: then a plain seeded shuffle).
        fractions: Split name → fraction of patients; defaults to train/val/test 0.7/0.15/0.15.
        seed: Seed; the same seed and frame always give the same split.
        patient_col: Patient id column.
        grading: ``label_cols`` is one ordinal grade column (stratify on the max grade).
        num_grades: Number of grades when ``grading`` (0: inferred).

    Returns:
        Split name per row, indexed like ``frame``.

    Raises:
        ValueError: on invalid fractions, or fewer patients than non-empty splits.
    """
    fracs = _check_fractions(fractions if fractions is not None else DEFAULT_FRACTIONS)
    patients, y = patient_label_matrix(
        frame, label_cols, patient_col=patient_col, grading=grading, num_grades=num_grades
    )
    if y.shape[1] == 1:  # iterstrat wants a multilabel indicator: add the complement column
        y = np.hstack([y, 1 - y])
    names = list(fracs)
    assignment = np.full(len(patients), names[0], dtype=object)
    remaining = np.arange(len(patients))
    for i, (name, size) in enumerate(_split_sizes(fracs, len(patients)).items()):
        if size == 0:
            continue
        chosen = _draw_patients(remaining, y, size, seed + i)
        assignment[chosen] = name
        remaining = np.setdiff1d(remaining, chosen)
    by_patient = dict(zip(patients, assignment))
    split = frame[patient_col].astype(str).map(by_patient)
    log.info(
        "patient split (seed %d): %s",
        seed,
        {k: int((assignment == k).sum()) for k in names},
    )
    return split.rename("split")


def patient_overlap(
    frame: pd.DataFrame, patient_col: str = "patient"
) -> dict[tuple[str, str], int]:
    """Number of patients shared by each pair of splits (all zeros for a clean split).

    The course's own ODIR split shares patients between splits; adapters that keep a given
    split use this to warn about it.
    """
    sets = {
        name: set(rows[patient_col].astype(str))
        for name, rows in frame.groupby("split", sort=False)
    }
    return {(a, b): len(sets[a] & sets[b]) for a, b in combinations(sets, 2)}


def sort_by_split(frame: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows grouped by split in ``order`` (default train/val/test), stable within a split.

    Splits not in ``order`` follow, in first-appearance order. The index is reset.
    """
    names = list(order if order is not None else DEFAULT_FRACTIONS)
    names += [s for s in dict.fromkeys(frame["split"]) if s not in names]
    rank = frame["split"].map({name: i for i, name in enumerate(names)})
    return frame.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)
