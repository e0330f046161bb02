"""The model side of the web page: load the served models, predict one upload, draw its CAMs.

No FastAPI here (DESIGN.md: the page is a thin face over ``inference`` and ``explain``), so
scripts, tests and the benchmark call it directly. An upload is checked
(:mod:`funduslab.web.validate`), written to a private temporary file and decoded by
:func:`funduslab.data.cache.decode_preprocessed` with the model's own preprocessing and size —
the very path ``funduslab predict`` takes — then predicted as the run predicted (flip TTA, bf16
as recorded), so the page and ``funduslab predict`` give the same probabilities. CAMs come from
:func:`funduslab.explain.cams.cams_and_logits`, one map per output.

One lock serialises the models: requests wait their turn instead of running several
forward/backward passes at once (CAM hooks and ``requires_grad`` toggles on a shared module
would interfere, and CPU threads would thrash). Decoding runs outside the lock. When more than
``max_waiting`` requests already wait, a new one is refused with 503 rather than queued forever.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from funduslab.explain.defaults import DEFAULT_CAM_METHOD
from funduslab.training.task_kinds import task_kind
from funduslab.web.validate import MAX_FILES, CheckedUpload, RequestError, check_upload

if TYPE_CHECKING:
    from funduslab.preprocess import Pipeline
    from funduslab.inference.saved_model import SavedModel

__all__ = ["ModelService", "Prediction", "ServedModel", "load_models", "png_base64"]

log = logging.getLogger(__name__)

_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif"}


@dataclass
class ServedModel:
    """One model of the served list.

    Attributes:
        index: Position in the list (``?model=0``).
        name: Unique name (``?model=<name>``): the run folder's or file's name.
        path: Where it was loaded from.
        saved: The loaded model (:class:`~funduslab.inference.saved_model.SavedModel`).
        info: The picker entry and model card (:func:`funduslab.web.card.describe_model`).
        cam_note: Why CAMs are unavailable for this model, or ``None``.
    """

    index: int
    name: str
    path: Path
    saved: SavedModel
    info: dict[str, Any]
    cam_note: str | None = None
    pipeline: Pipeline | None = field(default=None, repr=False)


@dataclass
class Prediction:
    """One image through one model.

    Attributes:
        image_id: The upload's display name.
        model: The served model's name.
        task: ``multilabel`` or ``grading``.
        outputs: ``(K,)`` raw model outputs (logits for multi-label).
        image: ``(S, S, 3)`` uint8, the image the model saw.
        cams: ``(K, S, S)`` heat maps in [0, 1] (one per output), or ``None``.
        result: Task-specific JSON-ready numbers (probabilities, decisions or the grade).
        output_names: One name per output (the labels; grading: ``grade 0`` … or ``score``).
        cam_note: Why there are no CAMs, when asked for and unavailable.
        seconds: Time spent on this image (decode + predict + CAM).
    """

    image_id: str
    model: str
    task: str
    outputs: np.ndarray
    image: np.ndarray
    cams: np.ndarray | None
    result: dict[str, Any]
    output_names: list[str]
    cam_note: str | None = None
    seconds: float = 0.0

    def as_json(self, images: bool = False) -> dict[str, Any]:
        """JSON-ready dict; ``images`` adds the model's view and, when computed, per output a
        blended CAM overlay and the bare heat map (base64 PNG)."""
        from funduslab.explain.panels import overlay

        doc: dict[str, Any] = {"id": self.image_id, "model": self.model, "task": self.task,
                               **self.result, "seconds": round(self.seconds, 4)}
        if images:
            doc["image"] = png_base64(self.image)
        if self.cams is not None:
            doc["cams"] = {name: {"overlay": png_base64(overlay(self.image, heat)),
                                  "heatmap": png_base64(_jet(heat))}
                           for name, heat in zip(self.output_names, self.cams)}
        elif self.cam_note:
            doc["cam_note"] = self.cam_note
        return doc


def png_base64(rgb: np.ndarray) -> str:
    """``(H, W, 3)`` uint8 → base64 text of a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _jet(heat: np.ndarray) -> np.ndarray:
    """``(H, W)`` [0, 1] → jet-coloured ``(H, W, 3)`` uint8, the colours of the overlays."""
    import cv2

    coloured = cv2.applyColorMap(np.uint8(np.round(255 * heat)), cv2.COLORMAP_JET)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


def _cam_problem(saved: SavedModel) -> str | None:
    """Why CAMs cannot be drawn for ``saved``, or ``None``."""
    from funduslab.explain.targets import target_layer

    if hasattr(saved.model, "members"):
        return "CAMs are drawn for single models; this one averages several models"
    try:
        target_layer(saved.model)
    except (AttributeError, TypeError, ValueError) as err:
        return f"no CAM layer for this model ({err})"
    return None


def _expand(paths: Sequence[Path | str]) -> list[tuple[Path, bool]]:
    """Each path, or the finished runs inside a folder that is not a run (``True``: given)."""
    from funduslab.runs import RunFolder, find_run_folders

    out: list[tuple[Path, bool]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not RunFolder(path).config_path.is_file():
            found, skipped = find_run_folders([path])
            for sub, why in skipped:
                log.warning("skipped %s: %s", sub, why)
            out += [(p, False) for p in found]
        else:
            out.append((path, True))
    return out


def load_models(paths: Sequence[Path | str], device: str = "cpu") -> list[ServedModel]:
    """Load run folders, weights files or ensemble bundles (a folder of runs gives each run).

    A model inside a given folder that cannot be loaded (a record without weights, a dual
    model) is skipped with a warning; a path given by name must load.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: nothing to serve, or a named model cannot serve single images.
    """
    from funduslab.preprocess import build_pipeline
    from funduslab.inference.saved_model import load_saved_model
    from funduslab.web.card import describe_model

    if not paths:
        raise ValueError("give at least one run folder, weights file or ensemble bundle to serve")
    served: list[ServedModel] = []
    used: set[str] = set()
    for path, given in _expand(paths):
        try:
            saved = load_saved_model(path, device=device)
            if saved.dual:
                raise ValueError(f"{path} fuses each image with a partner image; the page "
                                 "predicts single images")
        except (ValueError, FileNotFoundError) as err:
            if given:
                raise
            log.warning("skipped %s: %s", path, err)
            continue
        name = path.stem if path.is_file() else path.name
        base, n = name, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        note = _cam_problem(saved)
        index = len(served)
        served.append(ServedModel(index, name, path, saved,
                                  describe_model(index, name, path, saved, note), note,
                                  build_pipeline(saved.preprocess, saved.image_size)))
    if not served:
        raise ValueError(f"no model to serve among {[str(p) for p in paths]}")
    return served


class ModelService:
    """The served models behind one lock.

    Args:
        models: From :func:`load_models`.
        cam_method: A name in :data:`funduslab.explain.cams.CAMS`.
        device: Where the models run.
        max_waiting: Requests allowed to wait for the lock; more are refused (503).
    """

    def __init__(self, models: Sequence[ServedModel], cam_method: str = DEFAULT_CAM_METHOD,
                 device: str = "cpu", max_waiting: int = 32) -> None:
        from funduslab.explain.cams import CAMS

        if not models:
            raise ValueError("ModelService needs at least one model")
        CAMS.get(cam_method)  # unknown method: ValueError listing the valid ones
        self.models = list(models)
        self.cam_method = cam_method
        self.device = device
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._waiting = 0

    def resolve(self, key: str | int | None) -> ServedModel:
        """The model named by ``key``: an index or a name from the served list, nothing else.

        Raises:
            RequestError: 400 a path-like key; 404 an index or name not served.
        """
        names = ", ".join(f"{m.index}={m.name}" for m in self.models)
        if key is None or key == "":
            return self.models[0]
        text = str(key).strip()
        if any(part in text for part in ("/", "\\", "..", "\x00")) or ":" in text:
            raise RequestError(400, f"model must be an index or a name from GET /api/models, "
                                    f"not a path: {text[:80]!r}")
        if text.isdigit():
            if int(text) < len(self.models):
                return self.models[int(text)]
            raise RequestError(404, f"no model with index {text[:12]}; served: {names}")
        for model in self.models:
            if model.name == text:
                return model
        raise RequestError(404, f"unknown model {text[:80]!r}; served: {names}")

    def _decode(self, served: ServedModel, upload: CheckedUpload) -> np.ndarray:
        from funduslab.data.cache import decode_preprocessed

        fd, tmp = tempfile.mkstemp(prefix="funduslab-upload-", suffix=_SUFFIX[upload.format])
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(upload.data)
            return decode_preprocessed(tmp, served.pipeline, served.saved.image_size)
        except (ValueError, OSError) as err:
            detail = " ".join(str(err).replace(tmp, upload.name).split())[:240]
            raise RequestError(422, f"{upload.name} could not be decoded as a {upload.format} "
                                    f"image ({detail})") from None
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _model_pass(self, served: ServedModel, image: np.ndarray,
                    cam: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs ``(K,)`` as ``funduslab predict`` computes them, and CAMs if asked."""
        from funduslab.explain.cams import cams_and_logits
        from funduslab.training.predict import predict_logits

        saved = served.saved
        with self._queue():
            tta = False if hasattr(saved.model, "members") else saved.tta  # members: their own
            outputs = predict_logits(saved.model, image[None], batch_size=1, tta=tta,
                                     bf16=saved.bf16, device=self.device)[0]
            cams = None
            if cam and served.cam_note is None:
                x = torch.from_numpy(image[None].copy()).permute(0, 3, 1, 2).float().div(255.0)
                cams = cams_and_logits(saved.model, x.to(self.device), self.cam_method)[0][0]
        return outputs, cams

    def _queue(self) -> _Turn:
        with self._count_lock:
            if self._waiting >= self.max_waiting:
                raise RequestError(503, f"the server is busy ({self._waiting} requests waiting); "
                                        "try again in a moment")
            self._waiting += 1
        return _Turn(self)

    def predict(self, key: str | int | None, data: bytes, filename: str | None,
                cam: bool = False) -> Prediction:
        """Check, decode and predict one uploaded file.

        Raises:
            RequestError: a refused model key or file (status and one-line message).
        """
        served = self.resolve(key)
        upload = check_upload(data, filename)
        started = time.perf_counter()
        image = self._decode(served, upload)
        outputs, cams = self._model_pass(served, image, cam)
        result, names = _read_outputs(served.saved, outputs)
        return Prediction(upload.name, served.name, served.saved.task, outputs, image, cams,
                          result, names, served.cam_note if cam else None,
                          time.perf_counter() - started)

    def predictions_csv(self, key: str | int | None,
                        files: Sequence[tuple[str | None, bytes]]) -> str:
        """``predictions.csv`` text (as ``funduslab predict`` writes it) for several uploads.

        Every file is checked before any is predicted; one bad file refuses the request,
        naming the file.
        """
        served = self.resolve(key)
        if not files:
            raise RequestError(400, "no files: attach one or more images as 'files'")
        if len(files) > MAX_FILES:
            raise RequestError(400, f"{len(files)} files in one request; at most {MAX_FILES}")
        uploads = [check_upload(data, name) for name, data in files]
        outputs = [self._model_pass(served, self._decode(served, u), False)[0] for u in uploads]
        with tempfile.TemporaryDirectory(prefix="funduslab-csv-") as tmp:
            return _csv_text(served.saved, [u.name for u in uploads], np.stack(outputs),
                             Path(tmp))


class _Turn:
    """Context manager: wait for the model lock, leave the waiting count once it is ours."""

    def __init__(self, service: ModelService) -> None:
        self.service = service

    def __enter__(self) -> None:
        self.service._lock.acquire()
        with self.service._count_lock:
            self.service._waiting -= 1

    def __exit__(self, *exc: object) -> None:
        self.service._lock.release()


def _csv_text(saved: SavedModel, ids: list[str], outputs: np.ndarray, folder: Path) -> str:
    """The predictions file ``funduslab predict`` would write, through its own writers."""
    kind = task_kind(saved.task)
    columns = kind.submission_columns(saved, None, "the upload")
    kind.write_predictions(folder, saved, ids, outputs, columns, threshold=None)
    return (folder / "predictions.csv").read_text()


def _read_outputs(saved: SavedModel, outputs: np.ndarray) -> tuple[dict[str, Any], list[str]]:
    """Task-specific numbers of one image, and a name per output (for the CAMs)."""
    return task_kind(saved.task).describe(saved, outputs)
