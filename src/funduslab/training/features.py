"""Frozen-backbone fitting on cached features: the backbone runs once per image, not per epoch.

Features are stored under the run's cache folder keyed by the image fingerprint, backbone and
weights, so repeated runs (other seeds, other heads) skip extraction entirely.

The head sees the training split in the configured order (``train.sampler``: random,
class_aware, class_sqrt, patient), like every other setup: on a skewed grading set an
unweighted head learns the majority grade and validation kappa never leaves 0.

Dual-image models (:class:`~funduslab.models.dual.DualFundusModel`) use the same per-image pooled
features: each sample is ``(features[i], features[partner[i]])`` ``(2, C)`` and the fusion and
head train on it (the fusion's parameters, e.g. attention scores, train with the head).

Evaluation reuses the cache too (:func:`cached_split_logits`): the backbone is fixed, so the
logits of every split are the head applied to its cached features. Re-running the backbone over
every split (twice per eye for a dual model) used to be most of a frozen run's time. Features
are extracted in the precision the run evaluates in
(:func:`~funduslab.training.fit.evaluation_bf16`), so the run folder's predictions match what
the saved model gives on the same images.

A feature entry (``features-<key>.pt``) is extracted and saved under its own lock, so two runs
that need it extract it once; its sidecar ``features-<key>.json`` holds its size and SHA-256,
checked on every load (a load reads the whole file anyway), and a truncated or altered entry is
extracted again with a warning naming it (:mod:`funduslab.data.cache_guard`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from funduslab.data.cache_guard import entry_lock, entry_problem, read_seal, seal, write_sidecar
from funduslab.data.split_data import SplitData
from funduslab.models.classifier import FundusModel
from funduslab.models.dual import DualFundusModel
from funduslab.training.context import RunContext
from funduslab.training.fit import (
    evaluation_bf16,
    evaluation_device,
    fit_task,
    native_cpu_bf16,
)
from funduslab.training.module import FitOptions
from funduslab.training.sample_weights import build_train_sampler

__all__ = ["VIEWS", "cached_split_logits", "extract_features", "fit_head_on_features"]

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(
    model: FundusModel, images: np.ndarray, batch_size: int = 32, feature_map: bool = False,
    bf16: bool | None = None, device: str | torch.device = "cpu", view: str = "image",
) -> torch.Tensor:
    """Backbone features of ``(N, S, S, 3)`` uint8 images: pooled ``(N, C)`` or the map (on CPU).

    ``bf16``: run under bfloat16 autocast; ``None`` → where the CPU does it natively.
    ``device``: where the backbone runs.
    ``view``: ``image``, or its ``hflip`` / ``vflip`` (the views of flip TTA).

    The model comes back as it went in (each module's train/eval mode, its device): Lightning
    keeps module modes, so a head fitted after extraction would otherwise train without
    dropout only when this run extracted the features, not when it found them cached.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}, got {view!r}")
    bf16 = native_cpu_bf16() if bf16 is None else bf16
    device = torch.device(device)
    modes = [(m, m.training) for m in model.modules()]
    home = next(model.parameters()).device
    model.eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start : start + batch_size]))  # copy: cache is read-only
        x = VIEWS[view](x.to(device).permute(0, 3, 1, 2).float().div_(255.0))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            f = model.forward_features(x)
        out.append((f if feature_map else model.pool(f)).float().cpu())
    model.to(home)
    for m, training in modes:
        m.training = training
    return torch.cat(out)


# The views of flip TTA, as training.predict.predict_logits takes them (NCHW).
VIEWS = {"image": lambda x: x, "hflip": lambda x: x.flip(-1), "vflip": lambda x: x.flip(-2)}


def _cached(ctx: RunContext, model: FundusModel, split: SplitData, feature_map: bool,
            view: str = "image") -> torch.Tensor:
    m = ctx.cfg.model
    bf16 = evaluation_bf16(ctx.cfg.train, model)
    key = hashlib.sha256(
        f"{ctx.data_fingerprint}|{split.name}|{m.backbone}|{m.weights}|{_weights_stamp(m.weights)}|"
        f"{feature_map}|{ctx.cfg.data.image_size}|bf16={bf16}|v2"
        f"{'' if view == 'image' else '|' + view}".encode()
    ).hexdigest()[:20]
    path = Path(ctx.cache_dir) / f"features-{key}.pt"
    with entry_lock(path):  # a second run waits for the first one's features, then loads them
        feats = _load_features(path, len(split.images))
        if feats is None:
            feats = extract_features(model, split.images, ctx.cfg.train.batch_size, feature_map,
                                     bf16, evaluation_device(ctx.cfg.train), view)
            _save_features(path, feats)
    return feats


def _load_features(path: Path, rows: int) -> torch.Tensor | None:
    """The cached features, or ``None`` when missing or failing their seal (warned, by name)."""
    if not path.is_file():
        return None
    problem = entry_problem(path, read_seal(path.with_suffix(".json")))
    if problem is None:
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file is re-extracted, named
            problem = f"it cannot be loaded ({type(err).__name__}: {err})"
        else:
            if not isinstance(feats, torch.Tensor) or len(feats) != rows:
                problem = f"it holds {getattr(feats, 'shape', type(feats))}, not {rows} rows"
    if problem is not None:
        log.warning("ignoring feature cache %s: %s; extracting the features again", path, problem)
        return None
    return feats


def _save_features(path: Path, feats: torch.Tensor) -> None:
    """Save atomically (temporary file renamed into place) with its seal in the sidecar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = path.with_suffix(".json")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        torch.save(feats, tmp)
        sealed = seal(tmp, shape=list(feats.shape), dtype=str(feats.dtype))
        sidecar.unlink(missing_ok=True)  # an old seal never vouches for the new file
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_sidecar(sidecar, {"seal": sealed})


def _weights_stamp(weights: str) -> str:
    p = Path(weights)
    return f"{p.stat().st_size}-{p.stat().st_mtime_ns}" if p.is_file() else ""


class _HeadOnly(nn.Module):
    """Cached features → logits through the model's head (pooled or map input; pooled pairs
    ``(B, 2, C)`` through fusion and head for a dual model)."""

    def __init__(self, model: FundusModel, feature_map: bool) -> None:
        super().__init__()
        self.model = model
        self.feature_map = feature_map

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if isinstance(self.model, DualFundusModel):
            return self.model.fuse_head(feats)
        return self.model.forward_head(feats) if self.feature_map else self.model.head(feats)


def _paired(feats: torch.Tensor, split: SplitData) -> torch.Tensor:
    """Per-image pooled ``(N, C)`` → anchor/partner ``(N, 2, C)`` from ``split.partners``."""
    if split.partners is None:
        raise ValueError(f"split {split.name!r} has no partners for the dual-image model; "
                         "decode it with model.dual set (training.runner.decode_splits)")
    return torch.stack([feats, feats[torch.as_tensor(split.partners, dtype=torch.long)]], dim=1)


def fit_head_on_features(
    ctx: RunContext, model: FundusModel, loss: nn.Module, options: FitOptions
) -> dict[str, float | str]:
    """Extract (or load) features once, then fit ``model.head`` on them with Lightning."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    feature_map = bool(getattr(model.head, "needs_feature_map", False))
    t0 = time.perf_counter()
    train_x = _cached(ctx, model, ctx.train, feature_map)
    val_x = _cached(ctx, model, ctx.val, feature_map) if ctx.val is not None else None
    if isinstance(model, DualFundusModel):
        train_x = _paired(train_x, ctx.train)
        val_x = _paired(val_x, ctx.val) if val_x is not None else None
    extract_s = time.perf_counter() - t0
    batch = ctx.cfg.train.batch_size
    gen = torch.Generator().manual_seed(ctx.cfg.train.seed)
    sampler = build_train_sampler(ctx.cfg.train, ctx.train)  # class_aware / patient, as in full
    train_dl = DataLoader(
        TensorDataset(train_x, torch.tensor(ctx.train.targets)), batch_size=batch,
        shuffle=sampler is None, sampler=sampler, generator=gen,
    )
    val_dl = (
        DataLoader(TensorDataset(val_x, torch.tensor(ctx.val.targets)), batch_size=256)
        if val_x is not None else None
    )
    head_net = _HeadOnly(model, feature_map)
    task = ctx.kind.task_class(ctx)(head_net, loss, ctx.table.label_names, options)
    cfg = ctx.cfg.train.model_copy(update={"precision": "32"})  # tiny head: fp32 is exact and fast
    t1 = time.perf_counter()
    info = fit_task(task, train_dl, val_dl, cfg, ctx.run_dir, resume=ctx.cfg.output.resume,
                    progress=ctx.extras.get("progress", True))
    model.backbone.eval()
    return {**info, "feature_extraction_s": round(extract_s, 2),
            "head_fit_s": round(time.perf_counter() - t1, 2)}


@torch.no_grad()
def cached_split_logits(ctx: RunContext, model: FundusModel) -> dict[str, np.ndarray]:
    """Logits ``(N, K)`` of every split from its cached backbone features (frozen setup only).

    Splits the fit did not need (test, unlabelled) are extracted once here and cached as well,
    so another seed or head on the same data runs no backbone at all. With ``train.tta`` the
    logits are averaged over the image and its horizontal and vertical flips, whose features are
    cached the same way (both eyes of a pair flipped alike), as
    :func:`~funduslab.training.predict.predict_logits` does on images.
    """
    feature_map = bool(getattr(model.head, "needs_feature_map", False))
    head_net = _HeadOnly(model, feature_map).eval().to("cpu")  # the cached features are on CPU
    views = list(VIEWS) if ctx.cfg.train.tta else ["image"]
    out: dict[str, np.ndarray] = {}
    for name, split in ctx.splits.items():
        per_view = []
        for view in views:
            feats = _cached(ctx, model, split, feature_map, view)
            if isinstance(model, DualFundusModel):
                feats = _paired(feats, split)
            per_view.append(torch.cat([head_net(feats[i : i + 256]).float()
                                       for i in range(0, len(feats), 256)])
                            if len(feats) else torch.zeros(0, 0))
        out[name] = torch.stack(per_view).mean(0).numpy()
    return out
