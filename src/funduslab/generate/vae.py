"""A convolutional VAE conditioned on the multi-hot label vector, and its loss terms.

Variational auto-encoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) in its
conditional form (Sohn, Lee & Yan, "Learning Structured Output Representation using Deep
Conditional Generative Models", NeurIPS 2015): the encoder models ``q(z | x, y)`` and the decoder
``p(x | z, y)`` where ``y`` is the ``K``-dim multi-hot label vector (course: D, G, A).

* Encoder: ``x (B, 3, S, S)`` with ``y`` broadcast to ``K`` constant planes → stride-2 conv
  blocks down to ``4 × 4`` → linear → ``μ, log σ² (B, Z)``.
* Decoder: ``[z, e(y)]`` (label embedding ``e`` concatenated to ``z``) → linear → ``4 × 4`` map →
  upsample + conv blocks, each modulated by FiLM from ``e(y)`` (Perez et al., "FiLM", AAAI 2018)
  → pixel logits ``(B, 3, S, S)``; the image is ``sigmoid(logits)`` in ``[0, 1]``.

Loss (per image, summed over pixels and latent dims, then averaged over the batch):
``R(x̂, x) + β · w(t) · KL(q(z|x,y) ‖ N(0, I))`` with ``w(t)`` ramping linearly from 0 to 1
during the KL warm-up (Bowman et al., 2016). ``R`` is either

* ``"mse"`` — sum of squared errors on ``[0, 1]`` pixels (a fixed-variance Gaussian likelihood);
  the fitting default (:class:`funduslab.generate.train_vae.VAETraining`), with ``β = 0.05``:
  on synthetic fundus images it reconstructs held-out images at ~0.6× the mean-image MSE, where
  BCE with ``β = 1`` stays near the mean image (~0.95×) after the same short fit; or
* ``"bce"`` — binary cross-entropy on ``[0, 1]`` pixels (the Bernoulli likelihood extended to
  continuous targets, as in Kingma & Welling's image experiments).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConditionalVAE",
    "VAEArchitecture",
    "kl_divergence",
    "kl_weight",
    "reconstruction_loss",
    "vae_loss",
]

Reconstruction = Literal["bce", "mse"]


@dataclass(frozen=True)
class VAEArchitecture:
    """Hyper-parameters that define the network (stored in checkpoints).

    Args:
        image_size: Side in px; ``4 · 2^k`` with ``k ≥ 1`` (16, 32, 64, 128, 256 …).
        num_labels: ``K``, length of the multi-hot label vector.
        latent_dim: ``Z``, latent dimensions.
        base_channels: Channels of the first encoder block (doubled per block, capped).
        max_channels: Cap on channels per block.
        label_dim: Width of the label embedding ``e(y)``.
    """

    image_size: int = 64
    num_labels: int = 3
    latent_dim: int = 32
    base_channels: int = 32
    max_channels: int = 256
    label_dim: int = 16

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"VAE image_size must be an int >= 8, got {size!r}")
        blocks = math.log2(size / 4)
        if blocks != int(blocks):
            raise ValueError(
                f"VAE image_size must be 4·2^k (16, 32, 64, 128, 256 …), got {size}"
            )
        for name in ("num_labels", "latent_dim", "base_channels", "max_channels", "label_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VAE {name} must be a positive int, got {value!r}")

    @property
    def channels(self) -> list[int]:
        """Channels of the encoder blocks, shallow to deep (decoder mirrors them)."""
        blocks = int(math.log2(self.image_size // 4))
        return [min(self.base_channels * 2**i, self.max_channels) for i in range(blocks)]

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class _FiLM(nn.Module):
    """Feature-wise affine modulation ``γ(e) · h + β(e)``, initialised to the identity."""

    def __init__(self, label_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(label_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.proj(e)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        return h * (1.0 + gamma) + beta


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, label_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(_groups(c_out), c_out)
        self.film = _FiLM(label_dim, c_out)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        return F.silu(self.film(self.norm(self.conv(h)), e))


class ConditionalVAE(nn.Module):
    """Conditional VAE over ``(B, 3, S, S)`` images in ``[0, 1]`` and ``(B, K)`` label vectors.

    Args:
        arch: Network hyper-parameters (:class:`VAEArchitecture`).
    """

    def __init__(self, arch: VAEArchitecture) -> None:
        super().__init__()
        self.arch = arch
        chans = arch.channels
        k = arch.num_labels
        layers: list[nn.Module] = []
        c_in = 3 + k
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(_groups(c), c),
                       nn.SiLU()]
            c_in = c
        self.encoder = nn.Sequential(*layers)
        flat = chans[-1] * 16
        self.to_stats = nn.Linear(flat, 2 * arch.latent_dim)
        self.label_embed = nn.Sequential(nn.Linear(k, arch.label_dim), nn.SiLU())
        self.from_latent = nn.Linear(arch.latent_dim + arch.label_dim, flat)
        rev = chans[::-1]
        self.up = nn.ModuleList(
            _UpBlock(rev[i], rev[i + 1] if i + 1 < len(rev) else rev[-1], arch.label_dim)
            for i in range(len(rev))
        )
        self.to_pixels = nn.Conv2d(rev[-1], 3, 3, padding=1)

    def _check(self, y: torch.Tensor, batch: int) -> None:
        if y.ndim != 2 or y.shape[1] != self.arch.num_labels or y.shape[0] != batch:
            raise ValueError(
                f"label tensor must be ({batch}, {self.arch.num_labels}) to match this VAE "
                f"(trained on {self.arch.num_labels} labels), got {tuple(y.shape)}"
            )

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, 3, S, S)`` in [0, 1], ``y (B, K)`` → ``μ, log σ²`` each ``(B, Z)``."""
        size = self.arch.image_size
        if x.ndim != 4 or x.shape[1:] != (3, size, size):
            raise ValueError(f"VAE expects images (B, 3, {size}, {size}), got {tuple(x.shape)}")
        self._check(y, x.shape[0])
        planes = y.to(x.dtype)[:, :, None, None].expand(-1, -1, size, size)
        h = self.encoder(torch.cat([x, planes], dim=1)).flatten(1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``z (B, Z)``, ``y (B, K)`` → pixel logits ``(B, 3, S, S)``."""
        if z.ndim != 2 or z.shape[1] != self.arch.latent_dim:
            raise ValueError(f"latent must be (B, {self.arch.latent_dim}), got {tuple(z.shape)}")
        self._check(y, z.shape[0])
        e = self.label_embed(y.to(z.dtype))
        h = self.from_latent(torch.cat([z, e], dim=1)).view(z.shape[0], -1, 4, 4)
        for block in self.up:
            h = block(h, e)
        return self.to_pixels(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``z (B, Z)``, ``y (B, K)`` → images ``(B, 3, S, S)`` in ``[0, 1]``."""
        return torch.sigmoid(self.decode_logits(z, y))

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = μ + σ · ε``, ``ε ~ N(0, I)`` from the global (seeded) torch generator."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def forward(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(pixel logits (B, 3, S, S), μ (B, Z), log σ² (B, Z))``."""
        mu, logvar = self.encode(x, y)
        z = self.reparameterize(mu, logvar) if self.training else mu
        return self.decode_logits(z, y), mu, logvar


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(μ, σ²) ‖ N(0, I)) = -½ Σ (1 + log σ² − μ² − σ²)`` per sample, ``(B,)``.

    Kingma & Welling (2014), appendix B.
    """
    mu, logvar = mu.float(), logvar.float()
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def reconstruction_loss(
    logits: torch.Tensor, x: torch.Tensor, kind: Reconstruction = "bce"
) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels and channels → ``(B,)``.

    Args:
        logits: Decoder pixel logits ``(B, 3, S, S)``.
        x: Target images ``(B, 3, S, S)`` in ``[0, 1]``.
        kind: ``"bce"`` (binary cross-entropy on [0, 1] pixels) or ``"mse"`` (squared error of
            ``sigmoid(logits)``).
    """
    logits, x = logits.float(), x.float()
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif kind == "mse":
        per_pixel = (torch.sigmoid(logits) - x).pow(2)
    else:
        raise ValueError(f"reconstruction loss must be 'bce' or 'mse', got {kind!r}")
    return per_pixel.flatten(1).sum(dim=1)


def kl_weight(step: int, warmup_steps: int, beta: float) -> float:
    """``β · min(1, (step + 1) / warmup_steps)`` (``β`` at once when ``warmup_steps`` is 0)."""
    if warmup_steps <= 0:
        return float(beta)
    return float(beta) * min(1.0, (step + 1) / warmup_steps)


def vae_loss(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    weight: float,
    kind: Reconstruction = "bce",
) -> dict[str, torch.Tensor]:
    """Batch-mean negative ELBO with a KL weight.

    Returns:
        ``{"loss", "reconstruction", "kl"}`` scalars; ``loss = reconstruction + weight · kl``,
        each the mean over the batch of the per-image sums.
    """
    recon = reconstruction_loss(logits, x, kind).mean()
    kl = kl_divergence(mu, logvar).mean()
    return {"loss": recon + weight * kl, "reconstruction": recon, "kl": kl}
