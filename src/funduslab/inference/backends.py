"""Which engine runs a saved model for ``funduslab predict``: eager PyTorch or ONNX Runtime.

Both give the same :class:`~funduslab.inference.saved_model.SavedModel`, so
:func:`~funduslab.inference.predict_images.predict_saved` and the files it writes do not care
which one ran. A ``.onnx`` file picks ONNX Runtime by itself; a run folder or weights file runs
eagerly unless ``onnx`` is asked for, in which case it is exported in memory and checked first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from funduslab.registry import Registry
from funduslab.inference.saved_model import SavedModel, load_saved_model

__all__ = ["PREDICT_BACKENDS", "is_onnx_file", "load_for_prediction", "resolve_backend"]

log = logging.getLogger(__name__)

#: name → ``loader(path, device) -> SavedModel``.
PREDICT_BACKENDS: Registry[Callable[[Path, str], SavedModel]] = Registry("predict backend")


def is_onnx_file(path: Path | str) -> bool:
    """Whether ``path`` names an ONNX model (by its ``.onnx`` suffix, as exported)."""
    return Path(path).suffix.lower() == ".onnx"


@PREDICT_BACKENDS.register("eager")
def _eager(path: Path, device: str) -> SavedModel:
    if is_onnx_file(path):
        raise ValueError(f"{path} is an ONNX model: it runs on --backend onnx (or leave "
                         "--backend out)")
    return load_saved_model(path, device=device)


@PREDICT_BACKENDS.register("onnx")
def _onnx(path: Path, device: str) -> SavedModel:
    from funduslab.inference.onnx_model import load_onnx_model, onnx_saved_model

    if is_onnx_file(path):
        return load_onnx_model(path, device=device)
    saved, check = onnx_saved_model(load_saved_model(path, device="cpu"))
    log.info("exported %s to ONNX in memory (max |Δp| vs eager %.1e)", path, check.max_abs_diff)
    return saved


def resolve_backend(path: Path | str, backend: str | None) -> str:
    """``backend``, or ``onnx`` for a ``.onnx`` file and ``eager`` otherwise when it is ``None``.

    Raises:
        ValueError: an unknown backend name (the valid ones are listed).
    """
    if backend is None:
        return "onnx" if is_onnx_file(path) else "eager"
    PREDICT_BACKENDS.get(backend)
    return backend


def load_for_prediction(path: Path | str, backend: str | None = None,
                        device: str = "cpu") -> SavedModel:
    """Load ``path`` for prediction on ``backend`` (see :func:`resolve_backend`).

    Raises:
        FileNotFoundError, ValueError: as the backend's loader does; an unknown backend.
    """
    return PREDICT_BACKENDS.get(resolve_backend(path, backend))(Path(path), device)
