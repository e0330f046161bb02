"""Partners for dual-image models: which other image of its pair each image is seen with.

Every image stays the *anchor* of one sample (predictions, metrics and submissions stay per
image); its *partner* is the first other image of its pair group (the table's ``pair`` column,
e.g. DeepDRiD's ``<patient>_<l|r>`` for the two shots of one eye, ODIR-5K's patient id for
the two eyes of one patient) within the same split, in table
order. An image alone in its group (or with an empty pair id) is its own partner. Since a sample
carries its partner, any sampler — the patient-level one included — keeps a pair together.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from funduslab.data.table import SampleTable

__all__ = ["PAIR_COLUMN", "PAIRED_ADAPTERS", "pair_partners", "split_partners"]

log = logging.getLogger(__name__)

#: Table column grouping the images that a dual-image model sees together.
PAIR_COLUMN = "pair"
#: Adapters whose tables have a ``pair`` column.
PAIRED_ADAPTERS: tuple[str, ...] = ("deepdrid", "odir5k")


def pair_partners(pairs: Sequence[object]) -> tuple[np.ndarray, int]:
    """Partner index of each image from its pair id.

    Args:
        pairs: Pair id per image (table order); ``None``/NaN/``""`` means "no pair".

    Returns:
        ``(partners (N,) int64, n_alone)``: ``partners[i]`` is the first other index with the
        same pair id, or ``i`` itself; ``n_alone`` counts images that are their own partner.
    """
    keys = ["" if p is None or (isinstance(p, float) and np.isnan(p)) else str(p) for p in pairs]
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        if key:
            groups.setdefault(key, []).append(index)
    partners = np.arange(len(keys), dtype=np.int64)
    for members in groups.values():
        for index in members:
            others = [m for m in members if m != index]
            if others:
                partners[index] = others[0]
    return partners, int((partners == np.arange(len(keys))).sum())


def split_partners(table: SampleTable, rows: pd.DataFrame, adapter: str, dual: str) -> np.ndarray:
    """Partners ``(N,)`` of one split's ``rows`` (as :meth:`SampleTable.split` returns them).

    Args:
        table: The whole table (for its columns and source).
        rows: Rows of one split, index reset.
        adapter: Adapter name, for the error message.
        dual: The configured ``model.dual``, for the error message.

    Raises:
        ValueError: the table has no ``pair`` column (names the adapters that give one).
    """
    if PAIR_COLUMN not in table.frame.columns:
        raise ValueError(
            f"model.dual={dual!r} needs image pairs, but adapter {adapter!r} "
            f"({table.source or 'table'}) gives no {PAIR_COLUMN!r} column; adapters that give "
            f"pairs: {', '.join(PAIRED_ADAPTERS)} (or set model.dual: none)"
        )
    partners, alone = pair_partners(rows[PAIR_COLUMN].tolist())
    split = rows["split"].iloc[0] if len(rows) else "?"
    if alone:
        log.info("split %r: %d of %d image(s) have no partner in the split and are paired with "
                 "themselves", split, alone, len(rows))
    return partners
