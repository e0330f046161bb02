"""Apply a saved model to new images: a folder, or a CSV template such as the course's
``onsite_test_submission.csv``; write predictions, a submission and a provenance record.

This is ``funduslab predict``. Images are decoded with the model's own preprocessing and size
(:func:`funduslab.data.cache.decode_preprocessed`) in chunks, so a folder of any size fits in
memory; nothing is cached. Labels use the thresholds the run chose (0.5 or tuned on its val
split) unless a fixed threshold is given; grading models give a grade per image through their
formulation (cut points tuned on val for regression). All files are written atomically.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funduslab.config import atomic_write_text
from funduslab.inference.saved_model import SavedModel

__all__ = ["PredictionInputs", "list_inputs", "predict_saved", "write_prediction_folder"]

log = logging.getLogger(__name__)


@dataclass
class PredictionInputs:
    """The images to predict and, for a CSV template, its columns.

    Attributes:
        ids: One id per image: the template's id column, or the file name in a folder.
        paths: Absolute image paths in ``ids`` order.
        source: The folder or CSV they came from.
        columns: The template's columns (id column first), or ``None`` for a folder.
    """

    ids: list[str]
    paths: list[str]
    source: Path
    columns: list[str] | None = None


def list_inputs(source: Path | str, images: Path | str | None = None) -> PredictionInputs:
    """Images to predict: every image file in folder ``source``, or the rows of CSV ``source``
    (first column = image name, found in ``images``, default the CSV's folder).

    Raises:
        FileNotFoundError: no such folder/CSV, an image named by the CSV is missing (the row is
            named), or a folder without images.
        ValueError: an empty CSV, or one with repeated ids.
    """
    from funduslab.data.adapters._csv import IMAGE_EXTENSIONS, ImageFolder, read_csv

    source = Path(source)
    if source.is_dir():
        names = sorted(p.name for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not names:
            raise FileNotFoundError(f"{source} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        return PredictionInputs(names, [str((source / n).resolve()) for n in names], source)
    if not source.is_file():
        raise FileNotFoundError(f"{source} is neither an image folder nor a CSV")
    frame = read_csv(source)
    if frame.empty or len(frame.columns) == 0:
        raise ValueError(f"{source} has no rows: a template needs one image id per row")
    id_col = str(frame.columns[0])
    ids = frame[id_col].astype(str).tolist()
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise ValueError(f"{source}: column {id_col!r} repeats ids {repeated[:5]}")
    folder = ImageFolder(Path(images) if images is not None else source.parent,
                         what=f"image folder for {source.name} (pass --images)")
    try:
        paths = folder.resolve(ids, source, column=id_col)
    except FileNotFoundError as err:
        if images is not None:
            raise
        raise FileNotFoundError(f"{err} (looked beside the CSV: pass --images FOLDER)") from None
    return PredictionInputs(ids, paths, source, [str(c) for c in frame.columns])


def predict_saved(
    saved: SavedModel,
    paths: list[str],
    *,
    tta: bool | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Outputs ``(N, num_outputs)`` of ``saved`` for the images at ``paths``.

    Args:
        saved: The model (:func:`funduslab.inference.saved_model.load_saved_model`).
        paths: Image files, decoded as the model was trained.
        tta: Flip TTA; ``None`` predicts as the run did. For an ensemble it applies to every
            member (each member otherwise keeps its own run's setting).
        batch_size: Images decoded and predicted at a time.
        device: Where the model runs.
        progress: Called with ``(done, total)`` after each chunk.

    Raises:
        ValueError: a dual model (it needs image pairs), or an image that cannot be decoded
            (the file is named).
    """
    from funduslab.data.cache import decode_preprocessed
    from funduslab.ensemble.bundle import EnsembleModel
    from funduslab.preprocess import build_pipeline
    from funduslab.training.predict import predict_logits

    if saved.dual:
        raise ValueError(f"{saved.source} fuses each image with a partner image; predict a "
                         "dataset with pairs through funduslab train --setup none --weights "
                         "instead")
    model_tta = saved.tta if tta is None else bool(tta)
    ensemble = saved.model if isinstance(saved.model, EnsembleModel) else None
    members_tta = list(ensemble.member_tta) if ensemble is not None else []
    if ensemble is not None:
        if tta is not None:  # for this call only; the loaded model keeps its runs' settings
            ensemble.member_tta = [bool(tta)] * len(ensemble.members)
        model_tta = False
    pipeline = build_pipeline(saved.preprocess, saved.image_size)
    chunks = []
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = np.stack([decode_preprocessed(p, pipeline, saved.image_size)
                               for p in chunk])
            chunks.append(predict_logits(saved.model, images, batch_size=batch_size,
                                         tta=model_tta, bf16=saved.bf16, device=device))
            if progress is not None:
                progress(start + len(chunk), len(paths))
    finally:
        if ensemble is not None:
            ensemble.member_tta = members_tta
    if not chunks:
        return np.zeros((0, saved.num_outputs), dtype=np.float32)
    return np.concatenate(chunks)


def write_prediction_folder(
    out: Path | str,
    saved: SavedModel,
    inputs: PredictionInputs,
    outputs: np.ndarray,
    *,
    threshold: float | None = None,
    tta: bool | None = None,
    seconds: float = 0.0,
) -> Path:
    """Write ``predictions.csv``, ``submission.csv`` and ``predict.json`` into ``out``.

    Multi-label: ``predictions.csv`` has ``id, p_<label>…, <label>…`` (as a run folder's
    ``predictions/<split>.csv``) and the labels use the run's thresholds, or ``threshold``.
    Grading: ``id, p_<grade>… (when defined), score, grade``.

    Returns:
        ``out``.
    """
    from funduslab.reporting.run_folder import environment_info
    from funduslab.training.task_kinds import task_kind

    out = Path(out)
    kind = task_kind(saved.task)  # multilabel or grading: training/task_kinds.py
    columns = kind.submission_columns(saved, inputs.columns, str(inputs.source))
    record = kind.write_predictions(out, saved, inputs.ids, outputs, columns, threshold)
    record.update({
        "model": str(saved.source),
        "task": saved.task,
        "formulation": saved.formulation,
        "image_size": saved.image_size,
        "preprocess": saved.preprocess,
        "tta": _tta_record(saved, tta),
        "bf16": saved.bf16,
        "inputs": str(inputs.source),
        "images": len(inputs.ids),
        "images_fingerprint": _fingerprint(saved, inputs.paths),
        "seconds": round(float(seconds), 2),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_info(),
    })
    atomic_write_text(out / "predict.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    log.info("wrote predictions for %d images to %s", len(inputs.ids), out)
    return out


def _tta_record(saved: SavedModel, tta: bool | None) -> bool | list[bool]:
    """Whether flips were averaged: one flag, or one per ensemble member."""
    from funduslab.ensemble.bundle import EnsembleModel

    if tta is not None:
        return bool(tta)
    if isinstance(saved.model, EnsembleModel):
        return list(saved.model.member_tta)
    return saved.tta


def _fingerprint(saved: SavedModel, paths: list[str]) -> str:
    """The decode cache's fingerprint of these images under the model's preprocessing: which
    inputs the predictions belong to."""
    from funduslab.data.cache import images_fingerprint
    from funduslab.preprocess import build_pipeline

    return images_fingerprint(paths, build_pipeline(saved.preprocess, saved.image_size),
                              saved.image_size)
