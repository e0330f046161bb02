"""Tests for funduslab.preprocess.pipeline: parsing, canonical specs, named variants."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from funduslab.preprocess import (
    NAMED_PIPELINES,
    PREPROCESS,
    Pipeline,
    build_pipeline,
    named_pipeline,
)
from funduslab.preprocess.ops import circle_crop, clahe, resize


def _fundus(h: int = 90, w: int = 120) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2 <= (0.45 * h) ** 2
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[inside] = (170, 90, 50)
    img[h // 2, w // 4 : 3 * w // 4] = (110, 40, 20)  # a vessel
    return img


def test_parse_string_fills_defaults_in_spec() -> None:
    pipe = Pipeline("circle_crop, clahe:clip_limit=3:tile_grid=4x4 ,resize:size=64")
    assert pipe.names == ["circle_crop", "clahe", "resize"]
    assert pipe.spec() == [
        {"name": "circle_crop", "mask_outside": True, "threshold": 10.0},
        {"name": "clahe", "clip_limit": 3.0, "tile_grid": [4, 4]},
        {"name": "resize", "pad_to_square": True, "size": 64},
    ]
    json.dumps(pipe.spec())  # JSON-serialisable


def test_round_trips_through_spec_string_and_pickle() -> None:
    pipe = Pipeline(
        ["circle_crop", {"name": "ben_graham", "outside": 0}, {"name": "resize", "size": 32}]
    )
    assert Pipeline(pipe.spec()) == pipe
    assert Pipeline(str(pipe)) == pipe
    assert Pipeline(json.loads(json.dumps(pipe.spec()))) == pipe
    assert pickle.loads(pickle.dumps(pipe)) == pipe
    assert str(pipe) == "circle_crop,ben_graham:outside=0,resize:size=32"
    assert repr(pipe) == "Pipeline('circle_crop,ben_graham:outside=0,resize:size=32')"


def test_equivalent_spellings_share_a_spec_and_fingerprint() -> None:
    a = Pipeline("clahe")
    b = Pipeline("clahe:clip_limit=2")  # the default, as an int
    c = Pipeline([{"name": "clahe", "params": {"clip_limit": 2.0, "tile_grid": 8}}])
    assert a.spec() == b.spec() == c.spec()
    assert a.fingerprint() == b.fingerprint() == c.fingerprint()
    assert Pipeline("clahe:clip_limit=2.5").fingerprint() != a.fingerprint()
    assert Pipeline("clahe,resize").fingerprint() != Pipeline("resize,clahe").fingerprint()


def test_unknown_step_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing step 'clahee'") as info:
        Pipeline("circle_crop,clahee")
    for name in PREPROCESS.names():
        assert name in str(info.value)


def test_unknown_parameter_and_bad_syntax() -> None:
    with pytest.raises(ValueError, match="'resize' has no parameter.*sise.*size"):
        Pipeline("resize:sise=3")
    with pytest.raises(ValueError, match="key=value"):
        Pipeline("resize:256")
    with pytest.raises(ValueError, match="empty step name"):
        Pipeline("clahe,,resize")
    with pytest.raises(ValueError, match="lacks a 'name'"):
        Pipeline([{"size": 3}])
    with pytest.raises(TypeError, match="mapping"):
        Pipeline([3])  # type: ignore[list-item]


def test_identity_pipelines() -> None:
    img = _fundus()
    for empty in (Pipeline(), Pipeline(""), Pipeline("none"), Pipeline([])):
        assert len(empty) == 0 and str(empty) == "none"
        np.testing.assert_array_equal(empty(img), img)


def test_call_applies_steps_in_order() -> None:
    img = _fundus()
    pipe = Pipeline("circle_crop,clahe:clip_limit=3.0,resize:size=48")
    expected = resize(clahe(circle_crop(img), clip_limit=3.0), size=48)
    np.testing.assert_array_equal(pipe(img), expected)


def test_step_returning_wrong_type_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PREPROCESS._items, "to_float", lambda rgb: rgb.astype(np.float32))
    with pytest.raises(TypeError, match="'to_float' returned"):
        Pipeline("to_float")(_fundus())


@pytest.mark.parametrize("name", sorted(NAMED_PIPELINES))
def test_named_pipelines_end_with_resize(name: str) -> None:
    pipe = named_pipeline(name, 40)
    assert pipe.spec()[-1] == {"name": "resize", "pad_to_square": True, "size": 40}
    out = pipe(_fundus())
    assert out.shape == (40, 40, 3) and out.dtype == np.uint8


def test_named_pipeline_variants_differ() -> None:
    fingerprints = {named_pipeline(n, 64).fingerprint() for n in NAMED_PIPELINES}
    assert len(fingerprints) == len(NAMED_PIPELINES)
    with pytest.raises(ValueError, match="circle_crop\\+clahe"):
        named_pipeline("graham", 64)


def test_build_pipeline_resolves_names_and_strings() -> None:
    assert build_pipeline("circle_crop+clahe", 64) == named_pipeline("circle_crop+clahe", 64)
    assert build_pipeline("clahe,resize:size=64", 64) == Pipeline("clahe,resize:size=64")
    assert build_pipeline("sharpen:amount=2", 32) == Pipeline("sharpen:amount=2,resize:size=32")
    assert build_pipeline(None, 16) == Pipeline("resize:size=16")
