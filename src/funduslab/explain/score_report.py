"""The Markdown summary and the figure of ``funduslab explain RUN --score``.

The summary gives, per method and label, the pointing-game hit rate and the energy inside the
mask beside their chance levels (the grown and plain mask area shares) and the faithfulness
score; the figure shows a few (image, label) pairs: the image with the mask outline, then each
map over the image with the mask outline and a marker at the map's maximum (green circle: hit,
red cross: miss).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from funduslab.config import atomic_path  # noqa: E402
from funduslab.explain.localisation import CENTRE_SIGMA  # noqa: E402
from funduslab.explain.panels import fov_mask, method_title, overlay  # noqa: E402

__all__ = ["save_score_figure", "summary_markdown"]

_BASELINE_TITLES = {"random": "random map", "centre_bias": "centre bias"}


def _title(method: str) -> str:
    return _BASELINE_TITLES.get(method, method_title(method))


def _fmt(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


def summary_markdown(frame: pd.DataFrame, notes: dict) -> str:
    """A Markdown page: how the scores were taken, then one table row per method and label."""
    metric = notes["metric"]
    faith = metric.column if metric is not None else None
    n_images = frame["id"].nunique()
    n_pairs = len(frame[["id", "label"]].drop_duplicates())
    centres = notes["centres"]
    lines = [
        f"# CAM localisation scores: {notes['run']}, split {notes['split']}",
        "",
        f"{n_pairs} (image, label) pairs on {n_images} images: every image of the split that is "
        f"positive for a label with a lesion mask (masks: {notes['source']}). Scores are taken "
        f"at the model's input, {notes['size']} px, inside the field of view.",
        "",
        f"- **hit**: pointing game (Zhang et al., ECCV 2016): the map's maximum lies within "
        f"{notes['tolerance_px']} px of the mask (15 px at 224 px, scaled). *hit chance*: share "
        "of the field of view within that distance of the mask. A *flat* map (all zero, as "
        "Grad-CAM can be after its ReLU) has no maximum: it counts as a miss (NaN in the CSV).",
        "- **energy**: share of the map's mass inside the mask (energy-based pointing game, "
        "Wang et al., CVPRW 2020). *energy chance*: the mask's share of the field of view (a "
        "uniform map). An all-zero map counts 0 (NaN in the CSV).",
    ]
    if faith == "deletion_auc":
        lines.append("- **deletion AUC**: the label's probability as the map's top pixels are "
                     "blurred away, area under the curve (Petsiuk et al., BMVC 2018); lower "
                     "is better.")
    elif faith is not None:
        lines.append(f"- **{faith}**: ROAD, (LeRF − MoRF) / 2 of the probability change (Rong "
                     "et al., ICML 2022); higher is better.")
    lines += [
        f"- baselines: *random map* (i.i.d. uniform, seed {notes['seed']}); *centre bias*, a "
        f"Gaussian (sigma {CENTRE_SIGMA} × side) at the fovea for {centres['fovea']} images "
        f"and at the image centre for {centres['image']} (no landmark).",
        "",
    ]
    head = ["method", "label", "n", "flat", "hit", "hit chance", "energy", "energy chance"]
    head += [faith.replace("_", " ")] if faith else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    methods = list(dict.fromkeys(frame["method"]))
    labels = [lab for lab in notes["labels"] if lab in set(frame["label"])]
    for method in methods:
        mine = frame[frame["method"] == method]
        groups = [(lab, mine[mine["label"] == lab]) for lab in labels]
        if len(labels) > 1:
            groups.append(("all", mine))
        for label, part in groups:
            if part.empty:
                continue
            cells = [_title(method), label, str(len(part)), str(int(part["hit"].isna().sum())),
                     _fmt(part["hit"].fillna(0.0).mean()), _fmt(part["hit_chance"].mean()),
                     _fmt(part["energy"].fillna(0.0).mean()), _fmt(part["mask_fraction"].mean())]
            cells += [_fmt(part[faith].mean())] if faith else []
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_score_figure(examples: Sequence, path: Path, dpi: int = 100) -> Path:
    """One row per example: image + mask outline, then each map with outline and peak marker.

    Args:
        examples: :class:`~funduslab.explain.score.Example` items (all with the same methods).
        path: PNG to write (atomically).
    """
    path = Path(path)
    methods = list(examples[0].maps) if examples else []
    rows, cols = max(1, len(examples)), 1 + len(methods)
    height = 2.35 * rows + 0.6
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, height), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.65 / height, wspace=0.05,
                        hspace=0.3)
    for ax in axes.flat:
        ax.axis("off")
    if not examples:
        axes[0, 0].text(0.5, 0.5, "no image with a mask", ha="center", va="center")
    for r, ex in enumerate(examples):
        fov = fov_mask(ex.image)
        axes[r, 0].imshow(ex.image)
        axes[r, 0].contour(ex.mask.astype(float), levels=[0.5], colors="cyan", linewidths=0.7)
        axes[r, 0].set_title(f"{ex.image_id}\n{ex.label} mask", fontsize=7)
        for c, method in enumerate(methods, start=1):
            cam, row = ex.maps[method], ex.rows[method]
            top = float(cam[fov].max()) if fov.any() else float(cam.max())
            heat = cam / top if top > 0 else cam  # full scale inside the field of view
            ax = axes[r, c]
            ax.imshow(overlay(ex.image, np.clip(heat, 0.0, 1.0).astype(np.float32), mask=fov))
            ax.contour(ex.mask.astype(float), levels=[0.5], colors="white", linewidths=0.7)
            hit = row["hit"]
            if not pd.isna(hit):
                good = hit >= 0.5
                ax.plot(row["peak_x"], row["peak_y"], "o" if good else "x",
                        color="lime" if good else "red", markersize=7, mew=2, fillstyle="none")
            verdict = "flat map" if pd.isna(hit) else ("hit" if hit >= 0.5 else "miss")
            ax.set_title(f"{_title(method)}: {ex.label}\n{verdict}, energy "
                         f"{_fmt(row['energy'])}", fontsize=7)
    fig.suptitle("Maps against lesion masks (outline); marker at each map's maximum", fontsize=9)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", pil_kwargs={"compress_level": 1})
    finally:
        plt.close(fig)
    return path
