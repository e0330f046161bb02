"""The course-task4 preset runs end to end on the synthetic course split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from funduslab.experiments import PRESETS, parse_preset_options
from funduslab.experiments.course_task4 import TASK4_ROWS, course_task4
from funduslab.models.factory import model_from_checkpoint


def _row(text: str, name: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {name} |")
                or ln.startswith(f"| **{name}** |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _test_f1(run_dir: Path) -> float:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return metrics["splits"]["offsite_test"]["threshold_0.5"]["course_average_f1"]


def test_course_task4_quick_ensembles_guidance_and_vae(synth_course: Path, tmp_path: Path):
    out = tmp_path / "runs"
    results = course_task4(synth_course, team="demo", out=out, quick=True, seeds=[0, 1],
                           backbone="tiny_cnn", weights="none",
                           rows="tta,soft_voting,weighted,stacking,max_voting,tta_soft_voting,"
                                "tta_stacking,attention_guided,vae",
                           consistency=0.3, vae_ratio=0.25)
    assert PRESETS.get("course-task4") is course_task4
    text = results.read_text()
    for name in ("single", "tta", "soft_voting", "weighted", "stacking", "max_voting",
                 "attention_guided", "vae"):
        assert _row(text, name)
    # the ensembles combine exactly the two single runs
    ens = yaml.safe_load((out / "ensembles" / "soft_voting" / "config.yaml").read_text())
    assert sorted(Path(m).name for m in ens["ensemble"]["members"]) == ["single_s0", "single_s1"]
    # soft voting's test probabilities are the mean of the members' (independent recomputation)
    members = [pd.read_csv(out / f"single_s{s}" / "predictions" / "offsite_test.csv")
               for s in (0, 1)]
    soft = pd.read_csv(out / "ensembles" / "soft_voting" / "predictions" / "offsite_test.csv")
    prob_cols = ["p_D", "p_G", "p_A"]
    np.testing.assert_allclose(soft[prob_cols].to_numpy(),
                               (members[0][prob_cols].to_numpy() + members[1][prob_cols].to_numpy())
                               / 2, atol=1e-5)
    # the Δ column is relative to the single rows' mean test F1
    reference = np.mean([_test_f1(out / f"single_s{s}") for s in (0, 1)])
    cells = _row(text, "soft_voting")
    delta = float(cells[6].split()[0])
    assert delta == pytest.approx(100 * (_test_f1(out / "ensembles" / "soft_voting")
                                         - reference), abs=0.01)
    # results.json holds the same figures, machine-readable, and names the same val-best row
    summary = json.loads((out / "results.json").read_text())
    assert summary["reference"] == pytest.approx(reference)
    assert summary["rows"]["soft_voting"]["offsite_test"] == \
        [pytest.approx(_test_f1(out / "ensembles" / "soft_voting"))]
    assert len(summary["rows"]["vae"]["val"]) == 2
    # the tta row re-evaluates each single run's weights with flips, training nothing
    tta = yaml.safe_load((out / "tta_0" / "config.yaml").read_text())
    assert tta["train"]["setup"] == "none" and tta["train"]["tta"] is True
    assert Path(tta["model"]["weights"]).parent == out / "single_s0"
    from funduslab.inference.predict_images import list_inputs, predict_saved
    from funduslab.inference.saved_model import load_saved_model

    saved = pd.read_csv(out / "tta_0" / "predictions" / "offsite_test.csv").set_index("id")
    inputs = list_inputs(synth_course / "images" / "offsite_test")
    flipped = predict_saved(load_saved_model(out / "single_s0"), inputs.paths, tta=True)
    np.testing.assert_allclose(saved.loc[inputs.ids, prob_cols].to_numpy(),
                               1 / (1 + np.exp(-flipped)), atol=2e-5)
    # the tta_* rows combine the TTA re-evaluations, not the plain single runs
    tta_soft = pd.read_csv(out / "ensembles" / "tta_soft_voting" / "predictions"
                           / "offsite_test.csv").set_index("id")
    tta_members = [pd.read_csv(out / f"tta_{i}" / "predictions" / "offsite_test.csv")
                   .set_index("id").loc[tta_soft.index, prob_cols].to_numpy() for i in (0, 1)]
    np.testing.assert_allclose(tta_soft[prob_cols].to_numpy(), np.mean(tta_members, 0),
                               atol=1e-5)
    assert not np.allclose(tta_soft[prob_cols].to_numpy(),
                           soft.set_index("id").loc[tta_soft.index, prob_cols].to_numpy(),
                           atol=1e-4)
    stack = yaml.safe_load((out / "ensembles" / "tta_stacking" / "config.yaml").read_text())
    assert sorted(Path(m).name for m in stack["ensemble"]["members"]) == ["tta_0", "tta_1"]
    assert summary["rows"]["tta_soft_voting"]["seconds"] >= summary["rows"]["tta"]["seconds"]
    from funduslab.ensemble.bundle import load_ensemble_bundle, save_ensemble_bundle

    bundle = load_ensemble_bundle(save_ensemble_bundle(out / "ensembles" / "tta_soft_voting",
                                                       tmp_path / "tta_soft.pt"))
    assert bundle.member_tta == [True, True]  # the saved ensemble flips as its members did
    # the trained rows carry their option into config.yaml
    guided = yaml.safe_load((out / "attention_guided_s0" / "config.yaml").read_text())
    assert guided["train"]["attention_consistency"] == 0.3
    vae = yaml.safe_load((out / "vae_s1" / "config.yaml").read_text())
    assert vae["data"]["extra_train"] and vae["data"]["extra_train_ratio"] == 0.25
    assert (out / "vae" / "contact_sheet.png").is_file()
    # the vae row's CPU s counts the VAE's recorded fit + sampling time on top of its run's
    made = json.loads((out / "vae" / "generated.json").read_text())["seconds"]
    assert made["fit"] > 0 and made["sample"] >= 0
    vae_run_s = sum(json.loads((out / f"vae_s{s}" / "metrics.json").read_text())
                    ["timing_s"]["total"] for s in (0, 1))
    assert float(_row(text, "vae")[7]) == pytest.approx(vae_run_s + sum(made.values()), abs=1.5)
    # the best row by val is bold; a single-model winner's weights are saved and reload
    best = next(ln for ln in text.splitlines() if ln.startswith("| **"))
    winner = best.split("**")[1]
    assert summary["chosen"] == winner and summary["chosen_why"]
    weights = out / "demo_task4.pt"
    if winner in ("single", "tta", "attention_guided", "vae"):
        model = model_from_checkpoint(weights)
    else:  # an ensemble winner is saved as one bundle: members + fitted combiner
        from funduslab.ensemble.bundle import load_ensemble_bundle

        model = load_ensemble_bundle(weights)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_course_task4_members_resampled_and_transformers(synth_course: Path, tmp_path: Path):
    first = tmp_path / "first"
    course_task4(synth_course, out=first, quick=True, seeds=[0, 1], backbone="tiny_cnn",
                 weights="none", rows="single")
    out = tmp_path / "second"
    results = course_task4(synth_course, out=out, quick=True, seeds=[0], backbone="tiny_cnn",
                           weights="none", rows="weighted,bagging,boosting,vit,swin",
                           members=str(first / "single_s*"), resampled_members=2)
    text = results.read_text()
    assert not (out / "single_s0").exists()  # existing member runs were used, not retrained
    assert _row(text, "single")[2] == "2"
    assert len(list((out / "ensembles" / "bagging" / "members").glob("*/metrics.json"))) == 2
    # boosting either kept ≥ 2 members or says why it stopped (a weak 2-epoch member may be
    # no better than chance on the reweighted set)
    assert (out / "ensembles" / "boosting" / "metrics.json").is_file() or \
        "skipped: stopped: boosting kept" in text
    for row, backbone in (("vit", "tiny_vit"), ("swin", "tiny_swin")):
        cfg = yaml.safe_load((out / f"{row}_s0" / "config.yaml").read_text())
        assert cfg["model"]["backbone"] == backbone and cfg["train"]["layer_decay"] == 0.75
        assert _row(text, row)[4] != "—"


def test_course_task4_rejects_bad_options(synth_course: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="unknown row"):
        course_task4(synth_course, out=tmp_path, quick=True, rows="single,bagginng")
    with pytest.raises(ValueError, match="matches no finished run"):
        course_task4(synth_course, out=tmp_path, quick=True, rows="single",
                     members=str(tmp_path / "nothing_*"))
    assert parse_preset_options("course-task4", ["resampled_members=4"]) == {
        "resampled_members": 4}
    assert TASK4_ROWS[0] == "single"


def test_course_task4_members_saved_under_course_weights_names(synth_course: Path,
                                                                tmp_path: Path):
    """``members=runs/task1/task1-3_*`` (the README): those runs save ``<team>_task1-3.pt``, not
    ``model.pt``; the tta row and the saved ``<team>_task4.pt`` must find them."""
    from funduslab.config import config_from_dict
    from funduslab.experiments.course_task4_report import MethodResult, save_best_weights
    from funduslab.training.runner import run

    task1 = tmp_path / "task1"
    member = run(config_from_dict({
        "data": {"root": str(synth_course), "image_size": 32,
                 "cache_dir": str(tmp_path / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0},
        "output": {"out": str(task1), "name": "task1-3_s0", "team": "team", "task": "1-3",
                   "figures": False},
    }), progress=False)
    weights = member / "team_task1-3.pt"
    assert weights.is_file() and not (member / "model.pt").exists()
    out = tmp_path / "task4"
    course_task4(synth_course, team="demo", out=out, quick=True, seeds=[0], backbone="tiny_cnn",
                 weights="none", rows="single,tta", members=str(task1 / "task1-3_*"))
    tta = yaml.safe_load((out / "tta_0" / "config.yaml").read_text())
    assert Path(tta["model"]["weights"]) == weights
    best = json.loads((out / "results.json").read_text())["chosen"]
    chosen = weights if best == "single" else out / "tta_0" / "model.pt"
    assert (out / "demo_task4.pt").read_bytes() == chosen.read_bytes()
    # whichever row wins by val, a single run's course-named weights are what gets saved
    saved = save_best_weights(MethodResult("single", "", [member]), tmp_path, "x")
    assert saved.read_bytes() == weights.read_bytes()


def _scored_folder(root: Path, name: str, val: float) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(
        {"splits": {"val": {"threshold_0.5": {"course_average_f1": val}}}}))
    return folder


@pytest.mark.parametrize("weighted_val, expected", [(0.835, "weighted"), (0.825, "soft_voting")])
def test_the_soft_vote_is_kept_unless_a_row_leads_it_by_more_than_its_val_error(
    tmp_path: Path, monkeypatch, weighted_val: float, expected: str
):
    from funduslab.experiments import course_task4_report as report

    monkeypatch.setattr(report, "val_standard_error", lambda run_dir, n_boot=1000: 0.02)
    results = {
        "single": report.MethodResult("single", "", [_scored_folder(tmp_path, "s0", 0.80),
                                                     _scored_folder(tmp_path, "s1", 0.81)]),
        "soft_voting": report.MethodResult("soft_voting", "", [_scored_folder(tmp_path, "sv",
                                                                              0.81)]),
        "weighted": report.MethodResult("weighted", "", [_scored_folder(tmp_path, "w",
                                                                        weighted_val)]),
    }
    chosen, why = report.choose_row(results)
    assert chosen == expected and "standard error (0.0200)" in why
    assert report.best_by_val(results) == "weighted"  # reported beside the choice
    del results["soft_voting"]  # no soft vote: the val-best row
    assert report.choose_row(results)[0] == "weighted"


def test_a_chosen_row_of_records_saves_no_weights_and_says_so(tmp_path: Path, caplog):
    from funduslab.experiments.course_task4_report import MethodResult, save_best_weights

    record = _scored_folder(tmp_path, "record_s0", 0.8)
    with caplog.at_level("WARNING"):
        assert save_best_weights(MethodResult("single", "", [record]), tmp_path, "x") is None
    assert "x_task4.pt not saved" in caplog.text and not (tmp_path / "x_task4.pt").exists()
