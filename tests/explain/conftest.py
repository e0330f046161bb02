"""Explain fixtures: seeded tiny inputs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def images() -> torch.Tensor:
    """Two seeded 64-px RGB images in [0, 1]."""
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
