"""CLI verb ``ensemble``: combine run folders, or train a bagging/boosting ensemble.

```
funduslab ensemble soft_voting runs/a runs/b runs/c --out runs --name soft3
funduslab ensemble weighted runs/a runs/b --objective course_average_f1 --out runs
funduslab ensemble stacking runs/a runs/b --meta gradient_boosting --out runs
funduslab ensemble bagging --config base.yaml --members 5 --out runs
```
The run folder records its members relative to itself, and (unless ``--no-bundle``) holds
``ensemble.pt``: every member's weights plus the fitted combiner, so ``funduslab predict`` on
the folder or the file works wherever they are copied, members or not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

__all__ = ["register"]


def _params(**flags: Any) -> dict[str, Any]:
    """Combiner parameters from the flags the user actually passed."""
    params = {k: v for k, v in flags.items() if v is not None}
    if isinstance(params.get("weights"), str):
        try:
            params["weights"] = [float(w) for w in params["weights"].split(",")]
        except ValueError:
            raise ValueError(
                f"--weights must be comma-separated numbers; got {flags['weights']!r}"
            ) from None
    return params


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach the ``ensemble`` verb to ``app``."""

    @app.command()
    @friendly
    def ensemble(
        method: str = typer.Argument(..., help="max_voting | soft_voting | weighted | stacking | "
                                               "bagging | boosting."),
        runs: Optional[list[Path]] = typer.Argument(None, help="Member run folders (combiners)."),
        out: Path = typer.Option(..., help="Folder that holds run folders."),
        name: Optional[str] = typer.Option(None, help="Run folder name (default: the method)."),
        config: Optional[Path] = typer.Option(None, help="Base member config (bagging/boosting)."),
        members: int = typer.Option(5, help="Members to train (bagging/boosting)."),
        tune_thresholds: bool = typer.Option(
            False, "--tune-thresholds/--fixed-thresholds",
            help="Label predictions with thresholds tuned on val (metrics report both)."),
        threshold: Optional[float] = typer.Option(None, help="Member threshold (max_voting)."),
        objective: Optional[str] = typer.Option(
            None, help="log_loss | course_average_f1 (weighted)."),
        grid_steps: Optional[int] = typer.Option(None, help="Simplex grid steps (weighted, F1)."),
        weights: Optional[str] = typer.Option(None, help="Fixed weights a,b,… (weighted)."),
        meta: Optional[str] = typer.Option(None, help="logistic | gradient_boosting (stacking)."),
        cv: Optional[int] = typer.Option(None, help="Out-of-fold folds on val (stacking)."),
        seed: Optional[int] = typer.Option(None, help="Seed (bagging/boosting; stacking folds)."),
        bundle: Optional[bool] = typer.Option(
            None, "--bundle/--no-bundle",
            help="Also write ensemble.pt, a self-contained bundle (members' weights + combiner) "
                 "that predicts without the member folders [default: on; skipped with a note "
                 "where the ensemble cannot be bundled, an error if --bundle is given]."),
    ) -> None:
        """Combine run folders (or train resampled members) into one ensemble run folder."""
        from funduslab.ensemble import (
            ENSEMBLES,
            TRAINED_ENSEMBLES,
            load_members,
            write_ensemble_run,
        )

        run_name = name or method
        if "/" in run_name or run_name.startswith("."):
            raise ValueError(f"--name must be a plain folder name, got {run_name!r}")
        out_dir = out / run_name
        if method in TRAINED_ENSEMBLES:
            from funduslab.config import load_config

            if runs:
                raise ValueError(f"{method} trains its own members from --config; "
                                 f"do not pass run folders ({[str(r) for r in runs]})")
            if config is None:
                raise ValueError(f"{method} needs --config (the base config of one member)")
            cfg = load_config(config, {"train.seed": seed} if seed is not None else None)
            run_dir = TRAINED_ENSEMBLES.get(method)(cfg, members, out_dir, tune=tune_thresholds)
        elif method in ENSEMBLES:
            if config is not None:
                raise ValueError(f"{method} combines existing run folders; --config is for "
                                 f"{', '.join(TRAINED_ENSEMBLES.names())}")
            params = _params(threshold=threshold, objective=objective, grid_steps=grid_steps,
                             weights=weights, meta=meta, cv=cv,
                             random_state=seed)
            run_dir = write_ensemble_run(load_members(runs or []), method, out_dir, params,
                                         tune=tune_thresholds)
        else:
            valid = ", ".join(ENSEMBLES.names() + TRAINED_ENSEMBLES.names())
            raise ValueError(f"unknown ensemble method {method!r}; valid names: {valid}")
        _print_run(console, run_dir)
        if bundle is not False:
            _write_bundle(console, run_dir, required=bundle is True)


def _write_bundle(console: Console, run_dir: Path, required: bool) -> Path | None:
    """Save ``run_dir``'s bundle inside it; a method that cannot be bundled (gradient-boosting
    stacking, members without weights) is an error only when ``--bundle`` was asked for."""
    from funduslab.ensemble.bundle import BUNDLE_FILENAME, save_ensemble_bundle

    try:
        path = save_ensemble_bundle(run_dir, run_dir / BUNDLE_FILENAME)
    except (ValueError, FileNotFoundError) as err:
        if required:
            raise ValueError(f"the ensemble run folder {run_dir} was written, but its bundle "
                             f"could not be: {err}") from None
        console.print(f"[yellow]no bundle written[/] (predict needs the member folders): {err}")
        return None
    console.print(f"[green]ensemble bundle:[/] {path} (self-contained: predict with it, or with "
                  "the folder, without the member folders)")
    return path


def _print_run(console: Console, run_dir: Path) -> None:
    from funduslab.reporting.run_folder import read_metrics
    from funduslab.reporting.tables import metrics_table

    console.print(metrics_table(read_metrics(run_dir)))
    console.print(f"[green]ensemble run folder:[/] {run_dir}")
