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
  (:mod:`funduslab.explain.guided`, Guo et al., CVPR 2019), λ = ``consistency``.
* ``vae`` — the recipe with class-conditional VAE images (:mod:`funduslab.generate`) added to
  train only, at ``vae_ratio`` generated per real image.
* ``vit`` / ``swin`` — ViT-S/16 (Dosovitskiy et al., ICLR 2021) and Swin-T (Liu et al., ICCV
  2021) through the same engine with layer-wise LR decay. Offline there are no ImageNet weights
  for them: with ``transformer_weights=imagenet`` and no network these rows are skipped with the
  reason in ``results.md``; pass a weights file, or ``none`` to train from scratch (weak on 800
  images — say so when reporting it).

The method with the best val course average F1 (threshold 0.5) is saved as ``<team>_task4.pt``:
a single model's weights, or an ensemble bundle (every member's weights plus the fitted
combiner; :func:`funduslab.ensemble.bundle.load_ensemble_bundle` reads it). When ``tta`` wins,
the file is the plain model: TTA is how it is run, so predict with ``funduslab predict --tta``.

This module trains and combines the rows; scoring them, choosing the best and writing
``results.md`` live in :mod:`funduslab.experiments.course_task4_report`.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from funduslab.config import DEFAULT_EPOCHS, atomic_write_text, config_from_dict
from funduslab.experiments import PRESETS
from funduslab.experiments.course_task4_report import (
    MethodResult,
    best_by_val,
    render_results,
    run_seconds,
    save_best_weights,
    summary,
)
from funduslab.experiments.variants import (
    Variant,
    base_course_config,
    run_variants,
    select_variants,
    source_start_weights,
)
from funduslab.runs import RunFolder

__all__ = ["TASK4_ROWS", "course_task4"]

log = logging.getLogger(__name__)

_COMBINERS = ["max_voting", "soft_voting", "weighted", "stacking"]
_TTA_COMBINERS = [f"tta_{c}" for c in _COMBINERS]
TASK4_ROWS = ["single", "tta", *_COMBINERS, *_TTA_COMBINERS, "bagging", "boosting",
              "attention_guided", "vae", "vit", "swin"]
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
    from funduslab.generate.mixing import read_generated
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
    generate_from_dataset(data, folder, image_size=32 if quick else size, per_class=per_class,
                          classes=classes, training=VAETraining(epochs=1 if quick else epochs,
                                                                seed=seed))
    return folder, _generation_seconds(folder)


def _generation_seconds(folder: Path) -> float:
    from funduslab.generate.sample import GENERATED_META

    meta = json.loads((folder / GENERATED_META).read_text())
    seconds = meta.get("seconds") or {}
    if not seconds:
        log.warning("%s records no generation time; the vae row's CPU s omits the VAE", folder)
    return float(sum(seconds.values()))


def _method_variants(consistency: float, vae_folder: str | None, vae_ratio: float,
                     transformer: dict[str, tuple[str, str, int]]) -> dict[str, Variant]:
    variants = {
        "single": Variant("single", {}, None, "the engine's full fine-tuning recipe"),
        "attention_guided": Variant(
            "attention_guided", {"train": {"attention_consistency": consistency}}, None,
            f"+ flip-consistent Grad-CAM loss, λ={consistency:g}"),
    }
    if vae_folder is not None:
        variants["vae"] = Variant(
            "vae", {"data": {"extra_train": vae_folder, "extra_train_ratio": vae_ratio}}, None,
            f"+ VAE images in train, {vae_ratio:g} per real image")
    for row, (name, weights, size) in transformer.items():
        variants[row] = Variant(
            row, {"model": {"backbone": name, "weights": weights},
                  "data": {"image_size": size}, "train": {"layer_decay": 0.75}}, None,
            f"{name}, weights {weights}, {size} px, layer decay 0.75")
    return variants


@PRESETS.register("course-task4")
def course_task4(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = DEFAULT_EPOCHS, rows: str = "", members: str = "", resampled_members: int = 3,
    consistency: float = 0.5, vae_ratio: float = 0.5, vae_size: int = 128, vae_epochs: int = 30,
    transformer_weights: str = "imagenet", transformer_size: int = 224,
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
    """
    seeds = list(seeds) if seeds else [0, 1, 2]
    out, data = Path(out), Path(data)
    wanted = _wanted_rows(rows, resampled_members)
    start = source_start_weights(source, backbone, weights, out, quick, image_size, seeds[0])
    base = base_course_config(data, out, quick, backbone=backbone, weights=start,
                              image_size=image_size, epochs=epochs)
    transformer, skipped = _transformer_rows(wanted, quick, transformer_weights,
                                             transformer_size)
    vae_folder, vae_seconds = None, 0.0
    if "vae" in wanted:
        n_train = len(config_and_train_ids(base))
        folder, vae_seconds = _vae_folder(data, out, quick, vae_ratio, n_train, vae_size,
                                          vae_epochs, seeds[0])
        vae_folder = str(folder)
    variants = _method_variants(consistency, vae_folder, vae_ratio, transformer)
    results = _trained_results(wanted, variants, skipped, members, base, seeds, quick,
                               vae_seconds)
    _derived_results(results, wanted, base, seeds[0], resampled_members, out, quick)
    return _write_results(results, wanted, base, seeds, out, team)


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
                      transformer_size: int) -> tuple[dict[str, tuple[str, str, int]],
                                                      dict[str, str]]:
    """The wanted ``vit``/``swin`` rows as (timm name, weights, size), and those skipped (why)."""
    transformer: dict[str, tuple[str, str, int]] = {}
    skipped: dict[str, str] = {}
    for row in ("vit", "swin"):
        if row in wanted:
            name = _TRANSFORMERS[row][1 if quick else 0]
            t_weights = "none" if quick else transformer_weights
            t_size = 64 if quick else transformer_size
            problem = _transformer_weights_problem(name, t_weights, t_size)
            if problem:
                skipped[row] = problem
            else:
                transformer[row] = (name, t_weights, t_size)
    return transformer, skipped


def _trained_results(wanted: list[str], variants: dict[str, Variant], skipped: dict[str, str],
                     members: str, base: dict[str, Any], seeds: list[int], quick: bool,
                     vae_seconds: float) -> dict[str, MethodResult]:
    """The rows trained through the engine once per seed (or ``single`` from ``members``)."""
    results: dict[str, MethodResult] = {}
    member_dirs = _member_globs(members) if members else []
    for row in wanted:
        variant = variants.get(row)
        if row in skipped:
            results[row] = MethodResult(row, "", skipped=skipped[row])
        elif row == "single" and member_dirs:
            results[row] = MethodResult(row, f"existing runs: {members}", member_dirs,
                                        sum(run_seconds(d) for d in member_dirs))
        elif variant is not None:
            _, run_dirs = run_variants(base, select_variants([variant], row), seeds,
                                       progress=not quick)[0]
            seconds = sum(run_seconds(d) for d in run_dirs)
            if row == "vae":
                seconds += vae_seconds
            results[row] = MethodResult(row, variant.note, run_dirs, seconds)
    return results


def _derived_results(results: dict[str, MethodResult], wanted: list[str], base: dict[str, Any],
                     seed: int, resampled_members: int, out: Path, quick: bool) -> None:
    """Add the combiner, TTA and resampled-ensemble rows to ``results`` (built on ``single``)."""
    singles = results["single"].run_dirs
    tta: MethodResult | None = None
    for row in wanted:
        if row in _COMBINERS:
            results[row] = _combine(row, singles, out)
        elif row in ("bagging", "boosting"):
            results[row] = _resampled(row, base, seed, resampled_members, out, quick)
        elif row == "tta" or row in _TTA_COMBINERS:
            tta = tta or _with_tta(singles, out, progress=not quick)
            if row == "tta":
                results[row] = tta
            else:  # its CPU s: the TTA passes + combining
                combined = _combine(row.removeprefix("tta_"), tta.run_dirs, out, name=row,
                                    note_extra=" with flip TTA")
                combined.seconds += tta.seconds
                results[row] = combined


def _write_results(results: dict[str, MethodResult], wanted: list[str], base: dict[str, Any],
                   seeds: list[int], out: Path, team: str) -> Path:
    """Save the val-best method's weights, ``results.json`` and ``results.md`` (returned)."""
    best = best_by_val(results)
    save_best_weights(results[best], out, team)
    text = render_results(results, wanted, best, base, seeds)
    atomic_write_text(out / "results.json", json.dumps(summary(results, wanted, best), indent=2))
    path = out / "results.md"
    atomic_write_text(path, text)
    log.info("wrote %s and results.json", path)
    return path


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


def _resampled(method: str, base: dict[str, Any], seed: int, n: int, out: Path,
               quick: bool) -> MethodResult:
    from funduslab.ensemble import TRAINED_ENSEMBLES

    raw = {**base, "train": {**base["train"], "seed": seed}}
    cfg = config_from_dict(raw)
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
