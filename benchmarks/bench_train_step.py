"""Training-step speed of ImageNet EfficientNet-Lite0 under each CPU lever, model only.

One process per lever (so kernels and caches do not carry over): a batch of 32 random 256-px
images, AdamW, BCE, 3 outputs; two warm-up steps, then the mean of ``--steps`` timed steps.
Levers: ``bf16`` (autocast bf16 + channels_last: what precision auto picks on a CPU with native
bf16), ``fp32`` (channels_last), ``bf16-contiguous`` (autocast without channels_last) and
``bf16-compile`` (``torch.compile``, inductor; its compile time is printed separately). No data
loading or augmentation: this isolates the model step from the engine's input path. No target:
it prints a table to choose levers by.

    python benchmarks/bench_train_step.py
    python benchmarks/bench_train_step.py --levers bf16,fp32 --steps 10
    python benchmarks/bench_train_step.py --levers bf16,fp32 --backbone resnet18
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

LEVERS = ("bf16", "fp32", "bf16-contiguous", "bf16-compile")


def one(lever: str, steps: int, batch: int, size: int, backbone: str) -> None:
    import torch

    from funduslab.config import ModelConfig
    from funduslab.models.factory import build_model

    torch.manual_seed(0)
    weights = "imagenet" if backbone.startswith("tf_efficientnet_lite") else "none"  # offline
    model = build_model(ModelConfig(backbone=backbone, weights=weights), 3, size)
    model.train()
    x = torch.rand(batch, 3, size, size)
    if lever != "bf16-contiguous":
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    y = (torch.rand(batch, 3) > 0.5).float()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    forward = torch.compile(model) if lever == "bf16-compile" else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=lever != "fp32"):
            out = forward(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    per = (time.perf_counter() - t0) / steps
    print(f"{lever:<16} {per:6.2f} s/step  {batch / per:6.1f} images/s  (first step {first:.1f} s)",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levers", default=",".join(LEVERS))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--backbone", default="tf_efficientnet_lite0",
                    help="any registered backbone; only Lite0-2 start from ImageNet (offline)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one, args.steps, args.batch, args.size, args.backbone)
        return 0
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads, batch {args.batch}, {args.size} px", flush=True)
    for lever in args.levers.split(","):
        if lever not in LEVERS:
            print(f"unknown lever {lever!r}; valid: {', '.join(LEVERS)}", file=sys.stderr)
            return 2
        subprocess.run([sys.executable, __file__, "--one", lever, "--steps", str(args.steps),
                        "--batch", str(args.batch), "--size", str(args.size),
                        "--backbone", args.backbone], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
