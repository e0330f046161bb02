"""``funduslab explain`` on 8 images with an EfficientNet-Lite0 model (issue 6).

Target: the whole command — Python start-up, imports, loading the run, decoding 8 images,
Grad-CAM for every disease and 8 panel PNGs — takes <= 30 s on 2 CPU cores. Prints the command's
wall time and the in-process time of :func:`funduslab.explain.run_explain.explain_run`; exits 1 on
a miss.

Without ``--run`` it first builds a run-folder-like model, untrained: ``tf_efficientnet_lite0`` with
ImageNet weights (the packaged efficientnet-lite0 tensors, offline) and a seeded random linear head,
its ``config.yaml``, weights file and ``predictions/<split>.csv`` (so ``--most`` works). Building
is not timed.

    python benchmarks/bench_explain.py                 # course data under ../shared/data
    python benchmarks/bench_explain.py --run runs/bench_frozen/tf_efficientnet_lite0_frozen_s0
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import course_root, verdict

_LAUNCH = "import sys\nfrom funduslab.cli import app\napp(sys.argv[1:], prog_name='funduslab')\n"


def build_run(data: Path, out: Path, split: str, image_size: int, seed: int) -> Path:
    """An untrained Lite0 (ImageNet backbone) saved as a run folder, predictions for ``split``."""
    import lightning as L

    from funduslab.config import config_from_dict, save_config
    from funduslab.data.adapters import load_table
    from funduslab.data.cache import ImageCache
    from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint
    from funduslab.models.factory import build_model, checkpoint_metadata
    from funduslab.preprocess import build_pipeline
    from funduslab.reporting.run_folder import weights_filename, write_predictions
    from funduslab.training.predict import predict_probabilities

    cfg = config_from_dict({
        "data": {"root": str(data), "image_size": image_size, "cache_dir": str(out / ".cache")},
        "model": {"backbone": "tf_efficientnet_lite0", "weights": "imagenet"},
        "train": {"setup": "none", "seed": seed},
        "output": {"out": str(out), "name": "lite0_imagenet_untrained"},
    })
    run_dir = cfg.run_dir
    L.seed_everything(seed, verbose=False)
    table = load_table(cfg.data.adapter, data, **cfg.data.options)
    model = build_model(cfg.model, len(table.label_names), image_size).eval()
    rows = table.split(split)
    pipeline = build_pipeline(cfg.data.preprocess, image_size)
    images = ImageCache(cfg.data.cache_dir).get(list(rows["path"]), pipeline, image_size)
    probs = predict_probabilities(model, images, batch_size=32)
    write_predictions(run_dir / "predictions" / f"{split}.csv", rows["id"].astype(str).tolist(),
                      probs, (probs >= 0.5).astype(int), table.label_names)
    save_config(cfg, run_dir / "config.yaml", {"seed": seed, "note": "untrained bench model"})
    save_funduslab_checkpoint(run_dir / weights_filename(None, None), model, {
        **checkpoint_metadata(model), "head": "linear", "head_options": {},
        "label_names": table.label_names, "image_size": image_size,
        "preprocess": cfg.data.preprocess, "thresholds": [0.5] * len(table.label_names),
        "setup": "none",
    })
    return run_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=None, help="existing Lite0 run folder (skips building one)")
    ap.add_argument("--data", default=None,
                    help="course folder (default ../shared/data/odir-course)")
    ap.add_argument("--out", default="runs/bench_explain")
    ap.add_argument("--split", default="offsite_test")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-s", type=float, default=30.0)
    args = ap.parse_args()
    out = Path(args.out)
    if args.run:
        run_dir = Path(args.run)
    else:
        started = time.perf_counter()
        run_dir = build_run(course_root(args.data), out, args.split, args.image_size, args.seed)
        print(f"built {run_dir} in {time.perf_counter() - started:.1f} s (not timed)")
    panels = out / "panels"
    shutil.rmtree(panels, ignore_errors=True)  # count only this run's panels
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-c", _LAUNCH, "explain", str(run_dir), "--split", args.split,
               "--n", str(args.n), "--cam-method", args.method, "--most", "--out", str(panels)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        return verdict(False, f"funduslab explain exited with {done.returncode}")
    written = [p for p in panels.glob("*.png") if not p.name.startswith(".")]

    import torch

    from funduslab.explain.run_explain import explain_run

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    explain_run(run_dir, split=args.split, n=args.n, method=args.method, selection="most",
                out=out / "panels_in_process")
    in_process = time.perf_counter() - started
    print(f"cores: {os.cpu_count()}, torch threads: {args.threads}, load average: "
          f"{os.getloadavg()[0]:.2f}")
    print(f"funduslab explain ({args.n} images, {args.method}, {args.image_size} px): "
          f"{wall:.1f} s wall for the command; {in_process:.1f} s in-process "
          f"(without Python start-up and imports); {len(written)} panels in {panels}")
    ok = wall <= args.target_s and len(written) == args.n
    return verdict(ok, f"{wall:.1f} s vs target {args.target_s:.0f} s, "
                       f"{len(written)}/{args.n} panels")


if __name__ == "__main__":
    sys.exit(main())
