"""Heat-map overlays and one panel figure per image, written atomically as PNG.

A panel shows the image the model saw (after preprocessing, at training resolution), then one
overlay per disease titled with the method, the label, its probability, the predicted label at
the run's threshold and, when known, the true label; heat is drawn inside the fundus circle only,
and a colour bar gives its scale. With head attention maps a second row shows one overlay per map.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402

from funduslab.config import atomic_path  # noqa: E402

__all__ = ["PanelEntry", "fov_mask", "method_title", "overlay", "panel_filename", "save_panel"]

_RIM = 0.985  # share of the fitted field-of-view radius that gets heat


def fov_mask(image: np.ndarray, threshold: float = 10.0) -> np.ndarray:
    """``(H, W)`` bool, True inside the fundus circle (the field of view) of ``image``.

    Heat outside the field of view is meaningless (the network sees black there) and, drawn,
    suggests the model looks at the border; panels therefore draw heat inside this circle only.
    The circle is the one :func:`funduslab.preprocess.ops.find_fov` fits to the bright region,
    1.5 % smaller; an image with no such region is kept whole (all True).
    """
    from funduslab.preprocess.ops import find_fov

    h, w = image.shape[:2]
    fov = find_fov(np.ascontiguousarray(image), threshold)
    if fov is None:
        return np.ones((h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w]
    radius = _RIM * fov.radius  # a smooth edge just inside the dark rim the fitted circle grazes
    return (xx + 0.5 - fov.cx) ** 2 + (yy + 0.5 - fov.cy) ** 2 <= radius ** 2


def method_title(method: str) -> str:
    """How a CAM method is written in a figure (``gradcam++`` → ``Grad-CAM++``)."""
    return _METHOD_TITLES.get(method, method)


_METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "layercam": "LayerCAM",
                  "scorecam": "Score-CAM", "eigencam": "Eigen-CAM"}


def overlay(image: np.ndarray, heat: np.ndarray, image_weight: float = 0.5,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a jet-coloured heat map onto an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        heat: ``(H, W)`` floats in [0, 1].
        image_weight: Share of the image in the blend (0–1).
        mask: ``(H, W)`` bool; where False the image is shown without heat (e.g. outside the
            field of view, :func:`fov_mask`). Default: heat everywhere.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: shapes that do not match, or heat outside [0, 1].
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    if heat.shape != image.shape[:2]:
        raise ValueError(f"heat map {heat.shape} does not match image {image.shape[:2]}")
    if heat.size and (heat.min() < 0 or heat.max() > 1):
        raise ValueError(f"heat map must lie in [0, 1], got [{heat.min():.3g}, {heat.max():.3g}]")
    blended = show_cam_on_image(image.astype(np.float32) / 255.0, heat.astype(np.float32),
                                use_rgb=True, image_weight=image_weight)
    if mask is None:
        return blended
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    return np.where(mask[..., None], blended, image)


@dataclass
class PanelEntry:
    """What one panel shows about one image.

    Attributes:
        image_id: Id in the sample table (``913_right.jpg``).
        image: ``(H, W, 3)`` uint8, as the model saw it.
        cams: ``(K, H, W)`` heat maps in [0, 1], one per disease.
        probabilities: ``(K,)`` model probabilities.
        predicted: ``(K,)`` 0/1 labels at the run's thresholds.
        truth: ``(K,)`` true 0/1 labels, or ``None`` for an unlabelled split.
        attention: ``(M, H, W)`` head attention maps in [0, 1], or ``None``.
    """

    image_id: str
    image: np.ndarray
    cams: np.ndarray
    probabilities: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray | None = None
    attention: np.ndarray | None = None


def panel_filename(image_id: str, method: str) -> str:
    """A safe PNG file name for an image id and CAM method (``913_right_gradcam.png``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(image_id).stem).strip("._") or "image"
    tag = re.sub(r"[^A-Za-z0-9_-]+", "pp", method)  # gradcam++ → gradcampp
    return f"{stem}_{tag}.png"


def save_panel(entry: PanelEntry, label_names: Sequence[str], method: str, path: Path,
               dpi: int = 100) -> Path:
    """Draw ``entry`` as ``original | overlay per disease`` (+ attention row) and save a PNG.

    Each overlay is titled with the method and the label it explains, heat is drawn inside the
    field of view only (:func:`fov_mask`), and a colour bar gives the scale (maps are min–max
    scaled per image and label, so colours compare regions within one map, not across maps).
    The file is written to a temporary name in the same folder and renamed into place.
    """
    k = len(label_names)
    if entry.cams.shape[0] != k:
        raise ValueError(f"{entry.cams.shape[0]} heat maps for {k} labels {list(label_names)}")
    m = 0 if entry.attention is None else int(entry.attention.shape[0])
    cols = max(1 + k, m)
    rows = 2 if m else 1
    height = 2.6 * rows + 0.35
    width = 2.4 * cols + 0.9
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    right = 1 - 0.85 / width
    fig.subplots_adjust(left=0.01, right=right, bottom=0.01, top=1 - 0.45 / height,
                        wspace=0.04, hspace=0.22)  # fixed layout: faster than tight/constrained
    for ax in axes.flat:
        ax.axis("off")
    name = method_title(method)
    mask = fov_mask(entry.image)
    axes[0, 0].imshow(entry.image)
    axes[0, 0].set_title(f"{entry.image_id}\ninput as the model saw it", fontsize=7)
    for j, label in enumerate(label_names):
        title = f"{name}: {label}\np={entry.probabilities[j]:.2f}  pred {int(entry.predicted[j])}"
        if entry.truth is not None:
            title += f"  true {int(entry.truth[j])}"
        axes[0, 1 + j].imshow(overlay(entry.image, entry.cams[j], mask=mask))
        axes[0, 1 + j].set_title(title, fontsize=7)
    for j in range(m):
        axes[1, j].imshow(overlay(entry.image, entry.attention[j], mask=mask))
        axes[1, j].set_title(f"head attention map {j + 1}", fontsize=7)
    cax = fig.add_axes((right + 0.15 / width, 0.08, 0.12 / width, 0.78 - 0.45 / height))
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap="jet"), cax=cax)
    bar.set_label("relative importance (per map)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"{name} per label, heat inside the field of view", fontsize=9)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # encoding dominated: fast PNG compression
            fig.savefig(tmp, dpi=dpi, format="png", pil_kwargs={"compress_level": 1})
    finally:
        plt.close(fig)
    return path
