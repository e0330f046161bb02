"""Checkpoint files: the course's torchvision checkpoints, format detection, atomic saving.

The course ships ``ckpt_resnet18_ep50.pt`` and ``ckpt_efficientnet_ep50.pt``: full torchvision
``resnet18`` / ``efficientnet_b0`` state dicts (He et al., 2016; Tan & Le, 2019) whose head was
replaced by a 3-output layer (``fc`` 512→3, ``classifier.1`` 1280→3). They are read with
``weights_only=True`` into the torchvision builder with ``strict=True``, so "no fine-tuning" runs
the exact network the course trained. :class:`CourseBackbone` exposes such a network with the
timm backbone API (``forward_features``/``forward_head``/``num_features``/``funduslab_info``).

:func:`detect_checkpoint_format` names any checkpoint (course or funduslab), and
:func:`save_torch_atomic` writes every ``.pt`` file (temporary file + ``os.replace``).
funduslab's own format (weights plus metadata) is built on these in
:mod:`funduslab.models.funduslab_checkpoints`, which imports this module, never the reverse.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from funduslab.config import atomic_write_bytes
from funduslab.models.backbones import BackboneInfo
from funduslab.models.weights import read_state_dict, unwrap_state_dict

__all__ = [
    "COURSE_ARCHITECTURES",
    "CourseBackbone",
    "build_course_backbone",
    "course_backbone",
    "detect_checkpoint_format",
    "load_course_checkpoint",
    "plain_state_dict",
    "save_course_format",
    "save_torch_atomic",
]

#: course format → (torchvision builder name, head weight key, funduslab backbone name)
COURSE_ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    "torchvision_resnet18": ("resnet18", "fc.weight", "resnet18"),
    "torchvision_efficientnet_b0": ("efficientnet_b0", "classifier.1.weight", "efficientnet_b0"),
}


@functools.lru_cache(maxsize=None)
def _torchvision_shapes(builder: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of a torchvision model with a 1000-way head (built on the meta device)."""
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, builder)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _head_prefix(head_key: str) -> str:
    return head_key.rsplit(".", 1)[0] + "."


def _fits_course(tensors: Mapping[str, torch.Tensor], fmt: str) -> bool:
    builder, head_key, _ = COURSE_ARCHITECTURES[fmt]
    head = tensors.get(head_key)
    if head is None or head.ndim != 2:
        return False
    expected = _torchvision_shapes(builder)
    prefix = _head_prefix(head_key)
    body = {k: s for k, s in expected.items() if not k.startswith(prefix)}
    if set(body) | {head_key, prefix + "bias"} != set(tensors):
        return False
    if int(head.shape[1]) != expected[head_key][1]:
        return False
    return all(tuple(tensors[k].shape) == s for k, s in body.items())


def detect_checkpoint_format(state: Mapping[str, Any]) -> str:
    """Name the format of a loaded checkpoint object (wrappers and ``module.`` prefixes allowed).

    Returns:
        ``"torchvision_resnet18"``, ``"torchvision_efficientnet_b0"``, ``"funduslab"`` or
        ``"unknown"``.
    """
    if not isinstance(state, Mapping):
        return "unknown"
    if state.get("format") == "funduslab" and isinstance(state.get("state_dict"), Mapping):
        return "funduslab"
    tensors = unwrap_state_dict(state)
    for fmt in COURSE_ARCHITECTURES:
        if _fits_course(tensors, fmt):
            return fmt
    return "unknown"


def _describe(fmt: str, tensors: Mapping[str, torch.Tensor]) -> str:
    builder, head_key, _ = COURSE_ARCHITECTURES[fmt]
    out, width = tensors[head_key].shape
    return f"a torchvision {builder} ({head_key.rsplit('.', 1)[0]} {width}→{out})"


def _load_tensors(
    source: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], str, str]:
    """(tensors, format, display name) of a path or an already loaded checkpoint object."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else "<state dict>"
    obj = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else source
    return unwrap_state_dict(obj), detect_checkpoint_format(obj), name


def _check_architecture(
    fmt: str, tensors: Mapping[str, torch.Tensor], name: str, architecture: str | None
) -> None:
    if fmt not in COURSE_ARCHITECTURES:
        first = ", ".join(list(tensors)[:5]) or "(no tensors)"
        raise ValueError(
            f"checkpoint {name!r} is not a course checkpoint (a torchvision resnet18 or "
            f"efficientnet_b0 state dict with its own head); first keys: {first}"
        )
    if architecture is None:
        return
    wanted = architecture.removeprefix("torchvision_")
    held = COURSE_ARCHITECTURES[fmt][2]
    if wanted != held:
        raise ValueError(
            f"checkpoint {name!r} holds {_describe(fmt, tensors)} but the config asks for "
            f"{wanted}; pass --backbone {held} or another file"
        )


def load_course_checkpoint(
    source: str | os.PathLike[str] | Mapping[str, Any], architecture: str | None = None
) -> nn.Module:
    """Build the torchvision network a course checkpoint holds; load it exactly (``strict=True``).

    Args:
        source: path of ``ckpt_resnet18_ep50.pt`` / ``ckpt_efficientnet_ep50.pt`` (or an object
            already loaded from one). Wrappers (``{"model_state_dict": ...}``) and ``module.``
            prefixes are accepted.
        architecture: expected backbone (``"resnet18"``/``"efficientnet_b0"``); ``None`` accepts
            either.

    Returns:
        A torchvision ``ResNet``/``EfficientNet`` whose head has as many outputs as the file's.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a course checkpoint, or it holds another architecture than ``architecture``.
    """
    tensors, fmt, name = _load_tensors(source)
    return _build_course_net(tensors, fmt, name, architecture)


def _build_course_net(
    tensors: Mapping[str, torch.Tensor], fmt: str, name: str, architecture: str | None
) -> nn.Module:
    import torchvision

    _check_architecture(fmt, tensors, name, architecture)
    builder, head_key, _ = COURSE_ARCHITECTURES[fmt]
    model = getattr(torchvision.models, builder)(num_classes=int(tensors[head_key].shape[0]))
    model.load_state_dict(tensors, strict=True)
    return model


class CourseBackbone(nn.Module):
    """A torchvision course network seen as a funduslab backbone.

    ``forward_features``: ``(B, 3, H, W)`` → ``(B, C, h, w)``;
    ``forward_head(f, pre_logits=True)`` → ``(B, num_features)``. With ``keep_head=True`` the
    course head is kept and ``forward``/``forward_head(pre_logits=False)`` give its
    ``(B, num_classes)`` logits (the ``none`` setup); otherwise the head is replaced by
    ``Identity`` and ``forward`` gives the pooled features, like a timm ``num_classes=0`` model.

    Args:
        net: a torchvision ``resnet18`` or ``efficientnet_b0``.
        fmt: its course format name (a key of :data:`COURSE_ARCHITECTURES`).
        keep_head: keep the course classifier.
        img_size: training image side in pixels (recorded in the info).
        source: file name recorded in the info.
    """

    def __init__(
        self,
        net: nn.Module,
        fmt: str,
        keep_head: bool = False,
        img_size: int | None = None,
        source: str = "",
    ) -> None:
        super().__init__()
        if fmt not in COURSE_ARCHITECTURES:
            raise ValueError(f"fmt must be one of {sorted(COURSE_ARCHITECTURES)}, got {fmt!r}")
        self.net = net
        self.fmt = fmt
        self.is_resnet = fmt == "torchvision_resnet18"
        linear = net.fc if self.is_resnet else net.classifier[1]
        self.num_features = int(linear.in_features)
        self.num_classes = int(linear.out_features) if keep_head else 0
        if not keep_head:
            if self.is_resnet:
                net.fc = nn.Identity()
            else:
                net.classifier = nn.Identity()
        self.funduslab_info = self._info(img_size, source)

    @property
    def head(self) -> nn.Module:
        """The course classifier (``Identity`` when dropped)."""
        return self.net.fc if self.is_resnet else self.net.classifier

    def _info(self, img_size: int | None, source: str) -> BackboneInfo:
        size = (img_size, img_size) if img_size else (224, 224)
        if self.is_resnet:
            stem: tuple[str, ...] = ("net.conv1", "net.bn1")
            stages = [(f"net.layer{i}",) for i in range(1, 5)]
            final: tuple[str, ...] = ()
            cam = "net.layer4"
            se = tuple((f"net.layer{i}", c) for i, c in zip(range(1, 5), (64, 128, 256, 512)))
        else:  # features.0 stem, 1..7 MBConv stages, 8 the 1×1 conv to 1280 channels
            stem, final, cam = ("net.features.0",), ("net.features.8",), "net.features.8"
            stages = [(f"net.features.{i}",) for i in range(1, 8)]
            channels = ((1, 16), (2, 24), (3, 40), (5, 112), (7, 320))  # as timm's feature_info
            se = tuple((f"net.features.{i}", c) for i, c in channels)
        return BackboneInfo(
            name=COURSE_ARCHITECTURES[self.fmt][2], family="cnn", num_features=self.num_features,
            input_size=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), stem=stem,
            stages=tuple(stages), final=final, se_points=se, gradcam_layer=cam,
            weights=f"course:{source}" if source else "course",
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → last feature map ``(B, C, H/32, W/32)``."""
        n = self.net
        if not self.is_resnet:
            return n.features(x)
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Average-pool ``(B, C, h, w)`` → ``(B, C)``; then the course head unless pre_logits."""
        x = torch.flatten(self.net.avgpool(x), 1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` → logits ``(B, num_classes)`` with a kept head, else features."""
        return self.forward_head(self.forward_features(x))


def course_backbone(
    source: str | os.PathLike[str] | Mapping[str, Any],
    architecture: str | None = None,
    keep_head: bool = False,
    img_size: int | None = None,
    source_name: str | None = None,
) -> CourseBackbone:
    """Load a course checkpoint (see :func:`load_course_checkpoint`) as a :class:`CourseBackbone`.

    Args:
        source: path or loaded checkpoint object.
        architecture: expected backbone name; a mismatch raises ``ValueError``.
        keep_head: keep the course classifier (the ``none`` setup).
        img_size: training image side in pixels (recorded in the info).
        source_name: file name for messages and the info when ``source`` is already loaded.
    """
    tensors, fmt, name = _load_tensors(source)
    name = source_name or name
    net = _build_course_net(tensors, fmt, name, architecture)
    return CourseBackbone(net, fmt, keep_head=keep_head, img_size=img_size, source=name)


def build_course_backbone(
    architecture: str, num_classes: int = 3, keep_head: bool = False, img_size: int | None = None
) -> CourseBackbone:
    """A randomly initialised :class:`CourseBackbone`, e.g. to load a saved funduslab model into.

    Args:
        architecture: ``"resnet18"``/``"efficientnet_b0"`` (or ``"torchvision_..."``).
        num_classes: outputs of the course head.
        keep_head: keep that head.
        img_size: training image side in pixels (recorded in the info).

    Raises:
        ValueError: an architecture the course did not ship.
    """
    import torchvision

    fmt = "torchvision_" + architecture.removeprefix("torchvision_")
    if fmt not in COURSE_ARCHITECTURES:
        valid = sorted(v[2] for v in COURSE_ARCHITECTURES.values())
        raise ValueError(f"course architecture must be one of {valid}, got {architecture!r}")
    net = getattr(torchvision.models, COURSE_ARCHITECTURES[fmt][0])(num_classes=num_classes)
    return CourseBackbone(net, fmt, keep_head=keep_head, img_size=img_size)


def save_torch_atomic(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` through memory and :func:`~funduslab.config.atomic_write_bytes`.

    ``torch.save`` to a file reports a full disk as a ``RuntimeError`` from its C++ writer, after
    leaving part of the file; serialising to memory first makes the write one atomic step whose
    failure is a :class:`~funduslab.errors.DiskWriteError` naming ``path``.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plain_state_dict(
    model_or_state: nn.Module | Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """CPU copies of ``model_or_state``'s tensors, detached from any graph."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def save_course_format(path: str | os.PathLike[str], model: nn.Module) -> Path:
    """Write a torchvision course network as a plain state dict, the course's own file format.

    Args:
        path: output ``.pt`` file.
        model: a torchvision ``resnet18``/``efficientnet_b0`` with its head, or a
            :class:`CourseBackbone` built with ``keep_head=True``.

    Raises:
        ValueError: the model is not one of the course architectures with a head.
    """
    net = model.net if isinstance(model, CourseBackbone) else model
    state = plain_state_dict(net)
    fmt = detect_checkpoint_format(state)
    if fmt not in COURSE_ARCHITECTURES:
        raise ValueError(
            "save_course_format needs a torchvision resnet18 or efficientnet_b0 with its "
            f"classifier (got {type(net).__name__}, detected {fmt}); build the CourseBackbone "
            "with keep_head=True"
        )
    return save_torch_atomic(state, path)
