"""Build the :class:`FundusModel` a config describes (backbone + weights + head).

With ``model.dual`` other than ``none`` the model is a
:class:`~funduslab.models.dual.DualFundusModel` (shared backbone, fused pair of views).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from funduslab.config import ModelConfig
from funduslab.models.attention import insert_se, inserted_se
from funduslab.models.backbones import (
    BackboneInfo,
    backbone_info,
    create_backbone,
    stage_parameter_groups,
)
from funduslab.models.classifier import FundusModel, build_head
from funduslab.models.dual import DualFundusModel, build_fusion, dual_mode
from funduslab.models.heads import HEADS
from funduslab.models.heads.feature_map import feature_map_options

__all__ = ["build_model", "check_checkpoint_matches", "checkpoint_metadata", "last_stage_parameters", "model_from_checkpoint",
           "model_from_state"]

log = logging.getLogger(__name__)

# Where a torchvision course checkpoint keeps its 3-output classifier.
_COURSE_HEADS = {"torchvision_resnet18": "fc.", "torchvision_efficientnet_b0": "classifier.1."}


def build_model(
    cfg: ModelConfig, num_outputs: int, image_size: int | None = None, require_head: bool = False
) -> FundusModel:
    """Backbone with ``cfg.weights`` and a fresh ``cfg.head``.

    With ``require_head`` (the ``none`` setup) the head must come from the weights file too:
    a funduslab checkpoint (whole model) or a course checkpoint (its 3-output classifier).

    Raises:
        ValueError: ``require_head`` but the weights hold no head with ``num_outputs`` outputs.
    """
    if require_head:
        path = Path(cfg.weights)
        if not path.is_file():
            raise ValueError(
                f"setup 'none' evaluates a trained model as it is, so model.weights must be a "
                f"checkpoint file with a classifier, got {cfg.weights!r}"
            )
        from funduslab.models.checkpoints import detect_checkpoint_format
        from funduslab.models.weights import read_state_dict, unwrap_state_dict

        raw = read_state_dict(path)
        fmt = detect_checkpoint_format(raw)
        if fmt == "funduslab":
            check_checkpoint_matches(path, dict(raw.get("metadata") or {}), cfg)
            return model_from_checkpoint(path, num_outputs)
    backbone = create_backbone(cfg.backbone, cfg.weights, img_size=image_size)
    if cfg.attention_stages:  # identity-initialised SE blocks (models/attention.py)
        insert_se(backbone, cfg.attention_stages, cfg.attention_rd_ratio)
    model = _assemble(backbone, cfg.head, num_outputs, cfg.dropout, cfg.head_options, cfg.dual)
    if require_head:
        if fmt not in _COURSE_HEADS or cfg.head != "linear" or cfg.dual == "concat":
            raise ValueError(
                f"{path} ({fmt}) has no classifier funduslab can reuse with head {cfg.head!r}; "
                "setup 'none' needs a course checkpoint (linear head; model.dual none, mean or "
                "attention) or a funduslab checkpoint"
            )
        prefix = _COURSE_HEADS[fmt]
        state = unwrap_state_dict(raw)
        head_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if head_state.get("weight") is None or head_state["weight"].shape[0] != num_outputs:
            shape = None if head_state.get("weight") is None else tuple(head_state["weight"].shape)
            raise ValueError(f"{path}: classifier {prefix}weight has shape {shape}, "
                             f"but the data has {num_outputs} labels")
        model.head.fc.load_state_dict(head_state)
    return model


def check_checkpoint_matches(path: Path, meta: dict, cfg: ModelConfig) -> None:
    """Refuse to evaluate a funduslab checkpoint under a config that names another model.

    Without this, ``--config <lite0 run>/config.yaml --setup none --weights <resnet18 .pt>``
    evaluated the ResNet18 and wrote ``tf_efficientnet_lite0`` into the run's config and report.

    Raises:
        ValueError: naming each field that differs, the checkpoint's value and the flag to pass.
    """
    saved = {"backbone": meta.get("backbone"), "head": meta.get("head") or "linear",
             "dual": meta.get("dual") or "none"}
    asked = {"backbone": cfg.backbone, "head": cfg.head, "dual": cfg.dual}
    differs = [k for k in saved if saved[k] is not None and saved[k] != asked[k]]
    if differs:
        found = ", ".join(f"model.{k}={saved[k]!r} (config: {asked[k]!r})" for k in differs)
        flags = " ".join(f"--{k} {saved[k]}" for k in differs)
        raise ValueError(f"{path} holds another model than the config describes: {found}; "
                         f"pass {flags} or use the config.yaml of the run that saved it")


def model_from_checkpoint(path: Path, num_outputs: int | None = None) -> FundusModel:
    """Rebuild a saved :class:`FundusModel` from its funduslab checkpoint (weights_only load)."""
    from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint

    state, meta = load_funduslab_checkpoint(path)
    return model_from_state(state, meta, num_outputs, where=str(path))


def model_from_state(state: dict, meta: dict, num_outputs: int | None = None,
                     where: str = "checkpoint") -> FundusModel:
    """Rebuild a :class:`FundusModel` from a state dict and the metadata
    :func:`checkpoint_metadata` wrote (the one place that knows how; ensembles bundle members
    the same way).

    Raises:
        ValueError: the outputs differ from ``num_outputs`` or the state does not fit the
            architecture the metadata names (``where`` names the source in the message).
    """
    labels = meta.get("label_names") or []
    saved_outputs = int(meta.get("num_outputs") or len(labels))  # grading: K, 1 or K-1 per label
    if num_outputs is not None and saved_outputs and saved_outputs != num_outputs:
        raise ValueError(f"{where} predicts {saved_outputs} outputs for labels {labels}, "
                         f"the data needs {num_outputs}")
    try:
        if meta.get("course_architecture"):  # trained on top of a course (torchvision) checkpoint
            from funduslab.models.checkpoints import build_course_backbone

            backbone = build_course_backbone(meta["course_architecture"],
                                             img_size=meta.get("image_size"))
        else:
            backbone = create_backbone(meta["backbone"], "none", img_size=meta.get("image_size"))
        if meta.get("se_stages"):
            insert_se(backbone, list(meta["se_stages"]), float(meta.get("se_rd_ratio", 1 / 16)))
        model = _assemble(backbone, meta.get("head", "linear"), saved_outputs or num_outputs,
                          0.0, meta.get("head_options") or {}, str(meta.get("dual") or "none"))
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (KeyError, RuntimeError, TypeError) as err:
        raise ValueError(f"{where} does not fit its metadata: {err}") from None
    if missing or unexpected:
        raise ValueError(f"{where} does not fit backbone {meta.get('backbone')!r}: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    return model


def checkpoint_metadata(model: FundusModel) -> dict[str, object]:
    """What :func:`model_from_checkpoint` needs to rebuild ``model``'s architecture."""
    info = backbone_info(model.backbone)
    course = info.weights.startswith("course")
    return {"backbone": info.name, "course_architecture": info.name if course else None,
            "dual": dual_mode(model), **inserted_se(model.backbone)}


def _assemble(backbone: nn.Module, head_name: str, num_outputs: int, dropout: float,
              head_options: dict, dual: str) -> FundusModel:
    """Backbone + a fresh head (after a fusion of two views when ``dual`` is not ``none``)."""
    info = backbone_info(backbone)
    fusion = None if dual == "none" else build_fusion(dual, info.num_features)
    width = info.num_features if fusion is None else fusion.out_features
    head = build_head(head_name, width, num_outputs, dropout,
                      **_head_options(head_name, info, head_options))
    if fusion is None:
        return FundusModel(backbone, head, info.mean, info.std)
    return DualFundusModel(backbone, head, fusion, info.mean, info.std, head_name=head_name)


def _head_options(name: str, info: BackboneInfo, options: dict) -> dict:
    """The head's options plus, for feature-map heads, the backbone's feature layout."""
    auto = feature_map_options(HEADS.get(name), info.family, info.num_prefix_tokens)
    return {**auto, **options}


def early_stage_parameters(model: FundusModel, n: int) -> list[nn.Parameter]:
    """Parameters of the backbone's stem and first ``n`` stages (frozen by ``train.freeze_stages``)."""
    groups = stage_parameter_groups(model.backbone)
    stages = [g for g in groups if g[0].startswith("stage")]
    if not 0 <= n < len(stages):
        raise ValueError(f"freeze_stages must be in 0..{len(stages) - 1} for this backbone "
                         f"({len(stages)} stages), got {n}")
    keep = [g for g in groups if g[0] == "stem"] + stages[:n]
    return [p for _, params in keep for p in params]


def last_stage_parameters(model: FundusModel, n: int) -> list[nn.Parameter]:
    """Parameters of the backbone's last ``n`` stages plus its final layers (partial tuning)."""
    groups = stage_parameter_groups(model.backbone)
    stages = [g for g in groups if g[0].startswith("stage")]
    if not 1 <= n <= len(stages):
        raise ValueError(f"partial_stages must be in 1..{len(stages)} for this backbone, got {n}")
    keep = stages[-n:] + [g for g in groups if g[0] == "final"]
    return [p for _, params in keep for p in params]

