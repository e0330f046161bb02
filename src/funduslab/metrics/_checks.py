"""Input checks shared by the metric modules (private).

Every public metric turns user input into numpy arrays here, so a wrong shape or a stray label
value fails the same way everywhere: a ``ValueError`` naming the argument, the shape or the
offending values, and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "as_binary_matrix",
    "as_grade_vector",
    "as_probability_matrix",
    "check_same_rows",
    "resolve_label_names",
]


def _show(values: np.ndarray, limit: int = 8) -> str:
    """Format up to ``limit`` distinct values for an error message."""
    uniq = np.unique(values)
    shown = ", ".join(repr(v.item()) for v in uniq[:limit])
    return f"[{shown}{', ...' if uniq.size > limit else ''}]"


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D (N,) or 2-D (N, C); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); metrics need at least one row")
    return arr


def as_binary_matrix(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as an int64 (N, C) array of 0/1 labels.

    Raises:
        ValueError: if ``x`` is not 1-D/2-D, is empty, or holds values other than 0 and 1.
    """
    arr = _as_2d(x, name)
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold numeric 0/1 labels; got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"{name} must contain only 0 and 1; found {_show(arr[bad])} "
            f"(first at row {rows[0]}, column {cols[0]}). Binarise labels/predictions first."
        )
    return arr.astype(np.int64)


def as_probability_matrix(x: Any, name: str) -> np.ndarray:
    """Return ``x`` as a float64 (N, C) array of finite probabilities in [0, 1].

    Raises:
        ValueError: on a bad shape, non-finite values or values outside [0, 1].
    """
    arr = _as_2d(x, name)
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise ValueError(f"{name} must hold numeric probabilities; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        rows, cols = np.nonzero(~np.isfinite(arr))
        raise ValueError(
            f"{name} contains {rows.size} non-finite value(s) (first at row {rows[0]}, "
            f"column {cols[0]}: {arr[rows[0], cols[0]]})"
        )
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{name} must be probabilities in [0, 1]; found range [{arr.min():g}, {arr.max():g}]. "
            "Apply a sigmoid to logits first."
        )
    return arr


def as_grade_vector(x: Any, name: str, num_grades: int | None = None) -> np.ndarray:
    """Return ``x`` as an int64 (N,) vector of grades ``0 … num_grades-1``.

    Raises:
        ValueError: if ``x`` is not 1-D, holds non-integer values, or grades out of range.
    """
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of grades (N,); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold integer grades; got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)) or not np.all(np.equal(np.mod(arr, 1), 0)):
        bad = arr[~np.isfinite(arr) | (np.mod(arr, 1) != 0)]
        raise ValueError(f"{name} must hold integer grades; found {_show(bad)}")
    arr = arr.astype(np.int64)
    if num_grades is not None:
        out = (arr < 0) | (arr >= num_grades)
        if out.any():
            raise ValueError(
                f"{name} must hold grades in 0..{num_grades - 1} (num_grades={num_grades}); "
                f"found {_show(arr[out])} (first at row {int(np.argmax(out))})"
            )
    return arr


def check_same_rows(
    a: np.ndarray, a_name: str, b: np.ndarray, b_name: str, same_cols: bool = True
) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` agree in rows (and columns if ``same_cols``)."""
    if a.shape[0] != b.shape[0] or (same_cols and a.shape[1:] != b.shape[1:]):
        raise ValueError(
            f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; they must match"
        )


def resolve_label_names(
    label_names: Sequence[str] | None, num_classes: int, source: Any = None
) -> list[str]:
    """Return label names: given ones (checked), a DataFrame's columns, or ``class_0 …``.

    Raises:
        ValueError: if ``label_names`` has the wrong length or repeats a name.
    """
    if label_names is None:
        columns = getattr(source, "columns", None)
        if columns is not None and len(columns) == num_classes:
            return [str(c) for c in columns]
        return [f"class_{c}" for c in range(num_classes)]
    names = [str(n) for n in label_names]
    if len(names) != num_classes:
        raise ValueError(
            f"label_names has {len(names)} name(s) {names} but the arrays have "
            f"{num_classes} column(s)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be unique; got {names}")
    return names
