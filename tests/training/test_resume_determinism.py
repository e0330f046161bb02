"""An interrupted run, resumed with the same command, ends exactly where the uninterrupted one does.

Bit-identical on the CPU (precision 32, the same thread count): the resumed epochs must draw the
same shuffles, augmentations and dropout masks, so every random stream travels with the
checkpoint (training/rng_state.py). Interrupts are Ctrl-C in-process, SIGKILL and SIGINT from
outside.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from funduslab.config import config_from_dict
from funduslab.training import data as data_module
from funduslab.training.fit import TrainingInterrupted
from funduslab.training.runner import run

EPOCHS = 4
CLI_EPOCHS = 12  # an idle CPU runs an epoch of this tiny model in a fraction of a second
WEIGHTS = "model.pt"


def _config(data: Path, out: Path):
    return config_from_dict({
        "data": {"root": str(data), "image_size": 32, "cache_dir": str(out.parent / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": EPOCHS, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0, "lr": 3e-3, "backbone_lr": 3e-3},
        "output": {"out": str(out), "name": "r", "figures": False},
    })


def _outcome(run_dir: Path) -> tuple[dict, dict, pd.DataFrame]:
    state = torch.load(run_dir / WEIGHTS, weights_only=True)["state_dict"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("timing_s")
    metrics["fit"].pop("best_checkpoint")
    return state, metrics, pd.read_csv(run_dir / "history.csv")


def _assert_same(a: Path, b: Path) -> None:
    (wa, ma, ha), (wb, mb, hb) = _outcome(a), _outcome(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    pd.testing.assert_frame_equal(ha, hb)
    assert ma == mb


@pytest.fixture(scope="module")
def uninterrupted(synth_course: Path, tmp_path_factory) -> Path:
    return run(_config(synth_course, tmp_path_factory.mktemp("plain") / "runs"), progress=False)


def test_ctrl_c_mid_epoch_then_resume_gives_identical_weights_and_metrics(
        uninterrupted: Path, synth_course: Path, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    original = data_module.ArrayDataset.__getitem__
    n_train = int((pd.read_csv(uninterrupted / "predictions" / "train.csv")).shape[0])

    def interrupting(self, index):
        calls["n"] += 1
        if calls["n"] == int(2.5 * n_train):  # half-way through the third epoch
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(data_module.ArrayDataset, "__getitem__", interrupting)
    cfg = _config(synth_course, tmp_path / "runs")
    with pytest.raises(TrainingInterrupted, match=r"epoch 3 of 4.*last\.ckpt.*resume"):
        run(cfg, progress=False)
    assert (cfg.run_dir / "failed.json").is_file() and not (cfg.run_dir / "metrics.json").exists()
    monkeypatch.setattr(data_module.ArrayDataset, "__getitem__", original)
    resumed = run(cfg, progress=False)
    assert not (resumed / "failed.json").exists()
    _assert_same(uninterrupted, resumed)


def _train_command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "funduslab", "train", "--data", str(data), "--backbone",
            "tiny_cnn", "--weights", "none", "--image-size", "32", "--epochs", str(CLI_EPOCHS),
            "--batch-size", "16", "--precision", "32", "--lr", "3e-3", "--backbone-lr", "3e-3",
            "--out", str(out), "--name", "r", "--workers", "0"]


def _start(cmd: list[str]) -> subprocess.Popen:
    # a shell that starts the test run in the background leaves SIGINT ignored, and an ignored
    # signal is inherited: give the child the default so that Ctrl-C reaches Python
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_epochs(run_dir: Path, proc: subprocess.Popen, n: int, limit_s: float = 120) -> None:
    history = run_dir / "history.csv"
    start = time.time()
    while time.time() - start < limit_s:
        if history.is_file() and len(history.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.05)
    pytest.fail(f"{history} never showed {n} epochs")


@pytest.mark.heavy  # three CLI processes per case
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_from_outside_then_resumed_by_the_same_command(sig, synth_course: Path,
                                                              tmp_path: Path) -> None:
    plain = subprocess.run(_train_command(synth_course, tmp_path / "plain"), capture_output=True,
                           text=True, timeout=240)
    assert plain.returncode == 0, plain.stdout[-2000:] + plain.stderr[-2000:]
    cmd = _train_command(synth_course, tmp_path / "killed")
    proc = _start(cmd)
    _wait_for_epochs(tmp_path / "killed" / "r", proc, 2)
    time.sleep(random.Random(int(sig)).uniform(0.0, 0.1))  # somewhere in epoch 3 or soon after
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0]
    if sig == signal.SIGINT:
        assert proc.returncode == 130, output[-2000:]
        assert "interrupted" in output and "Traceback" not in output
        assert "resume" in output
    else:
        assert proc.returncode == -signal.SIGKILL
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    _assert_same(tmp_path / "plain" / "r", tmp_path / "killed" / "r")
