"""Fixtures for the VAE tests."""

from __future__ import annotations

import numpy as np
import pytest
from generate_helpers import colour_coded


@pytest.fixture(scope="session")
def coloured_data() -> tuple[np.ndarray, np.ndarray]:
    """48 colour-coded 16-px images and their one-hot labels."""
    return colour_coded(48, size=16)
