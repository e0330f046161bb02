"""Bagging and boosting: bootstrap counts, the AdaBoost weight update, and tiny real ensembles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from funduslab.config import config_from_dict
from funduslab.ensemble import TRAINED_ENSEMBLES, bagging, boosting
from funduslab.ensemble.resampled import bootstrap_counts, boosting_update
from funduslab.reporting.run_folder import read_predictions


def tiny_base(data: Path, out: Path, **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0, "seed": 5}
    settings.update(train)
    return config_from_dict({
        "data": {"root": str(data), "image_size": 64, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": "base", "figures": False},
    })


def test_bootstrap_counts_are_a_seeded_resample():
    a = bootstrap_counts(50, seed=1, member=0)
    assert a.sum() == 50 and (a >= 0).all() and np.allclose(a, np.round(a))
    np.testing.assert_array_equal(a, bootstrap_counts(50, seed=1, member=0))
    assert not np.array_equal(a, bootstrap_counts(50, seed=1, member=1))
    ref = np.bincount(np.random.default_rng([1, 0]).integers(0, 50, 50), minlength=50)
    np.testing.assert_array_equal(a, ref)
    # about 1 - 1/e of the images are in the bag
    bag = np.mean([np.mean(bootstrap_counts(1000, 0, m) > 0) for m in range(5)])
    assert bag == pytest.approx(1 - np.exp(-1), abs=0.02)


def test_boosting_update_raises_weight_of_misclassified_samples():
    y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    p = np.array([[0.9, 0.1],   # both right  → e = 0
                  [0.2, 0.8],   # one wrong   → e = 0.5
                  [0.1, 0.2],   # both wrong  → e = 1
                  [0.4, 0.7]])  # both right  → e = 0
    w = np.array([1.0, 1.0, 2.0, 1.0])
    new, alpha, eps = boosting_update(w, y, p)
    e = np.array([0.0, 0.5, 1.0, 0.0])
    assert eps == pytest.approx((0.5 + 2.0) / 5.0)
    assert alpha == pytest.approx(0.5 * np.log((1 - 0.5) / 0.5))  # eps = 0.5 → alpha = 0
    p[2] = [0.9, 0.8]  # now only sample 1 is half wrong
    new, alpha, eps = boosting_update(w, y, p)
    e = np.array([0.0, 0.5, 0.0, 0.0])
    assert eps == pytest.approx(0.5 / 5.0)
    assert alpha == pytest.approx(0.5 * np.log(0.9 / 0.1))
    expected = w * np.exp(alpha * (2 * e - 1))
    np.testing.assert_allclose(new, expected * 4 / expected.sum())
    # AdaBoost's defining property, for 0/1 errors: the member is a coin flip under new weights
    e01 = np.array([0.0, 1.0, 0.0, 0.0])
    y01, p01 = np.array([[1], [0], [1], [0]]), np.array([[0.9], [0.8], [0.7], [0.1]])
    new01, _, _ = boosting_update(w, y01, p01)
    assert np.sum(new01 * e01) / np.sum(new01) == pytest.approx(0.5)
    ratio = new / w
    assert ratio[1] > ratio[0] and ratio[0] == pytest.approx(ratio[2]) == pytest.approx(ratio[3])
    assert new.mean() == pytest.approx(1.0)


def test_trained_registry_and_bad_setups(synth_course: Path, tmp_path: Path):
    assert TRAINED_ENSEMBLES.names() == ["bagging", "boosting"]
    with pytest.raises(ValueError, match="train.setup"):
        bagging(tiny_base(synth_course, tmp_path, setup="frozen"), 2, tmp_path / "bag")
    with pytest.raises(ValueError, match="at least 2"):
        boosting(tiny_base(synth_course, tmp_path), 1, tmp_path / "boost")


def test_bagging_two_members_writes_an_ensemble_folder(synth_course: Path, tmp_path: Path):
    out = bagging(tiny_base(synth_course, tmp_path), 2, tmp_path / "bag", progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "offsite_test"}
    assert (out / "submission.csv").is_file()
    members = [out / "members" / "member0", out / "members" / "member1"]
    n_train = len(pd.read_csv(synth_course / "train.csv"))
    for m, member in enumerate(members):
        counts = pd.read_csv(member / "sample_weights.csv")
        np.testing.assert_array_equal(counts["weight"], bootstrap_counts(n_train, 5, m))
        cfg = yaml.safe_load((member / "config.yaml").read_text())
        assert cfg["train"]["sampler"] == "weighted_file" and cfg["train"]["seed"] == 5 + m
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["ensemble"]["trained"] == "bagging" and cfg["ensemble"]["method"] == "soft_voting"
    names = ["p_D", "p_G", "p_A"]
    mean = np.mean([pd.read_csv(m / "predictions" / "val.csv")[names] for m in members], axis=0)
    np.testing.assert_allclose(pd.read_csv(out / "predictions" / "val.csv")[names], mean, atol=1e-6)


def test_boosting_second_member_trains_on_updated_weights(synth_course: Path, tmp_path: Path):
    out = boosting(tiny_base(synth_course, tmp_path), 2, tmp_path / "boost", progress=False)
    m0, m1 = out / "members" / "member0", out / "members" / "member1"
    w0 = pd.read_csv(m0 / "sample_weights.csv")
    np.testing.assert_allclose(w0["weight"], 1.0)
    ids, probs = read_predictions(m0, "train", ["D", "G", "A"])
    truth = pd.read_csv(synth_course / "train.csv").set_index("id").loc[ids, ["D", "G", "A"]]
    expected, alpha0, eps0 = boosting_update(np.ones(len(ids)), truth.to_numpy(), probs)
    w1 = pd.read_csv(m1 / "sample_weights.csv")["weight"]
    np.testing.assert_allclose(w1, expected, rtol=1e-8)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["ensemble"]["rounds"][0]["alpha"] == pytest.approx(alpha0)
    learned = json.loads((out / "metrics.json").read_text())["ensemble"]["learned"]["weights_"]
    assert sum(learned) == pytest.approx(1.0) and len(learned) == 2


def test_cli_bagging_from_a_base_config(synth_course: Path, tmp_path: Path):
    import typer
    from typer.testing import CliRunner

    from funduslab.cli.ensemble import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_base(synth_course, tmp_path).model_dump(mode="json")))
    result = CliRunner().invoke(app, ["ensemble", "bagging", "--config", str(base), "--members",
                                      "2", "--seed", "9", "--out", str(tmp_path), "--name", "bag"])
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "bag" / "config.yaml").read_text())
    assert cfg["ensemble"]["n_members"] == 2 and cfg["ensemble"]["seed"] == 9
    assert (tmp_path / "bag" / "members" / "member1" / "metrics.json").is_file()
