"""Dataset summary: images, patients and label prevalence per split (``funduslab data summary``).

Label counts are shown only for labelled rows: the placeholder zeros of an unlabelled template
split (the course's ``onsite_test``) would otherwise read as "no disease".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from funduslab.data.splits import patient_overlap
from funduslab.data.table import SampleTable

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["label_columns", "render_summary", "summarize"]


def label_columns(table: SampleTable) -> list[str]:
    """Count columns of :func:`summarize`: label names, or ``grade_0 …`` for grading tables."""
    if table.task == "grading":
        grades = table.num_grades or int(table.frame[table.label_names[0]].max()) + 1
        return [f"grade_{g}" for g in range(grades)]
    return list(table.label_names)


def _counts(rows: pd.DataFrame, table: SampleTable) -> dict[str, float]:
    """Positive count per label (or per grade) over the labelled rows."""
    labelled = rows[rows["labelled"].astype(bool)]
    if table.task == "grading":
        grades = labelled[table.label_names[0]].astype(int)
        return {c: int((grades == g).sum()) for g, c in enumerate(label_columns(table))}
    return {c: int(labelled[c].astype(int).sum()) for c in table.label_names}


def summarize(table: SampleTable) -> pd.DataFrame:
    """Per-split counts and label prevalence.

    Args:
        table: Any adapter's table.

    Returns:
        One row per split (index ``split``, first-appearance order) plus a final ``all`` row,
        columns ``images, patients, labelled`` (labelled image count), then for each label (or
        ``grade_k``) its positive count ``<L>`` and percentage ``<L> %`` of the labelled images.
        Unlabelled splits have ``<NA>`` counts and percentages.
    """
    frame = table.frame
    cols = label_columns(table)
    records = []
    groups = [(name, frame[frame["split"] == name]) for name in table.splits]
    for name, rows in [*groups, ("all", frame)]:
        n_labelled = int(rows["labelled"].astype(bool).sum())
        record: dict[str, object] = {
            "split": name,
            "images": len(rows),
            "patients": int(rows["patient"].nunique()),
            "labelled": n_labelled,
        }
        counts = _counts(rows, table)
        for c in cols:
            record[c] = counts[c] if n_labelled else pd.NA
            record[f"{c} %"] = round(100.0 * counts[c] / n_labelled, 1) if n_labelled else pd.NA
        records.append(record)
    out = pd.DataFrame.from_records(records).set_index("split")
    for c in cols:
        out[c] = out[c].astype("Int64")
        out[f"{c} %"] = out[f"{c} %"].astype("Float64")
    return out


def render_summary(table: SampleTable, console: Console | None = None) -> None:
    """Print :func:`summarize` as a Rich table (``count (pct%)`` per label) to ``console``.

    Also prints how many patients are shared between splits when any are.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summary = summarize(table)
    cols = label_columns(table)
    kind = "grades" if table.task == "grading" else "labels"
    rich_table = Table(title=f"{table.source or 'dataset'} — {kind}: {', '.join(cols)}")
    for name in ("split", "images", "patients", "labelled", *cols):
        rich_table.add_column(name, justify="left" if name == "split" else "right")
    for split, row in summary.iterrows():
        cells = [str(split), str(row["images"]), str(row["patients"]), str(row["labelled"])]
        for c in cols:
            count, pct = row[c], row[f"{c} %"]
            cells.append("—" if pd.isna(count) else f"{count} ({pct:.1f}%)")
        rich_table.add_row(*cells, end_section=split == table.splits[-1])
    console.print(rich_table)
    shared = {f"{a} & {b}": n for (a, b), n in patient_overlap(table.frame).items() if n}
    if shared:
        console.print(f"[yellow]patients shared between splits:[/yellow] {shared}")
