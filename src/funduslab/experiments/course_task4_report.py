"""Course Task 4's results: the per-method row, the val-only choice of the best method, its
saved ``<team>_task4.pt``, and ``results.md`` / ``results.json``.

Kept apart from :mod:`funduslab.experiments.course_task4` (which trains and combines the
methods) so that scoring and rendering read only finished run folders: the comparison can be
re-checked — and tested — without training anything. Every score is the course average F1 from
a run's ``metrics.json``; the best method is picked on val, never on test.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.experiments.variants import TEST_SPLIT
from funduslab.reporting.tables import markdown_table, mean_std, split_scores
from funduslab.runs import RunFolder

__all__ = ["DEFAULT_ROW", "MethodResult", "best_by_val", "choose_row", "render_results",
           "run_seconds", "save_best_weights", "summary", "val_standard_error"]

log = logging.getLogger(__name__)


@dataclass
class MethodResult:
    """One row of the Task 4 table: its run folders and the CPU seconds they took."""

    name: str
    note: str
    run_dirs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""


def run_seconds(run_dir: Path) -> float:
    """Total training seconds a finished run recorded (0 when it recorded none)."""
    timing = RunFolder(run_dir).metrics.get("timing_s", {})
    return float(timing.get("total", 0.0))


def _scores(run_dirs: list[Path], split: str, kind: str = "threshold_0.5") -> list[float]:
    out = []
    for d in run_dirs:
        metrics = RunFolder(d).metrics
        if split in metrics["splits"] and kind in metrics["splits"][split]:
            out.append(split_scores(metrics, split, kind)["course_average_f1"])
    return out


def best_by_val(results: dict[str, MethodResult]) -> str:
    """The row with the highest mean val course average F1 at 0.5 (test never consulted)."""
    return max(_val_means(results).items(), key=lambda kv: kv[1])[0]


def _val_means(results: dict[str, MethodResult]) -> dict[str, float]:
    return {name: float(np.mean(v)) for name, r in results.items() if r.run_dirs
            and (v := _scores(r.run_dirs, "val"))}


#: The row chosen when val cannot tell the rows apart: the seeds' soft vote.
DEFAULT_ROW = "soft_voting"


def val_standard_error(run_dir: Path, n_boot: int = 1000) -> float | None:
    """Bootstrap standard error of a run's val course average F1 (its predictions against the
    dataset's truth, resampling the val images); ``None`` when the truth is out of reach."""
    from funduslab.metrics import bootstrap_metrics, course_average_f1
    from funduslab.reporting.curves import TruthCache, run_scores

    scores, _ = run_scores(RunFolder(run_dir), "val", "val", "multilabel", TruthCache())
    if scores is None:
        return None
    ci = bootstrap_metrics({"f1": lambda y, p, d: course_average_f1(y, d)}, scores.truth,
                           scores.probs, scores.predicted, n_boot=n_boot)["f1"]
    return float(ci["ci_high"] - ci["ci_low"]) / (2 * 1.96)  # a 95 % interval is ±1.96 SE


def choose_row(results: dict[str, MethodResult]) -> tuple[str, str]:
    """The row to submit and why, on val alone.

    200 val images rank ensembles no closer than about 1.5 points, so the seeds' soft vote
    (:data:`DEFAULT_ROW`) is kept unless the val-best row leads it by more than the soft vote's
    val standard error; without a soft-vote row, the val-best row.
    """
    means = _val_means(results)
    best = max(means.items(), key=lambda kv: kv[1])[0]
    if DEFAULT_ROW not in means or best == DEFAULT_ROW:
        return best, "the best val course average F1"
    lead = means[best] - means[DEFAULT_ROW]
    se = val_standard_error(results[DEFAULT_ROW].run_dirs[0])
    if se is None:
        return best, "the best val course average F1 (the val truth was out of reach)"
    if lead > se:
        return best, (f"the best val course average F1, {lead:.4f} above the soft vote: more "
                      f"than its val standard error ({se:.4f})")
    return DEFAULT_ROW, (f"the seeds' soft vote: the val-best row ({best}) leads it by "
                         f"{lead:.4f}, within its val standard error ({se:.4f})")


def save_best_weights(result: MethodResult, out: Path, team: str) -> Path | None:
    """Save the val-best method as ``<out>/<team>_task4.pt``: a single model's weights (its
    best-val seed), or an ensemble bundle (members + combiner, :mod:`funduslab.ensemble.bundle`).

    Returns ``None``, with a warning, when there are no weights to save: the row's runs are
    records (``results/`` keeps text files only) or an ensemble of records.
    """
    target = out / f"{team}_task4.pt"
    folders = [RunFolder(d) for d in result.run_dirs]
    weights = [w for f in folders if (w := f.weights) is not None]
    if not weights and folders and folders[0].is_ensemble:
        from funduslab.ensemble.bundle import save_ensemble_bundle

        try:
            save_ensemble_bundle(result.run_dirs[0], target)
        except FileNotFoundError as err:  # members without weights (records)
            log.warning("%s not saved: %s", target.name, err)
            return None
        log.info("saved %s (ensemble bundle of %s)", target, result.run_dirs[0])
        return target
    if not weights:
        log.warning("%s not saved: the %s row's runs hold no weights (records?): %s",
                    target.name, result.name, ", ".join(str(d) for d in result.run_dirs))
        return None
    scores = _scores(result.run_dirs, "val")
    chosen = weights[int(np.argmax(scores))] if len(scores) == len(weights) else weights[0]
    tmp = target.with_suffix(".pt.tmp")
    shutil.copyfile(chosen, tmp)
    tmp.replace(target)
    log.info("saved %s (from %s)", target, chosen)
    return target


def summary(results: dict[str, MethodResult], order: list[str], chosen: str,
            why: str = "") -> dict[str, Any]:
    """``results.md``'s figures per row, machine-readable (``benchmarks/bench_task4.py`` reads
    them): per-run course average F1 at 0.5 on val and offsite test, tuned on test, CPU s."""
    rows: dict[str, Any] = {}
    for row in order:
        r = results[row]
        rows[row] = {"skipped": r.skipped, "note": r.note,
                     "runs": [str(d) for d in r.run_dirs], "seconds": round(r.seconds, 1),
                     "val": _scores(r.run_dirs, "val"),
                     TEST_SPLIT: _scores(r.run_dirs, TEST_SPLIT),
                     f"{TEST_SPLIT}_tuned": _scores(r.run_dirs, TEST_SPLIT, "tuned_thresholds")}
    reference = float(np.mean(rows["single"][TEST_SPLIT]))
    return {"metric": "course_average_f1", "test_split": TEST_SPLIT,
            "best_by_val": best_by_val(results), "chosen": chosen, "chosen_why": why,
            "reference": reference, "rows": rows}


def render_results(results: dict[str, MethodResult], order: list[str], chosen: str,
                   base: dict[str, Any], seeds: list[int], why: str = "") -> str:
    """``results.md``: one table row per method, the chosen row in bold, Δ against ``single``."""
    reference = float(np.mean(_scores(results["single"].run_dirs, TEST_SPLIT)))
    header = ["method", "what", "runs", "val avg F1 (0.5)", "course avg F1 (0.5)",
              "course avg F1 (tuned)", "Δ vs single (0.5)", "CPU s"]
    body = []
    for row in order:
        r = results[row]
        if r.skipped:
            body.append([row, f"skipped: {r.skipped}", "0", "—", "—", "—", "—", "—"])
            continue
        test = _scores(r.run_dirs, TEST_SPLIT)
        tuned = _scores(r.run_dirs, TEST_SPLIT, "tuned_thresholds")
        name = f"**{row}**" if row == chosen else row
        body.append([name, r.note, str(len(r.run_dirs)), mean_std(_scores(r.run_dirs, "val")),
                     mean_std(test), mean_std(tuned) if tuned else "—",
                     f"{100 * (float(np.mean(test)) - reference):+.2f} pt", f"{r.seconds:.0f}"])
    model, train = base["model"], base["train"]
    return (
        "# Course Task 4 — ensembles, attention guidance, VAE augmentation, transformers "
        "(offsite test)\n\n"
        f"Reference (`single`): {model['backbone']} ({model['weights']} start), "
        f"{base['data']['image_size']} px, full fine-tuning for {train['epochs']} epochs; seeds "
        f"{', '.join(map(str, seeds))}. Trained rows show mean ± sample std over seeds; an "
        "ensemble is one model built from all seeds' single runs, so it has no spread. "
        "Weights, stackers and tuned thresholds are fitted on val; the test split chooses "
        f"nothing. **Bold** = the row chosen on val (`{chosen}`): "
        f"{why or 'the best val course average F1'}. "
        "CPU s = training (and combining) seconds on this machine, summed over the row's "
        "runs.\n\n"
        + markdown_table(header, body) + "\n"
    )
