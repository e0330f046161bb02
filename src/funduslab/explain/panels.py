"""Heat-map overlays and one panel figure per image, written atomically as PNG.

A panel shows the image the model saw (after preprocessing, at training resolution), then one
overlay per disease titled with its probability, the predicted label at the run's threshold and,
when known, the true label. With head attention maps a second row shows one overlay per map.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from pytorch_grad_cam.utils.image import show_cam_on_image  # noqa: E402

__all__ = ["PanelEntry", "overlay", "panel_filename", "save_panel"]

_UMASK = os.umask(0o022)  # read the process umask once, at import
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # mkstemp creates 0600; finished files get the usual mode


def overlay(image: np.ndarray, heat: np.ndarray, image_weight: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured heat map onto an image.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        heat: ``(H, W)`` floats in [0, 1].
        image_weight: Share of the image in the blend (0–1).

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
    return show_cam_on_image(image.astype(np.float32) / 255.0, heat.astype(np.float32),
                             use_rgb=True, image_weight=image_weight)


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

    The file is written to a temporary name in the same folder and renamed into place.
    """
    k = len(label_names)
    if entry.cams.shape[0] != k:
        raise ValueError(f"{entry.cams.shape[0]} heat maps for {k} labels {list(label_names)}")
    m = 0 if entry.attention is None else int(entry.attention.shape[0])
    cols = max(1 + k, m)
    rows = 2 if m else 1
    height = 2.5 * rows + 0.3
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, height), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.45 / height,
                        wspace=0.04, hspace=0.14)  # fixed layout: faster than tight/constrained
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(entry.image)
    axes[0, 0].set_title(entry.image_id, fontsize=8)
    for j, name in enumerate(label_names):
        title = f"{name}  p={entry.probabilities[j]:.2f}  pred {int(entry.predicted[j])}"
        if entry.truth is not None:
            title += f"  true {int(entry.truth[j])}"
        axes[0, 1 + j].imshow(overlay(entry.image, entry.cams[j]))
        axes[0, 1 + j].set_title(title, fontsize=7)
    for j in range(m):
        axes[1, j].imshow(overlay(entry.image, entry.attention[j]))
        axes[1, j].set_title(f"attention map {j + 1}", fontsize=7)
    fig.suptitle(method, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, pil_kwargs={"compress_level": 1})  # encoding dominated
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
