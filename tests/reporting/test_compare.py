"""``funduslab report``: runs grouped by recipe, mean ± std over seeds, recipes named by what
differs between them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.reporting.compare import compare_runs, summarize_run
from funduslab.training.runner import run


def _cfg(data: Path, out: Path, name: str, seed: int, weights: str = "none", **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                "warmup_epochs": 0, "seed": seed, "loss": "bce"}
    settings.update(train)
    return config_from_dict({
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": weights},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.fixture(scope="module")
def runs(synth_course: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compare")
    made = {f"bce_s{s}": run(_cfg(synth_course, out, f"bce_s{s}", s), progress=False)
            for s in (0, 1)}
    made["focal_s0"] = run(_cfg(synth_course, out, "focal_s0", 0, loss="focal",
                                tune_thresholds=True), progress=False)
    for s in (0, 1):  # re-evaluate each BCE seed's weights with flip TTA: one recipe, two weights
        weights = str(made[f"bce_s{s}"] / "model.pt")
        made[f"tta_s{s}"] = run(_cfg(synth_course, out, f"tta_s{s}", s, weights, setup="none",
                                     tta=True), progress=False)
    return made


def _f1(run_dir: Path, split: str = "offsite_test") -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["splits"][split]["threshold_0.5"]["course_average_f1"]


def test_seeds_of_one_recipe_share_a_row_with_their_mean_and_std(runs):
    header, rows = compare_runs([runs[k] for k in ("bce_s0", "focal_s0", "bce_s1")])
    assert [r[0] for r in rows] == ["loss=bce", "loss=focal"]  # only what differs is named
    bce = dict(zip(header, rows[0]))
    assert bce["runs"] == "2" and bce["seeds"] == "0,1"
    values = [_f1(runs["bce_s0"]), _f1(runs["bce_s1"])]
    mean, std = (float(x) for x in bce["test avg F1"].split(" ± "))
    assert mean == pytest.approx(np.mean(values), abs=1e-4)
    assert std == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    focal = dict(zip(header, rows[1]))
    assert float(focal["val avg F1"]) == pytest.approx(_f1(runs["focal_s0"], "val"), abs=1e-4)
    assert {"D recall", "G recall", "A recall", "minutes / run"} <= set(header)


def test_tta_reevaluations_of_different_weights_are_one_recipe(runs):
    _, rows = compare_runs([runs[k] for k in ("bce_s0", "bce_s1", "tta_s0", "tta_s1")])
    assert len(rows) == 2 and rows[1][1] == "2"
    assert "tta=True" in rows[1][0] and "setup=none" in rows[1][0]


def test_per_run_mode_and_bad_input(runs, tmp_path: Path):
    _, rows = compare_runs(list(runs.values()), group=False)
    assert [r[0] for r in rows] == list(runs)  # one row per folder, named by the folder
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        summarize_run(tmp_path)
    with pytest.raises(ValueError, match="no run folders"):
        compare_runs([])


def test_cli_report_expands_a_folder_of_runs_and_writes_markdown(runs, tmp_path: Path):
    out = tmp_path / "table.md"
    parent = runs["bce_s0"].parent
    result = CliRunner().invoke(app, ["report", str(parent), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("| recipe | runs | seeds |") and "loss=focal" in text
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not found" in result.output
