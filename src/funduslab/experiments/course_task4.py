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
"""

from __future__ import annotations

import glob
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import DEFAULT_EPOCHS, atomic_write_text, config_from_dict
from funduslab.experiments import PRESETS
from funduslab.experiments.variants import (
    TEST_SPLIT,
    Variant,
    base_course_config,
    run_variants,
    select_variants,
    source_start_weights,
)
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.runs import RunFolder

__all__ = ["TASK4_ROWS", "course_task4"]

log = logging.getLogger(__name__)

_COMBINERS = ["max_voting", "soft_voting", "weighted", "stacking"]
_TTA_COMBINERS = [f"tta_{c}" for c in _COMBINERS]
TASK4_ROWS = ["single", "tta", *_COMBINERS, *_TTA_COMBINERS, "bagging", "boosting",
              "attention_guided", "vae", "vit", "swin"]
_TRANSFORMERS = {"vit": ("vit_small_patch16_224", "tiny_vit"),
                 "swin": ("swin_tiny_patch4_window7_224", "tiny_swin")}


@dataclass
class MethodResult:
    """One row of the Task 4 table: its run folders and the CPU seconds they took."""

    name: str
    note: str
    run_dirs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""


def _run_seconds(run_dir: Path) -> float:
    timing = RunFolder(run_dir).metrics.get("timing_s", {})
    return float(timing.get("total", 0.0))


def _scores(run_dirs: list[Path], split: str, kind: str = "threshold_0.5") -> list[float]:
    out = []
    for d in run_dirs:
        metrics = RunFolder(d).metrics
        if split in metrics["splits"] and kind in metrics["splits"][split]:
            out.append(split_scores(metrics, split, kind)["course_average_f1"])
    return out


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
    wanted = [r.strip() for r in rows.split(",") if r.strip()] or list(TASK4_ROWS)
    unknown = [r for r in wanted if r not in TASK4_ROWS]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; course-task4 rows are: "
                         f"{', '.join(TASK4_ROWS)}")
    if "single" not in wanted:
        wanted.insert(0, "single")
    if int(resampled_members) < 2 and {"bagging", "boosting"} & set(wanted):
        raise ValueError(f"resampled_members must be >= 2, got {resampled_members}")
    start = source_start_weights(source, backbone, weights, out, quick, image_size, seeds[0])
    base = base_course_config(data, out, quick, backbone=backbone, weights=start,
                              image_size=image_size, epochs=epochs)

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
    vae_folder, vae_seconds = None, 0.0
    if "vae" in wanted:
        n_train = len(config_and_train_ids(base))
        folder, vae_seconds = _vae_folder(data, out, quick, vae_ratio, n_train, vae_size,
                                          vae_epochs, seeds[0])
        vae_folder = str(folder)
    variants = _method_variants(consistency, vae_folder, vae_ratio, transformer)

    results: dict[str, MethodResult] = {}
    member_dirs = _member_globs(members) if members else []
    for row in wanted:
        variant = variants.get(row)
        if row in skipped:
            results[row] = MethodResult(row, "", skipped=skipped[row])
        elif row == "single" and member_dirs:
            results[row] = MethodResult(row, f"existing runs: {members}", member_dirs,
                                        sum(_run_seconds(d) for d in member_dirs))
        elif variant is not None:
            _, run_dirs = run_variants(base, select_variants([variant], row), seeds,
                                       progress=not quick)[0]
            seconds = sum(_run_seconds(d) for d in run_dirs)
            if row == "vae":
                seconds += vae_seconds
            results[row] = MethodResult(row, variant.note, run_dirs, seconds)
    singles = results["single"].run_dirs
    tta: MethodResult | None = None
    for row in wanted:
        if row in _COMBINERS:
            results[row] = _combine(row, singles, out)
        elif row in ("bagging", "boosting"):
            results[row] = _resampled(row, base, seeds[0], resampled_members, out, quick)
        elif row == "tta" or row in _TTA_COMBINERS:
            tta = tta or _with_tta(singles, out, progress=not quick)
            if row == "tta":
                results[row] = tta
            else:  # its CPU s: the TTA passes + combining
                combined = _combine(row.removeprefix("tta_"), tta.run_dirs, out, name=row,
                                    note_extra=" with flip TTA")
                combined.seconds += tta.seconds
                results[row] = combined

    best = _best_by_val(results)
    _save_best_weights(results[best], out, team)
    text = _render(results, wanted, best, base, seeds)
    atomic_write_text(out / "results.json", json.dumps(_summary(results, wanted, best), indent=2))
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
    seconds = sum(_run_seconds(d) for d in run_dirs)
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
    seconds = sum(_run_seconds(m.parent) for m in members) or time.time() - started
    what = "bootstrap resamples, soft voting" if method == "bagging" else \
        "AdaBoost sample weights, weighted by α"
    return MethodResult(method, f"{n} members on {what}", [run_dir], seconds)


def _best_by_val(results: dict[str, MethodResult]) -> str:
    """The row with the highest mean val course average F1 at 0.5 (test never consulted)."""
    scored = {name: float(np.mean(v)) for name, r in results.items() if r.run_dirs
              and (v := _scores(r.run_dirs, "val"))}
    return max(scored, key=scored.get)


def _save_best_weights(result: MethodResult, out: Path, team: str) -> Path:
    """Save the val-best method as ``<out>/<team>_task4.pt``: a single model's weights (its
    best-val seed), or an ensemble bundle (members + combiner, :mod:`funduslab.ensemble.bundle`).
    """
    target = out / f"{team}_task4.pt"
    weights = [w for d in result.run_dirs if (w := RunFolder(d).weights) is not None]
    if not weights:  # an ensemble run folder
        from funduslab.ensemble.bundle import save_ensemble_bundle

        save_ensemble_bundle(result.run_dirs[0], target)
        log.info("saved %s (ensemble bundle of %s)", target, result.run_dirs[0])
        return target
    scores = _scores(result.run_dirs, "val")
    chosen = weights[int(np.argmax(scores))] if len(scores) == len(weights) else weights[0]
    tmp = target.with_suffix(".pt.tmp")
    shutil.copyfile(chosen, tmp)
    tmp.replace(target)
    log.info("saved %s (from %s)", target, chosen)
    return target


def _summary(results: dict[str, MethodResult], order: list[str], best: str) -> dict[str, Any]:
    """``results.md``'s figures per row, machine-readable (``benchmarks/bench_task4.py`` reads
    them): per-run course average F1 at 0.5 on val and offsite test, tuned on test, CPU s."""
    rows: dict[str, Any] = {}
    for row in order:
        r = results[row]
        rows[row] = {"skipped": r.skipped, "note": r.note,
                     "runs": [str(d) for d in r.run_dirs], "seconds": round(r.seconds, 1),
                     "val": _scores(r.run_dirs, "val"),
                     TEST_SPLIT: _scores(r.run_dirs, TEST_SPLIT),
                     f"{TEST_SPLIT}_tuned": _scores(r.run_dirs, TEST_SPLIT, "tuned_thresholds")}
    reference = float(np.mean(rows["single"][TEST_SPLIT]))
    return {"metric": "course_average_f1", "test_split": TEST_SPLIT, "best_by_val": best,
            "reference": reference, "rows": rows}


def _render(results: dict[str, MethodResult], order: list[str], best: str,
            base: dict[str, Any], seeds: list[int]) -> str:
    reference = float(np.mean(_scores(results["single"].run_dirs, TEST_SPLIT)))
    header = ["method", "what", "runs", "val avg F1 (0.5)", "course avg F1 (0.5)",
              "course avg F1 (tuned)", "Δ vs single (0.5)", "CPU s"]
    body = []
    for row in order:
        r = results[row]
        if r.skipped:
            body.append([row, f"skipped: {r.skipped}", "0", "—", "—", "—", "—", "—"])
            continue
        test = _scores(r.run_dirs, TEST_SPLIT)
        tuned = _scores(r.run_dirs, TEST_SPLIT, "tuned_thresholds")
        name = f"**{row}**" if row == best else row
        body.append([name, r.note, str(len(r.run_dirs)), mean_std(_scores(r.run_dirs, "val")),
                     mean_std(test), mean_std(tuned) if tuned else "—",
                     f"{100 * (float(np.mean(test)) - reference):+.2f} pt", f"{r.seconds:.0f}"])
    model, train = base["model"], base["train"]
    return (
        "# Course Task 4 — ensembles, attention guidance, VAE augmentation, transformers "
        "(offsite test)\n\n"
        f"Reference (`single`): {model['backbone']} ({model['weights']} start), "
        f"{base['data']['image_size']} px, full fine-tuning for {train['epochs']} epochs; seeds "
        f"{', '.join(map(str, seeds))}. Trained rows show mean ± sample std over seeds; an "
        "ensemble is one model built from all seeds' single runs, so it has no spread. "
        "Weights, stackers and tuned thresholds are fitted on val; the test split chooses "
        f"nothing. **Bold** = best val course average F1 (`{best}`). CPU s = training (and "
        "combining) seconds on this machine, summed over the row's runs.\n\n"
        + markdown_table(header, body) + "\n"
    )
