"""The screening preset runs end to end on synthetic ODIR-5K-style data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments.screening import screening, screening_run_name


def test_screening_quick_writes_long_tail_report(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    results = screening(data, out=tmp_path / "runs", quick=True, seeds=[0],
                        backbone="tiny_cnn", weights="none", labels="N,D,C")
    text = results.read_text()
    assert "macro AUROC" in text and "| N |" in text and "95 % CI" in text
    run_dir = next((tmp_path / "runs").glob("screening_tiny_cnn_s0"))
    rep = json.loads((run_dir / "long_tail.json").read_text())
    assert [r["name"] for r in rep["labels"]] == ["N", "D", "C"]
    cfg = (run_dir / "config.yaml").read_text()
    assert "macro_auroc" in cfg  # selected on validation macro AUROC


def test_screening_frozen_fellow_eye_rows_have_their_own_folders(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    out = tmp_path / "runs"
    results = screening(data, out=out, quick=True, seeds=[0], backbone="tiny_cnn",
                        weights="none", labels="N,D,C", setup="frozen", dual="concat")
    assert "a head on frozen features" in results.read_text()
    assert "`concat` fusion" in results.read_text()
    run_dir = out / f"{screening_run_name('tiny_cnn', 'frozen', 'concat')}_s0"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["setup"] == "frozen" and saved["model"]["dual"] == "concat"
    assert (run_dir / "long_tail.json").is_file()
    with pytest.raises(ValueError, match="setup must be"):
        screening(data, out=out, quick=True, setup="partial")


def test_screening_preprocessing_ensemble_soft_votes_one_model_per_pipeline(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    out = tmp_path / "runs"
    results = screening(data, out=out, quick=True, seeds=[0], backbone="tiny_cnn",
                        weights="none", labels="N,D,C", setup="frozen",
                        preprocess="none|ben_graham")
    plain = out / f"{screening_run_name('tiny_cnn', 'frozen')}_s0"
    graham = out / f"{screening_run_name('tiny_cnn', 'frozen', preprocess='ben_graham')}_s0"
    ens = out / f"{screening_run_name('tiny_cnn', 'frozen', preprocess='none|ben_graham')}_s0"
    assert ens.name == "screening_tiny_cnn_frozen_ens_none_ben_graham_s0"
    assert yaml.safe_load((graham / "config.yaml").read_text())["data"]["preprocess"] == \
        "ben_graham"
    cols = ["p_N", "p_D", "p_C"]
    members = [pd.read_csv(d / "predictions" / "test.csv").set_index("id") for d in (plain, graham)]
    voted = pd.read_csv(ens / "predictions" / "test.csv").set_index("id")
    assert not np.allclose(members[0][cols], members[1].loc[members[0].index, cols], atol=1e-3)
    np.testing.assert_allclose(voted[cols].to_numpy(),
                               (members[0].loc[voted.index, cols].to_numpy()
                                + members[1].loc[voted.index, cols].to_numpy()) / 2, atol=1e-5)
    # the reported figures are the ensemble's; each member's are listed beside them
    rep = json.loads((ens / "long_tail.json").read_text())
    assert [r["name"] for r in rep["labels"]] == ["N", "D", "C"]
    text = results.read_text()
    assert f"{rep['macro_auroc']['value']:.4f}" in text
    assert "| `none` |" in text and "| `ben_graham` |" in text


def test_screening_backbone_ensemble_soft_votes_one_model_per_backbone(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    out = tmp_path / "runs"
    results = screening(data, out=out, quick=True, seeds=[0], backbone="tiny_cnn|tiny_vit",
                        weights="none", labels="N,D,C", setup="frozen")
    cnn = out / f"{screening_run_name('tiny_cnn', 'frozen')}_s0"
    vit = out / f"{screening_run_name('tiny_vit', 'frozen')}_s0"
    ens = out / f"{screening_run_name('tiny_cnn|tiny_vit', 'frozen')}_s0"
    assert ens.name == "screening_tiny_cnn-tiny_vit_frozen_ens_none_s0"
    assert yaml.safe_load((vit / "config.yaml").read_text())["model"]["backbone"] == "tiny_vit"
    cols = ["p_N", "p_D", "p_C"]
    members = [pd.read_csv(d / "predictions" / "test.csv").set_index("id") for d in (cnn, vit)]
    voted = pd.read_csv(ens / "predictions" / "test.csv").set_index("id")
    np.testing.assert_allclose(voted[cols].to_numpy(),
                               (members[0].loc[voted.index, cols].to_numpy()
                                + members[1].loc[voted.index, cols].to_numpy()) / 2, atol=1e-5)
    text = results.read_text()
    assert "| `tiny_cnn` | `none` |" in text and "| `tiny_vit` | `none` |" in text
    assert "Backbone tiny_cnn + tiny_vit" in text


def test_screening_tta_evaluates_on_flipped_views_in_its_own_folder(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    out = tmp_path / "runs"
    screening(data, out=out, quick=True, seeds=[0], backbone="tiny_cnn", weights="none",
              labels="N,D,C", setup="frozen", tta=True)
    run_dir = out / f"{screening_run_name('tiny_cnn', 'frozen', tta=True)}_s0"
    assert run_dir.name == "screening_tiny_cnn_frozen_tta_s0"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["train"]["tta"] is True
    splits = len(json.loads((run_dir / "metrics.json").read_text())["splits"])
    assert len(list((out / ".cache").glob("features-*.pt"))) == 3 * splits  # image + 2 flips


def test_screening_with_runs_votes_each_seed_with_another_recipes_run(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    out = tmp_path / "runs"
    kw = dict(quick=True, seeds=[0], backbone="tiny_cnn", weights="none", labels="N,D,C")
    with pytest.raises(ValueError, match=r"has no \{seed\}"):
        screening(data, out=out, setup="frozen", with_runs=str(out / "full_s0"), **kw)
    with pytest.raises(FileNotFoundError, match="full_s0 has no predictions"):
        screening(data, out=out, setup="frozen", with_runs=str(out / "full_s{seed}"), **kw)
    assert not out.exists()  # checked before anything trained

    screening(data, out=out, setup="full", **kw)
    full = out / f"{screening_run_name('tiny_cnn')}_s0"
    template = str(out / f"{screening_run_name('tiny_cnn')}_s{{seed}}")
    results = screening(data, out=out, setup="frozen", with_runs=template, **kw)
    frozen = out / f"{screening_run_name('tiny_cnn', 'frozen')}_s0"
    voted = out / f"{screening_run_name('tiny_cnn', 'frozen', with_runs=template)}_s0"
    assert voted.name == "screening_tiny_cnn_frozen_with_screening_tiny_cnn_s0"
    cols = ["p_N", "p_D", "p_C"]
    own, other, vote = (pd.read_csv(d / "predictions" / "test.csv").set_index("id")
                        for d in (frozen, full, voted))
    np.testing.assert_allclose(vote[cols].to_numpy(), (own.loc[vote.index, cols].to_numpy()
                                                       + other.loc[vote.index, cols].to_numpy())
                               / 2, atol=1e-5)
    rep = json.loads((voted / "long_tail.json").read_text())
    text = results.read_text()
    assert f"{rep['macro_auroc']['value']:.4f}" in text
    assert "| run folder `screening_tiny_cnn` | `none` |" in text
    assert "| `tiny_cnn` | `none` |" in text
