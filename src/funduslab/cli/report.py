"""CLI verbs ``report`` (compare finished runs, one row per recipe, mean ± std; ``--html``: a
page with intervals, curves and Grad-CAM panels) and ``record`` (keep a run's text files as a
compact record under ``results/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from funduslab.cli.common import console, friendly

__all__ = ["register"]

Runs = Annotated[list[Path], typer.Argument(
    help="Run folders, or folders holding them (e.g. runs/task2).")]
Split = Annotated[str, typer.Option(help="Split reported as test.")]
PerRun = Annotated[bool, typer.Option(
    "--per-run", help="One row per run folder instead of one per recipe.")]
Out = Annotated[Optional[Path], typer.Option(
    help="Also write the table as Markdown here; with --html, the folder for the page "
         "(default report/).")]
Html = Annotated[bool, typer.Option(
    "--html", help="Write a self-contained page (report.html, report.md, figures/*.png) into "
    "--out: the table, bootstrap CIs, ROC/PR/reliability, confusion matrices, training curves, "
    "Grad-CAM panels.")]
CamImages = Annotated[int, typer.Option(
    "--cam-images", min=0,
    help="With --html: Grad-CAM panels per recipe (least certain images; 0: none).")]
NBoot = Annotated[int, typer.Option(
    "--n-boot", min=1, help="With --html: bootstrap resamples per interval.")]


@friendly
def report(runs: Runs, split: Split = "offsite_test", per_run: PerRun = False, out: Out = None,
           html: Html = False, cam_images: CamImages = 4, n_boot: NBoot = 1000) -> None:
    """Compare finished runs: one row per recipe, mean ± std over its seeds.

    With --html, a page with intervals, curves and Grad-CAM panels.
    """
    from funduslab.config import atomic_write_text
    from funduslab.reporting.compare import compare_runs
    from funduslab.reporting.run_folder import find_run_folders
    from funduslab.reporting.tables import markdown_table

    if html and out is not None and out.suffix in (".md", ".html"):
        raise ValueError(f"with --html, --out names a folder (report.html, report.md and "
                         f"figures/ go into it), not a file: got {out}")
    found, skipped = find_run_folders(runs)
    for path, why in skipped:
        console.print(f"[yellow]skipped[/] {path}: {why}")
    header, rows = compare_runs(found, split=split, group=not per_run)
    console.print(_table(header, rows, split))
    if html:
        from funduslab.reporting.html import write_html_report

        folder = out if out is not None else Path("report")
        with console.status(f"writing the report into {folder}"):
            written = write_html_report(found, folder, split=split, per_run=per_run,
                                        cam_images=cam_images, n_boot=n_boot, skipped=skipped)
        console.print(f"wrote {written.page} ({len(written.figures)} figures in "
                      f"{folder / 'figures'}) and {written.markdown}")
    elif out is not None:
        atomic_write_text(out, markdown_table(header, rows))
        console.print(f"wrote {out}")


def _table(header: list[str], rows: list[list[str]], split: str) -> Table:
    """The comparison for the terminal: a narrow one gets the scores, while the recall and
    AUROC columns go to ``--out``."""
    table = Table(title=f"{sum(int(r[1]) for r in rows)} runs, test split {split}")
    keep = [i for i, name in enumerate(header) if console.width >= 160
            or not (name.endswith(" recall") or name.endswith("AUROC"))]
    for i in keep:
        if i == 0:
            table.add_column(header[i], ratio=1, min_width=20, overflow="fold")
        else:
            table.add_column(header[i], justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


@friendly
def record(
    runs: Annotated[list[Path], typer.Argument(help="Finished run folders to record.")],
    out: Annotated[Path, typer.Option(
        help="Folder the records go into (one sub-folder per run).")] = Path("results"),
    note: Annotated[str, typer.Option(
        help="Free text kept in record.json (command, machine).")] = "",
) -> None:
    """Keep a run's text files (no weights) as a compact record under results/.

    The record holds config, metrics, history and predictions; report, ensemble and the vote
    presets read it like a run folder.
    """
    from funduslab.reporting.record import write_record

    for run_dir in runs:
        target = write_record(run_dir, out / run_dir.resolve().name, note=note)
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        console.print(f"[green]recorded[/] {run_dir} → {target} ({size / 1024:.0f} KB)")


def register(app: typer.Typer) -> None:
    """Attach ``report`` and ``record`` to ``app``."""
    app.command()(report)
    app.command()(record)
