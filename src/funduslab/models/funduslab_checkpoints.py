"""funduslab's own checkpoint files: weights plus the metadata needed to rebuild the model.

A funduslab checkpoint is ``{"format": "funduslab", "format_version", "metadata",
"state_dict"}``: plain tensors and primitive metadata, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs), written atomically through
:func:`~funduslab.models.checkpoints.save_torch_atomic`. It lives apart from
:mod:`funduslab.models.checkpoints`, which reads the course's torchvision checkpoints and
recognises formats: this module only adds funduslab's format on top of that.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from funduslab.models.checkpoints import (
    detect_checkpoint_format,
    plain_state_dict,
    save_torch_atomic,
)
from funduslab.models.weights import read_state_dict

__all__ = ["FUNDUSLAB_FORMAT_VERSION", "load_funduslab_checkpoint", "save_funduslab_checkpoint"]

FUNDUSLAB_FORMAT_VERSION = 1


def _check_metadata(value: Any, where: str) -> Any:
    """Return ``value`` with paths as strings; refuse what ``weights_only`` loading cannot read."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_check_metadata(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(
                    f"metadata key {where}.{k!r} must be a string, got {type(k).__name__}"
                )
            out[k] = _check_metadata(v, f"{where}.{k}")
        return out
    raise TypeError(
        f"metadata value {where} is a {type(value).__name__}; use str/int/float/bool/None/list/"
        "dict so the checkpoint stays loadable with weights_only=True"
    )


def save_funduslab_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
) -> Path:
    """Write ``model``'s state dict and ``metadata`` atomically as a funduslab checkpoint.

    Args:
        path: output file (``runs/<name>/<team>_task1-1.pt``); parent folders are created.
        model: the model or its state dict.
        metadata: primitives only, e.g. ``{"architecture": "resnet18", "label_names": ["D", "G",
            "A"], "image_size": 256, "preprocessing": {...}}``. ``funduslab_version``,
            ``torch_version`` and ``python_version`` are added when absent.

    Returns:
        The path written.

    Raises:
        TypeError: a metadata value that ``weights_only`` loading could not read (key named).
    """
    from funduslab import __version__

    meta = _check_metadata(dict(metadata), "metadata")
    meta.setdefault("funduslab_version", __version__)
    meta.setdefault("torch_version", torch.__version__.split("+")[0])
    meta.setdefault("python_version", platform.python_version())
    payload = {"format": "funduslab", "format_version": FUNDUSLAB_FORMAT_VERSION, "metadata": meta,
               "state_dict": plain_state_dict(model)}
    return save_torch_atomic(payload, path)



def load_funduslab_checkpoint(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a funduslab checkpoint with ``weights_only=True``.

    Returns:
        ``(state_dict, metadata)``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: the file is another format (a course checkpoint is named as such) or a newer
            format version.
    """
    obj = read_state_dict(path)
    fmt = detect_checkpoint_format(obj)
    if fmt != "funduslab":
        is_course = fmt.startswith("torchvision_")
        hint = " (a course checkpoint: use load_course_checkpoint)" if is_course else ""
        raise ValueError(
            f"{str(path)!r} is not a funduslab checkpoint{hint}; detected format: {fmt}"
        )
    version = int(obj.get("format_version", 1))
    if version > FUNDUSLAB_FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has funduslab format version {version}; this funduslab reads up to "
            f"{FUNDUSLAB_FORMAT_VERSION}: upgrade funduslab"
        )
    return dict(obj["state_dict"]), dict(obj.get("metadata", {}))
