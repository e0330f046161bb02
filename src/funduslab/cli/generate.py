"""CLI verb ``generate``: fit a conditional VAE, sample images per class, draw a contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.options import Device, torch_device
from funduslab.cli.registries import with_choices

__all__ = ["register"]

Data = Annotated[Path, typer.Option(help="Dataset root (the course folder for odir_course).")]
Out = Annotated[Path, typer.Option(
    help="Output folder: vae.pt, images/, labels.csv, sheet.")]
Adapter = Annotated[str, typer.Option(help="Dataset layout reader.")]
ImageSize = Annotated[int, typer.Option(help="VAE resolution in px: 4·2^k (32, 64, 128, …).")]
Epochs = Annotated[int, typer.Option(help="VAE training epochs.")]
PerClass = Annotated[int, typer.Option(help="Images generated per class.")]
Classes = Annotated[Optional[str], typer.Option(
    help="Classes to sample, e.g. D,G,A,normal,D+A (default: one per label).")]
Preprocess = Annotated[str, typer.Option(help="Preprocessing pipeline before the VAE.")]
BatchSize = Annotated[int, typer.Option(help="Images per step.")]
Lr = Annotated[float, typer.Option(help="Learning rate (AdamW).")]
Beta = Annotated[float, typer.Option(help="Final KL weight β.")]
KlWarmup = Annotated[float, typer.Option(help="KL warm-up in epochs.")]
LatentDim = Annotated[int, typer.Option(help="Size of the latent code.")]
BaseChannels = Annotated[int, typer.Option(
    help="Channels of the first encoder block (doubled per block).")]
Reconstruction = Annotated[str, typer.Option(
    help="Reconstruction loss on [0, 1] pixels: mse or bce.")]
Temperature = Annotated[float, typer.Option(help="Latent prior scale when sampling.")]
Bf16 = Annotated[bool, typer.Option("--bf16/--fp32", help="bf16 autocast while fitting.")]
CacheDir = Annotated[Optional[Path], typer.Option(help="Decoded-image cache.")]
Seed = Annotated[int, typer.Option(help="Seed of fitting and sampling.")]


@friendly
def generate(data: Data, out: Out, adapter: Adapter = "odir_course", image_size: ImageSize = 64,
             epochs: Epochs = 30, per_class: PerClass = 50, classes: Classes = None,
             preprocess: Preprocess = "none", batch_size: BatchSize = 32, lr: Lr = 2e-3,
             beta: Beta = 0.05, kl_warmup: KlWarmup = 5.0, latent_dim: LatentDim = 32,
             base_channels: BaseChannels = 32, reconstruction: Reconstruction = "mse",
             temperature: Temperature = 1.0, bf16: Bf16 = False, device: Device = "cpu",
             cache_dir: CacheDir = None, seed: Seed = 0) -> None:
    """Fit a class-conditional VAE on the training split and write synthetic images."""
    from rich.progress import Progress

    from funduslab.generate.train_vae import VAETraining
    from funduslab.generate.workflow import generate_from_dataset

    training = VAETraining(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta,
                           kl_warmup_epochs=kl_warmup, reconstruction=reconstruction,
                           seed=seed, bf16=bf16, device=torch_device(device))
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("fitting VAE", total=epochs)

        def _tick(epoch: int, row: dict[str, float]) -> None:
            bar.update(task, completed=epoch, description=f"fitting VAE (loss {row['loss']:.0f})")

        result = generate_from_dataset(
            data, out, adapter=adapter, image_size=image_size, per_class=per_class,
            classes=classes, preprocess=preprocess, cache_dir=cache_dir,
            arch_options={"latent_dim": latent_dim, "base_channels": base_channels},
            training=training, temperature=temperature, progress=_tick)
    console.print(f"[green]VAE:[/] {result.checkpoint}")
    console.print(f"[green]{result.num_images} generated images:[/] {result.out}")
    console.print(f"[green]contact sheet:[/] {result.contact_sheet}")
    console.print(f"use them with: data.extra_train={result.out} data.extra_train_ratio=0.5")


def register(app: typer.Typer) -> None:
    """Attach ``generate`` to ``app``."""
    app.command(cls=with_choices(adapter="adapters"))(generate)
