"""``funduslab bundle``: tiny runs → the course hand-in zip, loaded the course template's way.

Four 1-epoch runs at 32 px on the synthetic course split: funduslab's ``tiny_cnn`` (timm path,
flip TTA, tuned thresholds), frozen heads on a ResNet18 and an EfficientNet-B0 course
checkpoint (torchvision path), and ``tiny_cnn`` with Task 3-2's MHA head (rebuilt by the
script). The zip is unpacked; its ``.pt`` files must load with the
template's own code, strictly, and ``team.py`` — run without funduslab or OpenCV importable —
must write the same submission as ``funduslab predict``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
import yaml
from torch import nn
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.config import config_from_dict
from funduslab.data.cache import decode_preprocessed
from funduslab.handin import bundle_runs
from funduslab.preprocess import build_pipeline
from funduslab.inference.predict_images import list_inputs, predict_saved, write_prediction_folder
from funduslab.training.runner import run
from funduslab.inference.saved_model import load_saved_model

TASKS = {"tiny": "1-1", "resnet18": "1-2", "efficientnet": "1-3", "mha": "3-2"}
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
cli = CliRunner()


def _config(data: Path, out: Path, name: str, backbone: str = "tiny_cnn", weights: str = "none",
            head: str = "linear", head_options: dict | None = None, **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 16, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0}
    settings.update(train)
    return config_from_dict({
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": backbone, "weights": weights, "head": head,
                  "head_options": head_options or {}},
        "train": settings,
        "output": {"out": str(out), "name": name, "team": "unit", "task": TASKS[name],
                   "figures": False},
    })


def _course_checkpoint(arch: str, path: Path) -> Path:
    """A torchvision network with a 3-output head and non-trivial BN statistics, saved as the
    course saves its checkpoints (a plain state dict)."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(num_classes=3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def runs(synth_course: Path, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("handin_runs")
    done = {"tiny": run(_config(synth_course, out, "tiny", tune_thresholds=True, tta=True),
                        progress=False)}
    for name, arch in (("resnet18", "resnet18"), ("efficientnet", "efficientnet_b0")):
        ckpt = _course_checkpoint(arch, out / f"ckpt_{arch}.pt")
        done[name] = run(_config(synth_course, out, name, backbone=arch, weights=str(ckpt),
                                 setup="frozen"), progress=False)
    done["mha"] = run(_config(synth_course, out, "mha", head="mha",
                              head_options={"dim": 32, "num_heads": 2, "pos": "learned"}),
                      progress=False)
    return done


@pytest.fixture(scope="module")
def handin(runs: dict[str, Path], tmp_path_factory) -> Path:
    """The unpacked zip of the four runs."""
    out = tmp_path_factory.mktemp("handin")
    report = bundle_runs("team", list(runs.values()), out=out / "team.zip")
    assert report.path == out / "team.zip"
    with zipfile.ZipFile(report.path) as archive:
        archive.extractall(out / "unzipped")
    return out / "unzipped"


def _images(data: Path) -> list[str]:
    return list_inputs(data / "images" / "onsite_test").paths


def _decoded(saved, paths: list[str]) -> torch.Tensor:
    pipe = build_pipeline(saved.preprocess, saved.image_size)
    images = np.stack([decode_preprocessed(p, pipe, saved.image_size) for p in paths])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _script(folder: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``team.py`` in a fresh interpreter where funduslab, OpenCV and Lightning cannot be
    imported (the hand-in must not need them)."""
    code = ("import runpy, sys\n"
            "for name in ('funduslab', 'cv2', 'lightning'):\n"
            "    sys.modules[name] = None\n"
            f"sys.argv = {[str(folder / 'team.py'), *args]!r}\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=280, env=env)


def _predict_submission(run_dir: Path, source: Path, out: Path, images: Path | None = None
                        ) -> pd.DataFrame:
    saved = load_saved_model(run_dir)
    inputs = list_inputs(source, images)
    write_prediction_folder(out, saved, inputs, predict_saved(saved, inputs.paths))
    return pd.read_csv(out / "submission.csv")


def test_zip_holds_the_script_the_readme_and_course_named_weights(handin: Path):
    assert sorted(p.name for p in handin.iterdir()) == [
        "readme.md", "team.py", "team_task1-1.pt", "team_task1-2.pt", "team_task1-3.pt",
        "team_task3-2.pt"]
    for pt in handin.glob("*.pt"):  # plain tensors, no funduslab wrapper
        state = torch.load(pt, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        if pt.name == "team_task3-2.pt":  # a head timm lacks: funduslab's keys, rebuilt by team.py
            assert any(k.startswith("head.blocks.0.attn.") for k in state)
        else:  # torchvision's or timm's own keys
            assert not any(k.startswith(("backbone.net.", "head.fc.")) for k in state)


@pytest.mark.parametrize("name,arch",
                         [("resnet18", "resnet18"), ("efficientnet", "efficientnet_b0")])
def test_course_template_loads_the_torchvision_files_strictly_and_reproduces_funduslab(
    handin: Path, runs: dict[str, Path], synth_course: Path, name: str, arch: str
):
    # the course template's own loading code
    model = getattr(torchvision.models, arch)()
    if arch == "resnet18":
        model.fc = nn.Linear(512, 3)
    else:
        model.classifier[1] = nn.Linear(1280, 3)
    model.load_state_dict(torch.load(handin / f"team_task{TASKS[name]}.pt"))
    model.eval()
    saved = load_saved_model(runs[name])
    x = _decoded(saved, _images(synth_course))
    with torch.no_grad():
        theirs = saved.model(x)
        ours = model((x - IMAGENET_MEAN) / IMAGENET_STD)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_script_decodes_and_predicts_like_funduslab(handin: Path, runs: dict[str, Path],
                                                    synth_course: Path):
    spec = importlib.util.spec_from_file_location("team_handin", handin / "team.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    paths = _images(synth_course)
    assert [e["file"] for e in script.MODELS] == [f"team_task{t}.pt" for t in TASKS.values()]
    for entry, run_dir in zip(script.MODELS, runs.values()):
        saved = load_saved_model(run_dir)
        pipe = build_pipeline(saved.preprocess, saved.image_size)
        decoded = np.stack([script.decode(p, entry) for p in paths])
        np.testing.assert_array_equal(
            decoded, np.stack([decode_preprocessed(p, pipe, saved.image_size) for p in paths]))
        logits = script.predict_logits(script.load_model(entry, handin), entry, decoded)
        np.testing.assert_allclose(logits, predict_saved(saved, paths), rtol=0, atol=1e-5)
        assert entry["tta"] is (run_dir.name == "tiny")
        np.testing.assert_allclose(entry["thresholds"], saved.thresholds)


def test_script_writes_the_submission_funduslab_predict_writes(
    handin: Path, runs: dict[str, Path], synth_course: Path, tmp_path: Path
):
    images = synth_course / "images" / "onsite_test"
    done = _script(handin, tmp_path, "--images", str(images), "--out", "sub.csv")
    assert done.returncode == 0, done.stderr
    for name, run_dir in runs.items():
        ours = pd.read_csv(tmp_path / f"sub_team_task{TASKS[name]}.csv")
        theirs = _predict_submission(run_dir, images, tmp_path / f"predict_{name}")
        assert list(ours.columns) == ["id", "D", "G", "A"]
        pd.testing.assert_frame_equal(ours, theirs)
    template = synth_course / "onsite_test_submission.csv"  # ids and order from the template
    done = _script(handin, tmp_path, "--images", str(images), "--template", str(template),
                   "--model", "team_task1-1.pt", "--out", "one.csv")
    assert done.returncode == 0, done.stderr
    theirs = _predict_submission(runs["tiny"], template, tmp_path / "predict_csv", images)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one.csv"), theirs)
    pd.testing.assert_frame_equal(theirs, pd.read_csv(runs["tiny"] / "submission.csv"))


def test_readme_names_each_file_and_reports_the_runs_measured_figures(
    handin: Path, runs: dict[str, Path]
):
    text = (handin / "readme.md").read_text()
    for name, run_dir in runs.items():
        assert f"`team_task{TASKS[name]}.pt`" in text and f"run `{name}`" in text
        metrics = json.loads((run_dir / "metrics.json").read_text())
        block = ("tuned_thresholds" if metrics["thresholds"]["used"] == "tuned_on_val"
                 else "threshold_0.5")
        for split in ("val", "offsite_test"):
            scores = metrics["splits"][split][block]
            d = scores["per_class"]["D"]
            assert (f"| {scores['course_average_f1']:.3f} | {d['precision']:.3f} / "
                    f"{d['recall']:.3f} / {d['f1']:.3f} |") in text
    assert "m.load_state_dict(torch.load(\"team_task1-2.pt\"))" in text
    assert "_efficientnet" in text and "--task RUN=k-j" in text


def test_one_task_two_architectures_get_suffixes_one_architecture_is_refused(
    runs: dict[str, Path], tmp_path: Path
):
    report = bundle_runs("team", [runs["tiny"], runs["resnet18"]], out=tmp_path / "t.zip",
                         tasks=["tiny=2-1", f"{runs['resnet18']}=2-1"])
    assert sorted(m for m in report.members if m.endswith(".pt")) == [
        "team_task2-1_resnet18.pt", "team_task2-1_tiny_cnn.pt"]
    twin = shutil.copytree(runs["tiny"], tmp_path / "tiny_twin")
    with pytest.raises(ValueError, match=r"runs .*tiny and .*tiny_twin both map to "
                                         r"team_task1-1\.pt with the same architecture"):
        bundle_runs("team", [runs["tiny"], twin], out=tmp_path / "u.zip")
    assert not (tmp_path / "u.zip").exists()


def test_a_run_without_a_task_is_refused_until_task_is_passed(runs: dict[str, Path],
                                                              tmp_path: Path):
    run_dir = shutil.copytree(runs["tiny"], tmp_path / "no_task")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["output"]["task"] = None
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    zip_path = tmp_path / "x.zip"
    result = cli.invoke(app, ["bundle", "--team", "team", str(run_dir), "--out", str(zip_path)])
    assert result.exit_code == 2
    assert "has no course task" in result.output and f"--task {run_dir}=k-j" in result.output
    assert not zip_path.exists()
    result = cli.invoke(app, ["bundle", "--team", "team", str(run_dir), "--out", str(zip_path),
                              "--task", "no_task=2-1"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(zip_path) as archive:
        assert "team_task2-1.pt" in archive.namelist()
    result = cli.invoke(app, ["bundle", "--team", "bad name", str(run_dir)])
    assert result.exit_code == 2 and "letters, digits" in result.output
