"""Course Task 1: three transfer setups for EfficientNet and ResNet18 on the ODIR course split.

1.1 no fine-tuning (evaluate a source-trained model as it is), 1.2 frozen backbone + trained
classifier, 1.3 full fine-tuning. The course ships source checkpoints in
``pretrained_backbone/`` (torchvision EfficientNet-B0 and ResNet18 trained on ADAM, REFUGE2 and
APTOS); when they are absent, EfficientNet starts from ImageNet EfficientNet-Lite0 (offline
weights) and ResNet18 from a ``funduslab pretrain`` source model (if ``--source`` is given), and
``results.md`` says which weights each row used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from funduslab.config import DEFAULT_EPOCHS, RunConfig, atomic_write_text, config_from_dict
from funduslab.data.adapters.odir_course import find_course_checkpoints
from funduslab.experiments import PRESETS
from funduslab.reporting.run_folder import read_metrics
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.training.runner import run

__all__ = ["Task1Row", "course_task1"]

log = logging.getLogger(__name__)

SETUPS = {"1": "none", "2": "frozen", "3": "full"}
TEST_SPLIT = "offsite_test"


@dataclass
class Task1Row:
    """One (family, sub-task) cell of the Task 1 table."""

    family: str
    task: str
    backbone: str
    weights: str
    weights_note: str
    image_size: int = 256


def plan_rows(data: Path, out: Path, source: Path | None, quick: bool, seed: int,
              sizes: dict[str, int] | None = None, pretrain_epochs: int = 4) -> list[Task1Row]:
    """Decide the starting weights (and image size) of each row, pretraining source models
    when needed. ``sizes`` maps family name → image size (default 256; 64 when quick)."""
    from funduslab.experiments.pretrain import pretrain_source_model

    course = find_course_checkpoints(data)
    rows: list[Task1Row] = []
    families = {"EfficientNet": ("efficientnet", "tf_efficientnet_lite0"), "ResNet18": ("resnet18", "resnet18")}
    for family, (ckpt_key, timm_name) in families.items():
        size = 64 if quick else (sizes or {}).get(family, 256)
        if ckpt_key in course:
            arch = "efficientnet_b0" if ckpt_key == "efficientnet" else "resnet18"
            for j in "123":
                rows.append(Task1Row(family, f"1-{j}", arch, str(course[ckpt_key]),
                                     f"course checkpoint {course[ckpt_key].name}", size))
            continue
        source_ckpt = None
        if source is not None:
            start = "imagenet" if timm_name.startswith("tf_efficientnet_lite") else "none"
            source_ckpt = pretrain_source_model(
                source, backbone=timm_name, weights=start, out=out / "pretrained_backbone",
                epochs=1 if quick else pretrain_epochs, image_size=size, seed=seed,
                quick=quick,
            )
        for j in "123":
            if family == "EfficientNet" and j != "1":
                rows.append(Task1Row(family, f"1-{j}", timm_name, "imagenet",
                                     "ImageNet EfficientNet-Lite0 (offline package)", size))
            elif source_ckpt is not None:
                rows.append(Task1Row(family, f"1-{j}", timm_name, str(source_ckpt),
                                     f"funduslab pretrain on {source.name} ({source_ckpt.name})",
                                     size))
            elif j != "1":
                rows.append(Task1Row(family, f"1-{j}", timm_name, "none",
                                     "random init (no course checkpoint, no --source)", size))
            else:
                log.warning("skipping %s 1-1: no source model (pass --source or add "
                            "pretrained_backbone/ to the course folder)", family)
    return rows


def row_config(row: Task1Row, data: Path, out: Path, team: str, quick: bool, seed: int,
               adapter: str = "odir_course", epochs: int = DEFAULT_EPOCHS) -> RunConfig:
    """The run config of one row (quick = tiny demo/test settings)."""
    setup = SETUPS[row.task[-1]]
    train = {"setup": setup, "seed": seed, "epochs": epochs, "batch_size": 32}
    if setup == "frozen":
        train.update(epochs=30, lr=3e-3, warmup_epochs=0)
    data_cfg = {"adapter": adapter, "root": str(data), "image_size": row.image_size}
    if quick:
        train.update(epochs=2 if setup == "full" else 5, batch_size=8)
    return config_from_dict({
        "data": data_cfg,
        "model": {"backbone": row.backbone, "weights": row.weights},
        "train": train,
        "output": {"out": str(out), "name": f"task{row.task}_{row.family.lower()}_s{seed}",
                   "team": team, "task": row.task},
    })


@PRESETS.register("course-task1")
def course_task1(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None, adapter: str = "odir_course",
    epochs: int = DEFAULT_EPOCHS, image_size: int = 256, resnet_image_size: int | None = None,
    pretrain_epochs: int = 4,
) -> Path:
    """Run Task 1.1–1.3 for both families; write ``results.md``; return its path.

    ``resnet_image_size`` lets ResNet18 (about 4× the FLOPs of Lite0) run smaller on a CPU;
    ``pretrain_epochs`` sets the source-model fit when no course checkpoint exists.
    """
    seeds = seeds or [0]
    out = Path(out)
    sizes = {"EfficientNet": image_size, "ResNet18": resnet_image_size or image_size}
    rows = plan_rows(Path(data), out, source, quick, seeds[0], sizes, pretrain_epochs)
    results = []
    for row in rows:
        run_dirs = [run(row_config(row, Path(data), out, team, quick, s, adapter, epochs),
                        progress=not quick) for s in seeds]
        results.append((row, run_dirs))
    path = out / "results.md"
    atomic_write_text(path, render_results(results, seeds))
    return path


def render_results(results: list[tuple[Task1Row, list[Path]]], seeds: list[int]) -> str:
    """Markdown: per-disease P/R/F1 on offsite test and the course average F1 per row."""
    header = ["task", "model", "weights", "size", "D P/R/F1", "G P/R/F1", "A P/R/F1",
              "course avg F1 (0.5)", "course avg F1 (tuned thr.)", "weights file"]
    body = []
    for row, run_dirs in results:
        metrics = [read_metrics(d) for d in run_dirs]
        first = split_scores(metrics[0], TEST_SPLIT)
        cells = []
        for label in ("D", "G", "A"):
            c = first["per_class"][label]
            cells.append(f"{c['precision']:.3f}/{c['recall']:.3f}/{c['f1']:.3f}")
        avg = mean_std([split_scores(m, TEST_SPLIT)["course_average_f1"] for m in metrics])
        tuned = mean_std([split_scores(m, TEST_SPLIT, "tuned_thresholds")["course_average_f1"]
                          for m in metrics if "tuned_thresholds" in m["splits"][TEST_SPLIT]])
        weights_file = next(run_dirs[0].glob("*_task*.pt"), None)
        body.append([row.task, f"{row.family} ({row.backbone})", row.weights_note,
                     f"{row.image_size} px", *cells, avg,
                     tuned, weights_file.name if weights_file else "—"])
    seeds_note = ", ".join(str(s) for s in seeds)
    return (
        "# Course Task 1 — transfer setups (offsite test)\n\n"
        f"Seeds: {seeds_note}. Per-disease precision/recall/F1 are the positive class at threshold "
        "0.5 (first seed); the course average F1 is the mean over diseases of the two-class macro "
        "F1 (the course template's figure), mean ± std over seeds. Tuned thresholds are chosen on "
        "val only. Submissions: `submission.csv` in each run folder.\n\n"
        + markdown_table(header, body)
    )
