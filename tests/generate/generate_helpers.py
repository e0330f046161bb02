"""Helpers for the VAE tests: tiny architectures and colour-coded labelled images."""

from __future__ import annotations

import numpy as np

from funduslab.generate.vae import VAEArchitecture


def tiny_arch(size: int = 32, labels: int = 2) -> VAEArchitecture:
    return VAEArchitecture(image_size=size, num_labels=labels, latent_dim=4, base_channels=8,
                           max_channels=32, label_dim=8)


def colour_coded(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose colour is set by the label: [1, 0] → red disc, [0, 1] → green disc.

    A disc on black (like a fundus field of view) with mild noise; the label fully determines
    the dominant channel, so a decoder that ignores ``y`` cannot reproduce both classes.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2) <= (0.42 * size) ** 2
    targets = np.zeros((n, 2), np.float32)
    targets[np.arange(n), np.arange(n) % 2] = 1.0
    images = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        channel = 0 if targets[i, 0] else 1
        level = rng.uniform(0.6, 0.9)
        images[i, ..., channel] = disc * level
        images[i, ..., 2] = disc * rng.uniform(0.1, 0.2)
    images += rng.normal(0, 0.02, images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), targets

