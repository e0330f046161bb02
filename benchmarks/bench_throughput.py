"""Training throughput: funduslab's recipe vs the course template's plain loop, lever by lever.

Both sides train ImageNet EfficientNet-Lite0 (3 outputs, batch 32) on the course training images
in one process, one after the other. Rows, each adding one lever to the row above it:

* ``template``      — the course template: a ``Dataset`` that opens each JPEG with PIL every
  epoch, torchvision ``Resize`` + flip + ``ToTensor`` + ``Normalize``, fp32, every weight trains;
* ``engine 0``      — funduslab before the speed work: uint8 image cache, per-image ``fundus``
  augmentation, bf16 autocast where the CPU has native bf16, channels_last;
* ``+ precision``   — precision ``auto`` as it is now: fp32 for depthwise-convolution models;
* ``+ batch aug``   — the ``fundus`` augmentation on whole batches (``BatchFundusAugment``);
* ``+ freeze``      — stem and the first ``train.freeze_stages`` stages frozen;
* ``+ small size``  — 192 px (``train.progressive_size``; not in the default recipe).

``recipe`` is the images/s over a whole default ``funduslab train --setup full`` run of ImageNet
Lite0 (``train.recipe: fast``): each epoch at the rate of the row it matches (small and frozen,
full size and frozen, or full size with every weight training), weighted by time. The FLOP
ceiling is the measured fp32 matmul rate of this CPU divided by the FLOPs of one 256-px image's
forward and backward pass with every weight trainable (counted by ``torch.utils.flop_counter``).

Target: recipe images/s ≥ 3 × template (exit 1 on a miss). Offsite F1 of each lever comes from
full runs, not from here (``docs/results.md``, "Speed levers").

    python benchmarks/bench_throughput.py                     # 800 images, one epoch per row
    python benchmarks/bench_throughput.py --n 192 --rows template,batch_aug,freeze,small
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from _common import cap_isa, course_root, kernels, verdict
from funduslab.config import ModelConfig, TrainConfig, config_from_dict
from funduslab.data.cache import cached_images
from funduslab.losses import build_loss
from funduslab.models.factory import build_model
from funduslab.preprocess import build_pipeline
from funduslab.training.batch_augment import BatchFundusAugment
from funduslab.training.data import ArrayDataset, build_augmentation
from funduslab.training.fit import resolve_precision
from funduslab.training.freezing import EarlyStageFreeze
from funduslab.training.module import FitOptions, FundusTask
from funduslab.training.recipe import resolve_recipe

SIZE = 256
SMALL = 192  # the small-size row when the recipe has no progressive_size
ROWS = ("template", "engine0", "precision", "batch_aug", "freeze", "small")
LABELS = {"template": "template (PIL each epoch, fp32)",
          "engine0": "engine before (cache, bf16 auto)",
          "precision": "+ precision auto (fp32 here)", "batch_aug": "+ batch augmentation",
          "freeze": "+ freeze stem + stages", "small": "+ progressive size"}


class PILDataset(Dataset):
    """The template's dataset: decode with PIL on every access."""

    def __init__(self, paths: list[Path], labels: np.ndarray) -> None:
        self.paths, self.labels = paths, labels
        self.tf = transforms.Compose([
            transforms.Resize((SIZE, SIZE)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = Image.open(self.paths[i]).convert("RGB")
        return self.tf(img), torch.as_tensor(self.labels[i], dtype=torch.float32)


def _rate(stamps: list[float], batch: int, skip: int = 2) -> float:
    """Images/s between the ``skip``-th batch end and the last one (data loading included)."""
    stamps = stamps[skip:]
    return batch * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def template_rate(paths, labels, batch: int) -> float:
    torch.manual_seed(0)
    net = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"), 3)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(PILDataset(paths, labels), batch_size=batch, shuffle=True, drop_last=True)
    net.train()
    stamps = []
    for x, y in loader:
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        stamps.append(time.perf_counter())
    return _rate(stamps, batch)


class _BatchClock(L.Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.stamps.append(time.perf_counter())


def engine_rate(images: np.ndarray, labels: np.ndarray, batch: int, row: str,
                recipe: TrainConfig) -> tuple[float, str]:
    """Images/s of one engine row (levers cumulative up to ``row``) and the precision it ran."""
    level = ROWS.index(row)
    L.seed_everything(0, verbose=False)
    model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"), 3, SIZE)
    freeze = (EarlyStageFreeze(model, recipe.freeze_stages) if level >= ROWS.index("freeze")
              else None)
    model.to(memory_format=torch.channels_last)
    precision = resolve_precision("auto", "cpu", model if level >= 2 else None)
    batched = level >= ROWS.index("batch_aug")
    small = (recipe.progressive_size or SMALL) if level >= ROWS.index("small") else 0
    task = FundusTask(model, build_loss("bce"), ["D", "G", "A"],
                      FitOptions(lr=1e-3, backbone_lr=3e-4, epochs=2, channels_last=True,
                                 warmup_epochs=0, progressive_size=small, progressive_epochs=1,
                                 batch_augment=BatchFundusAugment() if batched else None,
                                 freeze=freeze),
                      head_params=list(model.head.parameters()))
    dataset = ArrayDataset(images, labels,
                           None if batched else build_augmentation("fundus_per_image", SIZE))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    clock = _BatchClock()
    trainer = L.Trainer(accelerator="cpu", precision=precision, max_epochs=1, callbacks=[clock],
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, loader)
    return _rate(clock.stamps, batch), precision


def forward_gflop(model: torch.nn.Module, size: int) -> float:
    """GFLOP of one forward pass (2 per multiply-add of every convolution and linear layer).

    Counted with hooks rather than ``torch.utils.flop_counter``, whose convolution formula
    ignores ``groups`` and so counts Lite0's depthwise convolutions as dense ones.
    """
    total = 0.0

    def hook(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            per_out = module.in_channels // module.groups * kh * kw
            total += 2.0 * output.numel() * per_out
        elif isinstance(module, torch.nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, size, size))
    for h in handles:
        h.remove()
    return total / 1e9


def flop_ceiling() -> tuple[float, float, float]:
    """(GFLOP per image fwd+bwd at 256 px, fp32 matmul GFLOP/s, ceiling images/s).

    Forward + backward is taken as 3 × forward (the backward pass computes gradients with
    respect to both inputs and weights, each about one forward's work).
    """
    model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"), 3, SIZE)
    gflop = 3 * forward_gflop(model, SIZE)
    a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
    torch.mm(a, b)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        torch.mm(a, b)
        reps += 1
    peak = 2 * 2048 ** 3 * reps / (time.perf_counter() - t0) / 1e9
    return gflop, peak, peak / gflop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=800, help="training images (one epoch per row)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rows", default=",".join(ROWS),
                    help=f"rows to measure, of {', '.join(ROWS)} (the recipe's figure needs "
                         "template and the rows of its epochs)")
    ap.add_argument("--cache", default="runs/.cache")
    ap.add_argument("--target", type=float, default=3.0)
    ap.add_argument("--isa", default=None,
                    help="cap the kernels at this ISA (avx2: an AVX2-only VM's code paths)")
    args = ap.parse_args()
    cap_isa(args.isa)
    rows = args.rows.split(",")
    if unknown := [r for r in rows if r not in ROWS]:
        print(f"unknown rows {unknown}; valid: {', '.join(ROWS)}", file=sys.stderr)
        return 2
    root = course_root(args.data)
    frame = pd.read_csv(root / "train.csv").head(args.n)
    paths = [root / "images" / "train" / i for i in frame["id"]]
    labels = frame[["D", "G", "A"]].to_numpy(np.float32)
    recipe = resolve_recipe(config_from_dict({"train": {"setup": "full"}})).train  # the default
    print(f"torch {torch.__version__}, {kernels()}, {torch.get_num_threads()} threads, "
          f"{len(paths)} images, batch {args.batch}, {SIZE} px; default recipe: "
          f"{recipe.epochs} epochs ({recipe.progressive_epochs} of them at "
          f"{recipe.progressive_size} px), stem + {recipe.freeze_stages} stages frozen "
          + ("throughout" if recipe.freeze_epochs is None else
             f"for {recipe.freeze_epochs} epochs"), flush=True)
    gflop, peak, ceiling = flop_ceiling()
    print(f"FLOP ceiling: {gflop:.2f} GFLOP per image (fwd+bwd, all trainable), fp32 matmul "
          f"{peak:.0f} GFLOP/s → {ceiling:.1f} images/s", flush=True)
    images = cached_images(paths, build_pipeline("none", SIZE), SIZE, Path(args.cache))
    rates: dict[str, float] = {}
    for row in rows:
        if row == "template":
            rates[row], precision = template_rate(paths, labels, args.batch), "32"
        else:
            rates[row], precision = engine_rate(images, labels, args.batch, row, recipe)
        print(f"{LABELS[row]:<36} {rates[row]:6.1f} images/s  precision {precision:<10} "
              f"{rates[row] / ceiling:5.1%} of ceiling", flush=True)
    row_of = {(True, True): "small", (False, True): "freeze", (False, False): "batch_aug"}
    frozen = [bool(recipe.freeze_stages)
              and (recipe.freeze_epochs is None or e < recipe.freeze_epochs)
              for e in range(recipe.epochs)]
    epochs = [row_of.get((e < recipe.progressive_epochs, frozen[e])) for e in range(recipe.epochs)]
    if None in epochs or not {"template", *epochs} <= rates.keys():
        print("the recipe needs the template, batch_aug, freeze and small rows; no verdict")
        return 0
    recipe_rate = len(epochs) / sum(1 / rates[r] for r in epochs)  # images/s over the whole run
    ratio = recipe_rate / rates["template"]
    parts = [f"{epochs.count(row)} {what}" for row, what in (
        ("small", f"at {recipe.progressive_size} px frozen"), ("freeze", f"at {SIZE} px frozen"),
        ("batch_aug", f"at {SIZE} px all weights")) if row in epochs]
    print(f"recipe ({recipe.epochs} epochs: {', '.join(parts)}): {recipe_rate:.1f} images/s, "
          f"{recipe_rate / ceiling:.1%} of the FLOP ceiling; {ratio:.2f}x the template")
    return verdict(ratio >= args.target, f"recipe/template {ratio:.2f}x vs target {args.target}x")


if __name__ == "__main__":
    sys.exit(main())
