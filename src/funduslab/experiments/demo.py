"""The out-of-the-box demo: synthetic course data → course Task 1 suite → results.md.

Runs on any machine with no data and no network in a few minutes on 2 CPU cores: a small
synthetic course split and a synthetic ODIR-5K-style source set (for the "no fine-tuning" source
models), 64-px training, a few epochs.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from funduslab.data.adapters import load_table
from funduslab.data.summary import render_summary
from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments.course_task1 import course_task1

__all__ = ["run_demo"]


def run_demo(out: Path, seed: int = 0, console: Console | None = None, *, size: int = 128,
             source_n: int = 120) -> Path:
    """Generate the demo data (once), run the quick Task 1 suite, print and return results.md.

    ``size`` (image side in px) and ``source_n`` (source images) shrink the data for tests.
    """
    console = console or Console()
    out = Path(out)
    started = time.perf_counter()
    course = out / "data" / "odir-course"
    source = out / "data" / "odir5k"
    if not (course / "train.csv").is_file():
        write_layout("odir-course", course, seed=seed, size=size)
    if not (source / "labels.csv").is_file():
        write_layout("odir5k", source, n=source_n, seed=seed + 1, size=size)
    render_summary(load_table("odir_course", course), console)
    results = course_task1(course, team="demo", out=out / "runs", quick=True, seeds=[seed],
                           source=source)
    console.print(Markdown(results.read_text()))
    console.print(f"demo took {time.perf_counter() - started:.0f} s; run folders in {out / 'runs'}")
    return results
