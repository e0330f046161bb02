"""``funduslab`` command line (Typer + Rich): synth, data, train, predict, report, pretrain, suite,
demo, explain, ensemble, generate, patches.

Every training flag maps to one config field; ``--config`` reads a YAML file first and flags
override it. User mistakes (missing files, bad CSVs, unknown names) print one red line naming the
problem and exit with status 2 — never a bare stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from funduslab import __version__

__all__ = ["app"]

app = typer.Typer(
    name="funduslab",
    help="Transfer learning on retinal fundus photographs.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and check datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

USER_ERRORS = (ValueError, TypeError, FileNotFoundError)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one clear line and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(code=2) from None

    return wrapper


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)], force=True,
    )
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if version:
        console.print(f"funduslab {__version__}")
        raise typer.Exit()


@app.command()
@_friendly
def synth(
    layout: str = typer.Option("odir-course", help="Dataset layout to write (see docs/layouts.md)."),
    out: Path = typer.Option(..., help="Output folder."),
    n: Optional[int] = typer.Option(None, help="Number of images (layout default if omitted)."),
    seed: int = typer.Option(0, help="Random seed: same seed, same bytes."),
    size: Optional[int] = typer.Option(None, help="Image size in px (layout default if omitted)."),
) -> None:
    """Write a synthetic fundus dataset whose labels are known."""
    from funduslab.data.synthetic_layouts import write_layout

    kwargs = {"n": n, "seed": seed}
    if size is not None:
        kwargs["size"] = size
    root = write_layout(layout, out, **kwargs)
    console.print(f"[green]wrote[/] {layout} dataset to {root}")


@data_app.command("summary")
@_friendly
def data_summary(
    root: Path = typer.Argument(..., help="Dataset folder (or CSV for generic_csv)."),
    adapter: str = typer.Option("auto", help="Adapter name, or auto to detect the layout."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label columns (generic_csv, odir5k)."),
    images: Optional[Path] = typer.Option(None, help="Image folder (generic_csv)."),
) -> None:
    """Per-split counts, patients and label prevalence."""
    from funduslab.data.adapters import load_table
    from funduslab.data.summary import render_summary

    table = load_table(adapter, root, **_adapter_options(labels, images))
    render_summary(table, console)


@data_app.command("check")
@_friendly
def data_check(
    root: Path = typer.Argument(..., help="Dataset folder."),
    adapter: str = typer.Option("auto", help="Adapter name, or auto."),
    labels: Optional[str] = typer.Option(None, help="Comma-separated label columns."),
    images: Optional[Path] = typer.Option(None, help="Image folder (generic_csv)."),
) -> None:
    """Decode every image once and list the ones that are missing or corrupt."""
    from funduslab.data.adapters import load_table
    from funduslab.data.imageio import verify_images

    table = load_table(adapter, root, **_adapter_options(labels, images))
    with console.status(f"decoding {len(table.frame)} images"):
        problems = verify_images([Path(p) for p in table.frame["path"]])
    if problems:
        for path, error in problems:
            console.print(f"[red]{path}[/]: {error}")
        raise typer.Exit(code=1)
    console.print(f"[green]all {len(table.frame)} images decode[/]")


def _adapter_options(labels: Optional[str], images: Optional[Path]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if labels:
        options["labels"] = [s.strip() for s in labels.split(",") if s.strip()]
    if images:
        options["images"] = images
    return options


from funduslab import (  # noqa: E402
    cli_ensemble,
    cli_explain,
    cli_generate,
    cli_patches,
    cli_predict,
    cli_report,
    cli_train,
)

# Each verb group lives in its own module and attaches itself here.
for _module in (cli_train, cli_predict, cli_report, cli_ensemble, cli_explain, cli_generate,
                cli_patches):
    _module.register(app, console, _friendly)
