"""``funduslab`` command line (Typer + Rich): one module per verb group, attached here.

Verbs: synth, data, train, suite, pretrain, demo, predict, export, report, record, ensemble,
explain, generate, patches, bundle, serve, list. A concept has one option name on every verb
(``cli/options.py``), and the valid values in ``--help`` come from the registries
(``cli/registries.py``), read only when that help is shown.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.logging import RichHandler
from typer.core import TyperGroup

from funduslab import __version__
from funduslab.cli import (
    data,
    ensemble,
    explain,
    export,
    generate,
    handin,
    listing,
    patches,
    predict,
    presets,
    report,
    serve,
    train,
)
from funduslab.cli.common import console

__all__ = ["app", "main"]


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


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", help="Print the version and exit.")] = False,
) -> None:
    """Log through Rich (Lightning's chatter only from warnings up); options only: the verbs."""
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


for _module in (data, train, presets, predict, export, report, ensemble, explain, generate,
                patches, handin, serve, listing):
    _module.register(app)


def main() -> None:
    """Run the command line (the ``funduslab`` command and ``python -m funduslab``)."""
    app(prog_name="funduslab")
