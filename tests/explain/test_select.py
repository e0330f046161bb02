"""Most / least confident images from a hand-built predictions CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funduslab.explain.select import confidence, select_images, select_indices

IDS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
PROBS = np.array([
    [0.9, 0.1],   # labelled [1, 0]: right and sure      → true-label conf 0.9;  |p-.5| conf 0.8
    [0.5, 0.5],   # undecided                             → 0.5;                  0.0
    [0.2, 0.7],   # labelled [1, 0]: wrong on both        → (0.2+0.3)/2 = 0.25; (0.6+0.4)/2 = 0.5
    [0.0, 1.0],   # labelled [0, 1]: right, certain       → 1.0;                  1.0
])
TARGETS = np.array([[1, 0], [1, 1], [1, 0], [0, 1]])


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    frame = pd.DataFrame({"id": IDS, "p_D": PROBS[:, 0], "p_G": PROBS[:, 1],
                          "D": (PROBS[:, 0] >= 0.5).astype(int),
                          "G": (PROBS[:, 1] >= 0.5).astype(int)})
    (tmp_path / "predictions").mkdir()
    frame.to_csv(tmp_path / "predictions" / "val.csv", index=False)
    return tmp_path


def test_confidence_by_hand():
    np.testing.assert_allclose(confidence(PROBS), [0.8, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(confidence(PROBS, TARGETS), [0.9, 0.5, 0.25, 1.0])


def test_unlabelled_most_and_least(run_dir: Path):
    most, conf = select_images(run_dir, "val", IDS, ["D", "G"], 2, "most")
    assert most == ["d.jpg", "a.jpg"]
    np.testing.assert_allclose(conf, [1.0, 0.8])
    least, _ = select_images(run_dir, "val", IDS, ["D", "G"], 3, "least")
    assert least == ["b.jpg", "c.jpg", "a.jpg"]


def test_labelled_uses_confidence_in_the_true_label(run_dir: Path):
    least, conf = select_images(run_dir, "val", IDS, ["D", "G"], 2, "least", targets=TARGETS)
    assert least == ["c.jpg", "b.jpg"]  # c is confidently wrong: it comes first
    np.testing.assert_allclose(conf, [0.25, 0.5])
    most, _ = select_images(run_dir, "val", IDS, ["D", "G"], 1, "most", targets=TARGETS)
    assert most == ["d.jpg"]


def test_targets_follow_ids_when_the_csv_is_in_another_order(run_dir: Path):
    order = [2, 0, 3, 1]
    least, _ = select_images(run_dir, "val", [IDS[i] for i in order], ["D", "G"], 1, "least",
                             targets=TARGETS[order])
    assert least == ["c.jpg"]


def test_first_needs_no_predictions_and_n_is_capped(tmp_path: Path):
    ids, conf = select_images(tmp_path, "val", IDS, ["D"], 10, "first")
    assert ids == IDS and conf is None


def test_ties_keep_file_order():
    np.testing.assert_array_equal(select_indices(np.array([0.5, 0.2, 0.5, 0.2]), 4, "most"),
                                  [0, 2, 1, 3])


def test_clear_errors(run_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="predictions"):
        select_images(run_dir, "test", IDS, ["D", "G"], 2, "most")
    with pytest.raises(ValueError, match="same images"):
        select_images(run_dir, "val", IDS[:3], ["D", "G"], 2, "most")
    with pytest.raises(ValueError, match="p_A"):
        select_images(run_dir, "val", IDS, ["D", "A"], 2, "most")
    with pytest.raises(ValueError, match="selection"):
        select_indices(np.zeros(3), 2, "middle")
    with pytest.raises(ValueError, match="positive"):
        select_indices(np.zeros(3), 0, "most")
