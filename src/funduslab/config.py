"""Run configuration: YAML files validated by pydantic models; every CLI flag maps to one field.

A :class:`RunConfig` fully describes one run (data, model, training, outputs). It is written,
resolved, into every run folder as ``config.yaml`` so the run can be repeated exactly.

Names that refer to registries (adapter, backbone, loss, …) are checked by
:mod:`funduslab.training.config_names`.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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

from funduslab.errors import DiskWriteError

__all__ = [
    "DataConfig",
    "ExtraSource",
    "ModelConfig",
    "OutputConfig",
    "RunConfig",
    "DiskWriteError",
    "TrainConfig",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "config_from_dict",
    "load_config",
    "save_config",
]


class _Strict(BaseModel):
    # .inf/.nan in a config is a typo, never a setting (an infinite lr trains to NaN)
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


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


DEFAULT_EPOCHS = 8


class TrainConfig(_Strict):
    """How the weights are fitted."""

    setup: Literal["none", "frozen", "full", "partial", "two-stage"] = "full"
    epochs: int = Field(DEFAULT_EPOCHS, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="head learning rate")
    backbone_lr: float = Field(3e-4, ge=0, description="backbone learning rate (full/partial)")
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    partial_stages: int = Field(2, ge=1, description="trainable last stages for setup=partial")
    recipe: Literal["fast", "plain"] = Field(
        "fast",
        description="fast: a pretrained CNN's full fine-tune keeps its stem and first two "
                    "stages frozen throughout (0.5 % of Lite0's weights) and trains the rest "
                    "(knobs set explicitly win; funduslab.training.recipe); plain: every weight "
                    "trains (knobs at 0)",
    )
    freeze_stages: int = Field(
        0, ge=0,
        description="full/two-stage fine-tuning: the stem and the first N backbone stages stay "
                    "frozen (BatchNorm in eval mode) for freeze_epochs; generic early features, "
                    "and their backward pass at the highest resolution is the costliest part of "
                    "a CPU training step",
    )
    freeze_epochs: int | None = Field(
        None, ge=0, description="epochs the freeze_stages stay frozen, then every weight trains; "
                                "null = the whole run")
    progressive_size: int = Field(
        0, ge=0,
        description="train the first progressive_epochs epochs at this size (px) and the rest at "
                    "data.image_size (progressive resizing); 0 = off. CNN backbones only",
    )
    progressive_epochs: int = Field(0, ge=0, description="epochs trained at progressive_size")
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
        0.0, ge=0, description="λ of the flip-consistent CAM loss (training/guided.py); 0 = off"
    )
    source: DataConfig | None = Field(None, description="source dataset for setup=two-stage")
    source_epochs: int = Field(5, ge=0)

    @model_validator(mode="after")
    def _speed_knobs_consistent(self) -> TrainConfig:
        if self.progressive_size and not 0 < self.progressive_epochs < self.epochs:
            raise ValueError(
                f"train.progressive_size={self.progressive_size} needs progressive_epochs in "
                f"1 … epochs−1 (got {self.progressive_epochs} of {self.epochs}): the last epochs "
                "must train at data.image_size, the size the model is evaluated at")
        if self.freeze_epochs is not None and self.freeze_epochs >= self.epochs:
            self.freeze_epochs = None  # never released: one spelling, so equal recipes compare equal
        if self.freeze_stages and self.freeze_epochs is not None and self.devices > 1:
            raise ValueError("train.freeze_epochs releases frozen stages mid-run, which DDP "
                             f"(devices={self.devices}) cannot do; set freeze_epochs: null")
        return self


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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = {} if raw is None else raw  # an empty file: every default
        size = _expanded_size(raw, {})
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}); "
                         "save it as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    except ValueError as err:  # a scalar PyYAML cannot convert (an integer of 5000 digits)
        raise ValueError(f"{path}: {err}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ValueError(f"{path} nests its YAML too deeply to be a funduslab config") from None
    if size > _MAX_CONFIG_VALUES:
        raise ValueError(f"{path}: its YAML aliases expand to over {_MAX_CONFIG_VALUES:,} values; "
                         "write the values out (an alias 'bomb' would hang saving the config)")
    return config_from_dict(raw, overrides, origin=str(path))


#: A config has hundreds of values; anchors/aliases that expand past this are an alias bomb.
_MAX_CONFIG_VALUES = 100_000


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Values in ``node`` once every YAML alias is written out (shared nodes counted per use)."""
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) not in memo:
        memo[id(node)] = 0  # a self-referencing alias counts as one value, not forever
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        memo[id(node)] = 1 + sum(_expanded_size(c, memo) for c in children)
    return memo[id(node)]


def config_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, origin: str = "config"
) -> RunConfig:
    """Validate a nested dict (plus dotted overrides) into a :class:`RunConfig`.

    A ``provenance`` section (what :func:`save_config` adds to a run folder's ``config.yaml``:
    seed, versions, data fingerprint) is a record of the run, not a setting, and is ignored, so a
    run folder's own ``config.yaml`` re-runs as it is (``funduslab train --config``). Neither
    ``raw`` nor its sections are modified.

    Raises:
        ValueError: ``raw`` is not a mapping, an override goes through a value that is not a
            section, or a field is invalid (each problem names the field).
    """
    if not isinstance(raw, dict):
        raise ValueError(f"invalid {origin}: expected a mapping of sections (data:, model:, "
                         f"train:, output:), got a {type(raw).__name__}")
    raw = copy.deepcopy({k: v for k, v in raw.items() if k != "provenance"})
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = str(dotted).split(".")
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise ValueError(f"invalid {origin}: cannot set {dotted}: {where} is a "
                                 f"{type(node).__name__}, not a section")
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
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never half-written).

    Raises:
        DiskWriteError: the folder cannot take the file (disk full, read-only); names ``path``.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that wants a path (``savefig``, ``to_csv``).

    When the block ends without error the file gets the usual mode and is renamed over
    ``path``; otherwise it is removed and ``path`` keeps its previous content. The temporary
    name is ``.<name>.<random>.tmp``: no reader globbing ``*.csv`` or ``*.pt`` takes it for a
    finished file, so a writer that picks its format by suffix must be told the format. The block
    should only write: any ``OSError`` in it is reported as a failed write of ``path``.

    Raises:
        DiskWriteError: an ``OSError`` while creating, writing or renaming (disk full,
            read-only folder), naming ``path`` rather than the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except DiskWriteError:
        raise
    except OSError as err:
        raise DiskWriteError(path, err) from err
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except DiskWriteError:
        raise
    except OSError as err:
        raise DiskWriteError(path, err) from err
    finally:
        tmp.unlink(missing_ok=True)
