"""DR grading 0–4: three formulations, a preprocessing study and optional two-stage transfer.

``funduslab suite dr-grading --data <root>`` fine-tunes one backbone on DR grades (ODIR-5K eyes
with ``task=grading``, APTOS 2019 or DeepDRiD) and writes ``results.md`` with test quadratic /
linear / unweighted Cohen's kappa and accuracy, mean ± std over seeds:

1. formulations ``ce`` / ``regression`` / ``ordinal`` (CORAL) on unprocessed images
   (:mod:`funduslab.training.grading`);
2. a preprocessing study — the same model under every pipeline of
   :data:`funduslab.preprocess.NAMED_PIPELINES` (none, FOV crop, CLAHE, crop + CLAHE,
   Ben Graham, Ben Graham + Gaussian blur, unsharp mask; Graham, Kaggle DR 2015 report);
3. with ``two_stage=true``: stage 1 on ``source`` (APTOS layout or ODIR-5K grades — or a
   multi-label set such as the ODIR course split's D/G/A, whose backbone alone carries over),
   stage 2 on the target, both stages' scores reported next to the one-stage baseline.

Every epoch is selected on validation quadratic kappa; regression cut points are tuned on
validation only, so the test split is untouched by every choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from funduslab.data.adapters import load_table
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, Study, StudyResult, run_study
from funduslab.preprocess.pipeline import NAMED_PIPELINES
from funduslab.reporting.run_folder import read_metrics
from funduslab.reporting.tables import markdown_table, mean_std
from funduslab.training.grading import GRADING_FORMULATIONS

__all__ = ["QUICK", "dr_grading", "grading_data_options", "grading_study"]

ALL_PREPROCESS = ",".join(NAMED_PIPELINES)
_KAPPAS = (("quadratic κ", "quadratic_weighted_kappa"), ("linear κ", "linear_weighted_kappa"),
           ("unweighted κ", "cohen_kappa"), ("accuracy", "accuracy"))
#: ``--quick``: 64 px, 2 epochs, batch 8, no figures (the two-stage row: 1 source epoch).
QUICK: dict[str, Any] = {"data": {"image_size": 64}, "train": {"epochs": 2, "batch_size": 8},
                         "output": {"figures": False}}
#: A table row: (study part, formulation, preprocessing pipeline).
TableRow = tuple[str, str, str]


def grading_data_options(adapter: str, split_seed: int = 0) -> dict[str, Any]:
    """Adapter options that give a DR-grading table (ODIR-5K needs ``task=grading``)."""
    adapter = adapter.replace("-", "_")
    if adapter == "odir5k":
        return {"task": "grading", "seed": split_seed}
    if adapter == "aptos":
        return {"seed": split_seed}
    return {}


def _names(text: str, valid: list[str], what: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in valid]
    if bad or not names:
        raise ValueError(f"{what} {bad or text!r} not understood; valid: {', '.join(valid)}")
    return names


def _source_at_target_size(row: Row, raw: dict[str, Any]) -> dict[str, Any]:
    """Stage 1 decodes its source at the run's final image size."""
    if raw["train"].get("source"):
        raw["train"]["source"]["image_size"] = raw["data"]["image_size"]
    return raw


def grading_study(base: dict[str, Any], table_rows: list[TableRow], render: Any,
                  two_stage: dict[str, Any] | None = None, note: str = "") -> Study:
    """One row per distinct (formulation, pipeline) — ``ce``/``none`` serves both parts — and,
    with ``two_stage`` (the row's ``train`` overrides), the two-stage row."""
    rows: dict[str, Row] = {}
    for _, form, pipe in table_rows:
        name = f"grading_{form}_{pipe}"
        rows.setdefault(name, Row(name, f"{form}, preprocess {pipe}",
                                  {"data": {"preprocess": pipe}, "train": {"formulation": form}}))
    if two_stage is not None:
        rows["grading_two_stage"] = Row("grading_two_stage", note,
                                        {"data": {"preprocess": "none"}, "train": two_stage},
                                        quick={"train": {"source_epochs": 1}})
    return Study("dr-grading", base, tuple(rows.values()), render, quick_seeds=(0,),
                 quick=QUICK, finish=_source_at_target_size)


def _check(table: Any, data: Path, adapter: str, test_split: str, setup: str, two_stage: bool,
           source: Path | None) -> None:
    """The options' problems, before anything trains."""
    if table.task != "grading":
        raise ValueError(f"{data} read with adapter {adapter!r} has no grades; use odir5k, aptos "
                         "or deepdrid")
    if test_split not in table.splits or not table.split(test_split)["labelled"].all():
        raise ValueError(f"{data} has no labelled {test_split!r} split (splits: {table.splits}); "
                         "pass --opt test_split=<name>")
    if setup not in ("full", "frozen"):
        raise ValueError(f"setup must be 'full' or 'frozen', got {setup!r}")
    if two_stage and source is None:
        raise ValueError("two_stage=true needs --source <folder> (APTOS layout or ODIR-5K grades)")


@PRESETS.register("dr-grading")
def dr_grading(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None, adapter: str = "odir5k",
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = 12, formulations: str = "ce,regression,ordinal",
    preprocess: str = ALL_PREPROCESS, study_formulation: str = "ce", two_stage: bool = False,
    source_adapter: str = "aptos", source_epochs: int = 5, sampler: str = "random",
    split_seed: int = 0, test_split: str = "test", dual: str = "none", setup: str = "full",
    batch_size: int = 32, num_workers: int = 0, sets: Sequence[str] = (),
) -> Path:
    """Run the DR-grading benchmark; return the path of ``results.md``.

    Args:
        formulations: Comma list of grading formulations compared without preprocessing.
        preprocess: Comma list of :data:`NAMED_PIPELINES` names for the preprocessing study.
        study_formulation: Formulation used in the preprocessing study and the two-stage run.
        two_stage: Also fit stage 1 on ``source`` (``source_adapter`` layout), then the target.
        source_epochs: Stage-1 epochs (1 in quick mode).
        sampler: Training sampler (``class_aware`` draws grades equally often, ``class_sqrt`` by
            the square root of their counts).
        split_seed: Seed of the patient-level split (same for every model seed).
        dual: ``model.dual`` fusion for every row (``concat`` / ``mean`` / ``attention``): each
            image is seen with its partner — DeepDRiD's other shot of the eye, ODIR-5K's fellow
            eye. ``none``: single images.
        setup: Transfer setup of every single-stage row: ``full`` fine-tuning, or ``frozen``
            (a head on cached ImageNet features: a preprocessing study in minutes instead of
            hours on a CPU, at the price of measuring what the pipelines do to fixed features).
        batch_size: Training batch (quick mode: 8).
        num_workers: DataLoader workers; 0 on a 2-core CPU, 4–8 on a GPU machine.
        sets: ``key=value`` config overrides of every row (``train.epochs=6``).

    Raises:
        ValueError: unknown formulation/preprocess name, a table without grades or without the
            test split, or ``two_stage`` without ``source``.
    """
    forms = _names(formulations, GRADING_FORMULATIONS.names(), "formulation(s)")
    study = _names(study_formulation, GRADING_FORMULATIONS.names(), "study_formulation")[0]
    pipelines = _names(preprocess, list(NAMED_PIPELINES), "preprocess pipeline(s)")
    options = grading_data_options(adapter, split_seed)
    _check(load_table(adapter, Path(data), **options), Path(data), adapter, test_split, setup,
           two_stage, source)
    base = {"data": {"adapter": adapter, "options": options, "image_size": image_size,
                     "num_workers": num_workers},
            "model": {"backbone": backbone, "weights": weights, "dual": dual},
            "train": {"setup": setup, "task": "grading", "epochs": epochs,
                      "batch_size": batch_size, "monitor": "quadratic_kappa", "sampler": sampler}}
    table_rows = [("formulation", f, "none") for f in forms]
    table_rows += [("preprocessing", study, p) for p in pipelines]
    stage = None
    if two_stage:
        stage = {"formulation": study, "setup": "two-stage", "source_epochs": source_epochs,
                 "source": {"adapter": source_adapter, "root": str(source),
                            "options": grading_data_options(source_adapter, split_seed)}}
    render = partial(_render, rows=table_rows, study=study, split=test_split,
                     source_adapter=source_adapter)
    return run_study(grading_study(base, table_rows, render, stage,
                                   f"stage 1 {source_adapter}, stage 2 {adapter}"),
                     Path(data), Path(out), seeds, quick, sets, team)


def _scores(run_dirs: list[Path], split: str) -> list[str]:
    metrics = [read_metrics(d)["splits"][split]["grading"] for d in run_dirs]
    return [mean_std([m[key] for m in metrics]) for _, key in _KAPPAS]


def _val_qwk(run_dirs: list[Path]) -> str:
    splits = [read_metrics(d)["splits"] for d in run_dirs]
    return mean_std([s["val"]["grading"]["quadratic_weighted_kappa"] for s in splits if "val" in s])


def _render(result: StudyResult, rows: list[TableRow], study: str, split: str,
            source_adapter: str) -> str:
    cfg, results = result.config(), result.runs
    header = ["formulation", "preprocess", *[f"test {name}" for name, _ in _KAPPAS],
              "val quadratic κ"]
    tables = []
    for kind in ("formulation", "preprocessing"):
        body = []
        for row_kind, form, pipe in rows:
            if row_kind != kind:
                continue
            dirs = results[f"grading_{form}_{pipe}"]
            body.append([form, pipe, *_scores(dirs, split), _val_qwk(dirs)])
        title = ("Formulations (no preprocessing)" if kind == "formulation"
                 else f"Preprocessing study (formulation {study})")
        tables.append(f"## {title}\n\n" + markdown_table(header, body))
    if "grading_two_stage" in results:
        tables.append(_two_stage_table(results, study, split, cfg.data.adapter, source_adapter))
    how = "full fine-tuning" if cfg.train.setup == "full" else "a head on frozen features"
    dual = cfg.model.dual
    recipe = (f"{cfg.data.image_size} px, {how} for {cfg.train.epochs} epochs, sampler "
              f"`{cfg.train.sampler}`, " + ("single images" if dual == "none" else
                                            f"each image with its partner (`{dual}` fusion)")
              + ". ")
    return (
        f"# DR grading — {cfg.data.adapter}, {cfg.model.backbone}\n\n"
        f"Grades 0–4. {recipe}Epoch chosen on validation quadratic-weighted kappa; regression "
        f"cut points tuned on validation. Split {split}; seeds "
        f"{', '.join(map(str, result.seeds))} (mean ± sample std). Run folders hold predictions, "
        "confusion matrices (`figures/confusion_<split>.png`) and curves.\n\n"
        + "\n".join(tables)
    )


def _two_stage_table(results: dict[str, list[Path]], study: str, split: str, adapter: str,
                     source_adapter: str) -> str:
    """Stage 1's own figure, stage 2's and the one-stage baseline's (when it ran)."""
    dirs = results["grading_two_stage"]
    stages = [read_metrics(d)["fit"]["source_stage"] for d in dirs]
    stage1 = [s["best_score"] for s in stages]
    metric = stages[0]["monitor"].replace("val_", "val ").replace("_", " ")
    base = results.get(f"grading_{study}_none")
    body = [["stage 1 (source)", source_adapter, f"{metric} (source)", mean_std(stage1), ""],
            ["stage 2 (target)", adapter, f"{split} quadratic κ", _scores(dirs, split)[0],
             _val_qwk(dirs)]]
    if base:
        body.append(["one stage (baseline)", adapter, f"{split} quadratic κ",
                     _scores(base, split)[0], _val_qwk(base)])
    return f"## Two-stage transfer (formulation {study})\n\n" + markdown_table(
        ["stage", "data", "metric", "mean ± std", "val quadratic κ"], body)
