"""CLI verbs that fit models: ``train``, ``pretrain``, ``suite`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

__all__ = ["register"]


_FLAG_FIELDS = {
    "data": "data.root", "adapter": "data.adapter", "image_size": "data.image_size",
    "preprocess": "data.preprocess", "workers": "data.num_workers",
    "backbone": "model.backbone", "weights": "model.weights", "head": "model.head",
    "setup": "train.setup", "epochs": "train.epochs", "batch_size": "train.batch_size",
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


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach the training verbs to ``app``."""

    @app.command()
    @friendly
    def train(
        config: Optional[Path] = typer.Option(None, help="YAML config; flags override it."),
        data: Optional[Path] = typer.Option(None, help="Dataset root."),
        adapter: Optional[str] = typer.Option(None, help="Dataset adapter (odir_course, odir5k, …)."),
        image_size: Optional[int] = typer.Option(None, help="Training resolution in px."),
        preprocess: Optional[str] = typer.Option(None, help="Preprocessing pipeline name."),
        workers: Optional[int] = typer.Option(None, help="DataLoader workers."),
        backbone: Optional[str] = typer.Option(None, help="Backbone name (timm)."),
        weights: Optional[str] = typer.Option(None, help="imagenet | none | path to weights."),
        head: Optional[str] = typer.Option(None, help="Head name (linear, mlp, …)."),
        setup: Optional[str] = typer.Option(None, help="none | frozen | full | partial | two-stage."),
        epochs: Optional[int] = typer.Option(None),
        batch_size: Optional[int] = typer.Option(None),
        lr: Optional[float] = typer.Option(None, help="Head learning rate."),
        backbone_lr: Optional[float] = typer.Option(None),
        loss: Optional[str] = typer.Option(None),
        sampler: Optional[str] = typer.Option(None),
        seed: Optional[int] = typer.Option(None),
        precision: Optional[str] = typer.Option(None, help="auto | 32 | bf16-mixed | 16-mixed."),
        devices: Optional[int] = typer.Option(None),
        strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp."),
        accelerator: Optional[str] = typer.Option(None, help="auto | cpu | gpu."),
        tune_thresholds: Optional[bool] = typer.Option(None, "--tune-thresholds/--fixed-thresholds"),
        tta: Optional[bool] = typer.Option(None, "--tta/--no-tta"),
        monitor: Optional[str] = typer.Option(None, help="Model-selection metric."),
        formulation: Optional[str] = typer.Option(
            None, help="DR grading: ce | regression | ordinal (grade labels only)."),
        sample_weights: Optional[Path] = typer.Option(
            None, help="id,weight CSV for the weighted_file sampler (bagging/boosting)."),
        layer_decay: Optional[float] = typer.Option(
            None, help="Layer-wise LR decay in (0, 1] (ViT/Swin; 1 = off)."),
        dual: Optional[str] = typer.Option(
            None, help="Dual-image fusion: none | concat | mean | attention (paired layouts)."),
        resume: Optional[bool] = typer.Option(
            None, "--resume/--restart", help="Resume the run folder's last checkpoint (default) "
                                             "or start it over."),
        out: Optional[Path] = typer.Option(None, help="Folder that holds run folders."),
        name: Optional[str] = typer.Option(None, help="Run folder name."),
        team: Optional[str] = typer.Option(None, help="Team name for <team>_task<k>-<j>.pt."),
        task: Optional[str] = typer.Option(None, help="Course task id, e.g. 1-3."),
        cv: Optional[int] = typer.Option(
            None, help="k-fold cross-validation over train+val (grouped by patient): k runs, "
                       "out-of-fold scores as val, the fold models averaged on the test splits."),
        fold_seed: int = typer.Option(0, help="Seed of the --cv fold assignment."),
    ) -> None:
        """Fit and evaluate one model; write a run folder."""
        flags = dict(locals())
        from funduslab.config import config_from_dict, load_config
        from funduslab.training.runner import run

        overrides = _overrides(flags)
        cfg = load_config(config, overrides) if config else config_from_dict({}, overrides)
        if cv is not None:
            from funduslab.training.cross_validation import cross_validate

            run_dir = cross_validate(cfg, folds=cv, fold_seed=fold_seed)
        else:
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
