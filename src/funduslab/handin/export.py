"""A funduslab model → the state dict a hand-in file holds, and the recipe that rebuilds it.

The course template loads its checkpoints as ``m = torchvision.models.resnet18(); m.fc =
nn.Linear(512, 3); m.load_state_dict(torch.load(path))`` (``efficientnet_b0`` with
``classifier[1]``), strictly. funduslab's own weights file wraps the state (``{"format",
"metadata", "state_dict"}``) and prefixes every key (``backbone.net.``, ``head.fc.``), so it
fails that load. Three kinds of file come out of here:

* ``torchvision`` — a ResNet18 / EfficientNet-B0 with the linear head: a course checkpoint the
  run started from (:class:`~funduslab.models.checkpoints.CourseBackbone`), or timm's
  ``resnet18`` / ``efficientnet_b0``, whose tensors are torchvision's under other names (same
  order, same shapes, same BatchNorm eps); keys renamed to torchvision's.
* ``timm`` — any other timm architecture with the linear head: ``timm.create_model(arch,
  num_classes=K)`` keys (the head becomes timm's own classifier).
* ``wrapped`` — heads or SE blocks timm lacks (``mlp``, ``se``, ``mha``, SE after stages):
  funduslab's keys unchanged, rebuilt by the small modules in
  :mod:`funduslab.handin.standalone_models` (inlined into ``NAME.py``).

Every export is checked by :func:`verify_export`: the file is saved, read back with
``weights_only=True``, rebuilt exactly as ``NAME.py`` rebuilds it, and must reproduce funduslab's
logits.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from funduslab.handin import standalone, standalone_models
from funduslab.models.backbones import backbone_info
from funduslab.models.families import family_of

__all__ = ["SUPPORTED_HEADS", "ExportedModel", "export_model", "verify_export"]

#: Heads NAME.py can rebuild (on CNN backbones only for the feature-map heads ``se``, ``mha``).
SUPPORTED_HEADS = ("linear", "mlp", "se", "mha")
#: torchvision builder → where its classifier's weights live.
_TORCHVISION_HEADS = {"resnet18": "fc.", "efficientnet_b0": "classifier.1."}


@dataclass
class ExportedModel:
    """What one hand-in ``.pt`` holds and how ``NAME.py`` rebuilds it.

    Attributes:
        kind: ``torchvision``, ``timm`` or ``wrapped``.
        arch: torchvision builder or timm model name (``tiny_cnn``: funduslab's test ResNet).
        state: The plain state dict written to the file.
        recipe: Extra manifest fields (``timm_kwargs``, ``head``, ``se_points``).
    """

    kind: str
    arch: str
    state: dict[str, torch.Tensor]
    recipe: dict[str, Any] = field(default_factory=dict)


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous copies: the file holds only these tensors, not views of larger ones."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def _torchvision_shapes(arch: str, num_outputs: int) -> dict[str, tuple[int, ...]]:
    import torchvision

    with torch.device("meta"):
        net = getattr(torchvision.models, arch)(num_classes=num_outputs)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _torchvision_state(model: nn.Module, arch: str, course: bool, where: str
                       ) -> dict[str, torch.Tensor]:
    """Rename a ResNet18/EfficientNet-B0 + linear head's tensors to torchvision's keys."""
    head = _TORCHVISION_HEADS[arch]
    state = model.state_dict()
    prefix = "backbone.net." if course else "backbone."
    body = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    fc = {head + k[len("head.fc."):]: v for k, v in state.items() if k.startswith("head.fc.")}
    num_outputs = int(fc[head + "weight"].shape[0])
    wanted = _torchvision_shapes(arch, num_outputs)
    target = [k for k in wanted if not k.startswith(head)]
    if not course and arch == "efficientnet_b0":  # timm names → torchvision names, by order
        if len(body) != len(target):
            raise ValueError(f"{where}: timm efficientnet_b0 has {len(body)} tensors, torchvision "
                             f"{len(target)}; cannot write it in the course format")
        body = dict(zip(target, body.values()))
    out = {**body, **fc}
    if set(out) != set(wanted) or any(tuple(out[k].shape) != s for k, s in wanted.items()):
        missing = sorted(set(wanted) - set(out))[:3]
        extra = sorted(set(out) - set(wanted))[:3]
        raise ValueError(f"{where}: its tensors do not fit torchvision {arch} (missing {missing}, "
                         f"extra {extra}); cannot write it in the course format")
    return {k: out[k] for k in wanted}


def _timm_kwargs(meta: dict[str, Any], family: str) -> dict[str, Any]:
    """The constructor options funduslab's backbone factory used for this family and size."""
    return family_of(family).size_options(int(meta["image_size"]), timm_model=True)


def _timm_state(model: nn.Module, entry: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The state under ``timm.create_model(arch, num_classes=K)`` keys, or ``None`` when the
    keys do not match one to one (then the model is exported ``wrapped``)."""
    k = int(model.head.fc.out_features)
    try:
        with torch.device("meta"):  # shapes only: nothing allocated
            net = standalone_models._timm_net(entry, k)
    except (RuntimeError, NotImplementedError):  # a constructor that needs real tensors
        net = standalone_models._timm_net(entry, k)
    classifier = net.get_classifier()
    name = next((n for n, m in net.named_modules() if m is classifier), None)
    if name is None or not isinstance(classifier, nn.Linear):
        return None
    state = model.state_dict()
    out = {key[len("backbone."):]: v for key, v in state.items() if key.startswith("backbone.")}
    out.update({f"{name}.{key[len('head.fc.'):]}": v for key, v in state.items()
                if key.startswith("head.fc.")})
    wanted = {key: tuple(v.shape) for key, v in net.state_dict().items()}
    if set(out) != set(wanted) or any(tuple(out[key].shape) != s for key, s in wanted.items()):
        return None
    return {key: out[key] for key in wanted}


def export_model(model: nn.Module, meta: dict[str, Any], where: str) -> ExportedModel:
    """Choose the file kind for ``model`` (a funduslab ``FundusModel``) and build its state.

    Args:
        model: The run's model, as :func:`~funduslab.inference.saved_model.load_saved_model`
            rebuilt it.
        meta: The metadata of its weights file.
        where: The run folder, for messages.

    Raises:
        ValueError: a model ``NAME.py`` cannot rebuild (named, with what is supported).
    """
    head = str(meta.get("head") or "linear")
    se_stages = list(meta.get("se_stages") or [])
    info = backbone_info(model.backbone)
    course = meta.get("course_architecture")
    if head not in SUPPORTED_HEADS:
        raise ValueError(f"{where} has head {head!r}; NAME.py rebuilds the heads "
                         f"{', '.join(SUPPORTED_HEADS)} only: hand in a run with one of them")
    if course:
        if head != "linear" or se_stages:
            raise ValueError(f"{where} puts head {head!r}{' and SE blocks' if se_stages else ''} "
                             f"on a course {course} checkpoint; only the linear head can be "
                             "handed in on a course backbone")
        return ExportedModel("torchvision", course, _tensors(_torchvision_state(
            model, course, True, where)))
    if info.name in _TORCHVISION_HEADS and head == "linear" and not se_stages:
        return ExportedModel("torchvision", info.name, _tensors(_torchvision_state(
            model, info.name, False, where)))
    if info.name != "tiny_cnn" and info.name.startswith("tiny_"):
        raise ValueError(f"{where}: test backbone {info.name!r} cannot be handed in")
    if head in ("se", "mha") and info.family != "cnn":
        raise ValueError(f"{where}: the {head} head is handed in on CNN backbones only, "
                         f"not {info.family} ({info.name})")
    recipe: dict[str, Any] = {"timm_kwargs": _timm_kwargs(meta, info.family)}
    entry = {"arch": info.name, **recipe}
    if head == "linear" and not se_stages:
        state = _timm_state(model, entry)
        if state is not None:
            return ExportedModel("timm", info.name, _tensors(state), recipe)
    points = [info.se_points[level - 1][0] for level in se_stages]
    recipe.update(head=head, se_points=points)
    if head == "mha":  # what the tensors' shapes do not say
        recipe["head_options"] = {"num_heads": int(model.head.blocks[0].attn.num_heads),
                                  "pos": str(model.head.pos.kind)}
    return ExportedModel("wrapped", info.name, _tensors(model.state_dict()), recipe)


def verify_export(model: nn.Module, entry: dict[str, Any], state: dict[str, torch.Tensor],
                  where: str, tolerance: float = 1e-4) -> float:
    """Rebuild ``entry`` as ``NAME.py`` does from ``state`` saved and re-read with
    ``weights_only=True``; return the largest logit difference to ``model`` on two seeded random
    images at the training size.

    Raises:
        ValueError: the rebuilt network fails to load the file or differs by more than
            ``tolerance``.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, map_location="cpu", weights_only=True)
    try:
        net = standalone.build_model(entry, loaded)
    except (RuntimeError, KeyError) as err:
        raise ValueError(f"{where}: the exported file does not load into its "
                         f"{entry['kind']} {entry['arch']}: {str(err).splitlines()[0]}") from None
    size = int(entry["image_size"])
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(entry["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(entry["std"]).view(1, 3, 1, 1)
    model.eval()
    with torch.no_grad():
        diff = float((net((x - mean) / std) - model(x)).abs().max())
    if not diff <= tolerance:
        raise ValueError(f"{where}: the exported {entry['kind']} {entry['arch']} differs from "
                         f"funduslab's model by {diff:.2e} in the logits; not handed in")
    return diff
