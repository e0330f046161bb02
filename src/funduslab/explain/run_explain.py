"""Explain a finished run: load its model and data, pick images, write CAM panels.

Everything comes from the run folder (see DESIGN.md): ``config.yaml`` says where the data is and
how it was preprocessed, the weights file (``model.pt`` or ``<team>_task<k>-<j>.pt``, read with
``weights_only=True``) holds the model and its thresholds, ``predictions/<split>.csv`` ranks the
images for ``most``/``least`` (:mod:`funduslab.explain.select`). Images are decoded with the same
preprocessing and size as in training (:func:`funduslab.data.cache.decode_preprocessed`), without
writing a cache entry for the few chosen images.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from funduslab.config import RunConfig, atomic_write_text
from funduslab.data.table import SampleTable
from funduslab.explain.cams import CAMS, attention_maps, cams_and_logits
from funduslab.explain.defaults import DEFAULT_CAM_METHOD
from funduslab.explain.panels import PanelEntry, panel_filename, save_panel
from funduslab.explain.select import SELECTIONS, Selection, select_images
from funduslab.models.classifier import FundusModel
from funduslab.runs import RunFolder

__all__ = ["LoadedRun", "explain_run", "load_run", "read_images", "run_table"]

log = logging.getLogger(__name__)


@dataclass
class LoadedRun:
    """A run folder's model and what is needed to feed and read it."""

    run_dir: Path
    cfg: RunConfig
    model: FundusModel
    weights: Path
    label_names: list[str]
    thresholds: np.ndarray  # (K,) thresholds the run used for its labels


def load_run(run_dir: Path | str, device: str = "cpu") -> LoadedRun:
    """Read a run folder's config and rebuild its model (``weights_only=True``)."""
    from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
    from funduslab.models.factory import model_from_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    folder = RunFolder(run_dir)
    cfg = folder.run_config
    weights = folder.require_weights()
    _, meta = load_funduslab_checkpoint(weights)
    model = model_from_checkpoint(weights).to(device).eval()
    labels = [str(name) for name in meta.get("label_names") or []]
    if not labels:
        raise ValueError(f"{weights} records no label_names; re-save it with funduslab")
    thresholds = np.asarray(meta.get("thresholds") or [0.5] * len(labels), dtype=np.float64)
    return LoadedRun(run_dir, cfg, model, weights, labels, thresholds)


def run_table(loaded: LoadedRun, data_root: Path | str | None = None) -> SampleTable:
    """The run's sample table (its fold for a cross-validation run), checked for explaining.

    Raises:
        ValueError: a grading run (no map per label), or label columns the model predicts that
            the data lack.
    """
    from funduslab.data.adapters import load_table

    cfg = loaded.cfg
    table = load_table(cfg.data.adapter, Path(data_root or cfg.data.root), **cfg.data.options)
    if cfg.data.folds:  # a cross-validation fold's run: its own train/val
        from funduslab.data.folds import fold_table

        table = fold_table(table, cfg.data.train_split, cfg.data.val_split, cfg.data.folds,
                           cfg.data.fold, cfg.data.fold_seed)
    if table.task != "multilabel":
        raise ValueError(f"explain draws one map per label of a multi-label run; "
                         f"{loaded.run_dir} is a {table.task} run")
    missing = [c for c in loaded.label_names if c not in table.frame.columns]
    if missing:
        raise ValueError(f"the data has no label columns {missing} that the model predicts")
    return table


def read_images(cfg: RunConfig, paths: list[str]) -> np.ndarray:
    """Decode and preprocess ``paths`` as in training → ``(N, S, S, 3)`` uint8."""
    from funduslab.data.cache import decode_preprocessed
    from funduslab.preprocess import build_pipeline

    size = cfg.data.image_size
    pipeline = build_pipeline(cfg.data.preprocess, size)
    images = [decode_preprocessed(p, pipeline, size) for p in paths]
    return np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)


def explain_run(
    run_dir: Path | str,
    split: str = "offsite_test",
    n: int = 8,
    method: str = DEFAULT_CAM_METHOD,
    selection: Selection = "first",
    attention: bool = False,
    out: Path | str | None = None,
    data_root: Path | str | None = None,
    batch_size: int = 8,
    device: str = "cpu",
) -> list[Path]:
    """Write one panel PNG per chosen image of ``split`` and an ``index.csv`` beside them.

    Args:
        run_dir: A finished run folder.
        split: Split to draw images from (``offsite_test``, ``val`` …).
        n: Number of images.
        method: CAM method name in :data:`~funduslab.explain.cams.CAMS`.
        selection: ``first`` (table order), ``most`` or ``least`` confident.
        attention: Add a row with the head's attention maps (attention heads only).
        out: Output folder (default ``<run_dir>/figures/explain``).
        data_root: Dataset root, when it moved since training (default: the config's).
        batch_size: Images per CAM pass.
        device: ``cpu`` or ``cuda``.

    Returns:
        The panel files, in selection order.

    Raises:
        FileNotFoundError: missing run folder, config, weights, data root or predictions file.
        ValueError: unknown method or selection, a split that is missing or empty, a head
            without attention maps while ``attention`` is set.
    """
    _check_explain_options(method, selection, batch_size)
    loaded = load_run(run_dir, device=device)
    cfg, labels = loaded.cfg, loaded.label_names
    if attention and not callable(getattr(loaded.model.head, "attention_maps", None)):
        raise ValueError(f"--attention: head {cfg.model.head!r} of {loaded.weights} has no "
                         "attention maps; use it with an attention head (e.g. mha, cbam)")
    rows = run_table(loaded, data_root).split(split)  # ValueError naming the splits present
    labelled = bool(rows["labelled"].all())
    targets = rows[labels].to_numpy(dtype=np.int64) if labelled else None
    ids = rows["id"].astype(str).tolist()
    chosen, conf = select_images(loaded.run_dir, split, ids, labels, n, selection, targets)
    where = {image_id: i for i, image_id in enumerate(ids)}
    index = [where[i] for i in chosen]
    images = read_images(cfg, rows["path"].iloc[index].tolist())
    out_dir = Path(out) if out is not None else loaded.run_dir / "figures" / "explain"
    log.info("explaining %d %s images of %s with %s", len(index), split, loaded.run_dir, method)
    chosen_targets = None if targets is None else targets[index]
    written = _draw_panels(loaded, images, [ids[row] for row in index], chosen_targets, method,
                           attention, batch_size, device, out_dir)
    index_name = "index_" + panel_filename(split, method).removesuffix(".png") + ".csv"
    _write_index(out_dir / index_name, chosen, conf, written, selection)
    return written


def _check_explain_options(method: str, selection: str, batch_size: int) -> None:
    """Fail on a bad option before anything is loaded."""
    CAMS.get(method)  # unknown method: ValueError listing the valid ones
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {list(SELECTIONS)}, got {selection!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _draw_panels(loaded: LoadedRun, images: np.ndarray, ids: list[str],
                 targets: np.ndarray | None, method: str, attention: bool, batch_size: int,
                 device: str, out_dir: Path) -> list[Path]:
    """One panel PNG per image (``images`` (N, S, S, 3) uint8, ``ids`` and ``targets`` row for
    row), computed ``batch_size`` images at a time; returns the files in order."""
    model, labels = loaded.model, loaded.label_names
    written: list[Path] = []
    for start in range(0, len(ids), batch_size):
        batch = images[start : start + batch_size]
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div(255.0).to(device)
        cams, logits = cams_and_logits(model, x, method)
        probs = torch.sigmoid(logits).numpy()
        att = attention_maps(model, x) if attention else None
        for j in range(len(batch)):
            image_id = ids[start + j]
            entry = PanelEntry(
                image_id=image_id, image=batch[j], cams=cams[j], probabilities=probs[j],
                predicted=(probs[j] >= loaded.thresholds).astype(int),
                truth=None if targets is None else targets[start + j],
                attention=None if att is None else att[j],
            )
            path = out_dir / panel_filename(image_id, method)
            written.append(save_panel(entry, labels, method, path))
    return written


def _write_index(path: Path, ids: list[str], conf: np.ndarray | None, files: list[Path],
                 selection: str) -> None:
    frame = pd.DataFrame({"id": ids, "selection": selection,
                          "confidence": np.round(conf, 6) if conf is not None else np.nan,
                          "panel": [f.name for f in files]})
    atomic_write_text(path, frame.to_csv(index=False))
