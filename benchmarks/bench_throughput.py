"""Training throughput: funduslab's engine vs a plain PyTorch loop (the course template's way).

Both train the same model (ImageNet EfficientNet-Lite0, 3 outputs) at the same size and batch on
the same images, side by side in one process:

* plain  — ``Dataset`` that opens each JPEG with PIL every epoch, torchvision ``ToTensor`` +
  ``Normalize`` + random flip, fp32, a hand-written loop;
* engine — funduslab: images decoded once into the uint8 cache, Lightning with bf16 autocast
  (where the CPU has native bf16) and channels_last if faster, the same flip.

Each side runs one warm-up epoch, then ``--epochs`` timed epochs. Target (issue 3): engine
images/s >= 2 x plain. Exits 1 on a miss.

    python benchmarks/bench_throughput.py --n 192 --epochs 2
    python benchmarks/bench_throughput.py --n 800 --epochs 2 --workers 8   # on a GPU (auto)
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

from _common import course_root, verdict
from funduslab.config import ModelConfig
from funduslab.data.cache import cached_images
from funduslab.losses import build_loss
from funduslab.models.factory import build_model
from funduslab.preprocess import build_pipeline
from funduslab.training.data import ArrayDataset, build_augmentation
from funduslab.training.fit import resolve_accelerator, resolve_precision
from funduslab.training.module import FitOptions, FundusTask


class PILDataset(Dataset):
    """The template's dataset: decode with PIL on every access."""

    def __init__(self, paths: list[Path], labels: np.ndarray) -> None:
        self.paths, self.labels = paths, labels
        self.tf = transforms.Compose([
            transforms.Resize((256, 256)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = Image.open(self.paths[i]).convert("RGB")
        return self.tf(img), torch.as_tensor(self.labels[i], dtype=torch.float32)


def plain_loop(paths, labels, batch, epochs, device: str, workers: int) -> float:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"), 3).backbone
    head = torch.nn.Linear(model.num_features, 3)
    net = torch.nn.Sequential(model, head).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(PILDataset(paths, labels), batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    seen, elapsed = 0, 0.0
    for epoch in range(epochs + 1):
        t0 = time.perf_counter()
        n = 0
        net.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            n += len(x)
        if device == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:  # epoch 0 is warm-up
            seen += n
            elapsed += time.perf_counter() - t0
    return seen / elapsed


class _EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[tuple[float, int]] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self._t0, self._n = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._n += len(batch[0])

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append((time.perf_counter() - self._t0, self._n))


def engine_loop(paths, labels, batch, epochs, cache_dir: Path, channels_last: bool,
                accelerator: str, workers: int) -> float:
    L.seed_everything(0, verbose=False)
    images = cached_images(paths, build_pipeline("none", 256), 256, cache_dir)
    model = build_model(ModelConfig(backbone="tf_efficientnet_lite0", weights="imagenet"), 3)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    task = FundusTask(model, build_loss("bce"), ["D", "G", "A"],
                      FitOptions(lr=1e-4, backbone_lr=1e-4, epochs=epochs + 1,
                                 channels_last=channels_last, warmup_epochs=0),
                      head_params=list(model.head.parameters()))
    loader = DataLoader(ArrayDataset(images, labels, build_augmentation("light", 256)),
                        batch_size=batch, shuffle=True, drop_last=True,
                        num_workers=workers, persistent_workers=workers > 0)
    timer = _EpochTimer()
    trainer = L.Trainer(accelerator=accelerator, precision=resolve_precision("auto", accelerator),
                        max_epochs=epochs + 1, callbacks=[timer], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, loader)
    timed = timer.times[1:]
    return sum(n for _, n in timed) / sum(t for t, _ in timed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--n", type=int, default=192, help="training images used")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up")
    ap.add_argument("--cache", default="runs/.cache")
    ap.add_argument("--accelerator", default="auto", help="auto | cpu | gpu (both loops use it)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for both loops")
    ap.add_argument("--target", type=float, default=2.0)
    args = ap.parse_args()
    accel = resolve_accelerator(args.accelerator)
    device = "cuda" if accel == "gpu" else "cpu"
    root = course_root(args.data)
    frame = pd.read_csv(root / "train.csv").head(args.n)
    paths = [root / "images" / "train" / i for i in frame["id"]]
    labels = frame[["D", "G", "A"]].to_numpy(np.float32)
    where = (torch.cuda.get_device_name() if device == "cuda"
             else f"{torch.get_num_threads()} threads")
    print(f"torch {torch.__version__}, {where}, precision {resolve_precision('auto', accel)}, "
          f"{args.n} images, batch {args.batch}, {args.workers} workers")
    plain = plain_loop(paths, labels, args.batch, args.epochs, device, args.workers)
    print(f"plain PyTorch loop (PIL decode each epoch, fp32): {plain:.2f} images/s", flush=True)
    results = {}
    for cl in (False, True):
        results[cl] = engine_loop(paths, labels, args.batch, args.epochs, Path(args.cache), cl,
                                  accel, args.workers)
        print(f"funduslab engine (cache, {resolve_precision('auto', accel)}, channels_last={cl}): "
              f"{results[cl]:.2f} images/s", flush=True)
    best = max(results.values())
    ratio = best / plain
    print(f"ratio engine/plain: {ratio:.2f}x")
    return verdict(ratio >= args.target, f"throughput ratio {ratio:.2f} vs target {args.target}")


if __name__ == "__main__":
    sys.exit(main())
