"""Batch "fundus" augmentation: shapes, seeding, per-sample draws, each step against a reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from funduslab.training.batch_augment import BatchFundusAugment, affine_grid, affine_theta, warp

OFF = dict(degrees=0.0, scale=(1.0, 1.0), brightness=0.0, contrast=0.0, saturation=0.0,
           hue=0.0, hflip=0.0, vflip=0.0)


def _off(**overrides: object) -> BatchFundusAugment:
    """Every step disabled except ``overrides``."""
    return BatchFundusAugment(**{**OFF, **overrides})


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _theta(angles: list[float], height: int, width: int, scale: float = 1.0) -> torch.Tensor:
    n = len(angles)
    no = torch.zeros(n, dtype=torch.bool)
    return affine_theta(torch.tensor(angles), torch.full((n,), scale), no, no, height, width)


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (3, 2, 3, 24, 40)])
def test_shape_dtype_and_range_are_preserved(shape: tuple[int, ...]) -> None:
    x = _images(*shape)
    out = BatchFundusAugment(brightness=0.8, contrast=0.8)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.allclose(out, x)


def test_float64_input_works() -> None:
    x = _images(2, 3, 16, 16).double()
    assert BatchFundusAugment()(x).dtype == torch.float64


def test_same_seed_same_output_other_seed_differs() -> None:
    x = _images(4, 3, 32, 32)
    augment = BatchFundusAugment()
    torch.manual_seed(7)
    first = augment(x)
    torch.manual_seed(7)
    again = augment(x)
    torch.manual_seed(8)
    other = augment(x)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert (first - other).abs().max() > 0.05


def test_all_steps_off_is_identity() -> None:
    x = _images(4, 3, 32, 32)
    torch.testing.assert_close(_off()(x), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("size", "atol"), [((32, 32), 1e-6), ((17, 30), 1e-5)])
def test_identity_theta_through_grid_sample_reproduces_input(size: tuple[int, int],
                                                             atol: float) -> None:
    # Odd sizes put grid coordinates off float32-exact values: a ~1e-7-pixel offset remains.
    x = _images(2, 3, *size)
    torch.testing.assert_close(warp(x, _theta([0.0, 0.0], *size)), x, rtol=0, atol=atol)


@pytest.mark.parametrize(("flag", "dim"), [("hflip", -1), ("vflip", -2)])
def test_certain_flip_equals_torch_flip(flag: str, dim: int) -> None:
    x = _images(4, 3, 20, 28)
    torch.testing.assert_close(_off(**{flag: 1.0})(x), torch.flip(x, dims=[dim]),
                               rtol=0, atol=1e-5)


def test_ninety_degrees_matches_rot90() -> None:
    x = _images(2, 3, 32, 32)
    out = warp(x, _theta([90.0, -90.0], 32, 32))
    inner = (..., slice(1, -1), slice(1, -1))
    torch.testing.assert_close(out[0][inner], torch.rot90(x[0], 1, dims=(-2, -1))[inner],
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(out[1][inner], torch.rot90(x[1], -1, dims=(-2, -1))[inner],
                               rtol=0, atol=1e-4)


def test_rotation_is_a_true_rotation_on_non_square_images() -> None:
    # 32 x 48, centre at (row 15.5, col 23.5). A dot 3.5 px right of centre (row 15, col 27)
    # turned 90° counter-clockwise lands 3.5 px above it (row 12, col 23).
    x = torch.zeros(1, 3, 32, 48)
    x[..., 15, 27] = 1.0
    out = warp(x, _theta([90.0], 32, 48))
    peak = int(out[0, 0].argmax())
    assert divmod(peak, 48) == (12, 23)
    assert out[0, 0, 12, 23] > 0.99


def test_scale_zooms_about_the_centre() -> None:
    # Zoom 2: the output pixel at offset d from the centre (15.5) samples the input at d / 2.
    x = torch.zeros(1, 3, 32, 32)
    x[..., 13:19, 13:19] = 1.0  # pixel centres at offsets -2.5 … 2.5
    out = warp(x, _theta([0.0], 32, 32, scale=2.0), mode="bilinear")[0, 0]
    assert out[11:21, 11:21].min() > 0.99  # offsets -4.5 … 4.5 sample inside the square
    torch.testing.assert_close(out[10, 15], torch.tensor(0.75))  # -5.5 → -2.75: 3/4 inside
    assert out[:9].max() == 0 and out[:, 23:].max() == 0  # |d| >= 7 samples beyond the edge


def test_identical_images_in_one_batch_get_different_parameters() -> None:
    x = _images(1, 3, 32, 32).expand(2, 3, 32, 32).contiguous()
    torch.manual_seed(0)
    out = BatchFundusAugment()(x)
    assert (out[0] - out[1]).abs().max() > 0.05


def test_brightness_scales_each_image_by_its_own_factor() -> None:
    x = _images(16, 3, 16, 16) * 0.5 + 0.1  # room to brighten without clamping
    torch.manual_seed(0)
    out = _off(brightness=0.5)(x)
    ratio = out.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3))
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 1.5 + 1e-6
    assert ratio.max() - ratio.min() > 0.1
    # a pure scaling: every pixel of an image changes by the same factor
    torch.testing.assert_close(out, x * ratio.view(-1, 1, 1, 1), rtol=1e-5, atol=1e-6)


def test_contrast_blends_with_the_mean_luma() -> None:
    x = _images(8, 3, 16, 16) * 0.5 + 0.25
    torch.manual_seed(0)
    out = _off(contrast=0.5)(x)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    mean = (x * luma).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    # solve out = c * x + (1 - c) * mean for c from one pixel, then check every pixel
    c = ((out - mean) / (x - mean))[:, 0, 0, 0].view(-1, 1, 1, 1)
    assert c.min() >= 0.5 - 1e-4 and c.max() <= 1.5 + 1e-4
    torch.testing.assert_close(out, (c * x + (1 - c) * mean).clamp(0, 1), rtol=0, atol=1e-4)


@pytest.mark.parametrize("colour", [dict(saturation=0.0, hue=0.0, brightness=0.3, contrast=0.3),
                                    dict(saturation=0.5, hue=0.2)])
def test_gray_stays_gray(colour: dict[str, float]) -> None:
    gray = _images(4, 1, 16, 16).expand(4, 3, 16, 16).contiguous()
    torch.manual_seed(0)
    out = _off(**colour)(gray)
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(out[:, 0], out[:, 2], rtol=0, atol=1e-5)


def test_saturation_and_hue_keep_luma_and_change_colour() -> None:
    x = _images(4, 3, 16, 16) * 0.4 + 0.3  # away from the clamp
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for step in (dict(saturation=0.5), dict(hue=0.1)):
        torch.manual_seed(0)
        out = _off(**step)(x)
        torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1), rtol=0, atol=1e-4)
        assert (out - x).abs().max() > 0.01, step


def test_positive_hue_turns_red_towards_green_like_torchvision() -> None:
    from funduslab.training.batch_augment import _apply_colour_matrix, _hue_matrices

    orange = torch.tensor([0.8, 0.4, 0.1]).view(1, 3, 1, 1).expand(1, 3, 2, 2).contiguous()
    out = _apply_colour_matrix(orange, _hue_matrices(torch.tensor([0.05])))[0, :, 0, 0]
    assert out[0] < 0.8 and out[1] > 0.4  # torchvision: (0.8, 0.61, 0.1)


def test_dual_views_are_augmented_independently() -> None:
    view = _images(1, 1, 3, 32, 32)
    pair = view.expand(2, 2, 3, 32, 32).contiguous()
    torch.manual_seed(0)
    out = BatchFundusAugment()(pair)
    assert out.shape == pair.shape
    assert (out[:, 0] - out[:, 1]).abs().amax(dim=(1, 2, 3)).min() > 0.05


def test_flattened_dual_batch_matches_a_4d_batch() -> None:
    pair = _images(3, 2, 3, 16, 16)
    augment = BatchFundusAugment()
    torch.manual_seed(3)
    dual = augment(pair)
    torch.manual_seed(3)
    flat = augment(pair.reshape(6, 3, 16, 16))
    torch.testing.assert_close(dual.reshape(6, 3, 16, 16), flat, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [dict(degrees=-1.0), dict(hue=0.6), dict(hflip=1.5),
                                 dict(scale=(1.1, 0.9)), dict(brightness=-0.1)])
def test_bad_parameters_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        BatchFundusAugment(**bad)


def test_bad_input_raises() -> None:
    with pytest.raises(TypeError, match="float"):
        BatchFundusAugment()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        BatchFundusAugment()(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("steps", [dict(brightness=0.5, contrast=0.5), dict(hflip=1.0), {}])
def test_input_is_never_modified(steps: dict[str, float]) -> None:
    x = _images(2, 2, 3, 16, 16) * 1.2  # some values above 1, clamped only in the output
    before = x.clone()
    out = _off(**steps)(x)
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    assert out.max() <= 1.0


@pytest.mark.parametrize("size", [(16, 16), (9, 20)])
def test_affine_grid_matches_torch(size: tuple[int, int]) -> None:
    theta = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0))  # with translation
    expected = F.affine_grid(theta, [3, 3, *size], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 3, *size), expected, rtol=0, atol=1e-6)


def test_gradients_flow_to_the_input() -> None:
    x = _images(2, 3, 16, 16).requires_grad_()
    BatchFundusAugment()(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
