"""Distributed data parallel from Lightning: two CPU processes, gloo backend, tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist


@pytest.mark.heavy
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
def test_two_cpu_processes_train_and_rank0_writes_the_run(synth_course: Path, tmp_path: Path):
    cmd = [sys.executable, "-m", "funduslab", "train", "--data", str(synth_course),
           "--backbone", "tiny_cnn", "--weights", "none", "--image-size", "32", "--epochs", "1",
           "--batch-size", "8", "--precision", "32", "--device", "cpu", "--devices", "2",
           "--strategy", "ddp", "--out", str(tmp_path), "--name", "ddp"]
    env = {**os.environ, "PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["fit"]["world_size"] == 2
    assert (tmp_path / "ddp" / "submission.csv").is_file()
