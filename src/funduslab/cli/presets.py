"""CLI verbs that run prepared experiments: ``suite`` (a preset), ``pretrain`` (a source model
in the course checkpoint format) and ``demo`` (synthetic data through the Task 1 suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.registries import with_choices

__all__ = ["register"]


@friendly
def suite(
    preset: Annotated[str, typer.Argument(help="Preset name, e.g. course-task1.")],
    data: Annotated[Path, typer.Option(help="Dataset root (the course folder for course-*).")],
    team: Annotated[str, typer.Option(
        help="Team name used in weight file names.")] = "funduslab",
    out: Annotated[Path, typer.Option(
        help="Folder for the suite's run folders.")] = Path("runs"),
    quick: Annotated[bool, typer.Option(
        help="Tiny settings (demo/tests): few epochs, small images.")] = False,
    seeds: Annotated[Optional[str], typer.Option(
        help="Comma-separated seeds (preset default).")] = None,
    source: Annotated[Optional[Path], typer.Option(
        help="Source dataset for pretraining (odir5k).")] = None,
    opt: Annotated[Optional[list[str]], typer.Option(
        help="Preset option KEY=VALUE (repeatable), e.g. --opt resnet_image_size=128.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Config field of every row, dotted KEY=VALUE (repeatable), e.g. --set "
                      "train.epochs=4; checked against the config model before anything "
                      "trains.")] = None,
) -> None:
    """Run a preset of experiments and write results.md."""
    from funduslab.experiments import parse_preset_options, run_preset

    seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    results = run_preset(preset, data=data, team=team, out=out, quick=quick, seeds=seed_list,
                         source=source, sets=set_ or [],
                         **parse_preset_options(preset, opt or []))
    console.print(f"[green]results:[/] {results}")


@friendly
def pretrain(
    source: Annotated[Path, typer.Option(help="Source dataset root (odir5k-source layout).")],
    adapter: Annotated[str, typer.Option(help="Adapter of the source dataset.")] = "odir5k",
    backbone: Annotated[str, typer.Option(
        help="Backbone to fit: resnet18 is saved in the course's torchvision format, any other "
             "as a funduslab checkpoint.")] = "resnet18",
    weights: Annotated[str, typer.Option(
        help="Starting backbone weights: imagenet, none or a weights file.")] = "none",
    out: Annotated[Path, typer.Option(
        help="Where the checkpoint goes.")] = Path("pretrained_backbone"),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    image_size: Annotated[int, typer.Option(help="Training resolution in px (square).")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed of the run.")] = 0,
) -> None:
    """Fit a D/G/A source model and save it in the course checkpoint format."""
    from funduslab.experiments.pretrain import pretrain_source_model

    path = pretrain_source_model(source, adapter=adapter, backbone=backbone, weights=weights,
                                 out=out, epochs=epochs, image_size=image_size, seed=seed)
    console.print(f"[green]saved[/] {path}")


@friendly
def demo(
    out: Annotated[Path, typer.Option(
        help="Folder for the synthetic data and runs.")] = Path("demo"),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic data and the runs.")] = 0,
) -> None:
    """Synthetic course data → the course Task 1 suite (quick settings), end to end."""
    from funduslab.experiments.demo import run_demo

    results = run_demo(out, seed=seed, console=console)
    console.print(f"[green]demo finished:[/] {results}")


def register(app: typer.Typer) -> None:
    """Attach ``suite``, ``pretrain`` and ``demo`` to ``app``."""
    app.command(cls=with_choices(preset="presets"))(suite)
    app.command(cls=with_choices(adapter="adapters", backbone="backbones"))(pretrain)
    app.command()(demo)
