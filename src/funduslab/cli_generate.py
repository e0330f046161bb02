"""CLI verb ``generate``: fit a conditional VAE, sample images per class, draw a contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``generate`` to ``app``."""

    @app.command()
    @friendly
    def generate(
        data: Path = typer.Option(..., help="Dataset root (the course folder for odir_course)."),
        out: Path = typer.Option(..., help="Output folder: vae.pt, images/, labels.csv, sheet."),
        adapter: str = typer.Option("odir_course", help="Dataset adapter."),
        image_size: int = typer.Option(64, help="VAE resolution in px (32, 64, 128, 256)."),
        epochs: int = typer.Option(30, help="VAE training epochs."),
        per_class: int = typer.Option(50, help="Images generated per class."),
        classes: Optional[str] = typer.Option(
            None, help="Classes to sample, e.g. 'D,G,A,normal,D+A' (default: one per label)."),
        preprocess: str = typer.Option("none", help="Preprocessing pipeline before the VAE."),
        batch_size: int = typer.Option(32),
        lr: float = typer.Option(2e-3),
        beta: float = typer.Option(0.05, help="Final KL weight β."),
        kl_warmup: float = typer.Option(5.0, help="KL warm-up in epochs."),
        latent_dim: int = typer.Option(32),
        base_channels: int = typer.Option(32),
        reconstruction: str = typer.Option("mse", help="mse | bce (on [0, 1] pixels)."),
        temperature: float = typer.Option(1.0, help="Latent prior scale when sampling."),
        bf16: bool = typer.Option(False, "--bf16/--fp32", help="bf16 autocast while fitting."),
        device: str = typer.Option("cpu", help="cpu | cuda."),
        cache_dir: Optional[Path] = typer.Option(None, help="Decoded-image cache."),
        seed: int = typer.Option(0),
    ) -> None:
        """Fit a class-conditional VAE on the training split and write synthetic images."""
        from rich.progress import Progress

        from funduslab.generate.train_vae import VAETraining
        from funduslab.generate.workflow import generate_from_dataset

        training = VAETraining(epochs=epochs, batch_size=batch_size, lr=lr, beta=beta,
                               kl_warmup_epochs=kl_warmup, reconstruction=reconstruction,
                               seed=seed, bf16=bf16, device=device)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("fitting VAE", total=epochs)

            def _tick(epoch: int, row: dict[str, float]) -> None:
                bar.update(task, completed=epoch,
                           description=f"fitting VAE (loss {row['loss']:.0f})")

            result = generate_from_dataset(
                data, out, adapter=adapter, image_size=image_size, per_class=per_class,
                classes=classes, preprocess=preprocess, cache_dir=cache_dir,
                arch_options={"latent_dim": latent_dim, "base_channels": base_channels},
                training=training, temperature=temperature, progress=_tick)
        console.print(f"[green]VAE:[/] {result.checkpoint}")
        console.print(f"[green]{result.num_images} generated images:[/] {result.out}")
        console.print(f"[green]contact sheet:[/] {result.contact_sheet}")
        console.print(f"use them with: data.extra_train={result.out} data.extra_train_ratio=0.5")
