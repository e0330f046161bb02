"""Generated folders: writing, class parsing, and ``data.extra_train`` mixing into train only."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.mixing import GENERATED_PREFIX, select_generated
from funduslab.generate.sample import class_vectors, write_generated
from funduslab.generate.sheet import real_vs_generated_sheet
from funduslab.training.runner import decode_splits


def _solid(levels: list[int], size: int = 32) -> np.ndarray:
    return np.stack([np.full((size, size, 3), v, np.uint8) for v in levels])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """12 solid-grey images: 4 per class D, G, A (grey level encodes the row)."""
    classes = class_vectors("D,G,A", ["D", "G", "A"])
    targets = np.concatenate([np.repeat(v[None], 4, 0) for v in classes.values()])
    tags = [name for name in classes for _ in range(4)]
    out = tmp_path_factory.mktemp("gen")
    return write_generated(out, _solid([10 * i for i in range(12)]), targets, ["D", "G", "A"],
                           tags, {"preprocess": "none"})


def test_class_vectors_parse_names_combinations_and_normal():
    got = class_vectors("D, A+G ,normal", ["D", "G", "A"])
    assert list(got) == ["D", "A+G", "normal"]
    np.testing.assert_array_equal(got["A+G"], [0, 1, 1])
    np.testing.assert_array_equal(got["normal"], [0, 0, 0])
    assert list(class_vectors(None, ["D", "G", "A"])) == ["D", "G", "A"]
    with pytest.raises(ValueError, match="'X' is not a label"):
        class_vectors("D+X", ["D", "G", "A"])
    with pytest.raises(ValueError, match="twice"):
        class_vectors("D,D", ["D", "G", "A"])


def test_written_folder_is_readable_by_generic_csv(generated: Path):
    frame = pd.read_csv(generated / "labels.csv")
    assert list(frame.columns) == ["id", "D", "G", "A"] and len(frame) == 12
    assert frame["id"].iloc[4] == "gen_G_0000.png"
    np.testing.assert_array_equal(frame.iloc[4][["D", "G", "A"]].to_numpy(int), [0, 1, 0])
    meta = json.loads((generated / "generated.json").read_text())
    assert meta["per_class"] == {"D": 4, "G": 4, "A": 4} and meta["image_size"] == 32
    table = load_table("generic_csv", generated, labels="D,G,A",
                       fractions={"train": 0.5, "val": 0.5})
    assert len(table.frame) == 12 and table.label_names == ["D", "G", "A"]


def test_select_generated_round_robins_over_classes():
    targets = np.array([[1, 0]] * 5 + [[0, 1]] * 2, np.float32)
    rows = select_generated(targets, 6, seed=0)
    assert len(set(rows.tolist())) == 6
    # classes alternate until the smaller one runs out
    assert [int(targets[r, 0]) for r in rows[:4]] in ([1, 0, 1, 0], [0, 1, 0, 1])
    np.testing.assert_array_equal(rows, select_generated(targets, 6, seed=0))
    with pytest.raises(ValueError, match="only 7"):
        select_generated(targets, 8, seed=0)


def _cfg(root: Path, cache: Path, **data):
    return config_from_dict({"data": {"root": str(root), "image_size": 32, "cache_dir": str(cache),
                                      **data}})


def test_extra_train_adds_exactly_the_requested_images_to_train_only(
    synth_course: Path, generated: Path, tmp_path
):
    table = load_table("odir_course", synth_course)
    plain, fp_plain = decode_splits(table, _cfg(synth_course, tmp_path), tmp_path)
    n_real = len(plain["train"].ids)
    cfg = _cfg(synth_course, tmp_path, extra_train=str(generated), extra_train_ratio=0.1)
    mixed, fp_mixed = decode_splits(table, cfg, tmp_path)
    n_extra = round(0.1 * n_real)
    assert 0 < n_extra <= 12
    train = mixed["train"]
    assert len(train.ids) == len(train.images) == len(train.targets) == n_real + n_extra
    assert train.ids[:n_real] == plain["train"].ids
    np.testing.assert_array_equal(train.images[:n_real], plain["train"].images)
    added = train.ids[n_real:]
    assert all(i.startswith(GENERATED_PREFIX) for i in added)
    # labels and pixels of each added row are those of the file it names
    frame = pd.read_csv(generated / "labels.csv").set_index("id")
    for k, image_id in enumerate(added):
        name = image_id[len(GENERATED_PREFIX):]
        np.testing.assert_array_equal(train.targets[n_real + k], frame.loc[name].to_numpy(float))
        level = 10 * frame.index.get_loc(name)
        assert np.abs(train.images[n_real + k].astype(int) - level).max() <= 1
    # real images keep their patients (a patient sampler still groups them); each generated
    # image is a patient of its own
    assert train.patients[:n_real] == plain["train"].patients
    assert train.patients[n_real:] == added
    assert not set(added) & set(plain["train"].patients)
    for split in ("val", "offsite_test", "onsite_test"):
        assert mixed[split].ids == plain[split].ids
        np.testing.assert_array_equal(mixed[split].images, plain[split].images)
    assert fp_mixed != fp_plain


def test_extra_train_errors_are_clear(synth_course: Path, generated: Path, tmp_path):
    table = load_table("odir_course", synth_course)
    too_many = _cfg(synth_course, tmp_path, extra_train=str(generated), extra_train_ratio=1.0)
    with pytest.raises(ValueError, match="generate more"):
        decode_splits(table, too_many, tmp_path)
    missing = _cfg(synth_course, tmp_path, extra_train=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        decode_splits(table, missing, tmp_path)
    two = tmp_path / "two_labels"
    write_generated(two, _solid([0, 1]), np.eye(2), ["D", "G"], ["D", "G"])
    with pytest.raises(ValueError, match="label size mismatch"):
        decode_splits(table, _cfg(synth_course, tmp_path, extra_train=str(two),
                                  extra_train_ratio=0.01), tmp_path)
    with pytest.raises(ValueError, match="extra_train_ratio"):
        _cfg(synth_course, tmp_path, extra_train=str(generated), extra_train_ratio=-1)


def test_contact_sheet_places_real_and_generated_rows_per_class(tmp_path):
    classes = class_vectors("D,G", ["D", "G"])
    real = _solid([200, 100, 50], size=16)
    real_t = np.array([[1, 0], [0, 1], [1, 0]], np.float32)
    gen = _solid([30, 60], size=16)
    gen_t = np.array([[1, 0], [0, 1]], np.float32)
    path = real_vs_generated_sheet(tmp_path / "sheet.png", real, real_t, gen, gen_t, classes,
                                   per_row=2, tile=16)
    sheet = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert sheet.shape[1] == 32
    row_h = sheet.shape[0] // 4  # rows: real D, gen D, real G, gen G
    tile = lambda r, c: sheet[r * row_h + 4: r * row_h + 12, c * 16 + 4: c * 16 + 12]  # noqa: E731
    assert (tile(0, 0) == 200).all() and (tile(0, 1) == 50).all()  # both real D images
    assert (tile(1, 0) == 30).all() and (tile(1, 1) == 0).all()  # gen D, then a black blank
    assert (tile(2, 0) == 100).all() and (tile(3, 0) == 60).all()
