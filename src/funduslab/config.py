"""Run configuration: YAML files validated by pydantic models; every CLI flag maps to one field.

A :class:`RunConfig` fully describes one run (data, model, training, outputs). It is written,
resolved, into every run folder as ``config.yaml`` so the run can be repeated exactly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

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
    "ModelConfig",
    "OutputConfig",
    "RunConfig",
    "TrainConfig",
    "load_config",
    "save_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
