"""Any saved funduslab model — a run folder, its weights file, or an ensemble — ready to predict.

A funduslab weights file is self-describing (:func:`funduslab.models.factory.checkpoint_metadata`
plus the label names, thresholds, image size and preprocessing the runner stores), so new images
can be fed exactly as the model was trained. What only the run folder knows is *how it
predicted*: bf16 autocast and flip TTA come from its ``config.yaml`` / ``metrics.json``; a bare
weights file predicts in float32 without TTA unless told otherwise. An ensemble run folder is
read from its own self-contained bundle (``ensemble.pt``) when it has one, so it predicts after
its members have moved away; else it is rebuilt from its member run folders. Everything is read
with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from funduslab.runs import RunFolder

__all__ = ["SavedModel", "load_saved_model"]

_COURSE_HINT = ("train on top of it (funduslab train --weights FILE) and predict with the run "
                "folder; a course checkpoint records no labels, size or preprocessing")


@dataclass
class SavedModel:
    """A model and what is needed to feed it and read its outputs.

    Attributes:
        model: Maps ``(B, 3, S, S)`` floats in [0, 1] to outputs (logits, or grading outputs).
        source: The path it was loaded from.
        label_names: Output label names (multi-label) or the grading label.
        thresholds: Multi-label: per-label decision thresholds the run chose (0.5 or tuned on
            val). Grading/regression: the cut points tuned on val. Else empty.
        image_size: Training resolution; images are resized to it.
        preprocess: The training preprocessing pipeline spec.
        task: ``"multilabel"`` or ``"grading"``.
        formulation: Grading formulation (``ce``, ``regression``, ``ordinal``) or ``None``.
        num_outputs: Outputs per image.
        bf16: Predict under bfloat16 autocast (as the run did).
        tta: Average over flips (as the run did). Ensembles apply it per member instead.
        dual: The model fuses an image with a partner image (DeepDRiD pairs, fellow eyes).
    """

    model: nn.Module
    source: Path
    label_names: list[str]
    thresholds: np.ndarray
    image_size: int
    preprocess: str
    task: str = "multilabel"
    formulation: str | None = None
    num_outputs: int = 0
    bf16: bool = False
    tta: bool = False
    dual: bool = False

    @property
    def num_grades(self) -> int:
        """Grades a grading model tells apart (derived from its outputs and cut points)."""
        if self.formulation == "ce":
            return self.num_outputs
        if self.formulation == "ordinal":
            return self.num_outputs + 1
        return len(self.thresholds) + 1  # regression: K-1 cut points


def _from_single(state: dict, meta: dict, source: Path, bf16: bool, tta: bool) -> SavedModel:
    from funduslab.models.factory import model_from_state

    model = model_from_state(state, meta, where=str(source)).eval()
    labels = [str(n) for n in meta.get("label_names") or []]
    if not labels or not meta.get("image_size"):
        raise ValueError(f"{source} records no label_names or image_size; re-save it with "
                         "funduslab (a run folder's weights file has them)")
    formulation = meta.get("formulation")
    return SavedModel(
        model=model, source=source, label_names=labels,
        thresholds=np.asarray(meta.get("thresholds") or
                              ([] if formulation else [0.5] * len(labels)), dtype=np.float64),
        image_size=int(meta["image_size"]), preprocess=str(meta.get("preprocess") or "none"),
        task="grading" if formulation else "multilabel", formulation=formulation,
        num_outputs=int(meta.get("num_outputs") or len(labels)), bf16=bf16, tta=tta,
        dual=str(meta.get("dual") or "none") != "none")


def _member_metadata(payload: dict) -> list[dict]:
    out = []
    for entry in payload.get("members") or []:
        out += _member_metadata(entry["bundle"]) if "bundle" in entry else [entry["metadata"]]
    return out


def _from_bundle(payload: dict, source: Path) -> SavedModel:
    from funduslab.ensemble.bundle import model_from_payload

    model = model_from_payload(payload, str(source))
    metas = _member_metadata(payload)
    inputs = {(int(m.get("image_size") or 0), str(m.get("preprocess") or "none")) for m in metas}
    if len(inputs) != 1:
        raise ValueError(f"{source}: the members were trained on different inputs "
                         f"(image size, preprocessing) {sorted(inputs)}; predict each member")
    (size, preprocess), = inputs
    labels = [str(n) for n in payload.get("label_names") or []]
    return SavedModel(
        model=model, source=source, label_names=labels,
        thresholds=np.asarray(payload.get("thresholds") or [0.5] * len(labels), np.float64),
        image_size=size, preprocess=preprocess, num_outputs=len(labels),
        dual=any(str(m.get("dual") or "none") != "none" for m in metas))


def _from_file(path: Path, bf16: bool = False, tta: bool = False) -> SavedModel:
    from funduslab.ensemble.bundle import BUNDLE_FORMAT
    from funduslab.models.checkpoints import detect_checkpoint_format
    from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
    from funduslab.models.weights import read_state_dict

    obj = read_state_dict(path)
    if obj.get("format") == BUNDLE_FORMAT:
        return _from_bundle(obj, path)
    fmt = detect_checkpoint_format(obj)
    if fmt.startswith("torchvision_"):
        raise ValueError(f"{path} is a course checkpoint ({fmt}): {_COURSE_HINT}")
    if fmt != "funduslab":
        raise ValueError(f"{path} is not a funduslab model (detected format: {fmt}); pass a "
                         "run folder, its model.pt / <team>_task<k>-<j>.pt, or an ensemble bundle")
    state, meta = load_funduslab_checkpoint(path)
    return _from_single(state, meta, path, bf16, tta)


def _from_run_folder(run_dir: Path) -> SavedModel:
    from funduslab.ensemble.bundle import ensemble_payload

    folder = RunFolder(run_dir)
    if not folder.config_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: pass a funduslab run folder or "
                                "a weights file")
    if folder.is_ensemble:
        if folder.bundle is not None:  # self-contained: predicts after the members moved away
            saved = _from_file(folder.bundle)
            saved.source = run_dir
            return saved
        return _from_bundle(ensemble_payload(run_dir), run_dir)
    folds = folder.provenance.get("cross_validation")
    if folds:
        return _from_cv_folder(run_dir, folds)
    saved = _from_file(folder.require_weights(), folder.bf16, folder.tta)
    saved.source = run_dir
    return saved


def _from_cv_folder(cv_dir: Path, info: dict) -> SavedModel:
    """A cross-validation folder: its fold models, averaged (soft voting), as it predicted."""
    from funduslab.ensemble.bundle import EnsembleModel

    members = [_from_run_folder(cv_dir / str(name)) for name in info.get("fold_runs") or []]
    if not members:
        raise ValueError(f"{cv_dir}/config.yaml names no fold runs")
    inputs = {(m.image_size, m.preprocess, tuple(m.label_names), m.task) for m in members}
    if len(inputs) != 1 or members[0].task != "multilabel":
        raise ValueError(f"{cv_dir}: the fold runs differ in input or labels {sorted(inputs)}")
    first = members[0]
    model = EnsembleModel([m.model for m in members],
                          {"method": "soft_voting", "n_members": len(members)},
                          first.label_names, info.get("thresholds"),
                          [m.tta for m in members], [m.bf16 for m in members]).eval()
    thresholds = info.get("thresholds") or [0.5] * len(first.label_names)
    return SavedModel(model=model, source=cv_dir, label_names=first.label_names,
                      thresholds=np.asarray(thresholds, dtype=np.float64),
                      image_size=first.image_size, preprocess=first.preprocess,
                      num_outputs=len(first.label_names), dual=any(m.dual for m in members))


def load_saved_model(path: Path | str, device: str | torch.device = "cpu") -> SavedModel:
    """Load a run folder (single model, ensemble or cross-validation folds), a funduslab weights
    file or an ensemble bundle, in eval mode on ``device``.

    Raises:
        FileNotFoundError: nothing at ``path``, or a run folder without config or weights.
        ValueError: a file of another format (a course checkpoint is named as such), weights
            that do not fit their recorded architecture, or ensemble members fed differently.
    """
    path = Path(path)
    if path.is_dir():
        saved = _from_run_folder(path)
    elif path.is_file():
        saved = _from_file(path)
    else:
        raise FileNotFoundError(f"no model at {path}: pass a run folder, a weights file (.pt) or "
                                "an ensemble bundle")
    saved.model.to(device).eval()
    return saved
