"""The course model that beats the course's best: candidate recipes, one chosen on val only.

Every candidate is the course reference recipe (:data:`REFERENCE`: ImageNet EfficientNet-Lite0,
256 px, full fine-tuning with the default epochs and ``train.recipe: fast``, BCE, threshold 0.5)
with one change, stated as data in
:data:`CANDIDATES`: more data (ODIR-5K eyes joined to train by label name,
:mod:`funduslab.data.join` — all of D, G, A, or D alone with G and A masked out of the loss; or
two-stage training on them first), a larger Lite backbone or resolution, longer training, or
per-disease thresholds tuned on val for the course figure. Each trains once per seed.
**The row is chosen on val only**: the highest mean val course average F1 over seeds. A
tuned-threshold row is scored on val by 2-fold cross-fitting (thresholds tuned on
one half of the val patients, scored on the other), since scoring thresholds on the very images
they were tuned on would flatter it. The offsite test is read for reporting only.

``results.md`` lists every candidate's val and offsite figures (mean ± std over seeds) beside
the reference; the chosen row's best-val seed gives ``<out>/submission.csv`` (Kaggle ``id,D,G,A``
in the onsite template's order) and ``<out>/<team>_task<task>.pt``; ``results.json`` holds the
per-seed figures (``benchmarks/bench_course_best.py`` reads it).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from funduslab.config import DEFAULT_EPOCHS, RunConfig, atomic_write_text, config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.table import SampleTable
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, Study, StudyResult, merge_config, row_config, run_study
from funduslab.metrics import course_average_f1, tune_thresholds
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.runs import RunFolder, weights_filename
from funduslab.training.runner import run

__all__ = ["CANDIDATES", "QUICK", "REFERENCE", "Candidate", "best_study", "candidate_config",
           "course_best", "cross_fitted_val_f1"]

log = logging.getLogger(__name__)

TEST_SPLIT = "offsite_test"
VAL_SPLIT = "val"

#: The course reference recipe, as ``benchmarks/bench_course_finetune.py`` runs it.
REFERENCE: dict[str, Any] = {
    "data": {"adapter": "odir_course", "image_size": 256},
    "model": {"backbone": "tf_efficientnet_lite0", "weights": "imagenet"},
    "train": {"setup": "full", "epochs": DEFAULT_EPOCHS, "loss": "bce", "tune_thresholds": False},
}
#: ``--quick``: laid over every candidate (last), so tests run every row in seconds.
QUICK: dict[str, Any] = {
    "data": {"image_size": 32},
    "model": {"backbone": "tiny_cnn", "weights": "none"},
    "train": {"epochs": 1, "source_epochs": 1, "batch_size": 8, "precision": "32",
              "warmup_epochs": 0},
    "output": {"figures": False},
}

SourceUse = Literal["", "join", "two_stage"]


@dataclass(frozen=True)
class Candidate:
    """One row: a change to :data:`REFERENCE`.

    Args:
        name: Row and run-folder prefix (``lite2_288`` → ``lite2_288_s0``).
        note: What the row is, for the table.
        overrides: Nested config dict merged over the reference.
        source: How the row uses ``--source``: ``join`` (its eyes join train), ``two_stage``
            (stage 1 on it), or ``""`` (not at all). Rows using it run only when it is given.
        thresholds_of: Re-evaluate this row's runs with per-disease thresholds tuned on val
            (no training); ``""`` for a trained row at threshold 0.5.
        source_labels: The labels taken from the source (empty: the course's D, G, A); the
            others are missing for its rows and masked out of the loss.
    """

    name: str
    note: str
    overrides: dict[str, Any] = field(default_factory=dict)
    source: SourceUse = ""
    thresholds_of: str = ""
    source_labels: tuple[str, ...] = ()


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("reference", "the course reference: Lite0 ImageNet, 256 px, full fine-tuning, "
              f"{DEFAULT_EPOCHS} epochs (fast recipe), BCE, threshold 0.5"),
    Candidate("joined", "reference + the source's eyes joined to train (labels D, G, A by name)",
              source="join"),
    # odir5k-source has 519 D, 2 G and 6 A positives in 4383 eyes (the course: 517, 163, 142 of
    # 800): as G/A negatives they would swamp the course's G/A prevalence, so mask them instead
    Candidate("joined_d", "reference + the source's eyes joined for D only; their G and A are "
              "masked out of the loss (the source has 2 G and 6 A positives)", source="join",
              source_labels=("D",)),
    Candidate("joined_tuned", "the joined runs with thresholds tuned on val (the source shifts "
              "the label priors the 0.5 threshold assumes)", source="join",
              thresholds_of="joined"),
    Candidate("two_stage", "reference after 5 epochs of full fine-tuning on the source",
              {"train": {"setup": "two-stage", "source_epochs": 5}}, source="two_stage"),
    Candidate("lite1_256", "Lite1 at 256 px", {"model": {"backbone": "tf_efficientnet_lite1"}}),
    Candidate("lite1_288", "Lite1 at 288 px", {"model": {"backbone": "tf_efficientnet_lite1"},
                                               "data": {"image_size": 288}}),
    Candidate("lite2_256", "Lite2 at 256 px", {"model": {"backbone": "tf_efficientnet_lite2"}}),
    Candidate("lite2_288", "Lite2 at 288 px", {"model": {"backbone": "tf_efficientnet_lite2"},
                                               "data": {"image_size": 288}}),
    Candidate("longer", "reference trained 20 epochs", {"train": {"epochs": 20}}),
    Candidate("tuned", "the reference runs with per-disease thresholds tuned on val for the "
              "course figure (two-class macro F1)", thresholds_of="reference"),
)


_BY_NAME = {c.name: c for c in CANDIDATES}


def _row(candidate: Candidate) -> Row:
    return Row(candidate.name, candidate.note, candidate.overrides)


def _with_source(row: Row, raw: dict[str, Any], source: Path | None, labels: list[str] | None,
                 workers: int) -> dict[str, Any]:
    """The source, as a row uses it, added to its merged config: joined to train, or stage 1
    decoded like the target (the final image size and preprocessing)."""
    candidate = _BY_NAME[row.name]
    if not candidate.source:
        return raw
    if source is None:
        raise ValueError(f"row {candidate.name!r} trains on the source dataset; pass --source "
                         "(an odir5k layout such as ../shared/data/odir5k-source)")
    chosen = candidate.source_labels or labels or ("D", "G", "A")
    spec = {"adapter": "odir5k", "root": str(source), "options": {"labels": list(chosen)}}
    if candidate.source == "join":
        return merge_config(raw, {"data": {"extra_sources": [spec]}})
    raw["train"]["source"] = {**spec, "image_size": raw["data"]["image_size"],
                              "preprocess": raw["data"].get("preprocess", "none"),
                              "num_workers": workers}
    return raw


def best_study(candidates: Sequence[Candidate], source: Path | None = None,
               labels: list[str] | None = None, workers: int = 0,
               combine: Any = None, render: Any = None) -> Study:
    """The study training ``candidates`` (a re-evaluating row is its combine step's, not a
    study row: it trains nothing)."""
    base = merge_config(REFERENCE, {"data": {"num_workers": workers},
                                    "output": {"figures": True}})
    return Study("course-best", base, tuple(_row(c) for c in candidates),
                 render or (lambda result: ""), quick=QUICK, combine=combine,
                 finish=partial(_with_source, source=source, labels=labels, workers=workers))


def candidate_config(
    candidate: Candidate, data: Path, out: Path, seed: int, *, quick: bool = False,
    source: Path | None = None, labels: list[str] | None = None, workers: int = 0,
) -> RunConfig:
    """The validated config of a trained row and seed (run folder ``<name>_s<seed>``).

    Reference, then the row's overrides, then :data:`QUICK` when ``quick``, then the source
    (taking the final image size and preprocessing), then the output fields.

    Raises:
        ValueError: the row uses the source and ``source`` is ``None``; a bad field.
    """
    study = best_study([candidate], source, labels, workers)
    return row_config(study, study.rows[0], data, out, seed, quick=quick)


def _tuned_config(trained: Path, name: str, seed: int, out: Path) -> RunConfig:
    """A finished run re-evaluated as it is (``setup: none``) with thresholds tuned on val, into
    ``out`` (the study's folder, wherever the trained run lives)."""
    folder = RunFolder(trained)
    raw = folder.config
    raw.pop("provenance", None)
    raw["model"] = {**raw["model"], "weights": str(folder.require_weights())}
    raw["train"] = {**raw["train"], "setup": "none", "tune_thresholds": True,
                    "threshold_objective": "f1_macro"}
    raw["output"] = {**raw["output"], "out": str(out), "name": f"{name}_s{seed}", "team": None,
                     "task": None}
    return config_from_dict(raw, origin=f"course-best row {name!r}")


def cross_fitted_val_f1(run_dir: Path, table: SampleTable, seed: int = 0) -> float:
    """Val course average F1 of thresholds tuned on *other* val images (2 folds by patient).

    Each half of the val patients is thresholded at the per-disease thresholds (two-class macro
    F1, :func:`funduslab.metrics.tune_thresholds`) tuned on the other half; the course figure is
    computed over all val images. An honest val figure for the tuned-threshold rule.
    """
    names = list(table.label_names)
    ids, probs = RunFolder(run_dir).predictions(VAL_SPLIT, names)
    rows = table.split(VAL_SPLIT).set_index("id").loc[ids]
    truth = rows[names].to_numpy(dtype=int)
    patients = rows["patient"].astype(str).to_numpy()
    unique = np.unique(patients)
    fold_of = dict(zip(unique[np.random.default_rng(seed).permutation(len(unique))],
                       np.arange(len(unique)) % 2))
    fold = np.array([fold_of[p] for p in patients])
    preds = np.zeros_like(truth)
    for k in (0, 1):
        held = fold == k
        thresholds = tune_thresholds(truth[~held], probs[~held], objective="f1_macro")
        preds[held] = (probs[held] >= thresholds).astype(int)
    return course_average_f1(truth, preds)


def _figures(candidate: Candidate, runs: list[Path], table: SampleTable) -> dict[str, Any]:
    """Per seed: the val selection figure and the offsite figure of the row's decision rule."""
    kind = "tuned_thresholds" if candidate.thresholds_of else "threshold_0.5"
    metrics = [RunFolder(d).metrics for d in runs]
    if candidate.thresholds_of:
        val = [cross_fitted_val_f1(d, table) for d in runs]
    else:
        val = [split_scores(m, VAL_SPLIT)["course_average_f1"] for m in metrics]
    test = [split_scores(m, TEST_SPLIT, kind)["course_average_f1"] for m in metrics]
    return {"runs": [str(d) for d in runs], "val": val, TEST_SPLIT: test,
            "thresholds": "tuned on val" if candidate.thresholds_of else "0.5",
            "extra_data": _extra_data(candidate), "note": candidate.note, "skipped": ""}


def _extra_data(candidate: Candidate) -> str:
    what = {"join": "source joined to train", "two_stage": "source, stage 1"}.get(
        candidate.source, "—")
    if candidate.source_labels:
        what += f" ({', '.join(candidate.source_labels)} only)"
    return what


def _choose(rows: dict[str, dict[str, Any]]) -> str:
    """The row with the highest mean val figure (first row on a tie); test never consulted."""
    scored = {n: float(np.mean(r["val"])) for n, r in rows.items() if r["val"]}
    return max(scored, key=scored.get)


def _render(rows: dict[str, dict[str, Any]], chosen: str, seeds: list[int], source: Path | None,
            weights: Path, quick: bool) -> str:
    ref_val, ref_test = (float(np.mean(rows["reference"][k])) for k in ("val", TEST_SPLIT))
    header = ["row", "what", "extra data", "thresholds", "val avg F1 (selects)",
              "offsite avg F1", "Δ val", "Δ offsite"]
    body, skipped = [], []
    for name, r in rows.items():
        if r["skipped"]:
            skipped.append(f"`{name}` ({r['skipped']})")
            continue
        val, test = float(np.mean(r["val"])), float(np.mean(r[TEST_SPLIT]))
        label = f"**{name}** (chosen)" if name == chosen else name
        delta = ("—" if name == "reference" else f"{100 * (val - ref_val):+.2f} pt",
                 "—" if name == "reference" else f"{100 * (test - ref_test):+.2f} pt")
        body.append([label, r["note"], r["extra_data"], r["thresholds"], mean_std(r["val"]),
                     mean_std(r[TEST_SPLIT]), *delta])
    seeds_note = ", ".join(str(s) for s in seeds)
    text = (
        "# Course best — candidates chosen on val only\n\n"
        f"Seeds {seeds_note} per row (mean ± sample std). Course average F1 = mean over D, G, A "
        "of each disease's two-class macro F1. **The row is chosen on val only**: the highest "
        "mean val figure over seeds; the offsite test figures are for reporting and chose "
        "nothing. Rows at threshold 0.5 show their val figure at 0.5; the tuned-threshold row "
        "shows a 2-fold cross-fitted val figure (thresholds tuned on one half of the val "
        "patients, scored on the other), because thresholds scored on the images they were "
        "tuned on would flatter it. Offsite figures use each row's own rule. Rows marked in "
        "*extra data* trained on images beyond the course train split"
        + (f" (`{source}`, labels matched by name; val and test are the course's only)"
           if source else "") + ".\n\n"
        + markdown_table(header, body)
        + f"\nChosen: **{chosen}**. Its best-val seed gives `submission.csv` (onsite template "
        f"order) and `{weights.name}` in this folder.\n"
    )
    if skipped:
        text += f"\nNot run: {', '.join(skipped)}.\n"
    if quick:
        text += "\n`--quick`: tiny model and images; the figures mean nothing.\n"
    return text


def _deliver(rows: dict[str, dict[str, Any]], chosen: str, out: Path, weights: Path) -> Path:
    """Copy the chosen row's best-val run's ``submission.csv`` and weights into ``out``."""
    row = rows[chosen]
    best = Path(row["runs"][int(np.argmax(row["val"]))])
    for src, dst in ((best / "submission.csv", out / "submission.csv"),
                     (RunFolder(best).require_weights(), weights)):
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    log.info("chosen %s: %s → %s, submission.csv", chosen, best, weights)
    return best


def _plan(rows: str, source: Path | None) -> tuple[list[Candidate], dict[str, str]]:
    """Candidates to run (reference always, and any row a tuned row re-evaluates) and the
    skipped ones with why. Asking by name for a source row without ``--source`` is an error."""
    names = [c.name for c in CANDIDATES]
    wanted = [r.strip() for r in rows.split(",") if r.strip()] or names
    unknown = [r for r in wanted if r not in names]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; course-best rows are: "
                         f"{', '.join(names)}")
    needed = set(wanted) | {"reference"}
    needed |= {c.thresholds_of for c in CANDIDATES if c.name in needed and c.thresholds_of}
    plan, skipped = [], {}
    for c in CANDIDATES:
        if c.name not in needed:
            continue
        if c.source and source is None:
            if rows.strip():
                raise ValueError(f"row {c.name!r} trains on the source dataset; pass --source")
            skipped[c.name] = "needs --source"
            continue
        plan.append(c)
    return plan, skipped


@PRESETS.register("course-best")
def course_best(
    data: Path, team: str = "funduslab", out: Path = Path("runs/course_best"),
    quick: bool = False, seeds: list[int] | None = None, source: Path | None = None,
    rows: str = "", task: str = "4", workers: int = 0, sets: Sequence[str] = (),
) -> Path:
    """Train every candidate for every seed, choose one on val, write ``<out>/results.md``.

    Args:
        data: Course data folder (``odir_course`` layout).
        team: Team name of the chosen model's ``<team>_task<task>.pt``.
        out: Output folder (run folders ``<row>_s<seed>``, results, deliverables).
        quick: :data:`QUICK` over every row (tiny_cnn, 32 px, 1 epoch) for tests and demos.
        seeds: Seeds per row (default 0, 1, 2).
        source: ODIR-5K layout (e.g. ``odir5k-source``) for the ``joined`` and ``two_stage``
            rows; without it those rows are skipped and say so.
        rows: Comma-separated subset of rows (the reference always runs); empty runs all.
        task: Course task id in the weights' name (``4`` → ``<team>_task4.pt``).
        workers: DataLoader workers (``data.num_workers``; GPU machines: 4–8).
        sets: ``key=value`` config overrides of every trained row (``train.epochs=6``).

    Raises:
        ValueError: an unknown row, a source row asked for without ``--source``.
        FileNotFoundError: ``data`` or ``source`` does not exist.
    """
    out, data = Path(out), Path(data)
    for what, path in (("--data", data), ("--source", source)):
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{what} {path} does not exist")
    plan, skipped = _plan(rows, source)
    table = load_table("odir_course", data)
    weights = out / weights_filename(team, task)
    combine = partial(_choose_and_deliver, plan=plan, skipped=skipped, table=table,
                      weights=weights, source=source)
    render = partial(_report, source=source, weights=weights)
    study = best_study([c for c in plan if not c.thresholds_of], source, table.label_names,
                       workers, combine, render)
    return run_study(study, data, out, seeds, quick, sets)


def _choose_and_deliver(result: StudyResult, plan: list[Candidate], skipped: dict[str, str],
                        table: SampleTable, weights: Path, source: Path | None) -> dict[str, Any]:
    """Re-evaluate the tuned-threshold rows, score every row, choose on val, copy the chosen
    run's deliverables into ``out`` and write ``results.json``."""
    runs = dict(result.runs)
    for c in plan:
        if c.thresholds_of:
            runs[c.name] = [run(_tuned_config(d, c.name, s, result.out),
                                progress=not result.quick)
                            for d, s in zip(runs[c.thresholds_of], result.seeds)]
    results = {c.name: _figures(c, runs[c.name], table) for c in plan}
    for name, why in skipped.items():
        c = _BY_NAME[name]
        results[name] = {"runs": [], "val": [], TEST_SPLIT: [], "thresholds": "",
                         "extra_data": _extra_data(c), "note": c.note, "skipped": why}
    results = {c.name: results[c.name] for c in CANDIDATES if c.name in results}
    chosen = _choose(results)
    best = _deliver(results, chosen, result.out, weights)
    summary = {"metric": "course_average_f1", "test_split": TEST_SPLIT, "chosen": chosen,
               "chosen_run": str(best), "weights": str(weights),
               "reference": float(np.mean(results["reference"][TEST_SPLIT])),
               "seeds": result.seeds, "source": str(source) if source else None,
               "rows": results}
    atomic_write_text(result.out / "results.json", json.dumps(summary, indent=2))
    log.info("wrote results.json (chosen on val: %s)", chosen)
    return {"rows": results, "chosen": chosen}


def _report(result: StudyResult, source: Path | None, weights: Path) -> str:
    combined = result.combined
    return _render(combined["rows"], combined["chosen"], result.seeds, source, weights,
                   result.quick)
