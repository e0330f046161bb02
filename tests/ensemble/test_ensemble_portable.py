"""Ensembles survive being moved: members recorded relative to the ensemble folder, and a
self-contained bundle (``ensemble.pt``) that predicts after the member folders are gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from test_ensemble_run_folder import LABELS, tiny_member
from typer.testing import CliRunner

from funduslab.ensemble.bundle import BUNDLE_FILENAME
from funduslab.training.runner import run
from funduslab.inference.saved_model import load_saved_model

P_COLS = [f"p_{n}" for n in LABELS]


@pytest.fixture(scope="module")
def project(synth_course: Path, tmp_path_factory) -> Path:
    """A pristine project folder with two finished tiny runs under ``runs/`` (copy it per test)."""
    root = tmp_path_factory.mktemp("portable") / "project"
    out = root / "runs"
    for seed in range(2):
        run(tiny_member(synth_course, out, f"m{seed}", seed=seed), progress=False)
    shutil.rmtree(out / "cache", ignore_errors=True)  # not part of a run folder
    return root


@pytest.fixture
def proj(project: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(project, tmp_path / "here" / "project"))


def _app() -> typer.Typer:
    from funduslab.cli.ensemble import register as register_ensemble
    from funduslab.cli.predict import register as register_predict

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register_ensemble(app)
    register_predict(app)
    return app


def _invoke(*args: str):
    return CliRunner().invoke(_app(), [str(a) for a in args], env={"COLUMNS": "2000"})


def _ensemble(proj: Path, monkeypatch, method: str, name: str, *flags: str):
    """``funduslab ensemble`` run from ``proj`` with cwd-relative member paths, as users do."""
    monkeypatch.chdir(proj)
    return _invoke("ensemble", method, "runs/m0", "runs/m1", "--out", "runs", "--name", name,
                   *flags)


def _predict_matches(model: Path, ensemble_dir: Path, images: Path, out: Path) -> None:
    """``funduslab predict model`` reproduces the ensemble's own saved offsite predictions."""
    result = _invoke("predict", model, images, "--out", out)
    assert result.exit_code == 0, result.output
    ours = pd.read_csv(out / "predictions.csv").set_index("id")
    theirs = pd.read_csv(ensemble_dir / "predictions" / "offsite_test.csv").set_index("id")
    np.testing.assert_allclose(ours[P_COLS].to_numpy(), theirs.loc[ours.index, P_COLS].to_numpy(),
                               atol=2e-5)


def test_moved_tree_predicts_from_another_cwd_without_a_bundle(proj, synth_course, tmp_path,
                                                               monkeypatch):
    result = _ensemble(proj, monkeypatch, "soft_voting", "soft", "--no-bundle")
    assert result.exit_code == 0, result.output
    assert not (proj / "runs" / "soft" / BUNDLE_FILENAME).exists()
    cfg = yaml.safe_load((proj / "runs" / "soft" / "config.yaml").read_text())
    assert cfg["ensemble"]["members"] == ["../m0", "../m1"]  # relative to the ensemble folder

    moved = Path(shutil.move(proj, tmp_path / "elsewhere" / "renamed"))  # old paths are gone
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ens = moved / "runs" / "soft"
    _predict_matches(ens, ens, synth_course / "images" / "offsite_test", elsewhere / "pred")


@pytest.mark.parametrize("method", ["weighted", "stacking"])
def test_bundle_is_written_by_default_and_predicts_without_members(method, proj, synth_course,
                                                                   tmp_path, monkeypatch):
    result = _ensemble(proj, monkeypatch, method, "ens")
    assert result.exit_code == 0, result.output
    ens = proj / "runs" / "ens"
    assert (ens / BUNDLE_FILENAME).is_file()
    assert BUNDLE_FILENAME in result.output and "ensemble bundle" in result.output
    shutil.rmtree(proj / "runs" / "m0")
    shutil.rmtree(proj / "runs" / "m1")
    moved = Path(shutil.move(ens, tmp_path / "shipped"))
    monkeypatch.chdir(tmp_path)
    images = synth_course / "images" / "offsite_test"
    _predict_matches(moved / BUNDLE_FILENAME, moved, images, tmp_path / "from_file")
    _predict_matches(moved, moved, images, tmp_path / "from_folder")


def test_a_missing_member_is_named_with_where_it_was_looked_for(proj, tmp_path, monkeypatch):
    assert _ensemble(proj, monkeypatch, "soft_voting", "soft", "--no-bundle").exit_code == 0
    shutil.rmtree(proj / "runs" / "m1")
    monkeypatch.chdir(tmp_path)
    ens = proj / "runs" / "soft"
    with pytest.raises(FileNotFoundError) as err:
        load_saved_model(ens)
    message = str(err.value)
    assert str(ens) in message and "'../m1'" in message and "looked in" in message
    assert str(ens / "../m1") in message and "has no config.yaml" not in message
    result = _invoke("predict", ens, tmp_path)
    assert result.exit_code == 2 and "'../m1'" in result.output


def test_old_absolute_and_cwd_relative_member_entries_still_load(proj, monkeypatch):
    assert _ensemble(proj, monkeypatch, "soft_voting", "soft", "--no-bundle").exit_code == 0
    path = proj / "runs" / "soft" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    del cfg["ensemble"]["members_absolute"]
    for members in ([str(proj / "runs" / "m0"), str(proj / "runs" / "m1")],  # absolute
                    ["runs/m0", "runs/m1"]):  # relative to the cwd it was written from
        cfg["ensemble"]["members"] = members
        path.write_text(yaml.safe_dump(cfg))
        saved = load_saved_model("runs/soft")
        assert saved.label_names == LABELS and len(saved.model.members) == 2


def test_bundle_flag_unbundlable_methods_and_stale_bundles(proj, monkeypatch):
    ens = proj / "runs" / "st"
    gb = ("--meta", "gradient_boosting", "--oof-folds", "2")
    result = _ensemble(proj, monkeypatch, "stacking", "st", *gb)  # default: note, no failure
    assert result.exit_code == 0 and "no bundle written" in result.output
    assert not (ens / BUNDLE_FILENAME).exists()
    result = _ensemble(proj, monkeypatch, "stacking", "st", *gb, "--bundle")  # asked: an error
    assert result.exit_code == 2 and "--meta logistic" in result.output
    assert _ensemble(proj, monkeypatch, "stacking", "st").exit_code == 0
    assert (ens / BUNDLE_FILENAME).is_file()
    # rewriting the folder without a bundle must not leave the old ensemble's bundle behind
    assert _ensemble(proj, monkeypatch, "soft_voting", "st", "--no-bundle").exit_code == 0
    assert not (ens / BUNDLE_FILENAME).exists()
