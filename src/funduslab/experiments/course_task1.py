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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from funduslab.config import DEFAULT_EPOCHS
from funduslab.data.adapters.odir_course import find_course_checkpoints
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, Study, StudyResult, resolve_base, run_study
from funduslab.reporting.run_folder import read_metrics
from funduslab.reporting.tables import markdown_table, mean_std, split_scores

__all__ = ["QUICK", "Task1Row", "course_task1", "plan_rows", "task1_study"]

log = logging.getLogger(__name__)

SETUPS = {"1": "none", "2": "frozen", "3": "full"}
TEST_SPLIT = "offsite_test"
#: Per setup, what its rows change: a frozen backbone trains only the head (30 epochs, higher
#: LR, no warm-up, since each epoch is a pass over cached features).
SETUP_OVERRIDES: dict[str, dict[str, Any]] = {
    "none": {"train": {"setup": "none"}},
    "frozen": {"train": {"setup": "frozen", "epochs": 30, "lr": 3e-3, "warmup_epochs": 0}},
    "full": {"train": {"setup": "full"}},
}
#: ``--quick``: 64 px, batch 8, 5 epochs (head only) — 2 for full fine-tuning (:data:`QUICK_FULL`).
QUICK: dict[str, Any] = {"data": {"image_size": 64}, "train": {"epochs": 5, "batch_size": 8}}
QUICK_FULL: dict[str, Any] = {"train": {"epochs": 2}}
#: ``--quick`` over the source-model fit (``pretrain_epochs``).
QUICK_PRETRAIN: dict[str, Any] = {"train": {"epochs": 1}}
FAMILIES = {"EfficientNet": ("efficientnet", "tf_efficientnet_lite0"),
            "ResNet18": ("resnet18", "resnet18")}


@dataclass
class Task1Row:
    """One (family, sub-task) cell of the Task 1 table."""

    family: str
    task: str
    backbone: str
    weights: str
    weights_note: str
    image_size: int = 256

    @property
    def name(self) -> str:
        """Run-folder prefix: ``task1-3_resnet18``."""
        return f"task{self.task}_{self.family.lower()}"

    def row(self) -> Row:
        """The study row: the family's backbone, start weights and size under the setup."""
        setup = SETUPS[self.task[-1]]
        overrides = {"model": {"backbone": self.backbone, "weights": self.weights},
                     "data": {"image_size": self.image_size}}
        for section, values in SETUP_OVERRIDES[setup].items():
            overrides.setdefault(section, {}).update(values)
        return Row(self.name, self.weights_note, overrides, task=self.task,
                   quick=QUICK_FULL if setup == "full" else {})


def plan_rows(data: Path, out: Path, source: Path | None, quick: bool, seed: int,
              sizes: dict[str, int] | None = None, pretrain_epochs: int = 4) -> list[Task1Row]:
    """Decide the starting weights (and image size) of each row, pretraining source models
    when needed. ``sizes`` maps family name → image size as the rows train (default 256)."""
    course = find_course_checkpoints(data)
    rows: list[Task1Row] = []
    for family, (ckpt_key, timm_name) in FAMILIES.items():
        size = (sizes or {}).get(family, 256)
        if ckpt_key in course:
            arch = "efficientnet_b0" if ckpt_key == "efficientnet" else "resnet18"
            rows += [Task1Row(family, f"1-{j}", arch, str(course[ckpt_key]),
                              f"course checkpoint {course[ckpt_key].name}", size) for j in "123"]
            continue
        source_ckpt = None
        if source is not None:
            source_ckpt = _source_model(source, timm_name, out, quick, size, seed,
                                        pretrain_epochs)
        for j in "123":
            row = _fallback_row(family, f"1-{j}", timm_name, size, source, source_ckpt)
            if row is None:
                log.warning("skipping %s 1-1: no source model (pass --source or add "
                            "pretrained_backbone/ to the course folder)", family)
            else:
                rows.append(row)
    return rows


def _source_model(source: Path, timm_name: str, out: Path, quick: bool, size: int, seed: int,
                  pretrain_epochs: int) -> Path:
    """The family's source model (``funduslab pretrain``), fitted once and reused."""
    from funduslab.experiments.pretrain import pretrain_source_model

    epochs = resolve_base({"train": {"epochs": pretrain_epochs}}, QUICK_PRETRAIN, quick)
    start = "imagenet" if timm_name.startswith("tf_efficientnet_lite") else "none"
    return pretrain_source_model(source, backbone=timm_name, weights=start,
                                 out=out / "pretrained_backbone",
                                 epochs=epochs["train"]["epochs"], image_size=size, seed=seed,
                                 quick=quick)


def _fallback_row(family: str, task: str, timm_name: str, size: int, source: Path | None,
                  source_ckpt: Path | None) -> Task1Row | None:
    """A row without a course checkpoint: ImageNet Lite0 to train, else the source model, else
    random init to train; ``None`` for a 1-1 row with nothing to evaluate."""
    if family == "EfficientNet" and task != "1-1":
        return Task1Row(family, task, timm_name, "imagenet",
                        "ImageNet EfficientNet-Lite0 (offline package)", size)
    if source_ckpt is not None and source is not None:
        return Task1Row(family, task, timm_name, str(source_ckpt),
                        f"funduslab pretrain on {source.name} ({source_ckpt.name})", size)
    if task != "1-1":
        return Task1Row(family, task, timm_name, "none",
                        "random init (no course checkpoint, no --source)", size)
    return None


def task1_study(rows: Sequence[Task1Row], adapter: str = "odir_course",
                epochs: int = DEFAULT_EPOCHS) -> Study:
    """The Task 1 study: one row per (family, setup), its start weights as planned."""
    base = {"data": {"adapter": adapter}, "train": {"epochs": epochs, "batch_size": 32}}
    families = {r.name: f"{r.family} ({r.backbone})" for r in rows}
    return Study("course-task1", base, tuple(r.row() for r in rows),
                 partial(render_results, families=families), seeds=(0,), quick=QUICK)


@PRESETS.register("course-task1")
def course_task1(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None, adapter: str = "odir_course",
    epochs: int = DEFAULT_EPOCHS, image_size: int = 256, resnet_image_size: int | None = None,
    pretrain_epochs: int = 4, sets: Sequence[str] = (),
) -> Path:
    """Run Task 1.1–1.3 for both families; write ``results.md``; return its path.

    ``resnet_image_size`` lets ResNet18 (about 4× the FLOPs of Lite0) run smaller on a CPU;
    ``pretrain_epochs`` sets the source-model fit when no course checkpoint exists; ``sets``
    are ``key=value`` config overrides of every row (``train.epochs=6``).
    """
    out = Path(out)
    sizes = {family: resolve_base({"data": {"image_size": size}}, QUICK, quick, sets)
             ["data"]["image_size"]
             for family, size in (("EfficientNet", image_size),
                                  ("ResNet18", resnet_image_size or image_size))}
    rows = plan_rows(Path(data), out, source, quick, (seeds or [0])[0], sizes, pretrain_epochs)
    return run_study(task1_study(rows, adapter, epochs), Path(data), out, seeds, quick, sets,
                     team)


def render_results(result: StudyResult, families: dict[str, str]) -> str:
    """Markdown: per-disease P/R/F1 on offsite test and the course average F1 per row."""
    header = ["task", "model", "weights", "size", "D P/R/F1", "G P/R/F1", "A P/R/F1",
              "course avg F1 (0.5)", "course avg F1 (tuned thr.)", "weights file"]
    body = []
    for row in result.study.rows:
        run_dirs = result.runs[row.name]
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
        body.append([row.task, families[row.name], row.note,
                     f"{result.config(row.name).data.image_size} px", *cells, avg,
                     tuned, weights_file.name if weights_file else "—"])
    seeds_note = ", ".join(str(s) for s in result.seeds)
    return (
        "# Course Task 1 — transfer setups (offsite test)\n\n"
        f"Seeds: {seeds_note}. Per-disease precision/recall/F1 are the positive class at threshold "
        "0.5 (first seed); the course average F1 is the mean over diseases of the two-class macro "
        "F1 (the course template's figure), mean ± std over seeds. Tuned thresholds are chosen on "
        "val only. Submissions: `submission.csv` in each run folder.\n\n"
        + markdown_table(header, body)
    )
