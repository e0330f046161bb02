"""Extra labelled sources join the train split by label name (``data.extra_sources``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from funduslab.config import DataConfig, ExtraSource, config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.join import extra_rows, join_extra_sources, observed_rows, source_prefixes
from funduslab.data.synthetic_layouts import write_layout
from funduslab.data.split_data import SplitData
from funduslab.training.samplers import build_sampler


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny course split and a tiny ODIR-5K layout, 32 px."""
    root = tmp_path_factory.mktemp("join")
    course = write_layout("odir-course", root / "course", n=40, seed=1, size=32)
    odir5k = write_layout("odir5k", root / "odir5k", n=24, seed=2, size=32)
    return course, odir5k


def _data(course: Path, odir5k: Path, **source) -> DataConfig:
    extra = {"adapter": "odir5k", "root": str(odir5k), "options": {"labels": ["D", "G"]}, **source}
    return DataConfig(adapter="odir_course", root=course, extra_sources=[ExtraSource(**extra)])


def test_joined_table_has_the_right_rows_labels_and_nans(two_sources):
    course, odir5k = two_sources
    main = load_table("odir_course", course)
    source = load_table("odir5k", odir5k, labels=["D", "G"])
    joined, key = join_extra_sources(main, _data(course, odir5k))
    frame = joined.frame
    assert len(frame) == len(main.frame) + len(source.frame) and len(key) == 16
    assert joined.label_names == ["D", "G", "A"] and joined.source == main.source
    # val / test / template splits are the main table's, untouched
    for split in ("val", "offsite_test", "onsite_test"):
        pd.testing.assert_frame_equal(joined.split(split)[["id", "path"]],
                                      main.split(split)[["id", "path"]])
    extra = frame[frame["id"].str.startswith("odir5k/")]
    assert len(extra) == len(source.frame) and set(extra["split"]) == {"train"}
    assert extra["patient"].str.startswith("odir5k/").all()
    by_id = source.frame.set_index("id")
    original = extra["id"].str.removeprefix("odir5k/")
    np.testing.assert_array_equal(extra["D"].to_numpy(), by_id.loc[original, "D"].to_numpy())
    np.testing.assert_array_equal(extra["G"].to_numpy(), by_id.loc[original, "G"].to_numpy())
    assert extra["A"].isna().all()  # odir5k was asked for D and G only: A is missing, not 0
    assert "C" not in frame.columns  # the source's other labels are dropped
    train = joined.split("train")
    assert list(train["id"][: len(main.split("train"))]) == list(main.split("train")["id"])
    assert not train.loc[~train["id"].str.startswith("odir5k/"), ["D", "G", "A"]].isna().any().any()


def test_only_the_named_splits_join(two_sources):
    course, odir5k = two_sources
    main = load_table("odir_course", course)
    source = load_table("odir5k", odir5k, labels=["D", "G"])
    joined, _ = join_extra_sources(main, _data(course, odir5k, splits=["train"]))
    assert (joined.frame["id"].str.startswith("odir5k/").sum()
            == (source.frame["split"] == "train").sum())
    with pytest.raises(ValueError, match=r"splits \['dev'\].*its splits"):
        join_extra_sources(main, _data(course, odir5k, splits=["dev"]))


def test_joining_mistakes_raise_with_the_field_named(two_sources):
    course, odir5k = two_sources
    main = load_table("odir_course", course)
    with pytest.raises(ValueError, match=r"data\.extra_sources\[0\].*none of the run's"):
        join_extra_sources(main, _data(course, odir5k, options={"labels": ["C", "N"]}))
    same = DataConfig(root=course, extra_sources=[ExtraSource(adapter="odir_course", root=course)])
    with pytest.raises(ValueError, match="also images of the run's own table"):
        join_extra_sources(main, same)
    with pytest.raises(ValueError, match="odir5k"):  # unknown adapter: the valid names listed
        join_extra_sources(main, _data(course, odir5k, adapter="odir5"))
    with pytest.raises(FileNotFoundError):
        join_extra_sources(main, _data(course, odir5k, root=str(odir5k / "nope")))
    grading = load_table("odir5k", odir5k, task="grading")
    with pytest.raises(ValueError, match="multi-label"):
        extra_rows(main, grading, "odir5k/", "train")


def test_prefixes_number_a_repeated_adapter():
    sources = [ExtraSource(adapter="odir5k", root=Path("a")),
               ExtraSource(adapter="odir-course", root=Path("b")),
               ExtraSource(adapter="odir5k", root=Path("c"))]
    assert source_prefixes(sources) == ["odir5k.0/", "odir_course/", "odir5k.2/"]


def test_samplers_and_metrics_rows_survive_missing_labels():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, np.nan, np.nan], [0, 0, np.nan]] * 3,
                       dtype=np.float32)
    split = SplitData("train", [str(i) for i in range(12)], np.zeros((12, 4, 4, 3), np.uint8),
                      targets, True, patients=[str(i // 2) for i in range(12)])
    for name in ("class_aware", "class_sqrt", "patient", "random"):
        sampler = build_sampler(name, split, seed=0)
        drawn = list(iter(sampler)) if sampler is not None else list(range(12))
        assert len(drawn) == 12 and all(0 <= i < 12 for i in drawn)
        weights = getattr(sampler, "weights", None)
        if weights is not None:
            assert np.isfinite(np.asarray(weights)).all()
    np.testing.assert_array_equal(observed_rows(targets[:4]), [True, True, False, False])


def test_extra_sources_is_validated_and_recorded(tmp_path: Path):
    with pytest.raises(ValueError, match=r"data\.extra_sources\.0\.root"):
        config_from_dict({"data": {"extra_sources": [{"adapter": "odir5k"}]}})
    with pytest.raises(ValueError, match=r"extra_sources\.0\.labels"):
        config_from_dict({"data": {"extra_sources": [{"adapter": "odir5k", "root": "x",
                                                      "labels": ["D"]}]}})
    cfg = config_from_dict({"data": {"extra_sources": [
        {"adapter": "odir5k", "root": "x", "options": {"labels": ["D", "G", "A"]}}]}})
    doc = cfg.model_dump(mode="json")
    assert yaml.safe_load(yaml.safe_dump(doc))["data"]["extra_sources"][0]["options"] == {
        "labels": ["D", "G", "A"]}
    assert config_from_dict({}).data.extra_sources == []
