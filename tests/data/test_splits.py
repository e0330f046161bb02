"""Patient-level, multilabel-stratified splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from funduslab.data.splits import (
    patient_label_matrix,
    patient_overlap,
    patient_split,
    sort_by_split,
)

LABELS = ["D", "G", "A"]


def two_eye_frame(n_patients: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two eyes per patient; prevalences about 50 % (D), 20 % (G), 10 % (A), eyes correlated."""
    rng = np.random.default_rng(seed)
    patient_labels = rng.random((n_patients, 3)) < np.array([0.5, 0.2, 0.1])
    rows = []
    for p in range(n_patients):
        for eye in ("left", "right"):
            eye_labels = patient_labels[p] & (rng.random(3) < 0.8)
            rows.append({"id": f"{p}_{eye}.jpg", "patient": str(p), "eye": eye,
                         **dict(zip(LABELS, eye_labels.astype(int)))})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return two_eye_frame()


def test_no_patient_in_two_splits(frame: pd.DataFrame) -> None:
    split = patient_split(frame, LABELS, seed=1)
    assert split.index.equals(frame.index) and split.notna().all()
    assert frame.assign(split=split).groupby("patient")["split"].nunique().max() == 1
    assert all(n == 0 for n in patient_overlap(frame.assign(split=split)).values())


def test_split_sizes_follow_fractions(frame: pd.DataFrame) -> None:
    split = patient_split(frame, LABELS, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=2)
    patients = frame.assign(split=split).groupby("split")["patient"].nunique().to_dict()
    assert patients == {"train": 280, "val": 60, "test": 60}


def test_prevalence_per_split_within_tolerance(frame: pd.DataFrame) -> None:
    split = patient_split(frame, LABELS, seed=3)
    _, y = patient_label_matrix(frame, LABELS)
    overall = y.mean(axis=0)
    for name in ("train", "val", "test"):
        ids = frame.loc[split == name, "patient"].unique()
        _, y_split = patient_label_matrix(frame[frame.patient.isin(ids)], LABELS)
        np.testing.assert_allclose(y_split.mean(axis=0), overall, atol=0.02)


def test_stratification_beats_chance_on_rare_label() -> None:
    """A label on 10 of 200 patients: every 15 % split gets 1–2 of them (chance often gives 0)."""
    frame = pd.DataFrame({"patient": [str(p) for p in range(200)],
                          "R": [int(p < 10) for p in range(200)]})  # fmt: skip
    for seed in range(5):
        split = patient_split(frame, ["R"], seed=seed)
        for name in ("val", "test"):
            assert 1 <= frame.loc[split == name, "R"].sum() <= 2


def test_deterministic_for_a_seed(frame: pd.DataFrame) -> None:
    a = patient_split(frame, LABELS, seed=7)
    b = patient_split(frame.copy(), LABELS, seed=7)
    c = patient_split(frame, LABELS, seed=8)
    pd.testing.assert_series_equal(a, b)
    assert not a.equals(c)


def test_grading_stratifies_max_grade() -> None:
    rng = np.random.default_rng(0)
    grades = rng.choice(5, size=300, p=[0.6, 0.15, 0.15, 0.07, 0.03])
    frame = pd.DataFrame({"patient": np.repeat(np.arange(150), 2).astype(str), "g": grades})
    patients, onehot = patient_label_matrix(frame, ["g"], grading=True, num_grades=5)
    max_grade = frame.groupby("patient", sort=False)["g"].max().reindex(patients).to_numpy()
    np.testing.assert_array_equal(onehot.argmax(axis=1), max_grade)
    split = patient_split(frame, ["g"], seed=0, grading=True, num_grades=5)
    per_patient = (
        frame.assign(split=split).groupby("patient").agg(s=("split", "first"), g=("g", "max"))
    )
    overall = np.bincount(per_patient["g"], minlength=5) / len(per_patient)
    for name in ("train", "val", "test"):
        part = per_patient.loc[per_patient.s == name, "g"]
        np.testing.assert_allclose(np.bincount(part, minlength=5) / len(part), overall, atol=0.05)


def test_no_labels_gives_seeded_shuffle() -> None:
    frame = pd.DataFrame({"patient": [str(p) for p in range(20)]})
    a = patient_split(frame, [], {"train": 0.5, "val": 0.5}, seed=0)
    assert (a == "val").sum() == 10
    assert a.equals(patient_split(frame, [], {"train": 0.5, "val": 0.5}, seed=0))


@pytest.mark.parametrize(
    ("fractions", "error", "match"),
    [
        ({"train": 0.7, "val": 0.2}, ValueError, "sum to 1"),
        ({"train": 1.2, "val": -0.2}, ValueError, "in \\[0, 1\\]"),
        ({"train": "most"}, TypeError, "must be a number"),
        ({}, ValueError, "empty"),
    ],
)
def test_bad_fractions(frame: pd.DataFrame, fractions, error, match) -> None:
    with pytest.raises(error, match=match):
        patient_split(frame, LABELS, fractions)


def test_too_few_patients() -> None:
    frame = pd.DataFrame({"patient": ["1", "1", "2"], "D": [0, 1, 0]})
    with pytest.raises(ValueError, match="cannot split 2 patient"):
        patient_split(frame, ["D"], {"train": 0.4, "val": 0.3, "test": 0.3})


def test_missing_columns_named(frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['X'\]"):
        patient_split(frame, ["D", "X"])


def test_sort_by_split_is_stable() -> None:
    frame = pd.DataFrame({"split": ["test", "train", "val", "train", "extra"], "i": range(5)})
    out = sort_by_split(frame)
    assert out["split"].tolist() == ["train", "train", "val", "test", "extra"]
    assert out["i"].tolist() == [1, 3, 2, 0, 4]
