"""Deletion AUC and ROAD on a toy model that only looks at one small bright spot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from funduslab.explain.faithfulness import FAITHFULNESS, deletion_curves

SPOT = (slice(14, 18), slice(14, 18))  # the 4×4 pixels the toy model reads


class SpotModel(nn.Module):
    """Output 1 = 40 · (mean of the spot − 0.6); output 0 ignores the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spot = x[:, :, SPOT[0], SPOT[1]].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(spot), 40 * (spot - 0.6)], dim=1)


def _image() -> torch.Tensor:
    image = torch.full((3, 32, 32), 0.2)
    image[:, SPOT[0], SPOT[1]] = 1.0
    return image


def _bump(x: float, y: float) -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 50.0).astype(np.float32)


def test_registry_names():
    assert FAITHFULNESS.names() == ["deletion", "road"]
    with pytest.raises(ValueError, match="deletion"):
        FAITHFULNESS.get("insertion")


def test_deletion_ranks_the_map_on_the_spot_first():
    maps = np.stack([_bump(15.5, 15.5), _bump(2, 2)])
    fractions, probs = deletion_curves(SpotModel(), _image(), maps, label=1, steps=8)
    np.testing.assert_allclose(fractions, np.linspace(0, 1, 9))
    assert probs[0, 0] == probs[1, 0] > 0.99  # nothing removed yet
    assert probs[0, -1] == pytest.approx(probs[1, -1])  # everything blurred
    assert probs[0, 1] < 0.05 < 0.99 < probs[1, 1]  # the first eighth holds the spot, or not
    auc = FAITHFULNESS.get("deletion").score(SpotModel(), _image(), maps, 1, 0)
    np.testing.assert_allclose(auc, np.trapezoid(probs, fractions, axis=1), rtol=1e-6)
    assert auc[0] < 0.1 and auc[1] > 0.3


def test_deletion_removes_only_pixels_in_the_region():
    maps = np.stack([_bump(15.5, 15.5), _bump(2, 2)])
    region = np.zeros((32, 32), bool)
    region[:, 16:] = True  # half the spot lies outside and is never removed
    _, probs = deletion_curves(SpotModel(), _image(), maps, 1, steps=4, within=region)
    _, whole = deletion_curves(SpotModel(), _image(), maps, 1, steps=4)
    assert probs[0, 0] == whole[0, 0]
    assert probs[0, -1] > whole[0, -1] + 0.5  # half the spot is left, so the model still sees it


def test_deletion_checks_shapes():
    with pytest.raises(ValueError, match="maps must be"):
        deletion_curves(SpotModel(), _image(), np.zeros((1, 16, 16)), 1)
    with pytest.raises(ValueError, match="steps"):
        deletion_curves(SpotModel(), _image(), np.zeros((1, 32, 32)), 1, steps=0)


def test_road_prefers_the_map_on_the_spot_and_is_seeded():
    maps = np.stack([_bump(15.5, 15.5), _bump(2, 2)])
    road = FAITHFULNESS.get("road")
    first = road.score(SpotModel(), _image(), maps, 1, 7)
    assert road.higher_is_better and road.column == "road"
    assert first.shape == (2,) and first[0] > first[1] + 0.2
    np.testing.assert_array_equal(first, road.score(SpotModel(), _image(), maps, 1, 7))
