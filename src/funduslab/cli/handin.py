"""CLI verb ``bundle``: run folders → the course hand-in zip (``<team>.py``, ``readme.md``,
``<team>_task<k>-<j>.pt``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly

__all__ = ["register"]


@friendly
def bundle(
    runs: Annotated[list[Path], typer.Argument(
        help="Finished single-model run folders, one per hand-in file.")],
    team: Annotated[str, typer.Option(
        help="Team name: names <team>.py, <team>_task<k>-<j>.pt and the zip.")],
    task: Annotated[Optional[list[str]], typer.Option(
        "--task", help="RUN=k-j: a run's course task, instead of its config's output.task "
        "(repeatable).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Zip to write (default: <team>.zip).")] = None,
) -> None:
    """Pack runs as the course hand-in zip.

    The zip holds <team>.py (predicts a folder of images with only
    torch/torchvision/timm/Pillow/pandas), readme.md (files, usage, measured figures) and one
    <team>_task<k>-<j>.pt per run, each checked against funduslab's own outputs.
    """
    from funduslab.handin import bundle_runs

    with console.status(f"bundling {len(runs)} run(s)"):
        report = bundle_runs(team, runs, out=out, tasks=task)
    console.print(f"[green]wrote[/] {report.path}: {', '.join(report.members)}")
    for entry, check in zip(report.entries, report.checks):
        console.print(f"  {entry['file']}: {entry['kind']} {entry['arch']}, max |Δlogit| "
                      f"{check['max_logit_diff']:.1e}; decoding {check['decode']}")


def register(app: typer.Typer) -> None:
    """Attach ``bundle`` to ``app``."""
    app.command()(bundle)
