"""ONNX export of a saved funduslab model, and an ONNX Runtime model that predicts like it.

Why: on a CPU, eager PyTorch pays per-operator dispatch and runs convolution, batch norm and
activation as separate passes; ONNX Runtime folds and fuses them once, when the session is
built, and predicts several times faster (``benchmarks/bench_predict.py`` measures it).

The graph is the model as trained: float32 ``(B, 3, S, S)`` RGB in [0, 1] → outputs ``(B, K)``
(normalisation stays inside), with a dynamic batch axis. What is needed to feed it and read its
outputs — image size, preprocessing pipeline, mean/std, label names, thresholds, task, grading
formulation, TTA — goes into the file's ``metadata_props``, so the ``.onnx`` file alone predicts
as the run folder does. One difference is kept on purpose: ONNX runs in float32 even where the
run predicted under bf16 autocast (export reports how far apart the two are).

onnx and onnxruntime are imported only here, inside the functions that need them.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from funduslab.config import atomic_write_bytes
from funduslab.inference.saved_model import SavedModel

__all__ = ["DEFAULT_OPSET", "ONNX_FORMAT", "TOLERANCE", "OnnxCheck", "OnnxMismatchError",
           "OnnxModel", "check_onnx", "export_onnx", "load_onnx_model", "onnx_bytes",
           "onnx_saved_model", "output_probabilities"]

log = logging.getLogger(__name__)

ONNX_FORMAT = "funduslab-onnx/1"
DEFAULT_OPSET = 17
TOLERANCE = 1e-3  # max |Δp| between ONNX Runtime and eager float32 accepted on export
INPUT_NAME, OUTPUT_NAME = "images", "outputs"
_REQUIRED = ("label_names", "image_size", "preprocess", "task")


class OnnxMismatchError(ValueError):
    """ONNX Runtime's outputs differ from eager PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class OnnxCheck:
    """How closely ONNX Runtime reproduces eager PyTorch on the check images.

    Attributes:
        max_abs_diff: max |Δp| against eager float32 (probabilities; regression: the score).
        labels_agree: Thresholded labels (or grades) are identical.
        n_images: Images compared.
        bf16_max_abs_diff: max |Δp| against the run's bf16 autocast eager, when it used bf16.
    """

    max_abs_diff: float
    labels_agree: bool
    n_images: int
    bf16_max_abs_diff: float | None = None


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call that
    :func:`funduslab.training.predict.predict_logits` makes, so prediction code needs no branch.

    Args:
        model_bytes: A serialised ONNX model (or pass ``path``).
        path: An ``.onnx`` file.
        threads: ORT intra-op threads; default ``torch.get_num_threads()`` so both backends
            obey the same setting.
        device: ``cuda`` uses ORT's CUDA provider when it is installed, else the CPU.

    Raises:
        ValueError: the bytes/file are not a model ONNX Runtime can load (the source is named).
    """

    def __init__(self, model_bytes: bytes | None = None, *, path: Path | None = None,
                 threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        super().__init__()
        where = str(path) if path is not None else "the exported model"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and \
                "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            source = model_bytes if model_bytes is not None else str(path)
            self.session = ort.InferenceSession(source, options, providers=providers)
        except Exception as err:  # ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
            raise ValueError(f"{where} is not a model ONNX Runtime can load: "
                             f"{str(err).splitlines()[0]}") from err
        self.input_name = self.session.get_inputs()[0].name

    @property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` as ONNX Runtime reads them."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(B, 3, S, S)`` → outputs ``(B, K)`` float32 on ``x``'s device."""
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)


def _exportable(saved: SavedModel) -> nn.Module:
    """The plain model to trace, or a ``ValueError`` saying why this one is not exported."""
    from funduslab.models.classifier import FundusModel
    from funduslab.models.dual import DualFundusModel

    if saved.dual or isinstance(saved.model, DualFundusModel):
        raise ValueError(f"{saved.source} fuses each image with a partner image (fellow eye); "
                         "ONNX export covers single-image models only")
    if not isinstance(saved.model, FundusModel):
        raise ValueError(f"{saved.source} is an ensemble (or cross-validation folds); ONNX "
                         "export covers single-image models: export each member run instead")
    return saved.model


def _metadata(saved: SavedModel, model: nn.Module, opset: int) -> dict[str, str]:
    """What a predictor needs besides the graph, as ``metadata_props`` strings (lists as JSON)."""
    from funduslab import __version__

    meta = {
        "funduslab_format": ONNX_FORMAT,
        "funduslab_version": __version__,
        "torch_version": torch.__version__,
        "opset": str(opset),
        "source": str(saved.source),
        "input": f"{INPUT_NAME}: float32 (batch, 3, {saved.image_size}, {saved.image_size}) RGB "
                 "in [0, 1], decoded with the preprocessing pipeline below; the model "
                 "normalises with mean/std inside",
        "label_names": json.dumps(list(saved.label_names)),
        "thresholds": json.dumps([float(t) for t in saved.thresholds]),
        "image_size": str(int(saved.image_size)),
        "preprocess": saved.preprocess,
        "task": saved.task,
        "formulation": saved.formulation or "",
        "num_outputs": str(int(saved.num_outputs)),
        "tta": json.dumps(bool(saved.tta)),
        "run_bf16": json.dumps(bool(saved.bf16)),
    }
    for name in ("mean", "std"):
        value = getattr(model, name, None)
        if isinstance(value, torch.Tensor):
            meta[name] = json.dumps([round(float(v), 8) for v in value.flatten()])
    return meta


def onnx_bytes(saved: SavedModel, opset: int = DEFAULT_OPSET) -> bytes:
    """The serialised ONNX model of ``saved`` (float32, dynamic batch, funduslab metadata).

    Raises:
        ValueError: a dual or ensemble model, an opset below 17, or a model the exporter cannot
            trace (its first message line is kept).
    """
    import onnx

    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be at least {DEFAULT_OPSET}, got {opset}")
    model = _exportable(saved)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model = model.to("cpu").eval()
    size = int(saved.image_size)
    example = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        # nn.MultiheadAttention's fused inference kernel has no ONNX form; its plain path has.
        torch.backends.mha.set_fastpath_enabled(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
    except (RuntimeError, TypeError, torch.onnx.errors.OnnxExporterError) as err:
        raise ValueError(f"{saved.source} could not be exported to ONNX: "
                         f"{str(err).splitlines()[0]}") from err
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.to(device)
    proto = onnx.load_from_string(buffer.getvalue())
    meta = _metadata(saved, model, opset)
    proto.producer_name, proto.producer_version = "funduslab", meta["funduslab_version"]
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def output_probabilities(saved: SavedModel, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p, labels)`` of raw outputs as predict writes them: sigmoid and thresholded labels
    (multi-label), or class probabilities (the score for regression) and grades (grading)."""
    from funduslab.training.task_kinds import task_kind

    return task_kind(saved.task).decode(saved, outputs)


def check_onnx(saved: SavedModel, onnx_model: OnnxModel, images: np.ndarray | None = None,
               batch_size: int = 4) -> OnnxCheck:
    """Compare ``onnx_model`` with eager ``saved`` on ``images`` (``(N, S, S, 3)`` uint8;
    default 5 seeded random images, so batches of 4 and 1 test the dynamic batch axis)."""
    from funduslab.training.predict import predict_logits

    if images is None:
        size = int(saved.image_size)
        images = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    kwargs = {"batch_size": batch_size, "tta": saved.tta}
    eager = output_probabilities(saved, predict_logits(saved.model, images, **kwargs))
    try:
        onnx = output_probabilities(saved, predict_logits(onnx_model, images, **kwargs))
    except Exception as err:  # ORT's own types; a size traced as a constant lands here
        raise OnnxMismatchError(
            f"{saved.source}: the exported graph fails on ONNX Runtime for batches of "
            f"{batch_size} and {len(images) % batch_size or batch_size} images (a batch size "
            f"traced as a constant?): {str(err).splitlines()[0][:300]}") from err
    bf16 = None
    if saved.bf16:
        ref = output_probabilities(saved, predict_logits(saved.model, images, bf16=True,
                                                         **kwargs))[0]
        bf16 = float(np.abs(ref - onnx[0]).max())
    return OnnxCheck(max_abs_diff=float(np.abs(eager[0] - onnx[0]).max()),
                     labels_agree=bool(np.array_equal(eager[1], onnx[1])),
                     n_images=len(images), bf16_max_abs_diff=bf16)


def _checked(saved: SavedModel, data: bytes, tolerance: float, images: np.ndarray | None,
             threads: int | None = None) -> tuple[OnnxModel, OnnxCheck]:
    """A session on ``data`` and its check; :class:`OnnxMismatchError` beyond ``tolerance``."""
    onnx_model = OnnxModel(data, threads=threads)
    check = check_onnx(saved, onnx_model, images)
    log.info("ONNX Runtime vs eager float32 on %d images: max |Δp| %.2e, labels %s",
             check.n_images, check.max_abs_diff, "agree" if check.labels_agree else "differ")
    if not check.max_abs_diff <= tolerance:
        raise OnnxMismatchError(f"{saved.source}: ONNX Runtime differs from eager PyTorch by "
                                f"max |Δp| {check.max_abs_diff:.2e} > {tolerance:g}; not exported")
    return onnx_model, check


def export_onnx(saved: SavedModel, path: Path | str, *, opset: int = DEFAULT_OPSET,
                tolerance: float = TOLERANCE, images: np.ndarray | None = None) -> OnnxCheck:
    """Write ``saved`` to ``path`` as ONNX, after checking ONNX Runtime against eager PyTorch.

    Raises:
        ValueError: see :func:`onnx_bytes`; :class:`OnnxMismatchError` when max |Δp| exceeds
            ``tolerance`` (nothing is written then).
    """
    data = onnx_bytes(saved, opset)
    _, check = _checked(saved, data, tolerance, images)
    atomic_write_bytes(Path(path), data)
    return check


def _from_metadata(meta: dict[str, str], model: OnnxModel, source: Path) -> SavedModel:
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{source} has no funduslab metadata ({', '.join(missing)} missing): "
                         "export it with funduslab export RUN --format onnx")
    try:
        labels = [str(n) for n in json.loads(meta["label_names"])]
        thresholds = np.asarray(json.loads(meta.get("thresholds") or "[]"), dtype=np.float64)
        values: dict[str, Any] = {
            "image_size": int(meta["image_size"]), "num_outputs": int(meta.get("num_outputs")
                                                                       or len(labels)),
            "tta": bool(json.loads(meta.get("tta") or "false"))}
    except (ValueError, TypeError) as err:
        raise ValueError(f"{source}: unreadable funduslab metadata: {err}") from None
    return SavedModel(model=model, source=source, label_names=labels, thresholds=thresholds,
                      image_size=values["image_size"], preprocess=meta["preprocess"],
                      task=meta["task"], formulation=meta.get("formulation") or None,
                      num_outputs=values["num_outputs"], bf16=False, tta=values["tta"])


def load_onnx_model(path: Path | str, device: str = "cpu", threads: int | None = None
                    ) -> SavedModel:
    """An exported ``.onnx`` file as a :class:`SavedModel` that predicts with ONNX Runtime.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an ONNX model, or one without funduslab metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}: export one with funduslab export "
                                "RUN --format onnx --out FILE")
    model = OnnxModel(path=path, threads=threads, device=device)
    return _from_metadata(model.metadata, model, path)


def onnx_saved_model(saved: SavedModel, *, threads: int | None = None,
                     tolerance: float = TOLERANCE) -> tuple[SavedModel, OnnxCheck]:
    """``saved`` exported in memory and checked: the same model on ONNX Runtime (float32)."""
    onnx_model, check = _checked(saved, onnx_bytes(saved), tolerance, None, threads)
    return replace(saved, model=onnx_model, bf16=False), check
