"""Preset ``lesion-patches``: lesion detection on IDRiD-style patches, then image-level fusion.

``funduslab suite lesion-patches --data <idrid root>``:

1. cuts lesion-centred patches (``lesion_seed`` rebalancing of the training split) and a grid
   of patches over every val/test image (:mod:`funduslab.data.patches_write`);
2. trains a patch classifier through the engine (:func:`funduslab.training.runner.run`, adapter
   ``patches``) with a class-weighted loss — ``focal`` (Lin et al., *ICCV* 2017) when registered,
   else ``weighted_bce`` (positive weight = negatives / positives per class) — and per-class
   thresholds tuned on the validation PR curves (:func:`funduslab.metrics.tune_thresholds`);
3. pools the grid-patch probabilities of each image to image-level lesion presence
   (:mod:`funduslab.experiments.lesion_fusion`: max, top-3 mean, noisy-OR) and compares with a
   whole-image model trained on the same images (image label = the lesion mask is non-empty).

Splits follow the source image (train/val from IDRiD's training set, test = its testing set), the
same for both models. ``results.md`` and ``lesion_patches.json`` go to ``out``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from funduslab.config import atomic_write_text
from funduslab.data.adapters import load_table
from funduslab.data.patches import LESIONS, PatchOptions
from funduslab.data.patches_write import assign_image_splits, patch_counts, write_patch_set
from funduslab.experiments import PRESETS
from funduslab.experiments.lesion_fusion import POOLINGS, pool_by_image
from funduslab.experiments.study import Row, Study, StudyResult, resolve_base, run_study
from funduslab.losses import LOSSES
from funduslab.metrics import multilabel_metrics, tune_thresholds
from funduslab.reporting.run_folder import read_metrics, read_predictions, write_json
from funduslab.reporting.tables import markdown_table, mean_std

__all__ = ["image_level_scores", "lesion_patches", "parse_loss_options"]

log = logging.getLogger(__name__)

TRAINING_CSV = "training.csv"
WHOLE_CSV = "whole_images.csv"
_SUMMARY = ("micro_f1", "macro_f1", "hamming_loss", "subset_accuracy", "macro_auroc")


def parse_loss_options(text: str) -> dict[str, float]:
    """``"alpha=0.25,gamma=2"`` → ``{"alpha": 0.25, "gamma": 2.0}``."""
    options: dict[str, float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = pair.partition("=")
        try:
            options[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"loss option {pair!r} not understood; write KEY=NUMBER, e.g. "
                             "loss_options=alpha=0.25,gamma=2")
    return options


def _training_tables(lesion: pd.DataFrame, grid: pd.DataFrame, lesion_dir: Path,
                     grid_dir: Path, table, splits: pd.Series, whole_dir: Path) -> pd.DataFrame:
    """Lesion patches + val/test grid patches (splits ``*_grid``, ids prefixed ``grid_``) in one
    CSV; the whole-image CSV. Returns the grid rows as written."""
    grid = grid[grid["split"].isin(["val", "test"])].copy()
    grid["split"] = grid["split"] + "_grid"
    grid["id"] = "grid_" + grid["id"]
    grid["path"] = [os.path.relpath(grid_dir / p, lesion_dir) for p in grid["path"]]
    both = pd.concat([lesion, grid], ignore_index=True)
    atomic_write_text(lesion_dir / TRAINING_CSV, both.to_csv(index=False, lineterminator="\n"))
    frame = table.frame
    whole = pd.DataFrame({"id": frame["id"], "path": frame["path"], "source_id": frame["id"],
                          "patient": frame["patient"], **{k: frame[k] for k in LESIONS},
                          "split": splits})
    whole_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(whole_dir / WHOLE_CSV, whole.to_csv(index=False, lineterminator="\n"))
    return grid


def image_level_scores(patch_run: Path, whole_run: Path | None, grid: pd.DataFrame,
                       image_labels: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Image-level metrics on ``test`` of every pooling and of the whole-image model.

    Thresholds are tuned per class on the ``val`` images (pooled the same way).

    Args:
        patch_run: Run folder of the patch model (predictions for ``val_grid``/``test_grid``).
        whole_run: Run folder of the whole-image model, or ``None``.
        grid: Grid patch table (``id``, ``source_id``).
        image_labels: Image id → ``MA … SE`` 0/1.

    Returns:
        ``{method: multilabel_metrics dict}``.
    """
    source = grid.set_index("id")["source_id"].astype(str)
    names = list(LESIONS)
    pooled: dict[str, dict[str, tuple[list[str], np.ndarray]]] = {p: {} for p in POOLINGS}
    for split in ("val", "test"):
        ids, probs = read_predictions(patch_run, f"{split}_grid", names)
        for pooling in POOLINGS:
            pooled[pooling][split] = pool_by_image(source.loc[ids].tolist(), probs, pooling)
    if whole_run is not None:
        pooled["whole_image"] = {s: read_predictions(whole_run, s, names) for s in ("val", "test")}
    scores = {}
    for method, parts in pooled.items():
        (val_ids, val_p), (test_ids, test_p) = parts["val"], parts["test"]
        y_val = image_labels.loc[val_ids, names].to_numpy(int)
        y_test = image_labels.loc[test_ids, names].to_numpy(int)
        thresholds = tune_thresholds(y_val, val_p, objective="f1")  # patch F1 target
        scores[method] = multilabel_metrics(y_test, test_p, thresholds, names)
    return scores


@PRESETS.register("lesion-patches")
def lesion_patches(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None, patch_size: int = 128,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", epochs: int = 12,
    batch_size: int = 32, lr: float = 1e-3, loss: str = "auto", loss_options: str = "",
    min_pixels: int = 1, centres_per_lesion: int = 10, background_per_image: int = 10,
    rebalance: str = "lesion_seed", healthy_ratio: float = 1.0, grid_stride: int = 0,
    whole_image: bool = True, whole_image_size: int = 256, val_fraction: float = 0.2,
    split_seed: int = 0, precision: str = "auto", augment: str = "light",
    sets: Sequence[str] = (),
) -> Path:
    """Run the lesion-patch benchmark; return the path of ``results.md``.

    Args:
        patch_size: Patch side in px (= the patch model's ``image_size``).
        loss: Loss name; ``auto`` = ``focal`` when registered, else ``weighted_bce``. Focal
            without an explicit ``alpha`` gets α_c = share of training patches negative for c.
        loss_options: ``"KEY=VALUE,…"`` loss options (e.g. ``alpha=0.25,gamma=2``).
        min_pixels: Mask pixels a patch needs to be positive.
        rebalance: Training-split rebalancing (``none``, ``lesion_seed``, ``cap_per_class``).
        healthy_ratio: ``lesion_seed``: healthy patches per rarest-lesion patch.
        grid_stride: Stride of the fusion grid in px (0: the patch size).
        whole_image: Also train the whole-image model for comparison.
        whole_image_size: Its input size in px.
        split_seed: Seed of patch sampling, the train/val split and rebalancing.
        augment: Training augmentation of both models (``light``: flips only — rotations by
            arbitrary angles would cut lesions at the patch border out of a positive patch).
        sets: ``key=value`` config overrides of both models (``train.lr=0.003``).
    """
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1): thresholds and fusion are tuned on the "
                         f"val images; got {val_fraction}")
    quick_overlay = _quick(patch_size, epochs, batch_size)
    size = resolve_base({"data": {"image_size": patch_size}}, quick_overlay, quick,
                        sets)["data"]["image_size"]  # patches are cut at the size they train at
    if loss == "auto":
        loss = "focal" if "focal" in LOSSES else "weighted_bce"
    LOSSES.get(loss)
    table = load_table("idrid", Path(data))
    cut = PatchCut(size, min_pixels, centres_per_lesion, background_per_image, rebalance,
                   healthy_ratio, grid_stride, val_fraction, split_seed)
    sets_of = _write_patch_sets(table, Path(data), out, cut)
    loss_kwargs = _loss_kwargs(loss, loss_options, sets_of["lesion"])
    base = {"data": {"adapter": "patches", "cache_dir": str(out / ".cache"), "augment": augment},
            "model": {"backbone": backbone, "weights": weights},
            "train": {"setup": "full", "epochs": epochs, "batch_size": batch_size, "lr": lr,
                      "backbone_lr": lr, "loss": loss, "loss_options": loss_kwargs,
                      "tune_thresholds": True, "threshold_objective": "f1",
                      "monitor": "macro_auroc", "precision": precision}}
    rows = _models(out, patch_size, whole_image_size if whole_image else 0)
    doc = {"loss": loss, "loss_options": loss_kwargs, "patch_size": size, "backbone": backbone,
           "counts": {k: patch_counts(sets_of[k]) for k in ("lesion", "grid")}}
    study = Study("lesion-patches", base, rows,
                  partial(_report, table=table, splits=sets_of["splits"]), seeds=(0,),
                  quick=quick_overlay, combine=partial(_combine, doc=doc, sets_of=sets_of))
    return run_study(study, None, out, seeds, quick, sets, team)


def _models(out: Path, patch_size: int, whole_image_size: int) -> tuple[Row, ...]:
    """The patch model and (``whole_image_size`` > 0) the whole-image model, as study rows."""
    patch = Row("lesion_patches", "lesion-centred patches",
                _patch_data(out / "patches_lesion", TRAINING_CSV, patch_size), team=True)
    if not whole_image_size:
        return (patch,)
    return (patch, Row("whole_image", "whole images",
                       _patch_data(out / "whole", WHOLE_CSV, whole_image_size), team=True,
                       quick={"data": {"image_size": min(whole_image_size, 64)}}))


def _quick(patch_size: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """``--quick``: at most 32-px patches, 2 epochs and batch 8 (the whole-image model: 64 px)."""
    return {"data": {"image_size": min(patch_size, 32)},
            "train": {"epochs": min(epochs, 2), "batch_size": min(batch_size, 8)},
            "output": {"figures": False}}


def _patch_data(root: Path, csv: str, size: int) -> dict[str, Any]:
    return {"data": {"root": str(root), "options": {"csv": csv}, "image_size": size}}


@dataclass(frozen=True)
class PatchCut:
    """How the patch sets are cut (see :func:`lesion_patches` for each option)."""

    size: int
    min_pixels: int
    centres_per_lesion: int
    background_per_image: int
    rebalance: str
    healthy_ratio: float
    grid_stride: int
    val_fraction: float
    split_seed: int


def _write_patch_sets(table: Any, data: Path, out: Path, cut: PatchCut) -> dict[str, Any]:
    """Lesion-centred and grid patch sets, the image splits, the training CSVs, and the
    image-level labels; returned by name."""
    lesion_dir, grid_dir, whole_dir = out / "patches_lesion", out / "patches_grid", out / "whole"
    lesion = write_patch_set(
        table, lesion_dir, PatchOptions(size=cut.size, mode="lesion_centred",
                                        min_pixels=cut.min_pixels,
                                        centres_per_lesion=cut.centres_per_lesion,
                                        background_per_image=cut.background_per_image),
        rebalance_name=cut.rebalance,
        rebalance_options={"lesion_seed": {"healthy_ratio": cut.healthy_ratio}}.get(
            cut.rebalance, {}),
        seed=cut.split_seed, val_fraction=cut.val_fraction, root=data)
    grid = write_patch_set(
        table, grid_dir, PatchOptions(size=cut.size, mode="grid", stride=cut.grid_stride or None,
                                      min_pixels=cut.min_pixels),
        seed=cut.split_seed, val_fraction=cut.val_fraction, root=data)
    splits = assign_image_splits(table, cut.val_fraction, cut.split_seed)
    grid_rows = _training_tables(lesion, grid, lesion_dir, grid_dir, table, splits, whole_dir)
    labels = table.frame.set_index(table.frame["id"].astype(str))[list(LESIONS)]
    return {"lesion": lesion, "grid": grid, "splits": splits, "grid_rows": grid_rows,
            "image_labels": labels}


def _loss_kwargs(loss: str, loss_options: str, lesion: pd.DataFrame) -> dict[str, Any]:
    """The loss options; focal without ``alpha`` gets per-class inverse-frequency weighting:
    α_c = share of negatives among the training patches."""
    kwargs: dict[str, Any] = parse_loss_options(loss_options)
    if loss == "focal" and "alpha" not in kwargs:
        train = lesion.loc[lesion["split"] == "train", list(LESIONS)].to_numpy()
        kwargs["alpha"] = [round(float(a), 4) for a in 1.0 - train.mean(axis=0)]
    return kwargs


def _combine(result: StudyResult, doc: dict[str, Any], sets_of: dict[str, Any]) -> dict[str, Any]:
    """Per seed: the patch model's test figures and every image-level method's;
    ``lesion_patches.json`` holds them all."""
    per_seed = []
    whole = result.runs.get("whole_image", [None] * len(result.seeds))
    for seed, patch_run, whole_run in zip(result.seeds, result.runs["lesion_patches"], whole):
        metrics = read_metrics(patch_run)["splits"]
        per_seed.append({
            "seed": seed, "patch_run": str(patch_run),
            "patch_test": metrics["test"]["tuned_thresholds"],
            "grid_test": metrics["test_grid"]["tuned_thresholds"],
            "image_level": image_level_scores(patch_run, whole_run, sets_of["grid_rows"],
                                              sets_of["image_labels"]),
        })
    full = {"loss": doc["loss"], "loss_options": doc["loss_options"],
            "patch_size": doc["patch_size"], "backbone": doc["backbone"], "seeds": result.seeds,
            "counts": doc["counts"], "runs": per_seed}
    write_json(result.out / "lesion_patches.json", full)
    return full


def _report(result: StudyResult, table: Any, splits: pd.Series) -> str:
    return _render(result.combined, table, splits)


def _fmt(values: list[float]) -> str:
    return mean_std(values).replace(" ± ", "±")


def _render(doc: dict[str, Any], table, splits: pd.Series) -> str:
    runs, names = doc["runs"], list(LESIONS)
    counts = markdown_table(
        ["set", "split", "images", "patches", "healthy", *names],
        [[kind, split, c["images"], c["patches"], c["healthy"], *(c[k] for k in names)]
         for kind in ("lesion", "grid") for split, c in doc["counts"][kind].items()])
    header = ["patches", *_SUMMARY]
    for k in names:
        header += [f"{k} F1", f"{k} P", f"{k} R"]
    rows = []
    for key, what in (("patch_test", "lesion-centred test"), ("grid_test", "grid test")):
        row = [what, *(_fmt([r[key][m] for r in runs]) for m in _SUMMARY)]
        for k in names:
            row += [_fmt([r[key]["per_class"][k][m] for r in runs])
                    for m in ("f1", "precision", "recall")]
        rows.append(row)
    methods = list(runs[0]["image_level"])
    img_rows = []
    for method in methods:
        scores = [r["image_level"][method] for r in runs]
        img_rows.append([method, *(_fmt([s["per_class"][k]["f1"] for s in scores]) for k in names),
                         *(_fmt([s[m] for s in scores]) for m in _SUMMARY)])
    test_images = table.frame[splits == "test"]
    prevalence = ", ".join(f"{k} {int(test_images[k].sum())}/{len(test_images)}" for k in names)
    return (
        f"# Lesion patches — {table.source}\n\n"
        f"Patch model: {doc['backbone']}, {doc['patch_size']}-px lesion-centred patches, loss "
        f"`{doc['loss']}` {doc['loss_options']} (per-class weights), per-class thresholds tuned "
        f"on val (PR curve, max F1). Seeds {', '.join(map(str, doc['seeds']))} (mean ± std).\n\n"
        "## Patch sets (rebalancing applies to train only)\n\n" + counts +
        "\n## Patch level (test split, tuned thresholds)\n\n" + markdown_table(header, rows) +
        "\n## Image level (test images, thresholds tuned on val images)\n\n"
        "Grid-patch probabilities pooled per image (max, top-3 mean, noisy-OR) vs a whole-image "
        f"model trained on the same images. Test images with each lesion: {prevalence} — a "
        "lesion present in every image makes its F1 trivially reachable (AUROC undefined).\n\n"
        + markdown_table(["method", *(f"{k} F1" for k in names), *_SUMMARY], img_rows)
    )
