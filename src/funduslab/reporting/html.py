"""``funduslab report --html``: one self-contained page comparing finished runs, and its Markdown.

The terminal table says which recipe scored best; a student's report also needs to show *why the
numbers can be trusted*: how wide the intervals are, what the curves look like, whether the
probabilities are calibrated, what the training did and where the model looks. This module puts
all of that for a set of run folders (or records) into ``DIR/report.html`` — plain HTML and CSS,
no scripts or network, figures as sibling PNG files in ``DIR/figures/`` (150 dpi, ready to
paste) — plus ``DIR/report.md`` and ``DIR/report.json`` (the numbers behind the page).

Per task kind (multi-label, grading) the page has the comparison table of
:func:`~funduslab.reporting.compare.compare_runs` (mean ± std over seeds), percentile-bootstrap
95 % intervals per run (:mod:`funduslab.metrics.bootstrap`), then per recipe: ROC, PR and
reliability figures (seeds overlaid, :mod:`funduslab.reporting.curves`), confusion matrices at
each run's thresholds, training curves, and Grad-CAM panels of the least certain images when a
run has weights (:func:`~funduslab.explain.run_explain.explain_run`). The truth comes from the
dataset table each run's ``config.yaml`` names; when it cannot be read, the page says so and
shows only what ``metrics.json`` and the predictions hold.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import atomic_write_text
from funduslab.explain.defaults import DEFAULT_CAM_METHOD
from funduslab.metrics import bootstrap_metrics
from funduslab.metrics.calibration import ece_per_class
from funduslab.reporting import curves
from funduslab.reporting.compare import compare_runs, summarize_run
from funduslab.plots.figures import plot_history
from funduslab.reporting.html_page import PAGE
from funduslab.reporting.tables import markdown_table
from funduslab.runs import RunFolder
from funduslab.runs.files import HISTORY_FILE, write_json
from funduslab.training.task_kinds import MultilabelKind, task_kind

__all__ = ["HtmlReport", "write_html_report"]

log = logging.getLogger(__name__)

@dataclass
class HtmlReport:
    """What :func:`write_html_report` wrote."""

    page: Path
    markdown: Path
    summary: Path
    figures: list[Path] = field(default_factory=list)


@dataclass
class _Context:
    out: Path
    split: str
    n_boot: int
    cam_images: int
    cam_method: str
    truth: curves.TruthCache = field(default_factory=curves.TruthCache)
    figures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    counter: int = 0

    def figure(self, stem: str) -> Path:
        self.counter += 1
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:60] or "figure"
        return self.out / "figures" / f"{self.counter:02d}_{name}.png"

    def src(self, path: Path) -> str:
        self.figures.append(path)
        return path.relative_to(self.out).as_posix()


def _cell(value: Any) -> str:
    text = str(value)
    align = ' class="t"' if text[:1].isalpha() else ""  # names left-aligned, numbers right
    return f"<td{align}>{escape(text)}</td>"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(map(_cell, row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _figure(ctx: _Context, path: Path, caption: str, md: list[str]) -> str:
    """An ``<img>`` of a PNG under ``figures/``, shown at 100 dpi: a 150-dpi figure stays
    sharp on a dense screen and does not fill the page."""
    from PIL import Image

    src = ctx.src(path)
    md.append(f"![{caption}]({src})\n")
    with Image.open(path) as img:
        width = round(img.size[0] * 100 / float((img.info.get("dpi") or (100,))[0]))
    return (f'<figure><img src="{escape(src)}" width="{width}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None or not np.isfinite(entry["value"]):
        return "—"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is None or not np.isfinite(low):
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def _intervals(scores: curves.RunScores, n_boot: int, kind: str,
               grades: int | None = None) -> dict[str, Any]:
    """Bootstrap 95 % intervals of the kind's headline metrics on one run's test split."""
    fns = task_kind(kind).bootstrap_metrics(scores, grades)
    return bootstrap_metrics(fns, scores.truth, scores.probs, scores.predicted, n_boot=n_boot)


def _legend_names(folders: list[RunFolder], seeds: list[int | None]) -> list[str]:
    if None not in seeds and len(set(seeds)) == len(seeds) and len(seeds) > 1:
        return [f"seed {s}" for s in seeds]
    return [f.path.name for f in folders]


def _cams(ctx: _Context, folders: list[RunFolder], recipe: str, md: list[str]) -> str:
    """Grad-CAM panels of the first run of the recipe with weights, or a note why none."""
    if ctx.cam_images < 1:
        return ""
    why = []
    for folder in folders:
        try:
            weights = folder.weights if not folder.is_record else None
        except ValueError as err:  # several .pt files and none configured
            why.append(str(err))
            continue
        if weights is None:
            what = "a record" if folder.is_record else ("an ensemble" if folder.is_ensemble
                                                       else "a run folder")
            why.append(f"{folder.path.name} is {what} without weights")
            continue
        from funduslab.explain.panels import method_title
        from funduslab.explain.run_explain import explain_run

        out = ctx.figure(f"cams_{folder.path.name}").with_suffix("")
        try:
            panels = explain_run(folder.path, split=ctx.split, n=ctx.cam_images,
                                 method=ctx.cam_method, selection="least", out=out)
        except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
            why.append(f"{folder.path.name}: {err}")
            continue
        name = method_title(ctx.cam_method)
        html = [f"<h4>{escape(name)} panels: {escape(folder.path.name)}</h4>"]
        md.append(f"#### {name} panels: {folder.path.name}\n")
        for panel in panels:
            html.append(_figure(ctx, panel, f"{name}, {folder.path.name}: one of the "
                                f"{len(panels)} {ctx.split} images the model was least sure "
                                "about (lowest mean probability of the true labels)", md))
        return "".join(html)
    from funduslab.explain.panels import method_title

    return _note(f"No {method_title(ctx.cam_method)} panels, as " + "; ".join(why) + ".")


def _run_figures(ctx: _Context, kind: str, folder: RunFolder,
                 scores: curves.RunScores | None, md: list[str]) -> str:
    """Confusion matrices (at the run's thresholds) and training curves of one run."""
    html, run = [], folder.path.name
    title = f"{run}: {ctx.split}"
    matrices = None
    strategy = task_kind(kind)
    if not strategy.per_label_probabilities:  # one confusion matrix of grades
        metrics = folder.metrics
        entry = ((metrics.get("splits") or {}).get(ctx.split) or {})
        entry = entry.get(strategy.score_block(metrics, entry)) or {}
        if entry.get("confusion_matrix"):
            path = curves.plot_grade_confusion(entry["confusion_matrix"],
                                               ctx.figure(f"confusion_{run}"), title)
            html.append(_figure(ctx, path, f"Confusion matrix of grades, {title}", md))
    elif scores is not None:
        matrices = curves.binary_confusions(scores.truth, scores.predicted)
    else:
        matrices = curves.confusions_from_metrics(folder, ctx.split)
    if matrices is not None:
        path = ctx.figure(f"confusion_{run}")
        frame = curves.plot_confusions(matrices, folder.label_names,
                                       MultilabelKind.run_thresholds(folder), path, title)
        atomic_write_text(path.with_suffix(".csv"), frame.to_csv(index=False))
        rebuilt = "" if scores is not None else " (rebuilt from metrics.json)"
        html.append(_figure(ctx, path, f"Confusion matrices at the run's thresholds, "
                            f"{title}{rebuilt}", md))
    if folder.history is not None:
        path = plot_history(folder.path / HISTORY_FILE, ctx.figure(f"curves_{run}"),
                            title=f"{run}: training curves")
        html.append(_figure(ctx, path, f"Training curves of {run} (dashed line: the epoch "
                            "whose weights were kept)", md))
    return "".join(html)


_CURVES = (("roc", curves.plot_roc, "ROC curves", "dots: each run's operating point"),
           ("pr", curves.plot_pr, "Precision–recall curves", "dots: each run's operating point"),
           ("reliability", curves.plot_reliability, "Reliability diagrams",
            "ECE in the legend; marker area ∝ images in the bin"))


def _recipe(ctx: _Context, kind: str, recipe: str, anchor: str, folders: list[RunFolder],
            seeds: list[int | None], md: list[str]) -> tuple[str, list[list[str]]]:
    """One recipe's section and its rows of the interval table."""
    plural = "s" if len(folders) > 1 else ""
    html = [f'<section class="recipe" id="{anchor}"><h3>{escape(recipe)} '
            f"({len(folders)} run{plural})</h3>"]
    md.append(f"### {recipe}\n")
    runs: dict[Path, curves.RunScores] = {}
    ci_rows = []
    for folder, name in zip(folders, _legend_names(folders, seeds)):
        scores, why = curves.run_scores(folder, ctx.split, name, kind, ctx.truth)
        info: dict[str, Any] = {"recipe": recipe, "kind": kind, "split": ctx.split,
                                "labels_from": "dataset" if scores is not None else "metrics"}
        ctx.summary[str(folder.path)] = info
        if scores is None:
            html.append(_note(f"{folder.path.name}: {why}. Curves, calibration and intervals "
                              "need the truth; what follows comes from metrics.json and the "
                              "predictions."))
            info["why_no_truth"] = why
            continue
        runs[folder.path] = scores
        cis = _intervals(scores, ctx.n_boot, kind, folder.metrics.get("num_grades"))
        info["bootstrap_95"] = cis
        row = [folder.path.name, recipe] + [_ci(v) for v in cis.values()]
        if task_kind(kind).per_label_probabilities:
            ece = ece_per_class(scores.truth, scores.probs)
            info["ece"] = dict(zip(scores.label_names, map(float, ece)))
            row += [f"{e:.3f}" for e in ece]
        ci_rows.append(row)
    if runs and task_kind(kind).per_label_probabilities:
        for what, plot, caption, how in _CURVES:
            path = ctx.figure(f"{what}_{recipe}")
            frame = plot(list(runs.values()), path, f"{caption}: {recipe} ({ctx.split})")
            atomic_write_text(path.with_suffix(".csv"), frame.to_csv(index=False))
            html.append(f"<h4>{escape(caption)}</h4>")
            html.append(_figure(ctx, path, f"{caption} per label, {recipe}, {ctx.split}; "
                                f"{how}", md))
    html.append("<h4>Confusion matrices and training curves, per run</h4>")
    for folder in folders:
        html.append(_run_figures(ctx, kind, folder, runs.get(folder.path), md))
    if task_kind(kind).per_label_probabilities:
        html.append(_cams(ctx, folders, recipe, md))
    html.append("</section>")
    return "".join(html), ci_rows


def _kind_section(ctx: _Context, kind: str, dirs: list[Path], per_run: bool,
                  md: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """Comparison table, interval table and the recipes of one task kind; nav entries."""
    header, rows = compare_runs(dirs, split=ctx.split, group=not per_run)
    groups: dict[str, list[tuple[Path, int | None]]] = {}
    for d in dirs:  # the grouping compare_runs makes, in the same first-seen order
        s = summarize_run(d, ctx.split)
        key = str(d) if per_run else json.dumps(s.recipe, sort_keys=True, default=str)
        groups.setdefault(key, []).append((d, s.seed))
    title = task_kind(kind).title
    recipe_md: list[str] = []
    parts, ci_rows, nav = [], [], [(kind, title)]
    for i, (members, row) in enumerate(zip(groups.values(), rows)):
        anchor = f"{kind}-{i + 1}"
        part, cis = _recipe(ctx, kind, row[0], anchor, [RunFolder(d) for d, _ in members],
                            [seed for _, seed in members], recipe_md)
        parts.append(part)
        ci_rows += cis
        nav.append((anchor, row[0]))
    html = [f'<h2 id="{kind}">{escape(title)}</h2>',
            f"<h3>Comparison: one row per recipe, mean ± std over its seeds ({ctx.split} as "
            "test)</h3>", _table(header, rows)]
    md += [f"## {title}\n", f"### Comparison (mean ± std over seeds, {ctx.split} as test)\n",
           markdown_table(header, rows)]
    if ci_rows:
        first = next(v for v in ctx.summary.values() if v.get("kind") == kind
                     and "bootstrap_95" in v)
        ci_header = ["run", "recipe", *(f"{k} [95 % CI]" for k in first["bootstrap_95"]),
                     *(f"ECE {k}" for k in first.get("ece", {}))]
        width = len(ci_header)
        ci_rows = [(r + ["—"] * width)[:width] for r in ci_rows]
        what = ("course average F1 at each run's thresholds; "
                if task_kind(kind).per_label_probabilities else "")
        html += [f"<h3>Per run: bootstrap 95 % intervals on {escape(ctx.split)}</h3>",
                 f'<p class="meta">{what}{ctx.n_boot} resamples of the test images.</p>',
                 _table(ci_header, ci_rows)]
        md += [f"### Bootstrap 95 % intervals ({ctx.split})\n", markdown_table(ci_header, ci_rows)]
    else:
        html.append(_note("No bootstrap intervals: no run's truth could be read (see the notes "
                          "below)."))
    md += recipe_md
    return "".join(html + parts), nav


def _check_report_args(dirs: list[Path], n_boot: int, cam_images: int) -> None:
    if not dirs:
        raise ValueError("no run folders to report")
    for name, value, low in (("n_boot", n_boot, 1), ("cam_images", cam_images, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")


def _fresh_figures_folder(out: Path) -> None:
    """An empty ``out/figures``: a previous report's figures there are removed (only when
    ``out`` holds a ``report.html``, so no folder this module did not write is ever cleared)."""
    if (out / "report.html").is_file():
        shutil.rmtree(out / "figures", ignore_errors=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)


def _runs_by_kind(dirs: list[Path]) -> dict[str, list[Path]]:
    """Run folders grouped by task kind (``metrics.json`` ``task``), in first-seen order."""
    kinds: dict[str, list[Path]] = {}
    for d in dirs:
        kinds.setdefault(str(RunFolder(d).metrics.get("task", "multilabel")), []).append(d)
    return kinds


def write_html_report(
    run_dirs: Sequence[Path | str],
    out_dir: Path | str,
    split: str = "offsite_test",
    per_run: bool = False,
    cam_images: int = 4,
    cam_method: str = DEFAULT_CAM_METHOD,
    n_boot: int = 1000,
    skipped: Sequence[tuple[Path, str]] = (),
) -> HtmlReport:
    """Write ``report.html``, ``report.md``, ``report.json`` and ``figures/`` into ``out_dir``.

    Args:
        run_dirs: Finished run folders or records (see
            :func:`~funduslab.runs.find_run_folders`).
        out_dir: Output folder (created). A previous report's ``figures/`` there is replaced.
        split: The split reported as test.
        per_run: One row (and section) per run instead of one per recipe.
        cam_images: Grad-CAM panels per recipe (its first run with weights); 0 for none.
        cam_method: CAM method name (:data:`~funduslab.explain.cams.CAMS`).
        n_boot: Bootstrap resamples per interval.
        skipped: ``(folder, why)`` pairs to list on the page (unfinished runs).

    Raises:
        ValueError: no run folders, or ``n_boot`` / ``cam_images`` not usable.
    """
    dirs = [Path(d) for d in run_dirs]
    _check_report_args(dirs, n_boot, cam_images)
    out = Path(out_dir)
    _fresh_figures_folder(out)
    ctx = _Context(out, split, n_boot, cam_images, cam_method)
    md = [f"# funduslab report: {len(dirs)} runs, {split} as test\n"]
    body, nav = [], []
    for kind, members in _runs_by_kind(dirs).items():
        part, entries = _kind_section(ctx, kind, members, per_run, md)
        body.append(part)
        nav += entries
    if skipped:
        body.append("<h2 id=\"skipped\">Skipped folders</h2>" + "".join(
            _note(f"{p}: {why}") for p, why in skipped))
    meta = (f"{len(dirs)} run{'s' if len(dirs) > 1 else ''} · {split} as test split · "
            f"written {time.strftime('%Y-%m-%d %H:%M')}")
    links = " ".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in nav)
    page = PAGE.substitute(title="funduslab report", meta=escape(meta), nav=links,
                            body="\n".join(body), n_boot=n_boot)
    report = HtmlReport(out / "report.html", out / "report.md", out / "report.json",
                        list(ctx.figures))
    atomic_write_text(report.page, page)
    atomic_write_text(report.markdown, "\n".join(md))
    write_json(report.summary, {"split": split, "n_boot": n_boot, "runs": ctx.summary})
    log.info("report of %d runs written to %s", len(dirs), report.page)
    return report
