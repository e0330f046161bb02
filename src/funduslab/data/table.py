"""The sample table: the one shape every dataset adapter produces and every later stage reads.

A table is a pandas DataFrame with one row per image and these columns:

=========  ==================================================================================
id         image identifier, unique within the table (the course's ``913_right.jpg``)
path       absolute path of the image file (``str``)
patient    patient identifier (``str``); images of one patient must never straddle splits
eye        ``"left"``, ``"right"`` or ``""`` when unknown
split      split name (``train``, ``val``, ``offsite_test``, ``onsite_test``, ``test`` …)
labelled   ``True`` where the labels are real; ``False`` for an unlabelled template split
<labels>   one integer column per label name (0/1 for multi-label, 0…K-1 for grading)
=========  ==================================================================================

Extra columns (``pair``, ``dr_grade``, ``keywords``, mask paths …) may follow; stages ignore what
they do not need. Label names and task kind travel with the table in :class:`SampleTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

__all__ = ["REQUIRED_COLUMNS", "SampleTable", "TaskKind"]

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "path", "patient", "eye", "split", "labelled")
TaskKind = Literal["multilabel", "grading"]


@dataclass
class SampleTable:
    """A dataset as rows of samples plus what its label columns mean.

    Args:
        frame: One row per image; see the module docstring for the columns.
        label_names: Label columns in model-output order (course: ``["D", "G", "A"]``).
        task: ``"multilabel"`` (independent 0/1 labels) or ``"grading"`` (one ordered label).
        num_grades: Number of grades for ``task="grading"`` (5 for DR 0–4).
        source: Adapter name and root, for run provenance.
        submission: Optional column order of the unlabelled split's submission file.
    """

    frame: pd.DataFrame
    label_names: list[str]
    task: TaskKind = "multilabel"
    num_grades: int = 0
    source: str = ""
    submission_columns: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        missing = [c for c in (*REQUIRED_COLUMNS, *self.label_names) if c not in self.frame.columns]
        if missing:
            raise ValueError(f"sample table from {self.source or 'adapter'} lacks columns {missing}")
        if self.frame["id"].duplicated().any():
            dups = self.frame.loc[self.frame["id"].duplicated(), "id"].head(5).tolist()
            raise ValueError(f"duplicate image ids in {self.source or 'table'}: {dups}")

    @property
    def splits(self) -> list[str]:
        """Split names in first-appearance order."""
        return list(dict.fromkeys(self.frame["split"]))

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split (a copy, index reset).

        Raises:
            ValueError: if the split does not exist or is empty.
        """
        rows = self.frame[self.frame["split"] == name]
        if rows.empty:
            raise ValueError(
                f"split {name!r} is empty or missing in {self.source or 'table'}; "
                f"splits present: {self.splits}"
            )
        return rows.reset_index(drop=True)

    def labels(self, name: str) -> pd.DataFrame:
        """Label columns of one split, as integers."""
        return self.split(name)[self.label_names].astype(int)
