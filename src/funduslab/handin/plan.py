"""Which runs go into a hand-in, under which course file names.

The course names each model ``<team>_task<k>-<j>.pt``. The task comes from the run's config
(``output.task``) unless ``--task RUN=k-j`` overrides it. Two runs mapping to one file name are
refused, naming both, unless their architectures differ; then every file of that task gets the
architecture as a suffix (``_resnet18``, ``_efficientnet``, ``_efficientnet_lite0``; a head other
than the linear one adds ``_<head>``, SE blocks inside the backbone ``_sestages``), so the
demo's ResNet18 and EfficientNet rows no longer overwrite each other.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funduslab.runs import RunFolder
from funduslab.inference.saved_model import SavedModel

__all__ = ["HandinRun", "architecture_slug", "assign_files", "load_handin_run", "parse_tasks",
           "resize_steps"]

_TASK = re.compile(r"^\d+-\d+$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass
class HandinRun:
    """One run on its way into the zip.

    Attributes:
        run_dir: The run folder.
        task: Course task ``k-j``.
        saved: The model and how it predicts (labels, thresholds, size, TTA, bf16).
        meta: Its weights file's metadata.
        metrics: Its ``metrics.json``.
        slug: Architecture name used as a file-name suffix on a clash.
        file: The ``.pt`` name in the zip (set by :func:`assign_files`).
    """

    run_dir: Path
    task: str
    saved: SavedModel
    meta: dict[str, Any]
    metrics: dict[str, Any]
    slug: str
    file: str = field(default="")


def check_team(team: str) -> str:
    """The team name, if it makes safe file names (``ValueError`` otherwise)."""
    if not _TEAM.match(team or ""):
        raise ValueError(f"--team {team!r} must be letters, digits, '_' or '-' (it names "
                         f"{team}.py and the .pt files)")
    return team


def parse_tasks(values: list[str], runs: list[Path]) -> dict[Path, str]:
    """``RUN=k-j`` overrides → {run folder: task}; RUN is a path as given or a folder name.

    Raises:
        ValueError: a malformed value, an unknown or ambiguous RUN, or a bad task id.
    """
    out: dict[Path, str] = {}
    for value in values:
        run, sep, task = value.rpartition("=")
        if not sep or not run:
            raise ValueError(f"--task {value!r}: write RUN=k-j, e.g. --task runs/lite0=1-1")
        if not _TASK.match(task):
            raise ValueError(f"--task {value!r}: the task must look like 1-1 or 3-2")
        hits = ([r for r in runs if Path(run).resolve() == r.resolve()]
                or [r for r in runs if r.name == run])
        if len(hits) != 1:
            what = "matches no run given" if not hits else "matches several runs"
            raise ValueError(f"--task {value!r}: {run!r} {what} "
                             f"({', '.join(str(r) for r in runs)})")
        out[hits[0]] = task
    return out


def resize_steps(preprocess: Any, image_size: int, where: str) -> list[list[Any]]:
    """The run's pipeline as ``[[size, pad_to_square], ...]`` when it only resizes.

    Raises:
        ValueError: another pipeline (NAME.py reproduces only ``none`` / resize steps).
    """
    from funduslab.preprocess import build_pipeline

    steps = build_pipeline(preprocess, image_size).spec()
    others = [s["name"] for s in steps if s["name"] != "resize"]
    if others:
        raise ValueError(f"{where} was trained with preprocessing {preprocess!r} (steps "
                         f"{', '.join(others)}); NAME.py reproduces only the pipeline 'none' "
                         "(pad to a square, resize) without OpenCV: hand in a run trained with "
                         "--preprocess none")
    return [[int(s["size"]), bool(s["pad_to_square"])] for s in steps]


def architecture_slug(meta: dict[str, Any]) -> str:
    """``resnet18``, ``efficientnet`` (B0, the course's name), ``efficientnet_lite0`` …, plus
    ``_<head>`` for a head other than linear and ``_sestages`` for SE blocks in the backbone."""
    name = str(meta.get("course_architecture") or meta.get("backbone") or "model")
    parts = ["efficientnet" if name == "efficientnet_b0" else name.removeprefix("tf_")]
    head = str(meta.get("head") or "linear")
    if head != "linear":
        parts.append(head)
    if meta.get("se_stages"):
        parts.append("sestages")
    return "_".join(parts)


def load_handin_run(run_dir: Path, task: str | None) -> HandinRun:
    """Read a finished single-model run folder for the hand-in.

    Raises:
        FileNotFoundError: not a finished run folder, or no weights.
        ValueError: an ensemble, cross-validation, grading or two-image run, or no task.
    """
    from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
    from funduslab.inference.saved_model import load_saved_model

    folder = RunFolder(run_dir)
    if not folder.config_path.is_file() or not folder.has_metrics:
        raise FileNotFoundError(f"{run_dir} is not a finished funduslab run folder (config.yaml "
                                "and metrics.json)")
    if folder.is_ensemble:
        raise ValueError(f"{run_dir} is an ensemble; NAME.py runs single models: bundle its "
                         "member runs instead")
    if folder.provenance.get("cross_validation"):
        raise ValueError(f"{run_dir} holds cross-validation folds; bundle one fold run instead")
    _, meta = load_funduslab_checkpoint(folder.require_weights())
    if meta.get("formulation"):
        raise ValueError(f"{run_dir} is a grading run; the course hand-in takes D/G/A models")
    if str(meta.get("dual") or "none") != "none":
        raise ValueError(f"{run_dir} fuses two images per prediction; NAME.py predicts one image "
                         "at a time")
    task = task or str((folder.config.get("output") or {}).get("task") or "")
    if not task:
        raise ValueError(f"{run_dir} has no course task (its config's output.task is empty, so "
                         f"its weights are model.pt): pass --task {run_dir}=k-j")
    if not _TASK.match(task):
        raise ValueError(f"{run_dir}: task {task!r} is not a course task k-j; pass "
                         f"--task {run_dir}=k-j")
    saved = load_saved_model(run_dir)
    return HandinRun(run_dir, task, saved, meta, folder.metrics, architecture_slug(meta))


def assign_files(team: str, runs: list[HandinRun]) -> list[HandinRun]:
    """Set each run's ``.pt`` name by the rule in the module docstring.

    Raises:
        ValueError: two runs with the same task and architecture (both named).
    """
    groups: dict[str, list[HandinRun]] = defaultdict(list)
    for r in runs:
        groups[f"{team}_task{r.task}"].append(r)
    for base, group in groups.items():
        if len(group) == 1:
            group[0].file = f"{base}.pt"
            continue
        by_slug: dict[str, list[HandinRun]] = defaultdict(list)
        for r in group:
            by_slug[r.slug].append(r)
        for slug, same in by_slug.items():
            if len(same) > 1:
                raise ValueError(f"runs {same[0].run_dir} and {same[1].run_dir} both map to "
                                 f"{base}.pt with the same architecture ({slug}): pass "
                                 f"--task {same[1].run_dir}=k-j to give one another task, or "
                                 "leave one out")
        for r in group:
            r.file = f"{base}_{r.slug}.pt"
    return runs
