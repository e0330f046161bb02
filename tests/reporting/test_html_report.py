"""``funduslab report --html``: the page, its figures and the numbers behind them (issue 31, 3)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.reporting.html import write_html_report
from funduslab.reporting.record import write_record
from funduslab.training.runner import run

SPLIT = "offsite_test"


@pytest.fixture(scope="module")
def two_runs(synth_course: Path, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("html_runs")
    dirs = []
    for seed in (0, 1):
        cfg = config_from_dict({
            "data": {"root": str(synth_course), "image_size": 32, "cache_dir": str(out / "c")},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"setup": "full", "epochs": 1, "batch_size": 16, "seed": seed,
                      "precision": "32", "warmup_epochs": 0, "tune_thresholds": True},
            "output": {"out": str(out), "name": f"tiny_s{seed}", "figures": False},
        })
        dirs.append(run(cfg, progress=False))
    return dirs


@pytest.fixture(scope="module")
def report(two_runs: list[Path], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report"
    write_html_report(two_runs, out, split=SPLIT, cam_images=2, n_boot=200)
    return out


def _figures_named(page: Path) -> list[Path]:
    return [page.parent / src for src in re.findall(r'<img src="([^"]+)"', page.read_text())]


def _assert_valid_pngs(paths: list[Path]) -> None:
    assert paths
    for path in paths:
        assert path.is_file(), path
        with Image.open(path) as img:
            assert img.format == "PNG"
            img.verify()


def _truth(data: Path, ids: list[str]) -> np.ndarray:
    rows = load_table("odir_course", data).split(SPLIT).set_index("id")
    return rows.loc[ids, ["D", "G", "A"]].to_numpy(dtype=int)


def test_page_holds_the_comparison_and_interval_tables(report: Path):
    page = (report / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "mean ± std over its seeds" in page and "test avg F1" in page
    assert "course average F1 [95 % CI]" in page and "ECE D" in page
    assert "0,1" in page  # the recipe row names both seeds
    assert "http://" not in page and "https://" not in page and "<script" not in page
    md = (report / "report.md").read_text()
    assert "| recipe | runs | seeds |" in md and "95 %" in md


def test_every_figure_the_page_names_exists_and_is_a_png(report: Path):
    figures = _figures_named(report / "report.html")
    _assert_valid_pngs(figures)
    names = " ".join(f.name for f in figures)
    for kind in ("roc", "pr", "reliability", "confusion_tiny_s0", "confusion_tiny_s1",
                 "curves_tiny_s0", "_gradcam"):
        assert kind in names, kind
    assert "<h4>Grad-CAM panels: tiny_s0</h4>" in (report / "report.html").read_text()
    assert all(f.resolve().is_relative_to((report / "figures").resolve()) for f in figures)
    with Image.open(next(f for f in figures if "_roc_" in f.name)) as img:
        assert img.info["dpi"][0] == pytest.approx(150, abs=1)


def test_roc_auc_of_the_drawn_curve_equals_metrics_json(report: Path, two_runs: list[Path]):
    points = pd.read_csv(next((report / "figures").glob("*_roc_*.csv")))
    for seed, run_dir in enumerate(two_runs):
        per_class = json.loads((run_dir / "metrics.json").read_text())["splits"][SPLIT][
            "threshold_0.5"]["per_class"]
        for label in ("D", "G", "A"):
            curve = points[(points["run"] == f"seed {seed}") & (points["label"] == label)]
            fpr, tpr = curve["fpr"].to_numpy(), curve["tpr"].to_numpy()
            area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids
            assert area == pytest.approx(per_class[label]["auroc"], abs=1e-6), (seed, label)


def test_ece_matches_a_hand_computation(report: Path, two_runs: list[Path], synth_course: Path):
    summary = json.loads((report / "report.json").read_text())["runs"]
    for run_dir in two_runs:
        preds = pd.read_csv(run_dir / "predictions" / f"{SPLIT}.csv", dtype={"id": str})
        y = _truth(synth_course, preds["id"].tolist())
        for k, label in enumerate(("D", "G", "A")):
            p = preds[f"p_{label}"].to_numpy()
            hand = 0.0
            for b in range(10):  # bins (b/10, (b+1)/10], 0 in the first
                inside = [i for i in range(len(p))
                          if b / 10 < p[i] <= (b + 1) / 10 or (b == 0 and p[i] == 0)]
                if inside:
                    gap = abs(np.mean(y[inside, k]) - np.mean(p[inside]))
                    hand += len(inside) / len(p) * gap
            assert summary[str(run_dir)]["ece"][label] == pytest.approx(hand, abs=1e-9)


def test_intervals_bracket_the_point_estimates_of_metrics_json(report: Path,
                                                                two_runs: list[Path]):
    summary = json.loads((report / "report.json").read_text())["runs"]
    metrics = json.loads((two_runs[0] / "metrics.json").read_text())["splits"][SPLIT]
    cis = summary[str(two_runs[0])]["bootstrap_95"]
    auc = cis["macro AUROC"]
    assert auc["value"] == pytest.approx(metrics["threshold_0.5"]["macro_auroc"], abs=1e-6)
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"]
    f1 = cis["course average F1"]["value"]  # at the run's (tuned) thresholds
    assert f1 == pytest.approx(metrics["tuned_thresholds"]["course_average_f1"], abs=1e-9)


def test_a_record_without_weights_renders_without_cams(two_runs: list[Path], tmp_path: Path):
    rec = write_record(two_runs[0], tmp_path / "results" / "tiny_s0")
    out = write_html_report([rec], tmp_path / "rec_report", split=SPLIT, n_boot=50).page
    page = out.read_text()
    assert "<h4>Grad-CAM panels" not in page
    assert "No Grad-CAM panels, as tiny_s0 is a record without weights" in page
    _assert_valid_pngs(_figures_named(out))
    assert "_roc_" in page  # the record's dataset is still here: curves are drawn


def test_without_the_dataset_the_page_says_so_and_rebuilds_confusions(
        two_runs: list[Path], tmp_path: Path):
    rec = write_record(two_runs[1], tmp_path / "rec")
    moved = tmp_path / "moved"
    shutil.copytree(rec, moved)
    doc = yaml.safe_load((moved / "config.yaml").read_text())
    doc["data"]["root"] = str(tmp_path / "nowhere")
    (moved / "config.yaml").write_text(yaml.safe_dump(doc))
    with_data = write_html_report([rec], tmp_path / "a", split=SPLIT, n_boot=20)
    without = write_html_report([moved], tmp_path / "b", split=SPLIT, n_boot=20)
    page = without.page.read_text()
    assert "no truth" in page and "rebuilt from metrics.json" in page
    assert "_roc_" not in page and "No bootstrap intervals" in page
    _assert_valid_pngs(_figures_named(without.page))
    counts = [pd.read_csv(next((r.page.parent / "figures").glob("*confusion*.csv")))
              for r in (with_data, without)]
    pd.testing.assert_frame_equal(counts[0], counts[1])


def test_cli_report_html(two_runs: list[Path], tmp_path: Path):
    out = tmp_path / "cli_report"
    result = CliRunner().invoke(app, ["report", *map(str, two_runs), "--html", "--out", str(out),
                                      "--n-boot", "20", "--cam-images", "0"])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert "<h4>Grad-CAM panels" not in (out / "report.html").read_text()
    bad = CliRunner().invoke(app, ["report", str(two_runs[0]), "--html", "--out", "x.md"])
    assert bad.exit_code != 0 and "folder" in bad.output


def test_training_curves_mark_the_kept_epoch():
    from funduslab.plots.figures import best_epoch

    hist = pd.DataFrame({"epoch": range(4), "val_loss": [0.9, 0.7, 0.7, 0.8],
                         "val_course_average_f1": [0.3, 0.5, 0.5, 0.4]})
    assert best_epoch(hist, "val_course_average_f1", "max") == 1
    assert best_epoch(hist, "val_loss", "min") == 1


def test_cam_heat_stays_inside_the_field_of_view():
    from funduslab.explain.panels import fov_mask, overlay

    yy, xx = np.mgrid[0:48, 0:48]
    image = np.zeros((48, 48, 3), np.uint8)
    image[(xx - 23.5) ** 2 + (yy - 23.5) ** 2 <= 20 ** 2] = (180, 90, 40)
    mask = fov_mask(image)
    assert mask[24, 24] and not mask[0, 0] and not mask[47, 47]
    out = overlay(image, np.ones((48, 48), np.float32), mask=mask)
    assert (out[0, 0] == 0).all() and (out[24, 24] != image[24, 24]).any()
