"""``funduslab explain`` on a tiny trained run folder: panels, selection, attention, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from explain_helpers import STANDIN_HEAD, StandInAttentionHead
from PIL import Image
from tiny_runs import train_tiny
from typer.testing import CliRunner

from funduslab.cli.explain import register

cli = CliRunner()
app = typer.Typer()


@app.callback()
def _root() -> None:
    """Test app holding only the explain verb."""


register(app)


@pytest.fixture(scope="module")
def tiny_run(synth_course: Path, tmp_path_factory) -> Path:
    return train_tiny(synth_course, tmp_path_factory.mktemp("explain_runs"), image_size=64,
                      task="1-1")


def _explain(*args: str):
    result = cli.invoke(app, ["explain", *map(str, args)])
    return result


def test_writes_one_panel_per_image_in_table_order(tiny_run: Path, synth_course: Path, tmp_path):
    result = _explain(tiny_run, "--split", "offsite_test", "--n", "3", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    ids = pd.read_csv(synth_course / "offsite_test.csv")["id"].head(3)
    for image_id in ids:
        panel = tmp_path / f"{Path(image_id).stem}_gradcam.png"
        assert panel.is_file(), sorted(p.name for p in tmp_path.iterdir())
        width, height = Image.open(panel).size
        assert width > 3 * height  # original + 3 disease overlays side by side
    index = pd.read_csv(tmp_path / "index_offsite_test_gradcam.csv")
    assert index["id"].tolist() == ids.tolist()


def test_default_output_is_the_run_figures_folder(tiny_run: Path):
    result = _explain(tiny_run, "--n", "1", "--cam-method", "gradcam++")
    assert result.exit_code == 0, result.output
    assert len(list((tiny_run / "figures" / "explain").glob("*_gradcampp.png"))) == 1


def test_least_confident_on_a_labelled_split(tiny_run: Path, synth_course: Path, tmp_path):
    result = _explain(tiny_run, "--n", "2", "--least", "--cam-method", "eigencam", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(tiny_run / "predictions" / "offsite_test.csv")
    truth = pd.read_csv(synth_course / "offsite_test.csv").set_index("id").loc[pred["id"]]
    p = pred[["p_D", "p_G", "p_A"]].to_numpy()
    y = truth[["D", "G", "A"]].to_numpy()
    conf = (y * p + (1 - y) * (1 - p)).mean(1)
    expected = pred["id"].to_numpy()[np.argsort(conf, kind="stable")[:2]].tolist()
    index = pd.read_csv(tmp_path / "index_offsite_test_eigencam.csv")
    assert index["id"].tolist() == expected
    np.testing.assert_allclose(index["confidence"], np.sort(conf)[:2], atol=1e-6)


def test_most_confident_on_an_unlabelled_split(tiny_run: Path, tmp_path: Path):
    result = _explain(tiny_run, "--split", "onsite_test", "--n", "2", "--most", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(tiny_run / "predictions" / "onsite_test.csv")
    conf = (2 * (pred[["p_D", "p_G", "p_A"]] - 0.5).abs()).mean(1).to_numpy()
    expected = pred["id"].to_numpy()[np.argsort(-conf, kind="stable")[:2]].tolist()
    assert pd.read_csv(tmp_path / "index_onsite_test_gradcam.csv")["id"].tolist() == expected


def test_attention_row_with_an_attention_head(tiny_run: Path, tmp_path: Path):
    from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint, save_funduslab_checkpoint
    from funduslab.models.factory import model_from_checkpoint

    run_copy = tmp_path / "att_run"
    run_copy.mkdir()
    shutil.copy(tiny_run / "config.yaml", run_copy / "config.yaml")
    shutil.copytree(tiny_run / "predictions", run_copy / "predictions")
    model = model_from_checkpoint(tiny_run / "unit_task1-1.pt")
    model.head = StandInAttentionHead(model.num_features, 3, maps=2)
    _, meta = load_funduslab_checkpoint(tiny_run / "unit_task1-1.pt")
    save_funduslab_checkpoint(run_copy / "unit_task1-1.pt", model,
                              {**meta, "head": STANDIN_HEAD, "head_options": {"maps": 2}})
    plain = _explain(run_copy, "--n", "1", "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    result = _explain(run_copy, "--n", "1", "--attention", "--out", tmp_path / "att")
    assert result.exit_code == 0, result.output
    (a,), (b,) = list((tmp_path / "att").glob("*.png")), list((tmp_path / "plain").glob("*.png"))
    assert Image.open(a).size[1] > 1.8 * Image.open(b).size[1]  # a second row of maps


@pytest.mark.parametrize(("args", "message"), [
    (["--cam-method", "gradcamz"], "valid names"),
    (["--split", "holdout"], "splits present"),
    (["--most", "--least"], "not both"),
    (["--attention"], "attention"),
    (["--n", "0"], "positive"),
])
def test_user_mistakes_are_one_clear_line(tiny_run: Path, tmp_path: Path, args, message):
    result = _explain(tiny_run, *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_missing_run_folder(tmp_path: Path):
    result = _explain(tmp_path / "nope")
    assert result.exit_code == 2 and "run folder not found" in result.output
    (tmp_path / "empty").mkdir()
    result = _explain(tmp_path / "empty")
    assert result.exit_code == 2 and "config.yaml" in result.output
