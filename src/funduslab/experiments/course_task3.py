"""Course Task 3: attention mechanisms on top of the fine-tuned backbone.

3-1 squeeze-and-excitation (Hu et al., CVPR 2018) and 3-2 multi-head self-attention (Vaswani et
al., NeurIPS 2017) heads, compared with the engine's linear head under the same full fine-tuning
recipe, several seeds each. Extra rows: one learned query per disease (Query2Label, Liu et al.
2021), CBAM (Woo et al., ECCV 2018) and identity-initialised SE blocks inserted after the
backbone's stages (``model.attention_stages``). Besides the scores, the table gives each model's
parameter count and its training throughput, so a gain can be weighed against its cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from funduslab.config import DEFAULT_EPOCHS
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, StudyResult, resolve_base, select_rows
from funduslab.experiments.variants import (
    COURSE_QUICK,
    course_recipe,
    render_variant_table,
    run_course_study,
)
from funduslab.models.backbones import backbone_info, create_backbone
from funduslab.runs import RunFolder

__all__ = ["course_task3", "parameter_count", "task3_variants", "throughput"]


def task3_variants(num_levels: int) -> tuple[Row, ...]:
    """The rows of the Task 3 table; ``num_levels`` = the backbone's SE insertion points
    (0 for ViT/Swin, which drops the ``se_stages`` row)."""
    rows = (
        Row("linear", "baseline: linear head on the pooled features"),
        Row("se", "SE (r=16) on the last feature map → pool → linear", {"model": {"head": "se"}},
            task="3-1"),
        Row("mha", "1 pre-norm self-attention block over the spatial tokens (dim 256, 4 heads, "
            "2-D sine positions) → mean pool → linear", {"model": {"head": "mha"}}, task="3-2"),
        Row("class_query", "one learned query per disease cross-attending over the tokens "
            "(Query2Label)", {"model": {"head": "class_query"}}),
        Row("cbam", "CBAM (channel + spatial gate) → pool → linear", {"model": {"head": "cbam"}}),
    )
    if not num_levels:
        return rows
    levels = list(range(1, num_levels + 1))
    return (*rows, Row("se_stages", f"identity-initialised SE after backbone feature levels "
                       f"{levels}; linear head", {"model": {"attention_stages": levels}}))


def parameter_count(run_dir: Path) -> int:
    """Trainable-architecture parameters of the model of ``run_dir`` (buffers excluded).

    From its saved weights, or, for a record of ``results/`` (which keeps no weights), from a
    model built afresh from its ``config.yaml``: the same architecture, so the same count.
    """
    from funduslab.models.factory import build_model, model_from_checkpoint

    folder = RunFolder(run_dir)
    if folder.weights is not None:
        model = model_from_checkpoint(folder.weights)
    else:
        cfg = folder.run_config
        model = build_model(cfg.model.model_copy(update={"weights": "none"}),
                            len(folder.label_names), cfg.data.image_size)
    return sum(p.numel() for p in model.parameters())


def throughput(run_dir: Path) -> float:
    """Training images per second of a run folder.

    The runner records no per-image timing, so this is ``epochs run × training images ÷
    timing_s.fit_and_data`` from ``metrics.json`` (epochs from ``history.csv``, training images
    from ``config.yaml``'s ``provenance.split_sizes``). The wall time includes image decoding
    (cached after the first run) and the per-epoch validation pass, so it understates pure
    training speed; it is comparable between rows of one table.
    """
    folder = RunFolder(run_dir)
    cfg = folder.config
    train_split = cfg["data"]["train_split"]
    n_train = int(cfg["provenance"]["split_sizes"][train_split])
    history = folder.history
    epochs = len(history) if history is not None else int(cfg["train"]["epochs"])
    seconds = float(folder.metrics["timing_s"]["fit_and_data"])
    return epochs * n_train / seconds if seconds > 0 else math.nan


def _cost_columns(result: StudyResult) -> dict[str, dict[str, str]]:
    params: dict[str, str] = {}
    speed: dict[str, str] = {}
    for name, run_dirs in result.runs.items():
        params[name] = f"{parameter_count(run_dirs[0]) / 1e6:.3f} M"
        rates = [throughput(d) for d in run_dirs]
        speed[name] = f"{sum(rates) / len(rates):.0f}"
    return {"parameters": params, "train images/s": speed}


@PRESETS.register("course-task3")
def course_task3(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None,
    backbone: str = "tf_efficientnet_lite0", weights: str = "imagenet", image_size: int = 256,
    epochs: int = DEFAULT_EPOCHS, rows: str = "", baseline_runs: str = "",
    sets: Sequence[str] = (),
) -> Path:
    """Run every Task 3 variant for every seed; write ``<out>/results.md``; return its path.

    Args:
        data: Course data folder (``odir_course`` layout).
        team: Team name for the ``<team>_task3-1.pt`` / ``<team>_task3-2.pt`` weights.
        out: Output folder (one run folder per variant and seed).
        quick, seeds, source: As for Task 2 (:func:`~funduslab.experiments.course_task2.
            course_task2`): tiny settings, seeds per variant (default 0, 1, 2), an optional
            ODIR-5K source every row starts from after ``funduslab pretrain``.
        backbone, weights, image_size, epochs: The recipe every head sits on (EfficientNet-Lite0,
            ImageNet, 256 px, the default epochs).
        rows: Comma-separated subset of rows to run (e.g. ``se,mha``); empty runs all.
        baseline_runs: Glob of finished run folders to use as the ``linear`` row instead of
            training it; each must match the row's recipe for its seed (checked).
        sets: ``key=value`` config overrides of every row (``train.epochs=6``).
    """
    recipe = resolve_base(course_recipe(backbone, image_size=image_size), COURSE_QUICK, quick,
                          sets)  # the backbone as the rows will build it
    net, size = recipe["model"]["backbone"], recipe["data"]["image_size"]
    num_levels = len(backbone_info(create_backbone(net, "none", img_size=size)).se_points)
    chosen = tuple(replace(r, reuse=baseline_runs if r.name == "linear" else "")
                   for r in select_rows(task3_variants(num_levels), rows, "course-task3"))
    return run_course_study(
        "course-task3", chosen, _render, data, out, team=team, quick=quick, seeds=seeds,
        source=source, sets=sets, backbone=backbone, weights=weights, image_size=image_size,
        epochs=epochs)


def _render(result: StudyResult) -> str:
    cfg = result.config()
    intro = (
        f"Backbone {cfg.model.backbone} ({cfg.model.weights} start), {cfg.data.image_size} px, "
        "full fine-tuning, the engine's recipe; only the head (or SE blocks inside the backbone) "
        "changes between rows. `parameters` counts the whole model; `train images/s` is epochs × "
        "training images ÷ the run's fit wall time (incl. validation and data loading; the "
        "runner records no per-image timing), mean over seeds, same machine for all rows."
    )
    return render_variant_table("Course Task 3 — attention heads (offsite test)", result, intro,
                                extra_columns=_cost_columns(result))
