"""Prediction speed: eager PyTorch vs ONNX Runtime on the 200 offsite course images, on 2 cores.

Target (issue 29): ONNX Runtime predicts >= 2x the images/s of eager PyTorch at batch 1 and 16,
with identical thresholded labels and max |Δp| <= 1e-3 against eager float32. Eager runs the way
``funduslab predict`` does (``predict_logits``: the run's flip TTA, and bf16 autocast when the
run predicted in bf16 — then float32 eager is timed too and the target holds against both).
Images are decoded once beforehand; the decode rate is printed separately. Without ``--run`` the
model is ImageNet EfficientNet-Lite0 with a random 3-output head (seed 0), so no training is
needed. Exits 1 on a miss.

    python benchmarks/bench_predict.py [--run runs/<name>] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import course_root, verdict
from funduslab.data.adapters import load_table
from funduslab.data.cache import decode_preprocessed
from funduslab.inference.onnx_model import export_onnx, load_onnx_model, output_probabilities
from funduslab.preprocess import build_pipeline
from funduslab.training.predict import predict_logits
from funduslab.inference.saved_model import SavedModel, load_saved_model


def _model(args: argparse.Namespace, labels: list[str]) -> SavedModel:
    """The run's saved model, or ImageNet Lite0 + a seeded random head."""
    if args.run:
        return load_saved_model(args.run)
    from funduslab.config import ModelConfig
    from funduslab.models.factory import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"),
                        len(labels), image_size=args.image_size).eval()
    return SavedModel(model, Path("tf_efficientnet_lite0 (ImageNet) + random head"), labels,
                      np.full(len(labels), 0.5), args.image_size, "none",
                      num_outputs=len(labels))


def _rate(model: torch.nn.Module, images: np.ndarray, batch: int, saved: SavedModel,
          bf16: bool) -> tuple[float, np.ndarray]:
    """Images/s of ``predict_logits`` over ``images``, and its outputs; a warm-up of two
    batches (8 images at least) first, so kernel set-up is not timed."""
    kwargs = {"batch_size": batch, "tta": saved.tta, "bf16": bf16}
    predict_logits(model, images[:max(2 * batch, 8)], **kwargs)  # oneDNN/ORT set up per shape
    start = time.perf_counter()
    out = predict_logits(model, images, **kwargs)
    return len(images) / (time.perf_counter() - start), out


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--run", default=None, help="run folder (default: Lite0 + random head)")
    ap.add_argument("--image-size", type=int, default=256, help="without --run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--limit", type=int, default=None, help="first N offsite images")
    ap.add_argument("--target", type=float, default=2.0)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    args = ap.parse_args()
    data = course_root(args.data)
    cores = sorted(os.sched_getaffinity(0))[:args.threads]
    os.sched_setaffinity(0, cores)
    torch.set_num_threads(args.threads)

    import onnxruntime

    table = load_table("odir_course", data)
    frame = table.frame[table.frame["split"] == "offsite_test"]
    paths = frame["path"].tolist()[:args.limit]
    try:
        saved = _model(args, list(table.label_names))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{_cpu_name()}; torch {torch.__version__} CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; onnxruntime {onnxruntime.__version__}; "
          f"{args.threads} threads pinned to cores {cores}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"model: {saved.source} ({saved.image_size} px, preprocess {saved.preprocess}, "
          f"tta {saved.tta}, run bf16 {saved.bf16})", flush=True)

    pipeline = build_pipeline(saved.preprocess, saved.image_size)
    start = time.perf_counter()
    images = np.stack([decode_preprocessed(p, pipeline, saved.image_size) for p in paths])
    print(f"decoded {len(images)} offsite images: "
          f"{len(images) / (time.perf_counter() - start):.1f} images/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        try:
            check = export_onnx(saved, Path(tmp) / "model.onnx", tolerance=args.tolerance)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"exported and checked in {time.perf_counter() - start:.1f} s (random images: "
              f"max |Δp| {check.max_abs_diff:.1e})", flush=True)
        onnx_saved = load_onnx_model(Path(tmp) / "model.onnx", threads=args.threads)

        modes = {"eager fp32": False, **({"eager bf16 (run)": True} if saved.bf16 else {})}
        outputs: dict[str, np.ndarray] = {}
        speedups: list[float] = []
        for batch in [int(b) for b in args.batches.split(",")]:
            rates = {}
            for name, bf16 in modes.items():
                rates[name], outputs[name] = _rate(saved.model, images, batch, saved, bf16)
            rates["onnxruntime"], outputs[f"onnx b{batch}"] = _rate(
                onnx_saved.model, images, batch, onnx_saved, False)
            for name, rate in rates.items():
                ratio = rates["onnxruntime"] / rates[name]
                tail = "" if name == "onnxruntime" else f"  (onnxruntime {ratio:.2f}x)"
                print(f"batch {batch:>2}  {name:<17} {rate:7.2f} images/s{tail}", flush=True)
                if name != "onnxruntime":
                    speedups.append(ratio)

    p_ref, y_ref = output_probabilities(saved, outputs["eager fp32"])
    diffs, same = [], True
    for name in [k for k in outputs if k.startswith("onnx")]:
        p, y = output_probabilities(saved, outputs[name])
        diffs.append(float(np.abs(p - p_ref).max()))
        same &= bool(np.array_equal(y, y_ref))
    print(f"onnxruntime vs eager fp32 on {len(images)} images: max |Δp| {max(diffs):.2e}, "
          f"thresholded labels {'identical' if same else 'DIFFER'}")
    if saved.bf16:
        p16, y16 = output_probabilities(saved, outputs["eager bf16 (run)"])
        p, y = output_probabilities(saved, outputs[next(k for k in outputs if k.startswith("o"))])
        print(f"(for information) onnxruntime fp32 vs the run's bf16 eager: max |Δp| "
              f"{np.abs(p - p16).max():.2e}, labels differ on "
              f"{int((y != y16).reshape(len(y), -1).any(1).sum())} of {len(y)} images")
    ok = min(speedups) >= args.target and max(diffs) <= args.tolerance and same
    return verdict(ok, f"slowest speed-up {min(speedups):.2f}x vs target {args.target}x; max "
                       f"|Δp| {max(diffs):.1e} vs {args.tolerance}; labels "
                       f"{'identical' if same else 'differ'}")


if __name__ == "__main__":
    sys.exit(main())
