"""Which images to explain: the first ``n``, or those the model is most / least confident about.

Confidence of one image, from the run's saved probabilities ``p`` (``predictions/<split>.csv``):

* **labelled split** — the mean over diseases of the probability given to the *true* label,
  ``mean_k [y_k p_k + (1 − y_k)(1 − p_k)]``. ``--least`` therefore shows the images the model
  gets most wrong (confidently wrong first), ``--most`` the confidently right ones.
* **unlabelled split** — the mean distance of the probabilities from the undecided 0.5, scaled to
  [0, 1]: ``mean_k 2·|p_k − 0.5|``. ``--least`` shows the images the model is least sure about.

Ties keep the order of the predictions file (the table order).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from funduslab.reporting.run_folder import read_predictions

__all__ = ["SELECTIONS", "Selection", "confidence", "select_indices", "select_images"]

Selection = Literal["first", "most", "least"]
SELECTIONS: tuple[str, ...] = ("first", "most", "least")


def confidence(probabilities: np.ndarray, targets: np.ndarray | None = None) -> np.ndarray:
    """Per-image confidence in [0, 1] (see the module docstring).

    Args:
        probabilities: ``(N, K)`` probabilities.
        targets: ``(N, K)`` 0/1 true labels, or ``None`` for an unlabelled split.

    Returns:
        ``(N,)`` confidences.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {p.shape}")
    if targets is None:
        return np.mean(2.0 * np.abs(p - 0.5), axis=1)
    y = np.asarray(targets)
    if y.shape != p.shape:
        raise ValueError(f"targets {y.shape} do not match probabilities {p.shape}")
    return np.mean(np.where(y == 1, p, 1.0 - p), axis=1)


def select_indices(confidences: np.ndarray, n: int, mode: Selection = "first") -> np.ndarray:
    """Indices of the ``n`` images to explain (``most``: highest confidence first).

    Raises:
        ValueError: ``n < 1`` or an unknown ``mode``.
    """
    if mode not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {mode!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    conf = np.asarray(confidences, dtype=np.float64)
    if mode == "first":
        return np.arange(min(n, len(conf)))
    order = np.argsort(-conf if mode == "most" else conf, kind="stable")
    return order[:n]


def select_images(
    run_dir: Path,
    split: str,
    ids: Sequence[str],
    label_names: list[str],
    n: int,
    mode: Selection = "first",
    targets: np.ndarray | None = None,
) -> tuple[list[str], np.ndarray | None]:
    """Ids of the images to explain and their confidences (``None`` for ``first``).

    Args:
        run_dir: The run folder (``predictions/<split>.csv`` is read for ``most``/``least``).
        split: Split name.
        ids: The split's ids in table order.
        label_names: Disease names (probability columns ``p_<name>``).
        n: How many images.
        mode: ``first``, ``most`` or ``least``.
        targets: ``(N, K)`` true labels in ``ids`` order, or ``None`` when unlabelled.

    Raises:
        FileNotFoundError: ``most``/``least`` without the split's predictions file.
        ValueError: the predictions file lacks some of the split's images.
    """
    if mode == "first":
        chosen = select_indices(np.zeros(len(ids)), n, "first")
        return [ids[i] for i in chosen], None
    pred_ids, probs = read_predictions(Path(run_dir), split, label_names)
    position = {image_id: i for i, image_id in enumerate(ids)}
    missing = [i for i in pred_ids if i not in position]
    if missing or len(pred_ids) != len(ids):
        raise ValueError(f"{run_dir}/predictions/{split}.csv does not list the same images as "
                         f"split {split!r} of the data ({len(pred_ids)} vs {len(ids)} rows; "
                         f"unknown ids {missing[:3]}); was the run made on other data?")
    y = None if targets is None else np.asarray(targets)[[position[i] for i in pred_ids]]
    conf = confidence(probs, y)
    chosen = select_indices(conf, n, mode)
    return [pred_ids[i] for i in chosen], conf[chosen]
