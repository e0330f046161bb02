"""A preset is data: a base config, rows of overrides, seeds, a combine step and a renderer.

Every preset asks the same question — "what does this change do?" — and used to carry the same
plumbing to answer it. A :class:`Study` states the question (its base config, its rows of
overrides, its default seeds, one ``quick`` overlay for tests and demos); :func:`run_study`
answers it once for all of them:

1. each row's config is the base, then the row's overrides, then the ``quick`` overlay (when
   asked; then the row's own), then the user's ``--set key=value`` pairs, then the run's
   identity (``<row>_s<seed>``, the seed, the course task of its weights);
2. every config is validated by the config model before anything trains;
3. every row × seed trains through :func:`funduslab.training.runner.run`, which skips a run
   folder that already holds this exact run (an interrupted study resumes);
4. the combine step (ensembles, re-evaluations, pooled scores) reads the finished run folders;
5. the renderer turns it all into ``results.md``, written atomically.
"""

from __future__ import annotations

import copy
import glob
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from funduslab.config import RunConfig, atomic_write_text, config_from_dict
from funduslab.training.config_names import validate_names
from funduslab.experiments.sets import parse_sets
from funduslab.runs import RunFolder
from funduslab.training.runner import run

__all__ = ["Row", "Study", "StudyResult", "merge_config", "resolve_base", "reuse_runs",
           "row_config", "run_study", "select_rows", "study_configs"]

log = logging.getLogger(__name__)


def merge_config(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, nested sections merged key by key (inputs untouched).

    How a preset row's overrides meet the preset's base config (and the quick overlay).
    """
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Row:
    """One row of a study: a named change to its base config.

    Args:
        name: Row name and run-folder prefix (``focal`` → ``focal_s0``).
        note: What the row is, for the table.
        overrides: Nested config dict laid over the base (``{"train": {"loss": "focal"}}``).
        task: Course task id (``"2-1"``) → weights ``<team>_task2-1.pt``; ``None``: ``model.pt``.
        quick: Laid over the study's ``quick`` overlay for this row only (a tiny transformer
            in place of a large one).
        runs: Finished run folders that stand in for the row's runs as they are (trains nothing).
        reuse: Glob of finished run folders that stand in for the row's runs, each used only when
            it was trained under exactly this row's recipe and seed.
        team: Put the team in the weights name even without a task (``output.team``).
    """

    name: str
    note: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    task: str | None = None
    quick: Mapping[str, Any] = field(default_factory=dict)
    runs: tuple[Path, ...] = ()
    reuse: str = ""
    team: bool = False


@dataclass(frozen=True)
class Study:
    """The question a preset asks, as data.

    Args:
        name: Preset name (errors and config origins say it).
        base: Nested config dict every row starts from.
        rows: The rows, in table order.
        render: ``StudyResult → results.md`` text.
        seeds: Default seeds of every row.
        quick_seeds: Default seeds under ``--quick`` (default: ``seeds``).
        quick: Overlay of ``--quick`` (tiny model, images and epochs), laid over every row.
        combine: Called with the :class:`StudyResult` once every row has trained; its return
            value is ``StudyResult.combined`` for the renderer.
        finish: Last word on a row's merged config dict (after ``--set``), for fields that
            depend on others (a source decoded at the run's final image size).
    """

    name: str
    base: Mapping[str, Any]
    rows: tuple[Row, ...]
    render: Callable[[StudyResult], str]
    seeds: tuple[int, ...] = (0, 1, 2)
    quick_seeds: tuple[int, ...] | None = None
    quick: Mapping[str, Any] = field(default_factory=dict)
    combine: Callable[[StudyResult], Any] | None = None
    finish: Callable[[Row, dict[str, Any]], dict[str, Any]] | None = None


@dataclass
class StudyResult:
    """What a study produced: per row, its configs and run folders (one per seed)."""

    study: Study
    out: Path
    seeds: list[int]
    quick: bool
    configs: dict[str, list[RunConfig]]
    runs: dict[str, list[Path]] = field(default_factory=dict)
    combined: Any = None

    def config(self, row: str | None = None) -> RunConfig:
        """The first seed's resolved config of ``row`` (default: the first row)."""
        return self.configs[row or self.study.rows[0].name][0]

    def row(self, name: str) -> Row:
        """The study's row called ``name`` (its note, task, overrides)."""
        return next(r for r in self.study.rows if r.name == name)


def select_rows(rows: Sequence[Row], names: str, preset: str) -> tuple[Row, ...]:
    """The rows named in ``names`` (comma-separated, table order kept); ``""`` keeps all.

    Lets a user spend CPU on the rows that matter (e.g. one seed of every row first, then more
    seeds of the row that was best on val). An unknown name raises ``ValueError`` listing them.
    """
    wanted = [r.strip() for r in names.split(",") if r.strip()]
    if not wanted:
        return tuple(rows)
    known = [r.name for r in rows]
    unknown = [r for r in wanted if r not in known]
    if unknown:
        raise ValueError(f"unknown row(s) {', '.join(unknown)}; {preset} rows are: "
                         f"{', '.join(known)}")
    return tuple(r for r in rows if r.name in wanted)


#: Fields the study sets per run; ``--set`` may not change them.
_IDENTITY = ("train.seed", "output.name", "output.out", "output.team", "output.task")


def row_config(study: Study, row: Row, data: Path | None, out: Path, seed: int, *,
               quick: bool = False, sets: Mapping[str, Any] | None = None,
               team: str | None = None) -> RunConfig:
    """The validated config of one row and seed (run folder ``<row>_s<seed>``).

    Raises:
        ValueError: a field the config model rejects (the study and row are named).
    """
    paths: dict[str, Any] = {"output": {"out": str(out)}}
    if data is not None:
        paths["data"] = {"root": str(data)}
    raw = merge_config(merge_config(dict(study.base), paths), dict(row.overrides))
    if quick:
        raw = merge_config(merge_config(raw, dict(study.quick)), dict(row.quick))
    raw = _with_sets(raw, sets or {})
    if study.finish is not None:
        raw = study.finish(row, raw)
    raw = merge_config(raw, {"train": {"seed": seed},
                             "output": {"name": f"{row.name}_s{seed}",
                                        "team": team if (row.task or row.team) else None,
                                        "task": row.task}})
    return config_from_dict(raw, origin=f"{study.name} row {row.name!r}")


def resolve_base(base: Mapping[str, Any], quick_overlay: Mapping[str, Any], quick: bool = False,
                 sets: Sequence[str] = ()) -> dict[str, Any]:
    """``base`` as every row sees it: the quick overlay (when ``quick``), then ``--set``.

    For what a preset does before its rows exist (sizing a backbone, fitting a source model)
    with the settings the rows will really train under.
    """
    raw = merge_config(dict(base), dict(quick_overlay) if quick else {})
    return _with_sets(raw, parse_sets(sets))


def _with_sets(raw: dict[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with each dotted ``key: value`` of ``sets`` written in (sections created)."""
    for dotted, value in sets.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}  # a section the base leaves unset (train.source: null)
            node = node[key]
        node[leaf] = value
    return raw


def study_configs(study: Study, data: Path | None, out: Path, seeds: Sequence[int],
                  quick: bool = False, sets: Sequence[str] = (),
                  team: str | None = None) -> dict[str, list[RunConfig]]:
    """Every row's validated config per seed, before anything trains (a typo fails first).

    Raises:
        ValueError: a malformed or unknown ``--set`` key (the valid keys listed), a value the
            config model rejects, or an identity field (seed, run name, output folder) in ``sets``.
    """
    parsed = parse_sets(sets)
    reserved = [k for k in parsed if k in _IDENTITY]
    if reserved:
        raise ValueError(f"--set {', '.join(reserved)}: set by the study per run (seeds: "
                         "--seeds; output folder: --out)")
    configs = {row.name: [row_config(study, row, data, out, s, quick=quick, sets=parsed,
                                     team=team) for s in seeds] for row in study.rows}
    for row_configs in configs.values():
        validate_names(row_configs[0])  # a registry typo fails before the first row trains
    return configs


def run_study(study: Study, data: Path | None, out: Path, seeds: Sequence[int] | None = None,
              quick: bool = False, sets: Sequence[str] = (), team: str | None = None) -> Path:
    """Train every row × seed, combine, render; write ``<out>/results.md``; return its path.

    Args:
        study: The study.
        data: Dataset folder (``data.root`` of every row that does not set its own), or ``None``
            when the base config names it.
        out: Output folder: run folders ``<row>_s<seed>`` and ``results.md``.
        seeds: Seeds of every row (default: the study's).
        quick: Lay the study's ``quick`` overlay over every row; no progress bars.
        sets: ``key=value`` config overrides with dotted keys (``train.epochs=6``), laid over
            every row after the quick overlay.
        team: Team name of the rows' course weights (``<team>_task<k>.pt``).

    Raises:
        ValueError: see :func:`study_configs`; a ``reuse`` folder trained under another recipe.
    """
    out = Path(out)
    default = study.quick_seeds if quick and study.quick_seeds else study.seeds
    seeds = list(seeds) if seeds else list(default)
    configs = study_configs(study, data, out, seeds, quick, sets, team)
    result = StudyResult(study, out, seeds, quick, configs)
    for row in study.rows:
        if row.runs:
            result.runs[row.name] = list(row.runs)
        elif row.reuse:
            result.runs[row.name] = reuse_runs(row.reuse, row, configs[row.name])
        else:
            result.runs[row.name] = [run(cfg, progress=not quick) for cfg in configs[row.name]]
    if study.combine is not None:
        result.combined = study.combine(result)
    path = out / "results.md"
    atomic_write_text(path, study.render(result))
    log.info("wrote %s", path)
    return path


def reuse_runs(pattern: str, row: Row, configs: Sequence[RunConfig]) -> list[Path]:
    """Finished run folders matching ``pattern``, one per seed of ``configs``, each trained under
    exactly that config (output and evaluation-only fields aside).

    Raises:
        ValueError: no folder for a seed, or a folder whose config differs (fields named).
    """
    from funduslab.training.resume import config_differences

    by_seed: dict[int, tuple[Path, RunConfig]] = {}
    for hit in sorted(glob.glob(pattern)):
        folder = RunFolder(hit)
        if folder.is_finished:
            by_seed.setdefault(folder.run_config.train.seed, (folder.path, folder.run_config))
    found = []
    for want in configs:
        seed = want.train.seed
        if seed not in by_seed:
            raise ValueError(f"no finished run folder matching {pattern!r} has seed {seed} "
                             f"(seeds found: {sorted(by_seed) or 'none'})")
        folder, old = by_seed[seed]
        want = want.model_copy(deep=True)
        if want.train.task == "auto":  # saved configs hold the resolved task kind
            want.train.task = old.train.task
        diffs = config_differences(old, want)
        if diffs:
            raise ValueError(f"{folder} was not trained with row {row.name!r}'s recipe "
                             f"({'; '.join(diffs[:6])}); train the row instead")
        found.append(folder)
    return found
