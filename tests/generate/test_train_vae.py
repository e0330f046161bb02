"""Fitting the VAE: the loss falls, it learns real structure, it uses the label, it is seeded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from generate_helpers import tiny_arch

from funduslab.generate.sample import reconstruct, sample_images
from funduslab.generate.train_vae import VAETraining, fit_vae, load_vae, save_vae
from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint


@pytest.fixture(scope="module")
def coloured_fit(coloured_data):
    images, targets = coloured_data
    training = VAETraining(epochs=60, batch_size=8, lr=3e-3, kl_warmup_epochs=2,
                           reconstruction="bce", beta=1.0, seed=1)
    return fit_vae(images, targets, tiny_arch(16), training)


def test_loss_decreases_over_a_few_steps(coloured_data):
    images, targets = coloured_data
    fit = fit_vae(images[:16], targets[:16], tiny_arch(16),
                  VAETraining(epochs=6, batch_size=8, lr=3e-3, kl_warmup_epochs=0, seed=0))
    losses = [row["loss"] for row in fit.history]
    assert len(losses) == 6
    assert losses[-1] < 0.9 * losses[0]


def test_conditional_decoder_generates_the_colour_its_label_asks_for(coloured_fit):
    """Label [1, 0] was always a red disc, [0, 1] a green one: samples must follow y.

    Both classes are decoded from the same latents, so only the label can change the colour.
    """
    red = sample_images(coloured_fit.model, [1.0, 0.0], 16, seed=0).astype(float)
    green = sample_images(coloured_fit.model, [0.0, 1.0], 16, seed=0).astype(float)  # same z
    assert red[..., 0].mean() > red[..., 1].mean() + 30
    assert green[..., 1].mean() > green[..., 0].mean() + 30


def test_sampling_is_deterministic_per_seed(coloured_fit):
    a = sample_images(coloured_fit.model, [1.0, 0.0], 5, seed=3)
    b = sample_images(coloured_fit.model, [1.0, 0.0], 5, seed=3)
    c = sample_images(coloured_fit.model, [1.0, 0.0], 5, seed=4)
    assert a.shape == (5, 16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bf16_autocast_fit_runs_and_stays_finite(coloured_data):
    images, targets = coloured_data
    fit = fit_vae(images[:8], targets[:8], tiny_arch(16),
                  VAETraining(epochs=2, batch_size=4, bf16=True, seed=0))
    assert all(np.isfinite(row["loss"]) for row in fit.history)
    assert next(fit.model.parameters()).dtype == torch.float32


def test_fit_is_repeatable_with_the_same_seed(coloured_data):
    images, targets = coloured_data
    training = VAETraining(epochs=1, batch_size=8, seed=5)
    a = fit_vae(images[:16], targets[:16], tiny_arch(16), training).model.state_dict()
    b = fit_vae(images[:16], targets[:16], tiny_arch(16), training).model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_vae_on_synthetic_fundus_images_beats_the_mean_image(synth_course: Path, tmp_path):
    """Learning test: held-out (val) reconstructions are closer than the train mean image."""
    from funduslab.data.adapters import load_table
    from funduslab.data.cache import ImageCache

    table = load_table("odir_course", synth_course)
    cache = ImageCache(tmp_path / "cache")

    def split(name):
        rows = table.split(name)
        ims = cache.get(list(rows["path"]), None, 32)
        return np.asarray(ims), rows[table.label_names].to_numpy(np.float32)

    (train_x, train_y), (val_x, val_y) = split("train"), split("val")
    arch = tiny_arch(32, labels=3)
    arch = type(arch)(**{**arch.to_dict(), "latent_dim": 16})
    training = VAETraining(epochs=30, batch_size=8, lr=3e-3, kl_warmup_epochs=10,
                           reconstruction="mse", beta=0.05, seed=0)
    fit = fit_vae(train_x, train_y, arch, training)
    target = val_x.astype(np.float32) / 255.0
    mse_vae = float(((reconstruct(fit.model, val_x, val_y) - target) ** 2).mean())
    mean_image = train_x.astype(np.float32).mean(axis=0) / 255.0
    mse_mean = float(((mean_image[None] - target) ** 2).mean())
    assert mse_vae < 0.75 * mse_mean, (mse_vae, mse_mean)


def test_checkpoint_round_trip_with_weights_only(coloured_fit, tmp_path):
    path = save_vae(tmp_path / "vae.pt", coloured_fit.model, ["R", "G"], {"seed": 1})
    raw = torch.load(path, weights_only=True)
    assert raw["metadata"]["kind"] == "conditional_vae"
    assert raw["metadata"]["architecture"]["image_size"] == 16
    model, meta = load_vae(path)
    assert meta["label_names"] == ["R", "G"] and meta["seed"] == 1
    np.testing.assert_array_equal(sample_images(model, [0, 1], 3, seed=9),
                                  sample_images(coloured_fit.model, [0, 1], 3, seed=9))


def test_clear_errors(coloured_fit, coloured_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_vae(tmp_path / "nothing.pt")
    other = save_funduslab_checkpoint(tmp_path / "cls.pt", {"w": torch.zeros(1)}, {"kind": "x"})
    with pytest.raises(ValueError, match="not a VAE"):
        load_vae(other)
    with pytest.raises(ValueError, match="label size mismatch"):
        save_vae(tmp_path / "bad.pt", coloured_fit.model, ["D", "G", "A"])
    with pytest.raises(ValueError, match="label size mismatch"):
        sample_images(coloured_fit.model, [1.0, 0.0, 0.0], 2, seed=0)
    images, targets = coloured_data
    with pytest.raises(ValueError, match="label size mismatch"):
        fit_vae(images, np.zeros((len(images), 3)), tiny_arch(16), VAETraining(epochs=1))
    with pytest.raises(ValueError, match="image_size 32"):
        fit_vae(images, targets, tiny_arch(32), VAETraining(epochs=1))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            fit_vae(images, targets, tiny_arch(16), VAETraining(epochs=1, device="cuda"))
