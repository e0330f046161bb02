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
from typing import Annotated, Any, Optional

import typer

from funduslab.cli.common import console, friendly, print_run
from funduslab.cli.registries import with_choices

__all__ = ["register"]

Method = Annotated[str, typer.Argument(help="How the members are combined or trained.")]
Runs = Annotated[Optional[list[Path]], typer.Argument(help="Member run folders (combiners).")]
Out = Annotated[Path, typer.Option(help="Folder that holds run folders.")]
Name = Annotated[Optional[str], typer.Option(help="Run folder name (default: the method).")]
Config = Annotated[Optional[Path], typer.Option(help="Base member config (bagging/boosting).")]
Members = Annotated[int, typer.Option(help="Members to train (bagging/boosting).")]
TuneThresholds = Annotated[bool, typer.Option(
    "--tune-thresholds/--fixed-thresholds",
    help="Label predictions with thresholds tuned on val (metrics report both).")]
Threshold = Annotated[Optional[float], typer.Option(help="Member threshold (max_voting).")]
Objective = Annotated[Optional[str], typer.Option(
    help="What the weights optimise (weighted): log_loss or course_average_f1.")]
GridSteps = Annotated[Optional[int], typer.Option(help="Simplex grid steps (weighted, F1).")]
MemberWeights = Annotated[Optional[str], typer.Option(
    "--member-weights", "--weights",
    help="Fixed weights of the members a,b,… (weighted). --weights is the older name.")]
Meta = Annotated[Optional[str], typer.Option(
    help="Meta-model (stacking): logistic or gradient_boosting.")]
OofFolds = Annotated[Optional[int], typer.Option(
    "--oof-folds", "--cv",
    help="Folds of the out-of-fold val predictions of a combiner fit on val (weighted, "
         "stacking). --cv is the older name.")]
Seed = Annotated[Optional[int], typer.Option(help="Seed (bagging/boosting; stacking folds).")]
Bundle = Annotated[Optional[bool], typer.Option(
    "--bundle/--no-bundle",
    help="Also write ensemble.pt, a self-contained bundle (members' weights + combiner) that "
         "predicts without the member folders (default: on; skipped with a note where the "
         "ensemble cannot be bundled, an error if --bundle is given).")]


def _params(**flags: Any) -> dict[str, Any]:
    """Combiner parameters from the flags the user actually passed."""
    params = {k: v for k, v in flags.items() if v is not None}
    if isinstance(params.get("weights"), str):
        try:
            params["weights"] = [float(w) for w in params["weights"].split(",")]
        except ValueError:
            raise ValueError(f"--member-weights must be comma-separated numbers; got "
                             f"{flags['weights']!r}") from None
    return params


@friendly
def ensemble(method: Method, runs: Runs = None, *, out: Out, name: Name = None,
             config: Config = None, members: Members = 5,
             tune_thresholds: TuneThresholds = False, threshold: Threshold = None,
             objective: Objective = None, grid_steps: GridSteps = None,
             member_weights: MemberWeights = None, meta: Meta = None,
             oof_folds: OofFolds = None, seed: Seed = None, bundle: Bundle = None) -> None:
    """Combine run folders (or train resampled members) into one ensemble run folder."""
    from funduslab.ensemble import ENSEMBLES, TRAINED_ENSEMBLES, load_members, write_ensemble_run

    run_name = name or method
    if "/" in run_name or run_name.startswith("."):
        raise ValueError(f"--name must be a plain folder name, got {run_name!r}")
    if method in TRAINED_ENSEMBLES:
        run_dir = _train_members(method, runs, config, seed, members, out / run_name,
                                 tune_thresholds)
    elif method in ENSEMBLES:
        if config is not None:
            raise ValueError(f"{method} combines existing run folders; --config is for "
                             f"{', '.join(TRAINED_ENSEMBLES.names())}")
        params = _params(threshold=threshold, objective=objective, grid_steps=grid_steps,
                         weights=member_weights, meta=meta, cv=oof_folds, random_state=seed)
        run_dir = write_ensemble_run(load_members(runs or []), method, out / run_name, params,
                                     tune=tune_thresholds)
    else:
        valid = ", ".join(ENSEMBLES.names() + TRAINED_ENSEMBLES.names())
        raise ValueError(f"unknown ensemble method {method!r}; valid names: {valid}")
    print_run(run_dir, "ensemble run folder")
    if bundle is not False:
        _write_bundle(run_dir, required=bundle is True)


def _train_members(method: str, runs: Optional[list[Path]], config: Optional[Path],
                   seed: Optional[int], members: int, out_dir: Path, tune: bool) -> Path:
    """Bagging or boosting: train ``members`` runs from the base ``config``."""
    from funduslab.config import load_config
    from funduslab.ensemble import TRAINED_ENSEMBLES

    if runs:
        raise ValueError(f"{method} trains its own members from --config; "
                         f"do not pass run folders ({[str(r) for r in runs]})")
    if config is None:
        raise ValueError(f"{method} needs --config (the base config of one member)")
    cfg = load_config(config, {"train.seed": seed} if seed is not None else None)
    return TRAINED_ENSEMBLES.get(method)(cfg, members, out_dir, tune=tune)


def _write_bundle(run_dir: Path, required: bool) -> Path | None:
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


def register(app: typer.Typer) -> None:
    """Attach ``ensemble`` to ``app``."""
    app.command(cls=with_choices(method=("ensembles", "trained-ensembles")))(ensemble)
