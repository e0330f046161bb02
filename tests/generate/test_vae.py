"""The conditional VAE network and its loss terms, checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from generate_helpers import tiny_arch

from funduslab.generate.vae import (
    ConditionalVAE,
    VAEArchitecture,
    kl_divergence,
    kl_weight,
    reconstruction_loss,
    vae_loss,
)


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_output_range(size: int):
    torch.manual_seed(0)
    model = ConditionalVAE(tiny_arch(size, labels=3))
    x = torch.rand(2, 3, size, size)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    logits, mu, logvar = model(x, y)
    assert logits.shape == (2, 3, size, size)
    assert mu.shape == logvar.shape == (2, 4)
    with torch.no_grad():
        image = model.decode(torch.randn(5, 4), torch.zeros(5, 3))
    assert image.shape == (5, 3, size, size)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    # one stride-2 block per halving down to 4 × 4
    assert len(model.arch.channels) == int(math.log2(size // 4))


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = ConditionalVAE(tiny_arch(32, labels=3)).train()
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]])
    logits, mu, logvar = model(x, y)
    vae_loss(logits, x, mu, logvar, weight=1.0)["loss"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    # FiLM projections start at zero but their weights still receive gradient
    assert missing == []


def test_kl_matches_torch_distributions_and_hand_formula():
    gen = torch.Generator().manual_seed(3)
    mu = torch.randn(6, 5, generator=gen)
    logvar = torch.randn(6, 5, generator=gen)
    std = torch.exp(0.5 * logvar)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, std), torch.distributions.Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl_divergence(mu, logvar), reference)
    # one value by hand: μ = 1, σ² = e → ½(σ² + μ² − 1 − log σ²) = ½(e + 1 − 1 − 1)
    one = kl_divergence(torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    torch.testing.assert_close(one, torch.tensor([0.5 * (math.e - 1.0)]))
    assert float(kl_divergence(torch.zeros(1, 3), torch.zeros(1, 3))) == 0.0


def test_reconstruction_losses_match_manual_sums():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 3, 8, 8, generator=gen)
    x = torch.rand(3, 3, 8, 8, generator=gen)
    p = torch.sigmoid(logits).double()
    bce = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_loss(logits, x, "bce"), bce.float(), rtol=1e-5,
                               atol=1e-4)
    mse = (p.float() - x).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_loss(logits, x, "mse"), mse)
    with pytest.raises(ValueError, match="bce"):
        reconstruction_loss(logits, x, "l1")


def test_vae_loss_combines_terms_with_the_weight():
    gen = torch.Generator().manual_seed(5)
    logits, x = torch.randn(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    mu, logvar = torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen)
    parts = vae_loss(logits, x, mu, logvar, weight=0.25)
    expected = (F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 2
                + 0.25 * kl_divergence(mu, logvar).mean())
    torch.testing.assert_close(parts["loss"], expected)


def test_kl_warmup_ramps_linearly_to_beta():
    assert [kl_weight(s, 4, 2.0) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert kl_weight(0, 0, 0.7) == 0.7


def test_label_size_mismatch_and_bad_sizes_raise():
    model = ConditionalVAE(tiny_arch(32, labels=3))
    with pytest.raises(ValueError, match="3 labels"):
        model(torch.rand(2, 3, 32, 32), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="32, 32"):
        model(torch.rand(2, 3, 64, 64), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="4·2"):
        VAEArchitecture(image_size=48)
    with pytest.raises(ValueError, match="latent_dim"):
        VAEArchitecture(latent_dim=0)


def test_decoder_output_depends_on_label_even_with_the_same_latent():
    torch.manual_seed(0)
    model = ConditionalVAE(tiny_arch(32, labels=3)).eval()
    z = torch.randn(1, 4)
    with torch.no_grad():
        a = model.decode(z, torch.tensor([[1.0, 0.0, 0.0]]))
        b = model.decode(z, torch.tensor([[0.0, 1.0, 0.0]]))
    assert float((a - b).abs().max()) > 1e-4
    assert np.isfinite(a.numpy()).all()
