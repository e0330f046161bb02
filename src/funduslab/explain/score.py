"""Score a run's CAMs against lesion masks: one tidy row per (method, label, image).

:func:`score_run` is the one call a benchmark needs: it loads the run folder's model and data,
takes every image of the split (default: the run's test split) that is positive for a label with
a lesion mask, computes each CAM method's maps (the same computation as ``funduslab explain``,
:func:`~funduslab.explain.cams.cams_and_logits`) and two baselines on the same images, and
returns their pointing-game hit, energy inside the mask (:mod:`~funduslab.explain.localisation`)
and a faithfulness score (:mod:`~funduslab.explain.faithfulness`). :func:`explain_scores`, behind
``funduslab explain RUN --score``, also writes ``explain_scores.csv``, a Markdown summary and a
figure.

Masks come from ``--masks DIR`` (a folder with ``masks.csv``, :mod:`funduslab.data.mask_index`),
else ``<data root>/masks/``, else the table's own ``mask_<label>`` columns (IDRiD). A mask is at
the size of its image as stored; it follows the run's preprocessing (crop, pad, resize) with
:func:`~funduslab.preprocess.geometry.preprocess_with_masks`, so all scores are taken on the
image the model saw, inside its field of view (:func:`~funduslab.explain.panels.fov_mask`, as
the panels draw heat): maxima, mass, chance levels and removed pixels all count there only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from funduslab.config import RunConfig, atomic_write_text
from funduslab.data.imageio import read_mask, read_rgb
from funduslab.data.mask_index import read_landmarks, read_mask_index
from funduslab.data.table import SampleTable
from funduslab.explain.cams import CAMS, cams_and_logits
from funduslab.explain.defaults import DEFAULT_CAM_METHOD
from funduslab.explain.faithfulness import FAITHFULNESS, FaithfulnessMetric
from funduslab.explain.localisation import (
    area_fraction,
    centre_bias_map,
    default_tolerance_px,
    energy_in_mask,
    grow_mask,
    peak_location,
    pointing_game,
    random_map,
)
from funduslab.explain.panels import fov_mask
from funduslab.explain.run_explain import load_run, run_table

__all__ = ["BASELINES", "Example", "explain_scores", "score_run", "score_split"]

log = logging.getLogger(__name__)

BASELINES = ("random", "centre_bias")


@dataclass
class Example:
    """One (image, label) as scored, kept for the figure."""

    image_id: str
    label: str
    image: np.ndarray  # (S, S, 3) uint8, as the model saw it
    mask: np.ndarray  # (S, S) bool
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (S, S)
    rows: dict[str, dict] = field(default_factory=dict)  # method -> its score row


@dataclass
class _Scored:
    frame: pd.DataFrame
    examples: list[Example]
    notes: dict[str, object]


def score_split(table: SampleTable, cfg: RunConfig) -> str:
    """The run's test split: the first labelled split that is neither train nor val."""
    fit = {cfg.data.train_split, cfg.data.val_split}
    labelled = [s for s in table.splits
                if s not in fit and bool(table.frame.loc[table.frame["split"] == s,
                                                         "labelled"].all())]
    if not labelled:
        raise ValueError(f"no labelled test split besides {sorted(fit)} in {table.source}; "
                         f"pass --split (splits present: {table.splits})")
    return labelled[0]


def _methods(methods: str | Sequence[str]) -> list[str]:
    names = methods.split(",") if isinstance(methods, str) else list(methods)
    names = [m.strip() for m in names if m.strip()]
    if names == ["all"]:
        return CAMS.names()
    for name in names:
        CAMS.get(name)  # ValueError listing the valid methods
    if not names:
        raise ValueError(f"no CAM method given; valid: {CAMS.names()} or 'all'")
    return list(dict.fromkeys(names))


def _mask_source(table: SampleTable, labels: list[str], masks_dir: Path | None,
                 data_root: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """``(index id,label,path; landmarks or None; where they came from)``."""
    if masks_dir is None and (data_root / "masks" / "masks.csv").is_file():
        masks_dir = data_root / "masks"
    if masks_dir is not None:
        return read_mask_index(masks_dir), read_landmarks(masks_dir), str(masks_dir)
    cols = {f"mask_{label}": label for label in labels if f"mask_{label}" in table.frame}
    if cols:  # IDRiD keeps its ground-truth mask paths in the table
        long = table.frame.melt(id_vars="id", value_vars=list(cols), value_name="path")
        long["label"] = long["variable"].map(cols)
        return long.loc[long["path"] != "", ["id", "label", "path"]], None, "table mask columns"
    raise FileNotFoundError(
        f"no lesion masks: {data_root / 'masks' / 'masks.csv'} not found; write the data with "
        "`funduslab synth --masks` or pass --masks DIR (a folder holding masks.csv)")


def _read_masks(image_path: str, mask_paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rgb = read_rgb(image_path)
    masks = []
    for path in mask_paths:
        mask = read_mask(path)
        if mask.shape != rgb.shape[:2]:
            raise ValueError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} px but its image "
                             f"{image_path} is {rgb.shape[1]}x{rgb.shape[0]}; a mask must be the "
                             "size of its image as stored")
        masks.append(mask)
    return rgb, np.stack(masks)


@dataclass
class _Prepared:
    """One image as the model saw it, with its positive labels' masks moved along."""

    image_id: str
    image: np.ndarray  # (S, S, 3) uint8
    masks: dict[str, np.ndarray]  # label -> (S, S) bool
    fovea: tuple[float, float] | None


def _prepare(image_id: str, image_path: str, index: pd.DataFrame,
             landmarks: pd.DataFrame | None, pipeline, size: int) -> _Prepared:
    from funduslab.preprocess.geometry import preprocess_with_masks

    mine = index[index["id"] == image_id]
    rgb, masks = _read_masks(image_path, mine["path"].tolist())
    img, moved, place = preprocess_with_masks(rgb, masks, pipeline, size)
    fovea = None
    if landmarks is not None and image_id in landmarks.index:
        fovea = place.point(float(landmarks.at[image_id, "fovea_x"]),
                            float(landmarks.at[image_id, "fovea_y"]))
    return _Prepared(image_id, img, dict(zip(mine["label"], moved)), fovea)


def _score_maps(maps: dict[str, np.ndarray], mask: np.ndarray, fov: np.ndarray, tol: int,
                centre: str, seconds: dict[str, float]) -> list[dict]:
    rows = []
    for method, cam in maps.items():
        px, py = peak_location(cam, fov)
        rows.append({"method": method, "kind": "baseline" if method in BASELINES else "cam",
                     "hit": pointing_game(cam, mask, tol, fov),
                     "energy": energy_in_mask(cam, mask, fov),
                     "peak_x": px, "peak_y": py,
                     "centre": centre if method == "centre_bias" else "",
                     "cam_seconds": seconds.get(method, 0.0)})
    return rows


@dataclass
class _Scoring:
    """What every (image, label) pair of one :func:`_score` call is scored with."""

    model: torch.nn.Module
    labels: list[str]
    names: list[str]  # CAM methods
    metric: FaithfulnessMetric | None
    tol: int  # pointing-game tolerance, px
    size: int  # model input side, px
    seed: int
    position: dict[str, int]  # image id -> row in the split: the random baseline's stream
    device: str
    n_examples: int


def _check_batching(batch_size: int, limit: int | None) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"the number of images must be a positive integer, got {limit!r}")


def _positive_masks(index: pd.DataFrame, truth: pd.DataFrame, labels: list[str], split: str,
                    source: str) -> pd.DataFrame:
    """The mask index rows of the split's images, for labels those images are positive for."""
    index = index[index["id"].isin(truth.index) & index["label"].isin(labels)]
    positive = [truth.at[i, lab] == 1 for i, lab in zip(index["id"], index["label"])]
    index = index[np.asarray(positive, dtype=bool)]
    if index.empty:
        raise ValueError(f"no image of split {split!r} has a mask in {source} for a positive "
                         f"label of {labels}; check that the masks belong to this dataset")
    return index


def _batch_cams(scoring: _Scoring, batch: list[_Prepared]
                ) -> tuple[torch.Tensor, dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """``(images (B, 3, S, S), method -> maps (B, L, S, S), method -> seconds per image,
    probabilities (B, L))`` of one batch."""
    x = torch.from_numpy(np.stack([b.image for b in batch])).permute(0, 3, 1, 2)
    x = x.float().div(255.0).to(scoring.device)
    cams, seconds = {}, {}
    for method in scoring.names:
        tic = time.perf_counter()
        cams[method], logits = cams_and_logits(scoring.model, x, method)
        seconds[method] = (time.perf_counter() - tic) / len(x)
    probs = torch.sigmoid(logits).numpy()
    return x, cams, seconds, probs


def _score_batch(scoring: _Scoring, batch: list[_Prepared], records: list[dict],
                 examples: list[Example], centres: dict[str, int]) -> None:
    """Append the rows of every (image, positive label with a mask) of ``batch`` to
    ``records``, and the first ``n_examples`` of them to ``examples``."""
    x, cams, seconds, probs = _batch_cams(scoring, batch)
    size, labels, tol = scoring.size, scoring.labels, scoring.tol
    for j, item in enumerate(batch):
        where = "fovea" if item.fovea is not None else "image"
        centres[where] += 1
        centre = item.fovea or ((size - 1) / 2.0, (size - 1) / 2.0)
        fov = fov_mask(item.image)  # as in the panels: the model sees black outside
        for label, mask in item.masks.items():
            k = labels.index(label)
            if not (mask & fov).any():  # the lesion fell outside the preprocessed image
                log.warning("mask of %s %s is empty in the field of view after "
                            "preprocessing; skipped", item.image_id, label)
                continue
            rng = np.random.default_rng(
                np.random.SeedSequence([scoring.seed, scoring.position[item.image_id], k]))
            maps = {m: cams[m][j, k] for m in scoring.names}
            maps["random"] = random_map(mask.shape, rng)
            maps["centre_bias"] = centre_bias_map(mask.shape, centre)
            scored = _score_maps(maps, mask, fov, tol, where, seconds)
            if scoring.metric is not None:
                faith = scoring.metric.score(scoring.model, x[j], np.stack(list(maps.values())),
                                             k, scoring.seed, fov)
                for row, value in zip(scored, faith):
                    row[scoring.metric.column] = float(value)
            common = {"label": label, "id": item.image_id,
                      "mask_fraction": area_fraction(mask, fov),
                      "hit_chance": area_fraction(grow_mask(mask, tol), fov),
                      "probability": float(probs[j, k]), "tolerance_px": tol}
            records.extend({**row, **common} for row in scored)
            if len(examples) < scoring.n_examples:
                examples.append(Example(item.image_id, label, item.image, mask, maps,
                                        dict(zip(maps, records[-len(maps):]))))


def _columns(metric: FaithfulnessMetric | None) -> list[str]:
    order = ["method", "kind", "label", "id", "hit", "energy", "mask_fraction", "hit_chance"]
    order += [metric.column] if metric is not None else []
    order += ["probability", "tolerance_px", "centre", "peak_x", "peak_y", "cam_seconds"]
    return order


def _score(run_dir: Path | str, n_examples: int = 0,
           methods: str | Sequence[str] = DEFAULT_CAM_METHOD,
           split: str | None = None, masks_dir: Path | str | None = None,
           data_root: Path | str | None = None, tolerance_px: int | None = None,
           faithfulness: str | None = "deletion", seed: int = 0, batch_size: int = 8,
           device: str = "cpu", limit: int | None = None,
           only_labels: Sequence[str] | None = None) -> _Scored:
    from funduslab.preprocess import build_pipeline

    names = _methods(methods)
    metric = FAITHFULNESS.get(faithfulness) if faithfulness not in (None, "none") else None
    _check_batching(batch_size, limit)
    loaded = load_run(run_dir, device=device)
    cfg, labels = loaded.cfg, loaded.label_names
    table = run_table(loaded, data_root)
    split = split or score_split(table, cfg)
    rows = table.split(split)
    root = Path(data_root or cfg.data.root)
    index, landmarks, source = _mask_source(table, labels, Path(masks_dir) if masks_dir else None,
                                            root)
    truth = rows.set_index("id")
    wanted = labels if not only_labels else list(only_labels)
    unknown = [lab for lab in wanted if lab not in labels]
    if unknown:
        raise ValueError(f"labels {unknown} are not the run's; it predicts {labels}")
    index = _positive_masks(index, truth, wanted, split, source)
    with_mask = set(index["id"])
    ids = [i for i in rows["id"] if i in with_mask][:limit]
    size = cfg.data.image_size
    pipeline = build_pipeline(cfg.data.preprocess, size)
    tol = default_tolerance_px(size) if tolerance_px is None else int(tolerance_px)
    position = {image_id: n for n, image_id in enumerate(rows["id"])}
    scoring = _Scoring(loaded.model, labels, names, metric, tol, size, seed, position, device,
                       n_examples)
    records: list[dict] = []
    examples: list[Example] = []
    centres = {"fovea": 0, "image": 0}
    log.info("scoring %s on %d %s images (masks: %s) with %s", loaded.run_dir, len(ids), split,
             source, ", ".join(names))
    for start in range(0, len(ids), batch_size):
        batch = [_prepare(i, truth.at[i, "path"], index, landmarks, pipeline, size)
                 for i in ids[start:start + batch_size]]
        _score_batch(scoring, batch, records, examples, centres)
    notes = {"run": loaded.run_dir.name, "split": split, "source": source, "tolerance_px": tol,
             "size": size, "seed": seed, "centres": centres, "metric": metric,
             "faithfulness": faithfulness, "methods": names, "labels": labels}
    return _Scored(pd.DataFrame(records, columns=_columns(metric)), examples, notes)


def score_run(
    run_dir: Path | str,
    methods: str | Sequence[str] = DEFAULT_CAM_METHOD,
    split: str | None = None,
    masks_dir: Path | str | None = None,
    data_root: Path | str | None = None,
    tolerance_px: int | None = None,
    faithfulness: str | None = "deletion",
    seed: int = 0,
    batch_size: int = 8,
    device: str = "cpu",
    limit: int | None = None,
    labels: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score CAM methods of a run against lesion masks on one split.

    Args:
        run_dir: A finished multi-label run folder.
        methods: CAM method name(s) in :data:`~funduslab.explain.cams.CAMS`, a comma list, or
            ``"all"``.
        split: Split to score (default: :func:`score_split`, e.g. ``offsite_test``, ``test``).
        masks_dir: Folder with ``masks.csv`` (default: ``<data root>/masks``, else the table's
            ``mask_<label>`` columns).
        data_root: Dataset root if it moved since training.
        tolerance_px: Pointing-game tolerance at the model's input size (default: 15 px at 224).
        faithfulness: A name in :data:`~funduslab.explain.faithfulness.FAITHFULNESS`
            (``deletion``, ``road``) or ``None``/``"none"`` to skip it.
        seed: Seed of the random baseline and of ROAD's imputation noise.
        batch_size: Images per CAM pass.
        device: ``cpu`` or ``cuda``.
        limit: Score at most this many images (table order).
        labels: Score only these labels (default: every label the run predicts); an image
            counts only when it is positive for one of them.

    Returns:
        One row per (method, label, image), CAM methods and the baselines ``random`` and
        ``centre_bias`` (``kind`` tells them apart): ``method, kind, label, id, hit, energy,
        mask_fraction, hit_chance, [deletion_auc | road], probability, tolerance_px, centre,
        peak_x, peak_y, cam_seconds``. All in the model's input frame and inside its field of
        view: ``hit`` is NaN for a flat map and ``energy`` for an all-zero one;
        ``mask_fraction`` and ``hit_chance`` are the mask's and the grown mask's shares of the
        field of view (a uniform map's energy and hit rate); ``probability`` is the model's for
        the label; ``centre`` says where the centre-bias Gaussian sat (``fovea`` / ``image``);
        ``cam_seconds`` is the method's time per image (all labels; 0 for baselines).

    Raises:
        FileNotFoundError: missing run folder, weights, data, masks folder or mask index.
        ValueError: unknown method or metric, a grading run, no positive image with a mask,
            a mask whose size differs from its image (the message names the file).
    """
    return _score(run_dir, 0, methods, split, masks_dir, data_root, tolerance_px, faithfulness,
                  seed, batch_size, device, limit, labels).frame


def explain_scores(
    run_dir: Path | str,
    out: Path | str | None = None,
    n_examples: int = 4,
    **options,
) -> dict[str, Path]:
    """:func:`score_run` and write its table, a Markdown summary and a figure.

    Args:
        run_dir: A finished multi-label run folder.
        out: Output folder (default: the run folder, figure under ``figures/``).
        n_examples: (image, label) rows in the figure.
        **options: Passed to :func:`score_run`.

    Returns:
        ``{"table": explain_scores.csv, "summary": explain_scores.md, "figure": ….png}``.
    """
    from funduslab.explain.score_report import save_score_figure, summary_markdown

    scored = _score(run_dir, n_examples, **options)  # TypeError for an unknown option
    run_dir = Path(run_dir)
    folder = Path(out) if out is not None else run_dir
    paths = {"table": folder / "explain_scores.csv", "summary": folder / "explain_scores.md",
             "figure": (folder if out is not None else run_dir / "figures") / "explain_scores.png"}
    atomic_write_text(paths["table"], scored.frame.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths["summary"], summary_markdown(scored.frame, scored.notes))
    save_score_figure(scored.examples, paths["figure"])
    return paths
