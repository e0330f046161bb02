"""Task ``grading``: decoding of each formulation, config resolution, sampler, runs, learning.

(Named ``test_grading_task.py``, not ``test_grading.py``: ``tests/metrics/test_grading.py``
exists and the test folders have no ``__init__.py``, so equal basenames would collide.)
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import cohen_kappa_score

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.synthetic_layouts import write_layout
from funduslab.metrics import optimize_grade_thresholds
from funduslab.data.split_data import SplitData
from funduslab.training.grading import GRADING_FORMULATIONS, resolve_task
from funduslab.training.runner import run
from funduslab.training.samplers import build_sampler


# --- decoding -------------------------------------------------------------------------------

def test_ce_decoding_is_softmax_argmax_and_expected_grade():
    logits = np.array([[3.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 5.0]])
    dec = GRADING_FORMULATIONS.get("ce").decode(logits, 5)
    ref = torch.softmax(torch.tensor(logits), dim=1).numpy()
    np.testing.assert_allclose(dec.probs, ref)
    np.testing.assert_array_equal(dec.grades, [0, 4])
    np.testing.assert_allclose(dec.score, ref @ np.arange(5))


def test_regression_decoding_uses_cut_points_or_rounding():
    form = GRADING_FORMULATIONS.get("regression")
    scores = np.array([[-0.7], [0.49], [0.51], [2.2], [3.6], [9.0]])
    np.testing.assert_array_equal(form.decode(scores, 5).grades, [0, 0, 1, 2, 4, 4])
    dec = form.decode(scores, 5, thresholds=np.array([0.0, 1.0, 2.5, 3.0]))
    np.testing.assert_array_equal(dec.grades, [0, 1, 1, 2, 4, 4])  # cuts passed ≤ score
    np.testing.assert_allclose(dec.score, scores[:, 0])
    assert dec.probs is None and form.num_outputs(5) == 1


def test_ordinal_decoding_counts_ranks_above_one_half():
    form = GRADING_FORMULATIONS.get("ordinal")
    p_above = np.array([[0.9, 0.8, 0.3, 0.1], [0.2, 0.1, 0.05, 0.01], [0.99, 0.9, 0.8, 0.7]])
    dec = form.decode(np.log(p_above / (1 - p_above)), 5)
    np.testing.assert_array_equal(dec.grades, [2, 0, 4])
    # P(grade = k) = P(> k-1) - P(> k): first row 0.1, 0.1, 0.5, 0.2, 0.1
    np.testing.assert_allclose(dec.probs[0], [0.1, 0.1, 0.5, 0.2, 0.1], atol=1e-9)
    np.testing.assert_allclose(dec.probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(dec.score, p_above.sum(axis=1))
    assert form.num_outputs(5) == 4


# --- config resolution ----------------------------------------------------------------------

def _cfg(root: Path, **train):
    return config_from_dict({"data": {"adapter": "aptos", "root": str(root)},
                             "model": {"backbone": "tiny_cnn", "weights": "none"},
                             "train": train})


@pytest.fixture(scope="module")
def aptos_data(tmp_path_factory) -> Path:
    return write_layout("aptos", tmp_path_factory.mktemp("aptos"), n=80, seed=2, size=48)


def test_resolve_task_fills_grading_defaults_and_rejects_contradictions(aptos_data: Path):
    table = load_table("aptos", aptos_data)
    cfg = resolve_task(_cfg(aptos_data, formulation="ordinal"), table)
    assert (cfg.train.task, cfg.train.loss) == ("grading", "coral")
    assert cfg.train.monitor == "quadratic_kappa"
    assert cfg.model.head == "coral" and cfg.model.head_options == {"base": "linear"}
    assert resolve_task(cfg, table) == cfg  # idempotent: config.yaml re-runs unchanged
    assert resolve_task(_cfg(aptos_data, formulation="regression", loss="grade_mse"),
                        table).train.loss == "grade_mse"
    with pytest.raises(ValueError, match="does not fit grading formulation 'ce'"):
        resolve_task(_cfg(aptos_data, loss="bce"), table)
    with pytest.raises(ValueError, match="multi-label metric"):
        resolve_task(_cfg(aptos_data, monitor="course_average_f1"), table)
    with pytest.raises(ValueError, match="gives a grading table"):
        resolve_task(_cfg(aptos_data, task="multilabel"), table)
    with pytest.raises(ValueError, match="unknown grading formulation 'cumulative'"):
        resolve_task(_cfg(aptos_data, formulation="cumulative"), table)


def test_class_aware_sampler_balances_grades():
    grades = np.array([0] * 60 + [1] * 20 + [2] * 10 + [3] * 6 + [4] * 4)
    split = SplitData("train", [str(i) for i in range(100)], np.zeros((100, 1, 1, 3), np.uint8),
                      grades, True)
    sampler = build_sampler("class_aware", split, seed=0)
    drawn = np.concatenate([grades[list(iter(sampler))] for _ in range(50)])  # 5000 draws
    share = np.bincount(drawn, minlength=5) / drawn.size
    np.testing.assert_allclose(share, 0.2, atol=0.03)


def test_square_root_sampler_draws_grades_by_sqrt_of_their_counts():
    counts = np.array([64, 16, 9, 4, 1])
    grades = np.repeat(np.arange(5), counts)
    split = SplitData("train", [str(i) for i in range(len(grades))],
                      np.zeros((len(grades), 1, 1, 3), np.uint8), grades, True)
    sampler = build_sampler("class_sqrt", split, seed=0)
    drawn = np.concatenate([grades[list(iter(sampler))] for _ in range(100)])  # 9,400 draws
    share = np.bincount(drawn, minlength=5) / drawn.size
    np.testing.assert_allclose(share, np.sqrt(counts) / np.sqrt(counts).sum(), atol=0.02)


# --- end-to-end runs ------------------------------------------------------------------------

def _run_cfg(data: Path, out: Path, name: str, adapter: str = "aptos", **train):
    settings = {"setup": "full", "epochs": 2, "batch_size": 8, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0}
    settings.update(train)
    return config_from_dict({
        "data": {"adapter": adapter, "root": str(data), "image_size": 32,
                 "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": True},
    })


@pytest.fixture(scope="module")
def grading_runs(aptos_data: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("grading_runs")
    return {f: run(_run_cfg(aptos_data, out, f, formulation=f, sampler="class_aware"),
                   progress=False)
            for f in ("ce", "regression", "ordinal")}


@pytest.mark.parametrize("formulation", ["ce", "regression", "ordinal"])
def test_grading_run_writes_kappas_predictions_figures_and_submission(
    grading_runs, aptos_data: Path, formulation: str
):
    run_dir = grading_runs[formulation]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "grading" and metrics["formulation"] == formulation
    assert set(metrics["splits"]) == {"train", "val", "test"}
    truth = load_table("aptos", aptos_data).split("test").set_index("id")["dr_grade"]
    pred = pd.read_csv(run_dir / "predictions" / "test.csv")
    assert {"id", "score", "grade"} <= set(pred.columns)
    if formulation != "regression":
        probs = pred[[f"p_{k}" for k in range(5)]].to_numpy()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    y, g = truth.loc[pred["id"]].to_numpy(), pred["grade"].to_numpy()
    m = metrics["splits"]["test"]["grading"]
    for key, weights in (("quadratic_weighted_kappa", "quadratic"),
                         ("linear_weighted_kappa", "linear"), ("cohen_kappa", None)):
        ref = cohen_kappa_score(y, g, labels=list(range(5)), weights=weights)
        assert (m[key] is None and np.isnan(ref)) or m[key] == pytest.approx(ref, abs=1e-9), key
    assert m["accuracy"] == pytest.approx(float(np.mean(y == g)))
    assert np.asarray(m["confusion_matrix"]).sum() == len(y)
    for split in ("train", "val", "test"):
        assert (run_dir / "figures" / f"confusion_{split}.png").is_file()
    assert (run_dir / "figures" / "curves.png").is_file()
    history = pd.read_csv(run_dir / "history.csv")
    assert {"train_loss", "val_loss", "val_accuracy", "val_quadratic_kappa",
            "val_linear_kappa", "val_cohen_kappa"} <= set(history.columns)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["monitor"] == "quadratic_kappa" and cfg["train"]["task"] == "grading"
    assert metrics["fit"]["monitor"] == "val_quadratic_kappa"
    sub = pd.read_csv(run_dir / "submission.csv")
    assert list(sub.columns) == ["id_code", "diagnosis"]
    unlabelled = pd.read_csv(run_dir / "predictions" / "kaggle_test.csv")
    assert sub["id_code"].tolist() == pd.read_csv(aptos_data / "test.csv")["id_code"].tolist()
    np.testing.assert_array_equal(sub["diagnosis"], unlabelled["grade"])


def test_regression_cut_points_are_optimised_on_validation(grading_runs, aptos_data: Path):
    run_dir = grading_runs["regression"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["thresholds"]["used"] == "tuned_on_val"
    val = pd.read_csv(run_dir / "predictions" / "val.csv")
    truth = load_table("aptos", aptos_data).split("val").set_index("id")["dr_grade"]
    y_val = truth.loc[val["id"]].to_numpy()
    expected = optimize_grade_thresholds(y_val, val["score"].to_numpy(), 5)
    cuts = metrics["thresholds"]["cut_points"]
    np.testing.assert_allclose(cuts, expected, atol=1e-5)  # the CSV rounds scores to 6 decimals
    test = pd.read_csv(run_dir / "predictions" / "test.csv")
    np.testing.assert_array_equal(test["grade"], np.searchsorted(cuts, test["score"], side="right"))
    assert "rounded" in metrics["splits"]["test"]  # rounding reported beside the tuned cut points


@pytest.mark.parametrize("formulation", ["ce", "ordinal"])
def test_saved_grading_weights_reload_and_reproduce_predictions(grading_runs, formulation):
    from funduslab.models.factory import model_from_checkpoint
    from funduslab.training.predict import predict_logits
    from funduslab.training.runner import decode_splits

    run_dir = grading_runs[formulation]
    model = model_from_checkpoint(run_dir / "model.pt")
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw.pop("provenance")
    cfg = config_from_dict(raw)
    splits, _ = decode_splits(load_table("aptos", cfg.data.root), cfg, Path(cfg.data.cache_dir))
    logits = predict_logits(model, splits["test"].images)
    dec = GRADING_FORMULATIONS.get(formulation).decode(logits, 5)
    saved = pd.read_csv(run_dir / "predictions" / "test.csv")
    np.testing.assert_allclose(dec.probs, saved[[f"p_{k}" for k in range(5)]].to_numpy(), atol=2e-5)


def test_deepdrid_unlabelled_test_set_gets_id_target_submission(tmp_path: Path):
    data = write_layout("deepdrid", tmp_path / "deepdrid", n=40, seed=4, size=48)
    csv = data / "regular-fundus-testing" / "regular-fundus-testing.csv"
    frame = pd.read_csv(csv)
    frame[["left_eye_DR_Level", "right_eye_DR_Level", "patient_DR_Level"]] = np.nan
    frame.to_csv(csv, index=False)  # like the challenge's hidden test labels
    run_dir = run(_run_cfg(data, tmp_path / "runs", "dd", adapter="deepdrid", epochs=1,
                           formulation="ordinal"), progress=False)
    sub = pd.read_csv(run_dir / "submission.csv")
    assert list(sub.columns) == ["ID", "TARGET"]
    assert len(sub) == len(frame) and set(sub["TARGET"]) <= set(range(5))
    assert "test" not in json.loads((run_dir / "metrics.json").read_text())["splits"]


# --- learning -------------------------------------------------------------------------------

LEARN_BAR = 0.85  # test quadratic kappa; measured 0.968 (ce, this config, 1 thread, ~30 s)


def test_tiny_cnn_learns_synthetic_dr_grades(tmp_path: Path):
    """Lesion counts follow the grade in the generator, so a working path must rank grades."""
    data = write_layout("aptos", tmp_path / "learn", n=400, seed=5, size=48)
    cfg = config_from_dict({
        "data": {"adapter": "aptos", "root": str(data), "image_size": 48, "augment": "light"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 16, "batch_size": 32, "lr": 3e-3, "backbone_lr": 3e-3,
                  "precision": "32", "formulation": "ce", "seed": 0},
        "output": {"out": str(tmp_path / "runs"), "name": "learn", "figures": False},
    })
    metrics = json.loads((run(cfg, progress=False) / "metrics.json").read_text())
    test = metrics["splits"]["test"]["grading"]
    assert test["quadratic_weighted_kappa"] >= LEARN_BAR, test["confusion_matrix"]
    majority = max(r["support"] for r in test["per_grade"].values()) / test["n_samples"]
    assert test["accuracy"] > majority + 0.15, (test["accuracy"], majority)


# --- a grading run read by reports and the web page (the task kind's reporting half) ---------

def test_grading_run_reads_into_the_comparison_the_metrics_table_and_the_report(
    grading_runs, tmp_path: Path
):
    from rich.console import Console

    from funduslab.reporting.compare import summarize_run
    from funduslab.reporting.html import write_html_report
    from funduslab.reporting.tables import metrics_table

    run_dir = grading_runs["ce"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["splits"]["test"]["grading"]
    summary = summarize_run(run_dir, split="test")
    assert summary.scores["test QWK"] == test["quadratic_weighted_kappa"]
    assert summary.scores["val accuracy"] == metrics["splits"]["val"]["grading"]["accuracy"]
    assert summary.recall == {}  # no per-label recall for grades

    console = Console(record=True, width=200)
    console.print(metrics_table(metrics))
    text = console.export_text()
    assert "quadratic κ" in text and f"{test['quadratic_weighted_kappa']:.4f}" in text

    report = write_html_report([run_dir], tmp_path / "report", split="test", cam_images=0,
                               n_boot=20)
    page = report.page.read_text()
    assert '<h2 id="grading">Grading</h2>' in page
    assert "Confusion matrix of grades" in page and "ROC curves" not in page
    cis = json.loads(report.summary.read_text())["runs"][str(run_dir)]["bootstrap_95"]
    assert cis["quadratic kappa"]["value"] == pytest.approx(test["quadratic_weighted_kappa"])
    assert cis["accuracy"]["value"] == pytest.approx(test["accuracy"])


@pytest.mark.parametrize("formulation", ["ce", "regression"])
def test_web_service_describes_a_grading_image_and_writes_its_csv(grading_runs, aptos_data,
                                                                  formulation: str):
    from funduslab.web.service import ModelService, load_models

    run_dir = grading_runs[formulation]
    service = ModelService(load_models([run_dir]))
    saved_test = pd.read_csv(run_dir / "predictions" / "test.csv")
    image = next(p for p in sorted(aptos_data.glob("*_images/*.png"))
                 if p.stem == str(saved_test["id"].iloc[0]))
    doc = service.predict(None, image.read_bytes(), image.name).as_json()
    assert doc["task"] == "grading" and 0 <= doc["grade"] <= 4
    assert doc["grade"] == int(saved_test["grade"].iloc[0])
    assert (doc["grade_probabilities"] is None) == (formulation == "regression")
    csv = service.predictions_csv(None, [(image.name, image.read_bytes())])
    frame = pd.read_csv(io.StringIO(csv))
    assert list(frame.columns[-2:]) == ["score", "grade"] and frame["grade"][0] == doc["grade"]
    info = service.resolve(None).info
    kappa = info["metrics"]["figures"][0]
    assert (kappa["name"], info["metrics"]["thresholds"]) == ("quadratic_weighted_kappa", "grading")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert kappa["value"] == pytest.approx(
        metrics["splits"][info["metrics"]["split"]]["grading"]["quadratic_weighted_kappa"])
