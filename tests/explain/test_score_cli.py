"""``funduslab explain RUN --score`` on a tiny run trained on synthetic data with lesion masks."""

from __future__ import annotations

import logging

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from tiny_runs import train_tiny
from typer.testing import CliRunner

from funduslab.cli.explain import register
from funduslab.data.mask_index import read_landmarks, read_mask_index
from funduslab.explain.cams import CAMS
from funduslab.explain.score import BASELINES, score_run

cli = CliRunner()
app = typer.Typer()


@app.callback()
def _root() -> None:
    """Test app holding only the explain verb."""


register(app)

COLUMNS = ["method", "kind", "label", "id", "hit", "energy", "mask_fraction", "hit_chance",
           "deletion_auc", "probability", "tolerance_px", "centre", "peak_x", "peak_y",
           "cam_seconds"]


@pytest.fixture(scope="module")
def masked_course(tmp_path_factory) -> Path:
    from funduslab.data.synthetic_layouts import write_layout

    return write_layout("odir-course", tmp_path_factory.mktemp("masked_course"), n=40, seed=3,
                        size=64, masks=True)


@pytest.fixture(scope="module")
def masked_run(masked_course: Path, tmp_path_factory) -> Path:
    return train_tiny(masked_course, tmp_path_factory.mktemp("score_runs"), image_size=64,
                      task="1-1")


def _explain(*args):
    return cli.invoke(app, ["explain", *map(str, args)])


def _expected_pairs(masked_course: Path) -> set[tuple[str, str]]:
    index = read_mask_index(masked_course / "masks")
    truth = pd.read_csv(masked_course / "offsite_test.csv").set_index("id")
    return {(i, lab) for i, lab in zip(index["id"], index["label"])
            if i in truth.index and truth.at[i, lab] == 1}


def test_score_every_method_writes_table_summary_and_figure(masked_run, masked_course, tmp_path):
    result = _explain(masked_run, "--score", "--cam-method", "all", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "explain_scores.csv", keep_default_na=False, na_values=[""])
    assert list(frame.columns) == COLUMNS
    methods = [*CAMS.names(), *BASELINES]
    assert list(dict.fromkeys(frame["method"])) == methods
    pairs = _expected_pairs(masked_course)
    assert pairs and len(frame) == len(pairs) * len(methods)
    for method in methods:
        mine = frame[frame["method"] == method]
        assert set(zip(mine["id"], mine["label"])) == pairs, method
    # an all-zero CAM has no energy and no maximum (NaN); the baselines always have both
    assert frame["energy"].dropna().between(0, 1).all()
    assert frame["hit"].dropna().between(0, 1).all() and frame["deletion_auc"].between(0, 1).all()
    assert frame.loc[frame["kind"] == "baseline", ["hit", "energy"]].notna().all().all()
    assert (frame["tolerance_px"] == 4).all()
    assert (frame["mask_fraction"] <= frame["hit_chance"]).all()
    # the random map spreads its mass evenly: energy ≈ the mask's area share
    rnd = frame[frame["method"] == "random"]
    np.testing.assert_allclose(rnd["energy"], rnd["mask_fraction"], atol=0.02)
    # the centre-bias map peaks on the fovea of landmarks.csv (no crop at this size)
    centre = frame[frame["method"] == "centre_bias"].set_index("id")
    marks = read_landmarks(masked_course / "masks").loc[centre.index]
    assert (centre["centre"] == "fovea").all()
    np.testing.assert_allclose(centre["peak_x"], marks["fovea_x"], atol=0.51)
    np.testing.assert_allclose(centre["peak_y"], marks["fovea_y"], atol=0.51)
    summary = (tmp_path / "explain_scores.md").read_text()
    assert ("| method | label | n | flat | hit | hit chance | energy | energy chance | "
            "deletion auc |") in summary
    for title in ("Grad-CAM", "Score-CAM", "random map", "centre bias"):
        assert f"| {title} |" in summary
    width, height = Image.open(tmp_path / "explain_scores.png").size
    assert width > 1.5 * height  # 1 + 7 columns beside each other


def test_default_output_is_the_run_folder(masked_run):
    result = _explain(masked_run, "--score")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(masked_run / "explain_scores.csv")
    assert set(frame["method"]) == {"gradcam", *BASELINES}
    assert (masked_run / "explain_scores.md").is_file()
    assert (masked_run / "figures" / "explain_scores.png").is_file()
    assert "gradcam: hit rate" in result.output


def test_score_run_returns_a_tidy_frame(masked_run, masked_course):
    frame = score_run(masked_run, methods="gradcam,eigencam", limit=1, faithfulness=None)
    assert "deletion_auc" not in frame.columns
    assert frame["id"].nunique() == 1
    assert set(frame["method"]) == {"gradcam", "eigencam", *BASELINES}
    again = score_run(masked_run, methods=["gradcam", "eigencam"], limit=1, faithfulness=None)
    pd.testing.assert_frame_equal(frame.drop(columns="cam_seconds"),
                                  again.drop(columns="cam_seconds"))


def test_mask_of_another_size_names_the_file(masked_run, masked_course, tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(masked_course / "masks", masks)
    index = read_mask_index(masks)
    truth = pd.read_csv(masked_course / "offsite_test.csv")["id"]
    victim = Path(index.loc[index["id"].isin(truth), "path"].iloc[0])
    Image.fromarray(np.full((10, 12), 255, np.uint8)).save(victim)
    logging.disable(logging.INFO)  # progress lines of a console handler an earlier test set up
    try:
        result = _explain(masked_run, "--score", "--masks", masks, "--out", tmp_path / "o")
    finally:
        logging.disable(logging.NOTSET)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and victim.name in errors[0] and "12x10" in errors[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--masks", "{tmp}/nope"], "nope/masks.csv"),
    (["--cam-method", "gradcam,nosuchcam"], "valid names"),
    (["--faithfulness", "insertion"], "deletion"),
    (["--most"], "drop --most"),
    (["--n", "0"], "positive"),
])
def test_user_mistakes_are_one_line(masked_run, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = _explain(masked_run, "--score", *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_masks_without_score_is_refused(masked_run, tmp_path):
    result = _explain(masked_run, "--masks", tmp_path)
    assert result.exit_code == 2 and "--score" in result.output


def test_score_run_keeps_to_the_labels_asked_for(masked_run):
    every = score_run(masked_run, methods="gradcam", faithfulness=None)
    only_d = score_run(masked_run, methods="gradcam", faithfulness=None, labels=["D"])
    assert set(only_d["label"]) == {"D"} and len(set(every["label"])) > 1
    d_rows = every[every["label"] == "D"].reset_index(drop=True)
    pd.testing.assert_frame_equal(only_d.drop(columns="cam_seconds"),
                                  d_rows.drop(columns="cam_seconds"))
    with pytest.raises(ValueError, match=r"labels \['X'\] are not the run's"):
        score_run(masked_run, methods="gradcam", faithfulness=None, labels=["X"])
