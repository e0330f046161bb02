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
from rich.markup import escape
from typer.core import TyperGroup

from funduslab import __version__
from funduslab.errors import DISK_ERRNOS, DiskWriteError

__all__ = ["app"]


def _hide_flag_types(command: Any, ctx: typer.Context) -> None:
    """Blank the ``<bool>`` Typer shows beside on/off flags (they take no value), recursively."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub, ctx)


class _Group(TyperGroup):
    """The top-level group: help shows flags without a value type."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _hide_flag_types(self, typer.Context(self))
        return super().main(*args, **kwargs)


app = typer.Typer(
    name="funduslab",
    help="Transfer learning on retinal fundus photographs.",
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and check datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

USER_ERRORS = (ValueError, TypeError, FileNotFoundError, DiskWriteError)


def _disk_message(err: OSError) -> str:
    """One line for an ``OSError`` of :data:`DISK_ERRNOS` that no funduslab writer wrapped."""
    reason = (err.strerror or str(err)).lower()
    if err.filename:
        return f"{reason}: {err.filename}"
    return f"{reason} (a file could not be written: free some space or write elsewhere)"


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into one clear line (not wrapped, not read as markup) and exit code 2.

    A full disk or a read-only folder counts as one: :class:`DiskWriteError` names the file, and
    a bare ``OSError`` with such an ``errno`` (a third-party writer) still gives one line.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            message = " ".join(str(err).split())
            console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except OSError as err:
            if err.errno not in DISK_ERRNOS:
                raise
            message = " ".join(_disk_message(err).split())
            console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt as err:  # Ctrl-C: one line, what was kept; no traceback
            message = " ".join(str(err).split()) or "stopped before anything was saved"
            console.print(f"[bold yellow]interrupted:[/] {escape(message)}", soft_wrap=True)
            raise typer.Exit(code=130) from None

    return wrapper


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
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
    if ctx.invoked_subcommand is None:  # options only (e.g. -v): show the verbs
        typer.echo(ctx.get_help())
        raise typer.Exit()


@app.command()
@_friendly
def synth(
    layout: str = typer.Option("odir-course", help="Dataset layout to write (see docs/layouts.md)."),
    out: Path = typer.Option(..., help="Output folder."),
    n: Optional[int] = typer.Option(None, help="Number of images (layout default if omitted)."),
    seed: int = typer.Option(0, help="Random seed: same seed, same bytes."),
    size: Optional[int] = typer.Option(None, help="Image size in px (layout default if omitted)."),
    masks: bool = typer.Option(False, "--masks", help="Also write masks/: one lesion mask per "
                               "image and positive label, for `explain --score` (multi-label "
                               "layouts)."),
) -> None:
    """Write a synthetic fundus dataset whose labels are known."""
    from funduslab.data.synthetic_layouts import write_layout

    kwargs: dict[str, Any] = {"n": n, "seed": seed, "masks": masks}
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
    image_size: int = typer.Option(256, help="Training resolution in px: smaller images warn."),
) -> None:
    """Decode every image once: list the missing or corrupt ones (exit 1), warn on the odd ones
    (smaller than the training resolution, 16-bit input)."""
    from funduslab.data.adapters import load_table
    from funduslab.data.inspect import inspect_images

    table = load_table(adapter, root, **_adapter_options(labels, images))
    with console.status(f"decoding {len(table.frame)} images"):
        findings = inspect_images([Path(p) for p in table.frame["path"]], image_size)
    errors = [f for f in findings if f.is_error]
    for finding in findings:
        colour = "red" if finding.is_error else "yellow"
        label = "" if finding.is_error else "warning: "
        console.print(f"[{colour}]{finding.path}[/]: {label}{finding.message}")
    if errors:
        raise typer.Exit(code=1)
    warned = len({f.path for f in findings})
    tail = f" ({warned} with warnings)" if warned else ""
    console.print(f"[green]all {len(table.frame)} images decode[/]{tail}")


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
    cli_export,
    cli_generate,
    cli_handin,
    cli_list,
    cli_patches,
    cli_predict,
    cli_report,
    cli_serve,
    cli_train,
)

# Each verb group lives in its own module and attaches itself here.
for _module in (cli_train, cli_predict, cli_report, cli_ensemble, cli_explain, cli_generate,
                cli_patches, cli_export, cli_handin, cli_serve, cli_list):
    _module.register(app, console, _friendly)
