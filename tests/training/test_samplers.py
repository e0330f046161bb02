"""Training samplers: the patient-level sampler (grouping, balance, determinism) and registry."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from funduslab.data.split_data import SplitData
from funduslab.training.samplers import SAMPLERS, PatientSampler, build_sampler


def _split(with_patients: bool = True) -> SplitData:
    """60 patients with 1–3 images each; class 1 is rare (4 patients), class 0 common."""
    rng = np.random.default_rng(0)
    patients, targets = [], []
    for p in range(60):
        common = p % 2 == 0
        rare = p in (5, 17, 33, 48)
        for _ in range(1 + p % 3):
            patients.append(f"P{p:03d}")
            targets.append([float(common), float(rare and rng.random() < 0.8 or p == 5)])
    targets = np.asarray(targets, dtype=np.float32)
    order = rng.permutation(len(patients))  # images of a patient are not adjacent in the table
    return SplitData("train", [f"img{i}" for i in range(len(order))],
                     np.zeros((len(order), 2, 2, 3), np.uint8), targets[order], True,
                     patients=[patients[i] for i in order] if with_patients else None)


def _epochs(sampler, n=3):
    return [list(sampler) for _ in range(n)]


def test_patient_sampler_registered_and_unknown_name_lists_it():
    assert "patient" in SAMPLERS.names()
    with pytest.raises(ValueError, match="patient"):
        build_sampler("patients", _split(), seed=0)


def test_patient_sampler_length_is_number_of_images():
    split = _split()
    sampler = build_sampler("patient", split, seed=0)
    assert isinstance(sampler, PatientSampler)
    assert len(sampler) == len(split.ids)
    for epoch in _epochs(sampler):
        assert len(epoch) == len(split.ids)
        assert all(0 <= i < len(split.ids) for i in epoch)


def test_patient_sampler_is_deterministic_per_seed_and_epochs_differ():
    split = _split()
    a = _epochs(build_sampler("patient", split, seed=3))
    b = _epochs(build_sampler("patient", split, seed=3))
    c = _epochs(build_sampler("patient", split, seed=4))
    assert a == b
    assert a != c
    assert a[0] != a[1]  # a new draw every epoch


def test_every_drawn_patients_images_come_together():
    split = _split()
    sampler = build_sampler("patient", split, seed=1)
    epoch = next(iter(_epochs(sampler, 1)))
    sizes = {p: split.patients.count(p) for p in set(split.patients)}
    # walk the epoch as runs of one patient; each run is exactly that patient's images, in table
    # order (only the epoch's last run may be cut short)
    runs, start = [], 0
    while start < len(epoch):
        patient = split.patients[epoch[start]]
        size = sizes[patient]
        run = epoch[start:start + size]
        runs.append(run)
        start += size
    for run in runs[:-1]:
        patient = split.patients[run[0]]
        assert run == [i for i, p in enumerate(split.patients) if p == patient]
    last = runs[-1]
    assert {split.patients[i] for i in last} == {split.patients[last[0]]}


def test_rare_class_drawn_more_often_than_in_the_data():
    split = _split()
    rare_share_data = split.targets[:, 1].mean()
    shares = []
    sampler = build_sampler("patient", split, seed=0)
    for epoch in _epochs(sampler, 5):
        shares.append(split.targets[epoch, 1].mean())
    # about a third of the draws are rare-class patients (class 0, class 1, none: equal shares)
    assert rare_share_data < 0.1
    assert np.mean(shares) > 2.5 * rare_share_data


def test_patient_weights_follow_rarest_positive_label():
    # patients: A {0}, B {0}, C {0,1}, D {} ; m_0 = 3, m_1 = 1, m_none = 1
    labels = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]], dtype=float)
    groups = [np.array([0, 1]), np.array([2]), np.array([3]), np.array([4])]
    sampler = PatientSampler(groups, labels, seed=0)
    raw = np.array([1 / 3, 1 / 3, 1.0, 1.0])
    np.testing.assert_allclose(sampler.weights, raw / raw.sum())


def test_without_patient_ids_each_image_is_its_own_patient(caplog):
    split = _split(with_patients=False)
    with caplog.at_level(logging.INFO, logger="funduslab.training.samplers"):
        sampler = build_sampler("patient", split, seed=0)
    assert "no patient ids" in caplog.text
    assert len(sampler.groups) == len(split.ids)
    assert len(list(sampler)) == len(split.ids)


def test_mismatched_patient_ids_raise():
    split = _split()
    split.patients = split.patients[:-1]
    with pytest.raises(ValueError, match="patient ids"):
        build_sampler("patient", split, seed=0)


def test_decode_splits_fills_patient_ids(synth_course, tmp_path):
    from funduslab.config import config_from_dict
    from funduslab.data.adapters import load_table
    from funduslab.training.runner import decode_splits

    cfg = config_from_dict({"data": {"root": str(synth_course), "image_size": 32,
                                     "cache_dir": str(tmp_path / "cache")}})
    table = load_table("odir_course", synth_course)
    splits, _ = decode_splits(table, cfg, tmp_path / "cache")
    train = splits["train"]
    assert train.patients == table.split("train")["patient"].astype(str).tolist()
    assert len(set(train.patients)) < len(train.patients)  # both eyes of a patient
