"""Run configuration: YAML files validated by pydantic models; every CLI flag maps to one field.

A :class:`RunConfig` fully describes one run (data, model, training, outputs). It is written,
resolved, into every run folder as ``config.yaml`` so the run can be repeated exactly.

:func:`validate_names` checks every field that names a registered component (adapter, backbone,
loss, …) against its registry before any data is decoded or model built; :func:`field_choices`
lists a field's valid values (for ``--help``).
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = [
    "DataConfig",
    "ExtraSource",
    "ModelConfig",
    "OutputConfig",
    "RunConfig",
    "TrainConfig",
    "field_choices",
    "load_config",
    "save_config",
    "validate_names",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ExtraSource(_Strict):
    """Another labelled dataset whose rows join the train split (``data.extra_sources``).

    Only where its images are and which of its rows join: they are decoded with the run's own
    ``data.preprocess`` and ``data.image_size``; see :mod:`funduslab.data.join`.
    """

    adapter: str = Field(min_length=1, description="dataset adapter of the source (e.g. odir5k)")
    root: Path = Field(description="dataset folder of the source")
    options: dict[str, Any] = Field(default_factory=dict, description="adapter keyword options "
                                    "(odir5k: labels: [D, G, A] picks the labels it provides)")
    splits: list[str] | None = Field(
        None, min_length=1, description="the source's splits whose labelled rows join (default: "
        "all; none of its rows is used for selection or reporting)")


class DataConfig(_Strict):
    """Where the images are and how they become tensors."""

    adapter: str = "odir_course"
    root: Path = Path("data")
    options: dict[str, Any] = Field(default_factory=dict, description="adapter keyword options")
    image_size: int = Field(256, ge=16, le=2048, description="training resolution (px, square)")
    preprocess: str = Field("none", description="named pipeline or comma list of steps")
    cache_dir: Path | None = Field(None, description="decoded-image cache (default: <out>/.cache)")
    train_split: str = "train"
    val_split: str = "val"
    num_workers: int = Field(0, ge=0)
    augment: Literal["none", "light", "fundus"] = "fundus"
    extra_train: Path | None = Field(
        None, description="generated-image folder (funduslab generate) added to the train split only"
    )
    extra_train_ratio: float = Field(1.0, ge=0, description="generated : real images in train")
    extra_sources: list[ExtraSource] = Field(
        default_factory=list,
        description="other labelled datasets appended to the train split only (never val/test), "
                    "labels matched by name; a label a source lacks is missing (NaN) and masked "
                    "out of the loss (funduslab.data.join)",
    )
    folds: int = Field(0, ge=0, description="k-fold cross-validation over train+val, grouped by "
                       "patient (0: the dataset's own splits); see funduslab.data.folds")
    fold: int = Field(0, ge=0, description="the fold that is val when folds > 0")
    fold_seed: int = Field(0, description="seed of the fold assignment (not of training)")

    @model_validator(mode="after")
    def _fold_in_range(self) -> DataConfig:
        if self.folds == 1 or (self.folds and self.fold >= self.folds):
            raise ValueError(f"data.folds={self.folds}, data.fold={self.fold}: folds must be 0 "
                             "(off) or ≥ 2, and fold in 0 … folds−1")
        return self


class ModelConfig(_Strict):
    """Backbone, its starting weights and the head on top."""

    backbone: str = "tf_efficientnet_lite0"
    weights: str = Field("imagenet", description="imagenet | none | path to a state dict / course ckpt")
    head: str = "linear"
    head_options: dict[str, Any] = Field(default_factory=dict)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attention_stages: list[int] = Field(
        default_factory=list,
        description="CNN feature levels (1 = shallowest, -1 = deepest) that get an "
                    "identity-initialised SE block (funduslab.models.attention.insert_se)",
    )
    attention_rd_ratio: float = Field(1 / 16, gt=0.0, le=1.0, description="SE reduction ratio")
    dual: Literal["none", "concat", "mean", "attention"] = Field(
        "none",
        description="dual-image mode: the two images of one pair (the adapter's `pair` column, "
                    "e.g. DeepDRiD's two shots of an eye) pass one shared backbone and their "
                    "features are fused this way before the head; none = one image per sample",
    )


class TrainConfig(_Strict):
    """How the weights are fitted."""

    setup: Literal["none", "frozen", "full", "partial", "two-stage"] = "full"
    epochs: int = Field(12, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="head learning rate")
    backbone_lr: float = Field(3e-4, ge=0, description="backbone learning rate (full/partial)")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    partial_stages: int = Field(2, ge=1, description="trainable last stages for setup=partial")
    layer_decay: float = Field(
        1.0, gt=0.0, le=1.0,
        description="layer-wise LR decay (ViT/Swin/CNN stages): the block at depth i of L trains "
                    "at backbone_lr · layer_decay^(L − i); 1 = one backbone LR",
    )
    task: Literal["auto", "multilabel", "grading"] = Field(
        "auto", description="auto: the adapter's task kind; grading = one ordered grade 0…K-1"
    )
    formulation: str = Field("ce", description="grading outputs/loss: ce | regression | ordinal")
    loss: str = "bce"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    sampler: str = "random"
    sample_weights: Path | None = Field(
        None, description="CSV (id, weight) over the training split, drawn by sampler=weighted_file"
    )
    monitor: Literal["course_average_f1", "val_loss", "macro_auroc", "quadratic_kappa"] = (
        "course_average_f1"
    )
    early_stopping: int = Field(0, ge=0, description="patience in epochs; 0 disables")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "auto"
    channels_last: bool = True
    devices: int = Field(1, ge=1)
    strategy: str = "auto"
    accelerator: str = "auto"
    seed: int = 0
    tune_thresholds: bool = False
    threshold_objective: Literal["f1_macro", "f1"] = Field(
        "f1_macro",
        description="what a tuned threshold maximises per label: f1_macro = the label's two-class "
                    "macro F1 (the course average F-score's term), f1 = positive-class F1",
    )
    tta: bool = False
    attention_consistency: float = Field(
        0.0, ge=0, description="λ of the flip-consistent CAM loss (explain/guided.py); 0 = off"
    )
    source: DataConfig | None = Field(None, description="source dataset for setup=two-stage")
    source_epochs: int = Field(5, ge=0)


class OutputConfig(_Strict):
    """Where results go and what the saved model is called."""

    out: Path = Path("runs")
    name: str = "run"
    team: str | None = None
    task: str | None = Field(None, description="course task id such as '1-3' → <team>_task1-3.pt")
    resume: bool = True
    figures: bool = True

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError(f"run name must be a plain folder name, got {v!r}")
        return v


class RunConfig(_Strict):
    """Everything one run needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @property
    def run_dir(self) -> Path:
        return self.output.out / self.output.name


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config and apply dotted overrides (``{"train.epochs": 3}``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the YAML is malformed or a field is invalid (the field is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    return config_from_dict(raw, overrides, origin=str(path))


def config_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, origin: str = "config"
) -> RunConfig:
    """Validate a nested dict (plus dotted overrides) into a :class:`RunConfig`.

    A ``provenance`` section (what :func:`save_config` adds to a run folder's ``config.yaml``:
    seed, versions, data fingerprint) is a record of the run, not a setting, and is ignored, so a
    run folder's own ``config.yaml`` re-runs as it is (``funduslab train --config``).
    """
    raw = {k: v for k, v in raw.items() if k != "provenance"}
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ValueError(f"invalid {origin}: {problems}") from None


def save_config(cfg: RunConfig, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config (plus provenance in ``extra``) atomically as YAML."""
    doc = cfg.model_dump(mode="json")
    if extra:
        doc["provenance"] = extra
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))


_UMASK = os.umask(0o022)  # read the process umask once, at import
os.umask(_UMASK)
#: mkstemp creates 0600 files; finished files get the mode a plain ``open`` would give them.
FILE_MODE = 0o666 & ~_UMASK


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- names that refer to registries ------------------------------------------------------------
#: Config fields whose value names a registered component: field → (module, registry, how to list
#: its names, values accepted besides the registered ones). Cheapest import first: the modules are
#: imported only when a name is checked or listed, so reading a config never imports torch.
_NAMED_FIELDS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "data.adapter": ("funduslab.data.adapters", "ADAPTERS", "names", ("auto",)),
    "data.preprocess": ("funduslab.preprocess", "PREPROCESS", "names", ()),
    "train.loss": ("funduslab.losses", "LOSSES", "names", ()),
    "model.backbone": ("funduslab.models.backbones", "BACKBONES", "names", ()),
    "train.sampler": ("funduslab.training.sample_weights", "SAMPLERS", "names", ()),
    "model.head": ("funduslab.models.heads", "HEADS", "names", ()),
    "model.dual": ("funduslab.models.dual", "FUSIONS", "names", ("none",)),
    "train.accelerator": ("lightning.pytorch.accelerators", "AcceleratorRegistry",
                          "available_accelerators", ("auto", "gpu")),
    "train.strategy": ("lightning.pytorch.strategies", "StrategyRegistry", "available_strategies",
                       ("auto",)),
    "train.formulation": ("funduslab.training.grading", "GRADING_FORMULATIONS", "names", ()),
    "train.setup": ("funduslab.training.setups", "SETUPS", "names", ()),
}


def field_choices(field: str) -> list[str] | None:
    """The valid values of a dotted config field, or ``None`` when it takes any value of its type.

    A field that names a registered component lists its registry (importing the registering
    module; ``data.preprocess`` lists the named pipelines, then the steps a comma list may use);
    a ``Literal`` field lists its values.
    """
    if field in _NAMED_FIELDS:
        module, attr, lister, extra = _NAMED_FIELDS[field]
        names = sorted(getattr(getattr(importlib.import_module(module), attr), lister)())
        if field == "data.preprocess":
            extra = tuple(importlib.import_module(module).NAMED_PIPELINES)
        return list(dict.fromkeys([*extra, *names]))
    model: Any = RunConfig
    *parents, leaf = field.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    annotation = model.model_fields[leaf].annotation
    return [str(v) for v in get_args(annotation)] if get_origin(annotation) is Literal else None


def _named_values(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(field, value)`` of every registry name in ``cfg``, in the order of ``_NAMED_FIELDS``."""
    values: list[tuple[str, str]] = []
    for field in _NAMED_FIELDS:
        section, leaf = field.split(".")
        values.append((field, str(getattr(getattr(cfg, section), leaf))))
        if field == "data.adapter" and cfg.train.source is not None:
            values.append(("train.source.adapter", cfg.train.source.adapter))
        if field == "data.adapter":
            values += [("data.extra_sources.adapter", s.adapter) for s in cfg.data.extra_sources]
        if field == "data.preprocess" and cfg.train.source is not None:
            values.append(("train.source.preprocess", cfg.train.source.preprocess))
        if field == "model.head" and isinstance(cfg.model.head_options.get("base"), str):
            values.append(("model.head_options.base", cfg.model.head_options["base"]))
    return values


#: Fields checked against another field's registry.
_SAME_REGISTRY = {"train.source.adapter": "data.adapter",
                  "data.extra_sources.adapter": "data.adapter",
                  "train.source.preprocess": "data.preprocess",
                  "model.head_options.base": "model.head"}


def _name_problem(field: str, value: str, size: int) -> str | None:
    """What is wrong with ``value`` as the registry name ``field`` holds, or ``None``."""
    registry_field = _SAME_REGISTRY.get(field, field)
    if registry_field == "data.preprocess":
        from funduslab.preprocess import NAMED_PIPELINES, build_pipeline

        try:
            build_pipeline(value, size)  # parses and checks every step; decodes nothing
        except ValueError as err:
            return (f"{field}={value!r}: {err} (or one of the named pipelines: "
                    f"{', '.join(NAMED_PIPELINES)})")
        return None
    if registry_field == "data.adapter":
        value = value.replace("-", "_")  # load_table accepts the layout spelling odir-course
    if registry_field == "train.strategy":
        value = value.lower()  # Lightning lower-cases strategy names
    valid = field_choices(registry_field) or []
    if value in valid:
        return None
    module, attr, _, _ = _NAMED_FIELDS[registry_field]
    kind = getattr(getattr(sys.modules[module], attr), "kind", registry_field.split(".")[1])
    return f"{field}={value!r} is not a known {kind}; valid: {', '.join(valid)}"


def validate_names(cfg: RunConfig) -> None:
    """Check every name in ``cfg`` that refers to a registry, before any data or model loads.

    Covers the dataset adapter (also of ``train.source``), the preprocessing pipeline and its
    steps, backbone, head (and ``head_options.base``), dual-image fusion, loss, sampler, setup,
    grading formulation and Lightning's accelerator and strategy. Registries are imported
    cheapest first; once a problem is found, only registries already imported are still
    checked, so a typo is reported within the import time of its own registry.

    Raises:
        ValueError: one line naming each bad field, its value and the valid values.
    """
    problems: list[str] = []
    for field, value in _named_values(cfg):
        module = _NAMED_FIELDS[_SAME_REGISTRY.get(field, field)][0]
        if problems and module not in sys.modules:
            continue  # report what is known without importing more
        problem = _name_problem(field, value, cfg.data.image_size)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError("; ".join(problems))
