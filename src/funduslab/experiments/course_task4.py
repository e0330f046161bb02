"""Course Task 4: ensembles, attention-guided learning, VAE augmentation and transformers.

Every method is measured against the same reference — the engine's full fine-tuning recipe
(``single``), trained once per seed — on the offsite test split, and chosen on val only:

* ``max_voting`` / ``soft_voting`` / ``weighted`` / ``stacking`` — combiners of the ``single``
  runs' saved probabilities (:mod:`funduslab.ensemble`); weights and the stacker are fitted on
  val (stacking out-of-fold), never on test. One ensemble over all seeds, so no seed spread.
* ``tta`` — every ``single`` run re-evaluated with flip TTA (original + horizontal + vertical
  flip, logits averaged) from its saved weights: no training, so it costs one prediction pass.
* ``tta_max_voting`` / ``tta_soft_voting`` / ``tta_weighted`` / ``tta_stacking`` — the same
  combiners over the ``tta`` re-evaluations: flip TTA inside each member, then the ensemble.
* ``bagging`` / ``boosting`` — members trained on bootstrap resamples / AdaBoost sample weights
  (Breiman 1996; Freund & Schapire 1997), ``resampled_members`` members each.
* ``attention_guided`` — the recipe plus the flip-consistent CAM loss
  (:mod:`funduslab.training.guided`, Guo et al., CVPR 2019), λ = ``consistency``.
* ``vae`` — the recipe with class-conditional VAE images (:mod:`funduslab.generate`) added to
  train only, at ``vae_ratio`` generated per real image.
* ``vit`` / ``swin`` — ViT-S/16 (Dosovitskiy et al., ICLR 2021) and Swin-T (Liu et al., ICCV
  2021) through the same engine with layer-wise LR decay. Offline there are no ImageNet weights
  for them: with ``transformer_weights=imagenet`` and no network these rows are skipped with the
  reason in ``results.md``; pass a weights file, or ``none`` to train from scratch (weak on 800
  images — say so when reporting it).

The row chosen on val is saved as ``<team>_task4.pt``: the seeds' soft vote unless the val-best
row (course average F1 at 0.5) leads it by more than the soft vote's bootstrap val standard error
(200 val images cannot rank ensembles closer;
:func:`~funduslab.experiments.course_task4_report.choose_row`), or the val-best row when there is
no soft vote. It is a single model's weights, or an ensemble bundle (every member's weights plus
the fitted combiner; :func:`funduslab.ensemble.bundle.load_ensemble_bundle` reads it). When
``tta`` wins, the file is the plain model: TTA is how it is run, so predict with
``funduslab predict --tta``.

This module trains and combines the rows; scoring them, choosing the best and writing
``results.md`` live in :mod:`funduslab.experiments.course_task4_report`.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from funduslab.config import DEFAULT_EPOCHS, RunConfig, atomic_write_text, config_from_dict
from funduslab.experiments import PRESETS
from funduslab.experiments.course_task4_report import (
    MethodResult,
    choose_row,
    render_results,
    run_seconds,
    save_best_weights,
    summary,
)
from funduslab.experiments.study import (
    Row,
    Study,
    StudyResult,
    merge_config,
    resolve_base,
    run_study,
)
from funduslab.experiments.variants import COURSE_QUICK, course_recipe, source_start_weights
from funduslab.runs import RunFolder

__all__ = ["TASK4_ROWS", "course_task4"]

log = logging.getLogger(__name__)

_COMBINERS = ["max_voting", "soft_voting", "weighted", "stacking"]
_TTA_COMBINERS = [f"tta_{c}" for c in _COMBINERS]
TASK4_ROWS = ["single", "tta", *_COMBINERS, *_TTA_COMBINERS, "bagging", "boosting",
              "attention_guided", "vae", "vit", "swin"]
#: ``--quick`` over the ``vae`` row's generator: 32 px, 1 epoch.
VAE_QUICK: dict[str, Any] = {"image_size": 32, "epochs": 1}
_TRANSFORMERS = {"vit": ("vit_small_patch16_224", "tiny_vit"),
                 "swin": ("swin_tiny_patch4_window7_224", "tiny_swin")}


def _member_globs(members: str) -> list[Path]:
    """Run folders matching comma-separated glob patterns (``runs/task2/*_s?``)."""
    found: list[Path] = []
    for pattern in (p.strip() for p in members.split(",") if p.strip()):
        hits = [Path(h) for h in sorted(glob.glob(pattern)) if RunFolder(h).has_metrics]
        if not hits:
            raise ValueError(f"members pattern {pattern!r} matches no finished run folder "
                             "(a folder with metrics.json)")
        found += hits
    return found


def _transformer_weights_problem(timm_name: str, weights: str, size: int) -> str:
    """Empty when the backbone can be built with ``weights``; else why not (offline ImageNet)."""
    if weights != "imagenet":
        return ""
    from funduslab.models.backbones import create_backbone

    try:
        create_backbone(timm_name, weights, img_size=size)
    except RuntimeError as err:  # no network and no cached weights: weights.py says so
        return str(err).splitlines()[0]
    return ""


def _vae_folder(data: Path, out: Path, quick: bool, ratio: float, n_train: int, size: int,
                epochs: int, seed: int) -> tuple[Path, float]:
    """Generated images for the ``vae`` row (reused when already written) and the seconds their
    VAE took to fit and sample, as ``generated.json`` records them (0 for a folder from before
    the record existed), so a reused folder still costs its row what it cost to make."""
    from funduslab.data.mixing import read_generated
    from funduslab.generate.train_vae import VAETraining
    from funduslab.generate.workflow import generate_from_dataset

    folder = out / "vae"
    classes = "D,G,A,normal"
    per_class = math.ceil(ratio * n_train / 4) + 1
    try:
        if len(read_generated(folder, ["D", "G", "A"])) >= round(ratio * n_train):
            log.info("reusing generated images in %s", folder)
            return folder, _generation_seconds(folder)
    except (FileNotFoundError, ValueError):
        pass
    vae = merge_config({"image_size": size, "epochs": epochs}, VAE_QUICK if quick else {})
    generate_from_dataset(data, folder, image_size=vae["image_size"], per_class=per_class,
                          classes=classes, training=VAETraining(epochs=vae["epochs"], seed=seed))
    return folder, _generation_seconds(folder)


def _generation_seconds(folder: Path) -> float:
    from funduslab.data.mixing import GENERATED_META

    meta = json.loads((folder / GENERATED_META).read_text())
    seconds = meta.get("seconds") or {}
    if not seconds:
        log.warning("%s records no generation time; the vae row's CPU s omits the VAE", folder)
    return float(sum(seconds.values()))


def _method_rows(wanted: list[str], consistency: float, vae_folder: str | None,
                 vae_ratio: float, transformer: dict[str, Row], members: str) -> tuple[Row, ...]:
    """The wanted rows trained through the engine, in order (``single`` from ``members`` when
    given: existing runs stand in for it)."""
    rows = {
        "single": Row("single", "the engine's full fine-tuning recipe"),
        "attention_guided": Row("attention_guided",
                                f"+ flip-consistent Grad-CAM loss, λ={consistency:g}",
                                {"train": {"attention_consistency": consistency}}),
        **transformer,
    }
    if members:
        rows["single"] = Row("single", f"existing runs: {members}",
                             runs=tuple(_member_globs(members)))
    if vae_folder is not None:
        rows["vae"] = Row("vae", f"+ VAE images in train, {vae_ratio:g} per real image",
                          {"data": {"extra_train": vae_folder, "extra_train_ratio": vae_ratio}})
    return tuple(rows[r] for r in wanted if r in rows)


@PRESETS.register("course-task4")
def course_task4(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = DEFAULT_EPOCHS, rows: str = "", members: str = "", resampled_members: int = 3,
    consistency: float = 0.5, vae_ratio: float = 0.5, vae_size: int = 128, vae_epochs: int = 30,
    transformer_weights: str = "imagenet", transformer_size: int = 224,
    sets: Sequence[str] = (),
) -> Path:
    """Run the Task 4 methods; write ``<out>/results.md`` (and its figures as ``results.json``);
    return the Markdown file's path.

    Args:
        data: Course data folder (``odir_course`` layout).
        team: Team name for ``<team>_task4.pt``.
        out: Output folder.
        quick: Tiny settings for tests (64 px, 2 epochs, tiny transformers).
        seeds: Seeds of the trained rows (default 0, 1, 2).
        source: Optional source dataset to fit the backbone on first (``funduslab pretrain``).
        backbone: Backbone of every CNN row (default EfficientNet-Lite0).
        weights: Its starting weights (``imagenet``, ``none`` or a path).
        image_size: Training resolution of the CNN rows.
        epochs: Fine-tuning epochs of every trained row.
        rows: Comma-separated subset of rows (``single`` is always run: the ensembles and the
            comparison need it); empty runs all.
        members: Comma-separated globs of existing run folders to use as the ``single`` rows'
            runs instead of training them (e.g. the engine benchmark's seeds).
        resampled_members: Members of ``bagging`` and ``boosting``.
        consistency: λ of the attention-guided row.
        vae_ratio: Generated images per real training image in the ``vae`` row.
        vae_size: VAE resolution in px (its images are upscaled to ``image_size``).
        vae_epochs: VAE training epochs.
        transformer_weights: Starting weights of the ``vit``/``swin`` rows.
        transformer_size: Their resolution (224, or 256 with resampled position embeddings).
        sets: ``key=value`` config overrides of every trained row (``train.epochs=6``).
    """
    out, data = Path(out), Path(data)
    wanted = _wanted_rows(rows, resampled_members)
    transformer, skipped = _transformer_rows(wanted, quick, transformer_weights,
                                             transformer_size, sets)
    start = source_start_weights(source, backbone, weights, out, quick, image_size,
                                 (seeds or [0])[0])
    base = course_recipe(backbone, start, image_size, epochs)
    vae_folder, vae_seconds = None, 0.0
    if "vae" in wanted:
        placed = merge_config(base, {"data": {"root": str(data)}, "output": {"out": str(out)}})
        n_train = len(config_and_train_ids(placed))
        folder, vae_seconds = _vae_folder(data, out, quick, vae_ratio, n_train, vae_size,
                                          vae_epochs, (seeds or [0])[0])
        vae_folder = str(folder)
    trained = _method_rows(wanted, consistency, vae_folder, vae_ratio, transformer, members)
    combine = partial(_results, wanted=wanted, skipped=skipped, vae_seconds=vae_seconds,
                      resampled_members=resampled_members, team=team)
    study = Study("course-task4", base, trained, partial(_report, wanted=wanted),
                  quick=COURSE_QUICK, combine=combine)
    return run_study(study, data, out, seeds, quick, sets, team)


def _wanted_rows(rows: str, resampled_members: int) -> list[str]:
    """The rows to run, in order, with ``single`` first when not asked for (everything needs it)."""
    wanted = [r.strip() for r in rows.split(",") if r.strip()] or list(TASK4_ROWS)
    unknown = [r for r in wanted if r not in TASK4_ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; course-task4 rows are: "
                         f"{', '.join(TASK4_ROWS)}")
    if "single" not in wanted:
        wanted.insert(0, "single")
    if int(resampled_members) < 2 and {"bagging", "boosting"} & set(wanted):
        raise ValueError(f"resampled_members must be >= 2, got {resampled_members}")
    return wanted


def _transformer_rows(wanted: list[str], quick: bool, transformer_weights: str,
                      transformer_size: int, sets: Sequence[str]) -> tuple[dict[str, Row],
                                                                           dict[str, str]]:
    """The wanted ``vit``/``swin`` rows (``--quick``: the tiny ones, no weights, 64 px), and
    those skipped with why (ImageNet weights asked for but not reachable)."""
    transformer: dict[str, Row] = {}
    skipped: dict[str, str] = {}
    for row in ("vit", "swin"):
        if row not in wanted:
            continue
        big, tiny = _TRANSFORMERS[row]
        raw = resolve_base(
            {"model": {"backbone": big, "weights": transformer_weights},
             "data": {"image_size": transformer_size}},
            {"model": {"backbone": tiny, "weights": "none"}, "data": {"image_size": 64}},
            quick, sets)
        name, t_weights, t_size = (raw["model"]["backbone"], raw["model"]["weights"],
                                   raw["data"]["image_size"])
        problem = _transformer_weights_problem(name, t_weights, t_size)
        if problem:
            skipped[row] = problem
            continue
        transformer[row] = Row(
            row, f"{name}, weights {t_weights}, {t_size} px, layer decay 0.75",
            {"model": {"backbone": name, "weights": t_weights}, "data": {"image_size": t_size},
             "train": {"layer_decay": 0.75}})
    return transformer, skipped


def _results(result: StudyResult, wanted: list[str], skipped: dict[str, str],
             vae_seconds: float, resampled_members: int, team: str) -> dict[str, Any]:
    """Every row's :class:`MethodResult` (trained, then combined on ``single``), the chosen
    row's weights saved as ``<team>_task4.pt``, and ``results.json``."""
    results: dict[str, MethodResult] = {}
    for row in wanted:
        if row in skipped:
            results[row] = MethodResult(row, "", skipped=skipped[row])
        elif row in result.runs:
            run_dirs = result.runs[row]
            seconds = sum(run_seconds(d) for d in run_dirs)
            results[row] = MethodResult(row, result.row(row).note, run_dirs,
                                        seconds + (vae_seconds if row == "vae" else 0.0))
    single = result.config("single")
    base = single.model_copy(update={"output": single.output.model_copy(
        update={"name": "run", "team": None, "task": None})})
    _derived_results(results, wanted, base, resampled_members, result.out, result.quick)
    best, why = choose_row(results)
    saved = save_best_weights(results[best], result.out, team)
    atomic_write_text(result.out / "results.json",
                      json.dumps(summary(results, wanted, best, why), indent=2))
    return {"results": results, "best": best, "why": why, "saved": saved, "team": team}


def _report(result: StudyResult, wanted: list[str]) -> str:
    combined = result.combined
    text = render_results(combined["results"], wanted, combined["best"],
                          result.config("single").model_dump(mode="json"), result.seeds,
                          combined["why"])
    if combined["saved"] is None:
        text += (f"\n`{combined['team']}_task4.pt` was not saved: the runs of the chosen row "
                 f"(`{combined['best']}`) hold no weights (records keep text files only).\n")
    return text


def _derived_results(results: dict[str, MethodResult], wanted: list[str], base: RunConfig,
                     resampled_members: int, out: Path, quick: bool) -> None:
    """Add the combiner, TTA and resampled-ensemble rows to ``results`` (built on ``single``)."""
    singles = results["single"].run_dirs
    tta: MethodResult | None = None
    for row in wanted:
        if row in _COMBINERS:
            results[row] = _combine(row, singles, out)
        elif row in ("bagging", "boosting"):
            results[row] = _resampled(row, base, resampled_members, out, quick)
        elif row == "tta" or row in _TTA_COMBINERS:
            tta = tta or _with_tta(singles, out, progress=not quick)
            if row == "tta":
                results[row] = tta
            else:  # its CPU s: the TTA passes + combining
                combined = _combine(row.removeprefix("tta_"), tta.run_dirs, out, name=row,
                                    note_extra=" with flip TTA")
                combined.seconds += tta.seconds
                results[row] = combined


def config_and_train_ids(raw: dict[str, Any]) -> list[str]:
    """Ids of the training split the base config reads (sizes the VAE sample)."""
    from funduslab.data.folds import load_run_table

    cfg = config_from_dict(raw)
    table = load_run_table(cfg)
    return table.split(cfg.data.train_split)["id"].astype(str).tolist()


def _combine(method: str, singles: list[Path], out: Path, name: str = "",
             note_extra: str = "") -> MethodResult:
    """Combine finished runs' saved probabilities with ``method`` into ``ensembles/<name>``
    (``name`` defaults to the method; the ``tta_*`` rows pass the TTA re-evaluations)."""
    from funduslab.ensemble import load_members, write_ensemble_run

    name = name or method
    if len(singles) < 2:
        return MethodResult(name, "", skipped="needs ≥ 2 single runs (seeds or members)")
    started = time.time()
    run_dir = write_ensemble_run(load_members(singles), method, out / "ensembles" / name)
    note = f"{method.replace('_', ' ')} of the {len(singles)} single runs{note_extra}"
    if method in ("weighted", "stacking"):
        note += " (fitted on val)"
    return MethodResult(name, note, [run_dir], time.time() - started)


def _with_tta(singles: list[Path], out: Path, progress: bool) -> MethodResult:
    """Each single run's saved model, re-evaluated with flip TTA (``setup: none``, no training)."""
    from funduslab.training.runner import run

    run_dirs = []
    for i, single in enumerate(singles):
        folder = RunFolder(single)  # weights: <team>_task<k>-<j>.pt or model.pt
        raw = folder.config
        raw.pop("provenance", None)
        raw["model"] = {**raw.get("model", {}), "weights": str(folder.require_weights())}
        raw["train"] = {**raw.get("train", {}), "setup": "none", "tta": True}
        raw["output"] = {**raw.get("output", {}), "out": str(out), "name": f"tta_{i}",
                         "team": None, "task": None}
        run_dirs.append(run(config_from_dict(raw), progress=progress))
    seconds = sum(run_seconds(d) for d in run_dirs)
    return MethodResult("tta", f"the {len(singles)} single runs with flip TTA (no training)",
                        run_dirs, seconds)


def _resampled(method: str, cfg: RunConfig, n: int, out: Path, quick: bool) -> MethodResult:
    """``n`` members trained on resamples of train (``cfg``: the ``single`` row's first seed)."""
    from funduslab.ensemble import TRAINED_ENSEMBLES

    started = time.time()
    try:
        run_dir = TRAINED_ENSEMBLES.get(method)(cfg, n, out / "ensembles" / method,
                                                progress=not quick)
    except ValueError as err:  # boosting stops when a member is no better than chance
        if method != "boosting":
            raise
        return MethodResult(method, "", skipped=f"stopped: {err}")
    members = sorted((run_dir / "members").glob("*/metrics.json"))
    seconds = sum(run_seconds(m.parent) for m in members) or time.time() - started
    what = "bootstrap resamples, soft voting" if method == "bagging" else \
        "AdaBoost sample weights, weighted by α"
    return MethodResult(method, f"{n} members on {what}", [run_dir], seconds)
