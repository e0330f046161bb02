"""Shared fixtures: tiny synthetic datasets written once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FUNDUSLAB_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def synth_course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic course split (64-px images) shared by the engine tests."""
    from funduslab.data.synthetic_layouts import write_layout

    return write_layout("odir-course", tmp_path_factory.mktemp("course"), n=160, seed=7, size=64)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small models are faster without thread overhead)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
