"""CLI verb ``report``: compare finished run folders, one row per recipe (mean ± std)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]


def _run_folders(paths: list[Path]) -> list[Path]:
    """The given run folders; a folder that is not a run contributes its finished sub-folders."""
    found: list[Path] = []
    for path in paths:
        if (path / "metrics.json").is_file():
            found.append(path)
        elif path.is_dir():
            inner = sorted(p.parent for p in path.glob("*/metrics.json"))
            if not inner:
                raise FileNotFoundError(f"{path} is not a finished run folder and holds none")
            found += inner
        else:
            raise FileNotFoundError(f"run folder not found: {path}")
    return list(dict.fromkeys(found))


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``report`` to ``app``."""

    @app.command()
    @friendly
    def report(
        runs: list[Path] = typer.Argument(..., help="Run folders, or folders holding them "
                                          "(e.g. runs/task2)."),
        split: str = typer.Option("offsite_test", help="Split reported as test."),
        per_run: bool = typer.Option(False, "--per-run", help="One row per run folder instead "
                                     "of one per recipe."),
        out: Optional[Path] = typer.Option(None, help="Also write the table as Markdown here."),
    ) -> None:
        """Compare finished runs: one row per recipe with mean ± std over its seeds."""
        from funduslab.config import atomic_write_text
        from funduslab.reporting.compare import compare_runs
        from funduslab.reporting.tables import markdown_table

        header, rows = compare_runs(_run_folders(runs), split=split, group=not per_run)
        table = Table(title=f"{sum(int(r[1]) for r in rows)} runs, test split {split}")
        # a narrow terminal gets the scores; the recall and AUROC columns go to --out
        keep = [i for i, name in enumerate(header) if console.width >= 160
                or not (name.endswith(" recall") or name.endswith("AUROC"))]
        for i in keep:
            if i == 0:
                table.add_column(header[i], ratio=1, min_width=20, overflow="fold")
            else:
                table.add_column(header[i], justify="right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        console.print(table)
        if out is not None:
            atomic_write_text(out, markdown_table(header, rows))
            console.print(f"wrote {out}")
