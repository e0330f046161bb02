"""Options that several verbs share, declared once so a concept has one name on every verb.

``--device`` says where to compute everywhere (``train`` passes it to Lightning as its
accelerator); both spellings of a GPU, ``cuda`` and ``gpu``, are accepted by every verb.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["Device", "lightning_accelerator", "torch_device"]

_DEVICE_HELP = ("Where to compute: cpu, cuda (or gpu), cuda:N, or auto (a GPU when there is "
                "one).")

#: ``--device`` of the verbs that run a saved model (predict, explain, serve, generate).
Device = Annotated[str, typer.Option("--device", help=_DEVICE_HELP)]


def torch_device(value: str) -> str:
    """The torch device for ``--device``: ``gpu`` means ``cuda``; ``auto`` a GPU if there is one."""
    name = value.strip().lower()
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu" or name.startswith("gpu:"):
        return "cuda" + name[3:]
    return name


def lightning_accelerator(value: str) -> str:
    """The Lightning accelerator for ``train --device``: ``cuda`` means ``gpu``, which is what
    funduslab's precision and loader choices test for."""
    name = value.strip().lower()
    if ":" in name:  # Lightning takes an accelerator kind; which GPUs is train.devices
        raise ValueError(f"train --device {value!r}: give cpu, cuda (or gpu) or auto; the "
                         "number of GPUs is train.devices")
    return "gpu" if name == "cuda" else name
