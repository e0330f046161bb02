"""``funduslab generate`` end to end on the synthetic course data (tiny settings)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import typer
from typer.testing import CliRunner

from funduslab.generate.train_vae import load_vae


def _cli() -> typer.Typer:
    from funduslab.cli.generate import register

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        pass

    register(app)
    return app


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--data", str(data), "--out", str(out), "--adapter", "odir_course",
            "--image-size", "32", "--epochs", "1", "--per-class", "3", "--batch-size", "16",
            "--latent-dim", "4", "--base-channels", "8", "--seed", "2", *extra]


def test_generate_writes_checkpoint_images_labels_and_sheet(synth_course: Path, tmp_path):
    out = tmp_path / "gen"
    result = CliRunner().invoke(_cli(), _args(synth_course, out, "--classes", "D,G,A,normal"))
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out / "labels.csv")
    assert len(labels) == 12 and list(labels.columns) == ["id", "D", "G", "A"]
    assert labels[["D", "G", "A"]].sum().tolist() == [3, 3, 3]
    for image_id in labels["id"]:
        image = cv2.imread(str(out / "images" / image_id))
        assert image is not None and image.shape == (32, 32, 3)
    model, meta = load_vae(out / "vae.pt")
    assert meta["label_names"] == ["D", "G", "A"] and model.arch.image_size == 32
    assert len(pd.read_csv(out / "vae_history.csv")) == 1
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 8 * 64  # 8 tiles of 64 px per row

    again = tmp_path / "again"
    assert CliRunner().invoke(_cli(), _args(synth_course, again, "--classes", "D,G,A,normal")
                              ).exit_code == 0
    first = cv2.imread(str(out / "images" / "gen_G_0002.png"))
    np.testing.assert_array_equal(first, cv2.imread(str(again / "images" / "gen_G_0002.png")))


def test_generate_reports_user_mistakes_in_one_line(synth_course: Path, tmp_path):
    result = CliRunner().invoke(_cli(), _args(synth_course, tmp_path / "x", "--classes", "D,Q"))
    assert result.exit_code == 2 and "'Q' is not a label" in result.output
    result = CliRunner().invoke(_cli(), _args(tmp_path / "missing", tmp_path / "y"))
    assert result.exit_code == 2 and "missing" in result.output
    result = CliRunner().invoke(_cli(), [*_args(synth_course, tmp_path / "z"), "--image-size",
                                         "48"])
    assert result.exit_code == 2 and "4·2^k" in result.output
