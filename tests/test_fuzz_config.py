"""Fuzzed configs and preset options: every input loads correctly or raises ``ValueError`` (the
CLI's exit 2) — never another exception, never a hang (issue 33, item 5).

"Correctly" means: the loaded config has only finite numbers, re-loads unchanged from the
``config.yaml`` :func:`save_config` writes, and passes or fails :func:`validate_names` with a
``ValueError``. Examples are few and derandomized so the file runs in seconds and the same way
on every machine; ``database=None`` keeps hypothesis from writing into the checkout.
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from funduslab.config import (
    DataConfig,
    ModelConfig,
    OutputConfig,
    RunConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    save_config,
)
from funduslab.training.config_names import validate_names

FUZZ = settings(max_examples=120, deadline=2000, derandomize=True, database=None)

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "output": OutputConfig}

# ------------------------------------------------------------------------------ strategies
HOSTILE_TEXT = st.sampled_from([
    "", " ", "none", "null", "~", "nan", ".inf", "-1", "0", "1e999", "1" * 5000, "true", "yes",
    "resnet18", "tiny_cnn", "circle_crop,clahe", "circle_crop:threshold=300", "resize:size=",
    "clahe:tile_grid=8x8x8", ":", ",", "a/b", "../x", "\x00", "é", "\u202e", "x" * 300,
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=16), HOSTILE_TEXT,
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)


def _field_value(section: str, field: str) -> st.SearchStrategy[Any]:
    """A value for one field: often a plausible one (so valid configs are common), else any."""
    default = SECTIONS[section]().model_dump(mode="json")[field]
    plausible: st.SearchStrategy[Any]
    if isinstance(default, bool):
        plausible = st.booleans()
    elif isinstance(default, int):
        plausible = st.integers(-3, 300)
    elif isinstance(default, float):
        plausible = st.floats(-1.0, 3.0)
    else:
        plausible = st.just(default)
    return st.one_of(plausible, plausible, VALUES)


@st.composite
def raw_configs(draw: st.DrawFn) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        fields = draw(st.lists(st.sampled_from(sorted(SECTIONS[section].model_fields)),
                               max_size=4, unique=True))
        raw[section] = {f: draw(_field_value(section, f)) for f in fields}
        if draw(st.integers(0, 9)) == 0:  # an unknown key or a section that is not a mapping
            raw[section] = draw(st.one_of(VALUES, st.just({**raw[section], "epoch": 3})))
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.sampled_from(["provenance", "Train", "", "data.root"]))] = draw(VALUES)
    return raw


DOTTED = st.one_of(
    st.sampled_from([f"{s}.{f}" for s, m in SECTIONS.items() for f in m.model_fields]),
    st.sampled_from(["train", "train.", ".lr", "data.options.labels", "train.lr.x", "x.y.z",
                     "data..root", "output.name.first"]),
    st.text(max_size=12),
)
OVERRIDES = st.dictionaries(DOTTED, VALUES, max_size=3)


# ------------------------------------------------------------------------------ the property
def _floats_finite(value: Any) -> bool:
    """Every typed float is finite (``*options`` dicts hold what the user wrote, untyped)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_floats_finite(v) for k, v in value.items() if "options" not in str(k))
    if isinstance(value, list):
        return all(_floats_finite(v) for v in value)
    return True


def _as_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"))  # NaN in an options dict equals itself


def _loads_correctly(cfg: RunConfig) -> None:
    assert isinstance(cfg, RunConfig)
    assert _floats_finite(cfg.model_dump(mode="python"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        save_config(cfg, path, {"seed": 0})
        assert _as_yaml(load_config(path)) == _as_yaml(cfg)  # config.yaml re-runs as it was
    try:
        validate_names(cfg)
    except ValueError as err:
        assert "\n" not in str(err) and str(err)


def _loads_or_value_error(load: Any) -> None:
    try:
        cfg = load()
    except ValueError as err:
        assert str(err), "an empty error message"
        event("ValueError")  # --hypothesis-show-statistics: how often each outcome was drawn
        return
    event("loaded")
    _loads_correctly(cfg)


@FUZZ
@given(raw=raw_configs(), overrides=OVERRIDES)
def test_fuzzed_dicts_and_overrides_load_or_raise_value_error(raw: dict, overrides: dict) -> None:
    before = copy.deepcopy(raw)
    _loads_or_value_error(lambda: config_from_dict(raw, overrides))
    assert raw == before or raw != raw, "config_from_dict changed its input"  # (nan != nan)


@FUZZ
@given(raw=raw_configs())
def test_fuzzed_yaml_files_load_or_raise_value_error(raw: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
        _loads_or_value_error(lambda: load_config(path))


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(
    lambda b: b.decode("latin-1"))), raw_bytes=st.binary(max_size=64))
def test_fuzzed_text_and_bytes_load_or_raise_value_error(text: str, raw_bytes: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8")
        _loads_or_value_error(lambda: load_config(path))
        path.write_bytes(raw_bytes)
        _loads_or_value_error(lambda: load_config(path))


@pytest.mark.parametrize("text, message", [
    ("- data\n- train\n", "expected a mapping"),
    ("0\n", "expected a mapping"),
    ("just words\n", "expected a mapping"),
    ("train:\n  epochs: 1" + "0" * 5000 + "\n", "digits"),
    ("[" * 3000 + "]" * 3000, "too deeply"),
    ("train: {lr: .inf}\n", "train.lr"),
    ("train: {warmup_epochs: .nan}\n", "train.warmup_epochs"),
    ("data: 5\n", "data"),
    ('data:\n  options:\n    a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
     + "".join(f"    {c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
               for p, c in zip("abcdefgh", "bcdefghi")), "alias"),  # 10⁹ values once saved
])
def test_hostile_config_files_are_one_value_error(tmp_path: Path, text: str,
                                                  message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value) or "invalid" in str(caught.value)


def test_an_override_through_a_value_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot set data.root: data is a int"):
        config_from_dict({"data": 5}, {"data.root": "x"})
    with pytest.raises(ValueError, match="cannot set train.lr.x: train.lr is a float"):
        config_from_dict({"train": {"lr": 0.1}}, {"train.lr.x": 1})
    with pytest.raises(ValueError, match="expected a mapping"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
    raw = {"train": {"epochs": 2}}
    assert config_from_dict(raw, {"train.lr": 0.5}).train.lr == 0.5
    assert raw == {"train": {"epochs": 2}}  # the caller's dict is left alone


# ------------------------------------------------------------------------------ preset --opt
def _presets() -> dict[str, dict[str, Any]]:
    import inspect

    from funduslab.experiments import PRESETS

    fixed = {"data", "team", "out", "quick", "seeds", "source"}
    return {name: {k: p.default for k, p in inspect.signature(PRESETS.get(name)).parameters.items()
                   if k not in fixed} for name in PRESETS.names()}


PRESET_OPTIONS = _presets()
OPTION_VALUES = st.one_of(
    st.text(max_size=12), HOSTILE_TEXT,
    st.integers(-(10**6), 10**6).map(str), st.floats().map(str),
    st.sampled_from(["true", "false", "yes", "no", "on", "off", "1", "0", "maybe", "TRUE ",
                     "²", "١٢", "1_000", "0x10", "1e3", "none"]),
)


@st.composite
def option_pairs(draw: st.DrawFn, preset: str) -> list[str]:
    keys = sorted(PRESET_OPTIONS[preset]) + ["", "nope", "epochs ", "image-size", "=", "data"]
    plain = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(keys), OPTION_VALUES)
    return draw(st.lists(st.one_of(plain, plain, st.text(max_size=16)), max_size=4))


@FUZZ
@given(data=st.data(), preset=st.sampled_from(sorted(PRESET_OPTIONS)))
def test_fuzzed_preset_options_parse_to_their_types_or_raise_value_error(
        data: st.DataObject, preset: str) -> None:
    from funduslab.experiments import parse_preset_options

    pairs = data.draw(option_pairs(preset), label="pairs")
    try:
        options = parse_preset_options(preset, pairs)
    except ValueError as err:
        assert "\n" not in str(err) and (preset in str(err) or "preset option" in str(err))
        return
    for key, value in options.items():
        default = PRESET_OPTIONS[preset][key]
        if default is None:
            assert value is None or isinstance(value, (int, str)), (key, value)
        elif isinstance(default, bool):
            assert isinstance(value, bool), (key, value)
        elif isinstance(default, (int, float)):
            assert type(value) is type(default) and math.isfinite(value), (key, value)
        else:
            assert isinstance(value, str), (key, value)


@pytest.mark.parametrize("pair, message", [
    ("epochs=abc", "course-task1 option epochs='abc': expected an integer"),
    ("epochs=²", "expected an integer"),
    ("quick_x=1", "not understood"),
    ("resnet_image_size=big", "resnet_image_size='big': expected an integer"),
])
def test_bad_preset_values_name_the_option(pair: str, message: str) -> None:
    from funduslab.experiments import parse_preset_options

    with pytest.raises(ValueError, match=message):
        parse_preset_options("course-task1", [pair])


def test_preset_values_of_each_kind() -> None:
    from funduslab.experiments import parse_preset_options

    assert parse_preset_options("course-task1", ["resnet_image_size=none"]) == {
        "resnet_image_size": None}
    assert parse_preset_options("course-task1", ["resnet-image-size=128", "epochs=3"]) == {
        "resnet_image_size": 128, "epochs": 3}
    assert parse_preset_options("screening", ["tta=Yes"]) == {"tta": True}
    with pytest.raises(ValueError, match="tta='maybe': expected true or false"):
        parse_preset_options("screening", ["tta=maybe"])
    with pytest.raises(ValueError, match="healthy_ratio='inf': expected a finite number"):
        parse_preset_options("lesion-patches", ["healthy_ratio=inf"])
