"""The "fundus" augmentation applied to a whole float batch at once, on the batch's device.

The registered ``"fundus"`` augmentation (:mod:`funduslab.training.data`) is a per-image
torchvision v2 pipeline: flips, ``RandomAffine(degrees=25, scale=(0.92, 1.08))`` and
``ColorJitter(0.2, 0.2, 0.1, 0.02)``. Run image by image in Python it costs about 7.5 ms per
256-px image on a 2-core CPU, a quarter of a training step. :class:`BatchFundusAugment` draws
the same per-sample parameter distribution and applies it in a handful of vectorised ops: one
sampling grid (as ``F.affine_grid`` builds it) + ``grid_sample`` for all geometry, then one
elementwise op or batched 3×3 colour matrix per colour step.

What differs from the per-image pipeline, on purpose:

- Colour steps run in a fixed order brightness → contrast → saturation → hue; torchvision's
  ``ColorJitter`` shuffles the order per image.
- Hue is a rotation of the chroma plane about the gray axis in YIQ space by ``2π·h``: the linear
  approximation of torchvision's HSV hue shift (exact for luma, close for small ``h``).
- Resampling is nearest-neighbour, as torchvision's affine default, but on float data.

Randomness comes only from the torch global generator (on the input's device), so
``torch.manual_seed`` and Lightning's seeding and RNG-state checkpointing cover it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BatchFundusAugment", "affine_grid", "affine_theta", "warp"]

# ITU-R 601-2 luma weights, as in torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RGB → YIQ (FCC NTSC); each chroma row sums to 0, so gray maps to (Y, 0, 0) and back exactly.
_RGB_TO_YIQ = torch.tensor(
    [list(_LUMA), [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)

# Columns of the single per-sample uniform draw.
_HFLIP, _VFLIP, _ANGLE, _SCALE, _BRIGHT, _CONTRAST, _SAT, _HUE = range(8)


def affine_theta(
    angle_deg: torch.Tensor,
    scale: torch.Tensor,
    hflip: torch.Tensor,
    vflip: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """``affine_grid`` matrices for flip, then rotate and scale about the image centre.

    ``affine_grid`` maps each output location to the input location it samples, in normalised
    coordinates where x spans the width and y the height. The pixel-space inverse map is
    ``flip · R(angle) / scale``; conjugating by ``diag(W/2, H/2)`` keeps it a true rotation on
    non-square images.

    Args:
        angle_deg: ``(N,)`` rotation in degrees, positive = counter-clockwise on screen (as
            torchvision's ``rotate``; its ``affine`` counts clockwise).
        scale: ``(N,)`` isotropic zoom, > 1 enlarges the content.
        hflip: ``(N,)`` bool, mirror left/right (applied before the rotation).
        vflip: ``(N,)`` bool, mirror top/bottom.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        ``(N, 2, 3)`` theta in the dtype and device of ``angle_deg``.
    """
    rad = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(rad) / scale, torch.sin(rad) / scale
    fx = 1.0 - 2.0 * hflip.to(rad.dtype)  # -1 where flipped
    fy = 1.0 - 2.0 * vflip.to(rad.dtype)
    aspect = height / width
    zero = torch.zeros_like(rad)
    row_x = torch.stack([fx * cos, fx * -sin * aspect, zero], dim=-1)
    row_y = torch.stack([fy * sin / aspect, fy * cos, zero], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def affine_grid(theta: torch.Tensor, n: int, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (n, C, height, width), align_corners=False)``, about 2.5× faster.

    ``F.affine_grid`` writes an ``(N, H, W, 3)`` base grid, one copy per sample, before its
    batched matmul; the base is the same for every sample, so one ``(H·W, 3)`` copy broadcast
    through ``matmul`` gives the same ``(N, H, W, 2)`` grid with a third of the memory traffic.
    """
    kw = dict(device=theta.device, dtype=theta.dtype)
    xs = (torch.arange(width, **kw) * 2 + 1) / width - 1  # pixel centres, align_corners=False
    ys = (torch.arange(height, **kw) * 2 + 1) / height - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], dim=-1).view(height * width, 3)
    return torch.matmul(base, theta.transpose(1, 2)).view(n, height, width, 2)


def warp(images: torch.Tensor, theta: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Resample ``(N, C, H, W)`` images by ``(N, 2, 3)`` theta; black outside.

    ``nearest`` by default, as torchvision's ``RandomAffine``: bilinear resampling blurs the
    training images (12 % less mean gradient on course images) while test images stay sharp.
    """
    n, _, height, width = images.shape
    grid = affine_grid(theta.to(images.dtype), n, height, width)
    return F.grid_sample(images, grid, mode=mode, padding_mode="zeros", align_corners=False)


def _hue_matrices(hue: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` RGB matrices rotating chroma (I, Q) by ``2π·hue`` turns about the gray axis.

    HSV hue runs red → green → blue, which is clockwise in the (I, Q) plane, so the angle is
    negated: a positive ``hue`` moves colours the way torchvision's ``adjust_hue`` does.
    """
    angle = -2.0 * math.pi * hue
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack(
        [one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1
    ).view(-1, 3, 3)
    to_yiq = _RGB_TO_YIQ.to(hue.device, hue.dtype)
    to_rgb = _YIQ_TO_RGB.to(hue.device, hue.dtype)
    return to_rgb @ rotation @ to_yiq


def _saturation_matrices(factor: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` RGB matrices blending each pixel with its luma: ``s·x + (1−s)·gray``."""
    luma = torch.tensor(_LUMA, device=factor.device, dtype=factor.dtype)
    eye = torch.eye(3, device=factor.device, dtype=factor.dtype)
    s = factor.view(-1, 1, 1)
    return s * eye + (1.0 - s) * luma.expand(3, 3)


def _apply_colour_matrix(
    images: torch.Tensor, matrices: torch.Tensor, into: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample ``(N, 3, 3)`` matrix on ``(N, 3, H, W)`` pixels, clamped to [0, 1].

    ``into``: a contiguous spare tensor of the same shape to write to, saving a batch-sized
    allocation (not for tensors that need gradients: ``out=`` does not support autograd).
    """
    n, c, h, w = images.shape
    target = None if into is None else into.view(n, c, h * w)
    out = torch.bmm(matrices.to(images.dtype), images.reshape(n, c, h * w), out=target)
    return out.view(n, c, h, w).clamp_(0.0, 1.0)


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


class BatchFundusAugment(torch.nn.Module):
    """Per-sample random flips, rotation, zoom and colour jitter on a float batch in [0, 1].

    Args:
        degrees: Rotation drawn uniformly from ``[-degrees, degrees]``.
        scale: Isotropic zoom drawn uniformly from ``[low, high]``.
        brightness: Factor drawn from ``[max(0, 1-b), 1+b]``, multiplies the image.
        contrast: Factor blending with the image's mean luma.
        saturation: Factor blending each pixel with its luma.
        hue: Chroma rotation drawn from ``[-hue, hue]`` turns, at most 0.5.
        hflip: Probability of a left/right mirror.
        vflip: Probability of a top/bottom mirror.

    A parameter of 0 skips its step, so all zeros (and ``scale=(1, 1)``) is the identity.
    """

    def __init__(
        self,
        *,
        degrees: float = 25.0,
        scale: tuple[float, float] = (0.92, 1.08),
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.1,
        hue: float = 0.02,
        hflip: float = 0.5,
        vflip: float = 0.5,
    ) -> None:
        super().__init__()
        for name, value in (("degrees", degrees), ("brightness", brightness),
                            ("contrast", contrast), ("saturation", saturation)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}")
        for name, value in (("hflip", hflip), ("vflip", vflip)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {value}")
        low, high = (float(v) for v in scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.degrees = float(degrees)
        self.scale = (low, high)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)
        self.hflip = float(hflip)
        self.vflip = float(vflip)

    def extra_repr(self) -> str:
        return (f"degrees={self.degrees}, scale={self.scale}, brightness={self.brightness}, "
                f"contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}, "
                f"hflip={self.hflip}, vflip={self.vflip}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augment ``(B, 3, H, W)`` or dual-view ``(B, 2, 3, H, W)`` (views independently)."""
        if not torch.is_floating_point(x):
            raise TypeError(f"expected a float tensor in [0, 1], got dtype {x.dtype}")
        if x.ndim not in (4, 5) or x.shape[-3] != 3:
            raise ValueError("expected shape (B, 3, H, W) or (B, 2, 3, H, W), "
                             f"got {tuple(x.shape)}")
        shape = x.shape
        images = x.reshape(-1, *shape[-3:])  # (N, 3, H, W)
        if images.shape[0] == 0:
            return x.clone()
        out = self._augment(images)
        return out.reshape(shape)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        """All random draws happen here, in one call, so a seed fixes the whole batch."""
        n, _, height, width = images.shape
        u = torch.rand(n, 8, device=images.device)
        out, owned = images, False  # owned: ``out`` is ours to modify in place
        spare: torch.Tensor | None = None  # a batch-shaped buffer we may overwrite

        low, high = self.scale
        if self.hflip or self.vflip or self.degrees or low != 1.0 or high != 1.0:
            theta = affine_theta(
                _uniform(u[:, _ANGLE], -self.degrees, self.degrees),
                _uniform(u[:, _SCALE], low, high),
                u[:, _HFLIP] < self.hflip,
                u[:, _VFLIP] < self.vflip,
                height,
                width,
            )
            out, owned = warp(out, theta), True

        if self.brightness:
            b = _uniform(u[:, _BRIGHT], max(0.0, 1 - self.brightness), 1 + self.brightness)
            b = b.to(out.dtype).view(n, 1, 1, 1)
            out = (out.mul_(b) if owned else out * b).clamp_(0.0, 1.0)
            owned = True

        if self.contrast:
            c = _uniform(u[:, _CONTRAST], max(0.0, 1 - self.contrast), 1 + self.contrast)
            c = c.to(out.dtype).view(n, 1, 1, 1)
            luma = torch.tensor(_LUMA, device=out.device, dtype=out.dtype)
            mean = (out.mean(dim=(-2, -1)) @ luma).view(n, 1, 1, 1)  # mean of the grayscale
            # (x - m) * c + m as x * c + m * (1 - c); mul_ + add_ beats a broadcast addcmul on CPU
            out = (out.mul_(c) if owned else out * c).add_(mean * (1.0 - c)).clamp_(0.0, 1.0)
            owned = True

        if self.saturation:
            s = _uniform(u[:, _SAT], max(0.0, 1 - self.saturation), 1 + self.saturation)
            if owned and out.is_contiguous() and not out.requires_grad:
                spare = out
            out, owned = _apply_colour_matrix(out, _saturation_matrices(s)), True

        if self.hue:
            h = _uniform(u[:, _HUE], -self.hue, self.hue)
            out = _apply_colour_matrix(out, _hue_matrices(h), into=spare)
        elif not (self.brightness or self.contrast or self.saturation):
            out = out.clamp_(0.0, 1.0) if owned else out.clamp(0.0, 1.0)  # no colour step clamped
        return out
