"""Ensemble bundles: one weights_only file that reproduces an ensemble run folder's predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.ensemble import (
    ENSEMBLES,
    build_combiner,
    combine,
    load_members,
    write_ensemble_run,
)
from funduslab.ensemble import bundle as bundle_module
from funduslab.ensemble.bundle import (
    EnsembleModel,
    combiner_numbers,
    load_ensemble_bundle,
    save_ensemble_bundle,
)
from funduslab.training.predict import predict_probabilities
from funduslab.training.runner import decode_splits, run

LABELS = ["D", "G", "A"]


def tiny_member(data: Path, out: Path, name: str, seed: int, tta: bool = False):
    return config_from_dict({
        "data": {"root": str(data), "image_size": 64, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3,
                  "backbone_lr": 3e-3, "precision": "32", "warmup_epochs": 0, "seed": seed,
                  "tta": tta},
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.fixture(scope="module")
def members(synth_course: Path, tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    """Three fp32 tiny runs (the last predicts with flip TTA) and the offsite_test images."""
    out = tmp_path_factory.mktemp("bundle_members")
    cfgs = [tiny_member(synth_course, out, f"m{s}", seed=s, tta=s == 2) for s in range(3)]
    dirs = [run(cfg, progress=False) for cfg in cfgs]
    table = load_table(cfgs[0].data.adapter, synth_course)
    splits, _ = decode_splits(table, cfgs[0], out / "cache")
    return dirs, splits["offsite_test"].images


def _saved(run_dir: Path, split: str = "offsite_test") -> np.ndarray:
    frame = pd.read_csv(run_dir / "predictions" / f"{split}.csv")
    return frame[[f"p_{n}" for n in LABELS]].to_numpy()


def _bundle_probs(path: Path, images: np.ndarray) -> np.ndarray:
    return predict_probabilities(load_ensemble_bundle(path), images, batch_size=16)


@pytest.mark.parametrize("method", ENSEMBLES.names())
def test_bundle_reproduces_the_ensemble_run_folder(method, members, tmp_path):
    dirs, images = members
    out = write_ensemble_run(load_members(dirs), method, tmp_path / method)
    path = save_ensemble_bundle(out, tmp_path / "team_task4.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "funduslab-ensemble" and raw["method"] == method
    assert len(raw["members"]) == 3 and raw["label_names"] == LABELS
    assert [m["tta"] for m in raw["members"]] == [False, False, True]
    model = load_ensemble_bundle(path)
    assert isinstance(model, EnsembleModel) and len(model.members) == 3
    got = predict_probabilities(model, images, batch_size=16)
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float64),
                               torch.as_tensor(_saved(out)), atol=1e-4, rtol=0)


def test_members_alone_reproduce_their_own_csvs(members, tmp_path):
    """The per-member part of the bundle (weights, TTA) matches each member's saved predictions."""
    dirs, images = members
    model = load_ensemble_bundle(save_ensemble_bundle(
        write_ensemble_run(load_members(dirs), "soft_voting", tmp_path / "sv"), tmp_path / "b.pt"))
    with torch.no_grad():
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
        probs = torch.sigmoid(model.eval().member_logits(x)).double()
    for m, run_dir in enumerate(dirs):
        torch.testing.assert_close(probs[m], torch.as_tensor(_saved(run_dir)), atol=1e-5, rtol=0)


def test_weighted_uses_stored_weights_without_refitting(members, tmp_path, monkeypatch):
    dirs, images = members
    out = write_ensemble_run(load_members(dirs), "weighted", tmp_path / "w",
                             params={"objective": "course_average_f1", "grid_steps": 4})
    monkeypatch.setattr(bundle_module, "load_members", lambda *a: pytest.fail("refitted"))
    path = save_ensemble_bundle(out, tmp_path / "w.pt")
    weights = torch.load(path, weights_only=True)["combiner"]["weights"]
    learned = pd.read_json(out / "metrics.json", typ="series")["ensemble"]["learned"]["weights_"]
    torch.testing.assert_close(weights, torch.tensor(learned, dtype=torch.float64))
    torch.testing.assert_close(torch.as_tensor(_bundle_probs(path, images), dtype=torch.float64),
                               torch.as_tensor(_saved(out)), atol=1e-4, rtol=0)


def test_stacking_refit_equals_the_fitted_combiner(members, tmp_path):
    dirs, _ = members
    data = load_members(dirs)
    out = write_ensemble_run(data, "stacking", tmp_path / "st")
    fitted, _ = combine(data, build_combiner("stacking"))
    given = torch.load(save_ensemble_bundle(out, tmp_path / "a.pt", combiner=fitted),
                       weights_only=True)["combiner"]
    refit = torch.load(save_ensemble_bundle(out, tmp_path / "b.pt"), weights_only=True)["combiner"]
    assert set(given) == set(refit) == {"method", "n_members", "n_classes", "coef", "intercept",
                                        "constant", "is_constant"}
    for key in ("coef", "intercept", "constant", "is_constant"):
        torch.testing.assert_close(given[key], refit[key])
    assert given["coef"].shape == (3, 3) and given["coef"].abs().sum() > 0


def test_nested_ensemble_member_is_bundled(members, tmp_path):
    dirs, images = members
    inner = write_ensemble_run(load_members(dirs[:2]), "weighted", tmp_path / "inner")
    outer = write_ensemble_run(load_members([inner, dirs[2]]), "soft_voting", tmp_path / "outer")
    path = save_ensemble_bundle(outer, tmp_path / "nested.pt")
    assert "bundle" in torch.load(path, weights_only=True)["members"][0]
    torch.testing.assert_close(torch.as_tensor(_bundle_probs(path, images), dtype=torch.float64),
                               torch.as_tensor(_saved(outer)), atol=1e-4, rtol=0)


def test_gradient_boosting_stacking_is_refused(members, tmp_path):
    dirs, _ = members
    data = load_members(dirs)
    out = write_ensemble_run(data, "stacking", tmp_path / "gb",
                             params={"meta": "gradient_boosting"})
    with pytest.raises(ValueError, match="--meta logistic"):
        save_ensemble_bundle(out, tmp_path / "gb.pt")
    fitted, _ = combine(data, build_combiner("stacking", meta="gradient_boosting"))
    with pytest.raises(ValueError, match="--meta logistic"):
        combiner_numbers(fitted)
    assert not (tmp_path / "gb.pt").exists()


def test_other_formats_and_broken_members_are_named(members, tmp_path):
    dirs, _ = members
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "members": []}, other)
    with pytest.raises(ValueError, match="other.pt.*not a funduslab ensemble bundle"):
        load_ensemble_bundle(other)
    with pytest.raises(ValueError, match="model.pt.*single-model checkpoint"):
        load_ensemble_bundle(dirs[0] / "model.pt")
    out = write_ensemble_run(load_members(dirs), "soft_voting", tmp_path / "sv")
    raw = torch.load(save_ensemble_bundle(out, tmp_path / "ok.pt"), weights_only=True)
    state = raw["members"][1]["state_dict"]
    state.pop(sorted(state)[0])
    broken = tmp_path / "broken.pt"
    torch.save(raw, broken)
    with pytest.raises(ValueError, match=r"broken.pt member 1 .*does not fit"):
        load_ensemble_bundle(broken)
    with pytest.raises(ValueError, match="no ensemble section"):
        save_ensemble_bundle(dirs[0], tmp_path / "x.pt")


class _FixedLogits(torch.nn.Module):
    """A stand-in member that returns given logits ``(N, K)`` whatever the input."""

    def __init__(self, logits: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("z", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z[: len(x)]


_PARAMS = {"max_voting": {"threshold": 0.4}, "stacking": {"cv": 2}}


@pytest.mark.parametrize("method", ENSEMBLES.names())  # a new combiner is tested here unlisted
def test_saved_ensemble_applies_the_combiners_rule_including_a_degenerate_class(method):
    params = _PARAMS.get(method, {})
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=(3, 40, 3)).astype(np.float32)  # (M, N, K) member logits
    P = 1 / (1 + np.exp(-z.astype(np.float64)))
    y = (rng.random((40, 3)) < P.mean(0)).astype(int)
    y[:, 2] = 0
    y[0, 2] = 1  # one positive only: stacking falls back to DummyClassifier(prior) = 1/40
    combiner = build_combiner(method, **params).fit(P, y)
    numbers = combiner_numbers(combiner)
    if method == "stacking":
        assert numbers["is_constant"].tolist() == [False, False, True]
    model = EnsembleModel([_FixedLogits(z[m]) for m in range(3)], numbers).eval()
    with torch.no_grad():
        got = torch.sigmoid(model(torch.zeros(40, 3, 8, 8)).double())
    torch.testing.assert_close(got, torch.as_tensor(combiner.predict_proba(P)), atol=1e-6, rtol=0)
    if method == "stacking":  # the torch formula against scikit-learn's own meta-models
        logit = np.log(P / (1 - P))
        sk = np.stack([m.predict_proba(logit[:, :, k].T)[:, list(m.classes_).index(1)]
                       for k, m in enumerate(combiner.models_)], axis=1)
        np.testing.assert_allclose(combiner.predict_proba(P), sk, atol=1e-9)
