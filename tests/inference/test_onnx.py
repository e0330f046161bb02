"""ONNX export and the ``onnx`` predict backend: a tiny trained run predicts the same on
ONNX Runtime as eagerly, and its ``.onnx`` file carries what predict needs to feed it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.data.cache import decode_preprocessed
from funduslab.inference import load_for_prediction
from funduslab.inference.onnx_model import (
    OnnxMismatchError,
    export_onnx,
    load_onnx_model,
    output_probabilities,
)
from funduslab.preprocess import build_pipeline
from funduslab.training.predict import predict_logits
from funduslab.training.runner import run
from funduslab.inference.saved_model import SavedModel, load_saved_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

cli = CliRunner()
WIDE = {"COLUMNS": "1000"}  # one Rich line per message, whatever the path lengths


def _cfg(data: Path, out: Path, name: str, adapter: str = "odir_course", **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0}
    settings.update(train)
    return config_from_dict({
        "data": {"adapter": adapter, "root": str(data), "image_size": 32,
                 "cache_dir": str(out / "cache"), "preprocess": "circle_crop"},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.fixture(scope="module")
def course_run(synth_course: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx_runs")
    return run(_cfg(synth_course, out, "course", tune_thresholds=True), progress=False)


@pytest.fixture(scope="module")
def exported(course_run: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "course.onnx"
    check = export_onnx(load_saved_model(course_run), path)
    assert check.max_abs_diff <= 1e-4 and check.labels_agree
    return path


def _images(saved: SavedModel, root: Path) -> np.ndarray:
    """The synthetic course's offsite images, decoded as the model was trained."""
    paths = sorted((root / "images" / "offsite_test").iterdir())
    pipeline = build_pipeline(saved.preprocess, saved.image_size)
    return np.stack([decode_preprocessed(str(p), pipeline, saved.image_size) for p in paths])


def test_onnx_runtime_matches_eager_and_labels_agree(course_run, exported, synth_course):
    eager = load_saved_model(course_run)
    ort_saved = load_onnx_model(exported)
    images = _images(eager, synth_course)
    p_eager, y_eager = output_probabilities(eager, predict_logits(eager.model, images,
                                                                  batch_size=7))
    p_onnx, y_onnx = output_probabilities(ort_saved, predict_logits(ort_saved.model, images,
                                                                    batch_size=7))
    assert len(images) > 7  # several batch sizes through the dynamic batch axis
    torch.testing.assert_close(p_onnx, p_eager, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(y_onnx, y_eager)


def test_metadata_holds_labels_thresholds_size_and_preprocessing(course_run, exported):
    saved = load_saved_model(course_run)
    proto = onnx.load(str(exported))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["label_names"]) == ["D", "G", "A"]
    np.testing.assert_allclose(json.loads(meta["thresholds"]), saved.thresholds)
    assert not np.allclose(saved.thresholds, 0.5)  # tuned on val, so really carried over
    assert (meta["image_size"], meta["preprocess"], meta["task"]) == ("32", "circle_crop",
                                                                      "multilabel")
    np.testing.assert_allclose(json.loads(meta["mean"]), saved.model.mean.flatten(), atol=1e-7)
    np.testing.assert_allclose(json.loads(meta["std"]), saved.model.std.flatten(), atol=1e-7)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch" and not batch.HasField("dim_value")
    loaded = load_onnx_model(exported)
    assert loaded.label_names == ["D", "G", "A"] and loaded.image_size == 32
    np.testing.assert_array_equal(loaded.thresholds, saved.thresholds)


def test_predict_backend_onnx_writes_the_same_predictions_csv(course_run, synth_course,
                                                              tmp_path):
    template = synth_course / "onsite_test_submission.csv"
    onnx_file = tmp_path / "model.onnx"
    result = cli.invoke(app, ["export", str(course_run), "--format", "onnx", "--out",
                              str(onnx_file)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert onnx_file.is_file() and "max |Δp|" in result.output
    outs = {"eager": [str(course_run)], "onnx_file": [str(onnx_file)],
            "onnx_run": [str(course_run), "--backend", "onnx"]}
    for name, args in outs.items():
        result = cli.invoke(app, ["predict", args[0], str(template), "--images",
                                  str(synth_course / "images" / "onsite_test"), "--out",
                                  str(tmp_path / name), *args[1:]], env=WIDE)
        assert result.exit_code == 0, result.output
    eager = pd.read_csv(tmp_path / "eager" / "predictions.csv")
    for name in ("onnx_file", "onnx_run"):
        other = pd.read_csv(tmp_path / name / "predictions.csv")
        assert list(other.columns) == list(eager.columns)
        pd.testing.assert_frame_equal(other[["id", "D", "G", "A"]], eager[["id", "D", "G", "A"]])
        np.testing.assert_allclose(other[["p_D", "p_G", "p_A"]], eager[["p_D", "p_G", "p_A"]],
                                   atol=1e-4)
        assert (tmp_path / name / "submission.csv").read_text() == \
            (tmp_path / "eager" / "submission.csv").read_text()
    record = json.loads((tmp_path / "onnx_file" / "predict.json").read_text())
    assert record["model"] == str(onnx_file) and record["preprocess"] == "circle_crop"


@pytest.mark.parametrize("args, expected", [
    (["--format", "tflite"], "valid names: onnx"),
    (["--out", "model.pt"], "must end in .onnx"),
])
def test_bad_format_or_out_exits_2_with_one_line(course_run, tmp_path, args, expected):
    result = cli.invoke(app, ["export", str(course_run), *args], env=WIDE)
    assert result.exit_code == 2 and expected in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_non_run_paths_exit_2_with_one_line(tmp_path, course_run):
    (tmp_path / "not_a_run").mkdir()
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a protobuf")
    images = tmp_path / "images"
    images.mkdir()
    calls = {
        "no config.yaml": ["export", str(tmp_path / "not_a_run")],
        "no model at": ["export", str(tmp_path / "missing")],
        "ONNX Runtime can load": ["predict", str(bogus), str(images)],
        "runs on --backend onnx": ["predict", str(bogus), str(images), "--backend", "eager"],
        "valid names: eager, onnx": ["predict", str(course_run), str(images), "--backend",
                                     "tensorrt"],
    }
    for expected, args in calls.items():
        result = cli.invoke(app, args, env=WIDE)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_grading_model_exports_and_gives_the_same_grades(tmp_path):
    from funduslab.data.synthetic_layouts import write_layout

    data = write_layout("aptos", tmp_path / "aptos", n=40, seed=2, size=32)
    run_dir = run(_cfg(data, tmp_path / "runs", "grade", adapter="aptos", formulation="ordinal",
                       batch_size=8), progress=False)
    eager = load_saved_model(run_dir)
    check = export_onnx(eager, tmp_path / "grade.onnx")
    loaded = load_onnx_model(tmp_path / "grade.onnx")
    assert (loaded.task, loaded.formulation, loaded.num_grades) == ("grading", "ordinal", 5)
    images = np.random.default_rng(1).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    p_eager, g_eager = output_probabilities(eager, predict_logits(eager.model, images))
    p_onnx, g_onnx = output_probabilities(loaded, predict_logits(loaded.model, images))
    assert check.max_abs_diff <= 1e-4
    torch.testing.assert_close(p_onnx, p_eager, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(g_onnx, g_eager)


def test_dual_and_ensemble_models_are_refused(course_run, tmp_path):
    saved = load_saved_model(course_run)
    saved.dual = True
    with pytest.raises(ValueError, match="partner image"):
        export_onnx(saved, tmp_path / "dual.onnx")
    saved.dual, saved.model = False, nn.Sequential(saved.model)
    with pytest.raises(ValueError, match="ensemble"):
        export_onnx(saved, tmp_path / "ensemble.onnx")
    assert not list(tmp_path.iterdir())


def test_a_mismatch_beyond_tolerance_writes_nothing(course_run, tmp_path):
    with pytest.raises(OnnxMismatchError, match="not exported"):
        export_onnx(load_saved_model(course_run), tmp_path / "m.onnx", tolerance=-1.0)
    assert not list(tmp_path.iterdir())


def test_backend_is_chosen_by_suffix(course_run, exported):
    from funduslab.inference.onnx_model import OnnxModel

    assert isinstance(load_for_prediction(exported).model, OnnxModel)
    assert not isinstance(load_for_prediction(course_run).model, OnnxModel)


def test_importing_funduslab_loads_no_onnx():
    code = ("import sys, funduslab, funduslab.inference, funduslab.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _head_params():
    from funduslab.models.heads import HEADS

    return HEADS.names()


@pytest.mark.parametrize("head", _head_params())
def test_every_registered_head_exports_with_a_dynamic_batch(head, tmp_path):
    from funduslab.config import ModelConfig
    from funduslab.models.factory import build_model

    torch.manual_seed(0)
    options = {"base": "linear"} if head == "coral" else {}
    model = build_model(ModelConfig(backbone="tiny_cnn", weights="none", head=head,
                                    head_options=options), 3, image_size=32).eval()
    saved = SavedModel(model, tmp_path / head, ["D", "G", "A"], np.full(3, 0.5), 32, "none",
                       num_outputs=3)
    check = export_onnx(saved, tmp_path / f"{head}.onnx")  # checks batches of 4 and 1
    assert check.max_abs_diff <= 1e-4 and check.labels_agree
