"""Errors a new user meets early: clear, one line, exit status 2, before any data or model loads.

Issue 34 ("What a new user hit"): offline ImageNet weights, unknown registry names, ``train``
without ``--data``, ``--version`` alone and ``train --help``.
"""

from __future__ import annotations

import re
import socket
import urllib.error
from pathlib import Path

import pytest
from typer.testing import CliRunner

from funduslab import __version__
from funduslab.cli import app
from funduslab.config import config_from_dict

runner = CliRunner()


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error:") and "Traceback" not in output
    return lines[0]


@pytest.fixture
def nothing_may_load(monkeypatch):
    """Fail the test if a table is read, a model built or a run started."""
    import funduslab.data.adapters as adapters
    import funduslab.models.backbones as backbones
    import funduslab.training.cross_validation as cross_validation
    import funduslab.training.runner as run_module

    def forbidden(*args, **kwargs):
        raise AssertionError("loaded data, built a model or started a run before the names were "
                             "checked")

    for module, name in ((run_module, "run"), (cross_validation, "cross_validate"),
                         (backbones, "create_backbone"), (adapters, "load_table")):
        monkeypatch.setattr(module, name, forbidden)


def test_unknown_loss_is_one_line_listing_the_losses_before_anything_loads(
        tmp_path: Path, nothing_may_load):
    from funduslab.losses import LOSSES

    for extra in ([], ["--cv", "3"]):
        result = runner.invoke(app, ["train", "--data", str(tmp_path), "--loss", "focall",
                                     "--backbone", "tiny_cnn", "--weights", "none", *extra])
        assert result.exit_code == 2, result.output
        line = _one_error_line(result.output)
        assert "train.loss='focall'" in line
        assert all(name in line for name in LOSSES.names())


@pytest.mark.parametrize("field, value", [
    ("data.adapter", "odir_corse"), ("data.preprocess", "circle_crop,clahee"),
    ("model.backbone", "resnet1000"), ("model.head", "lineer"), ("train.sampler", "balanced"),
    ("train.formulation", "ordinall"), ("train.accelerator", "gpux"), ("train.strategy", "ddpp"),
])
def test_every_registry_name_is_checked_and_the_valid_ones_listed(field: str, value: str):
    from funduslab.training.config_names import field_choices, validate_names

    cfg = config_from_dict({}, {field: value})
    with pytest.raises(ValueError) as err:
        validate_names(cfg)
    message = str(err.value)
    assert f"{field}={value!r}" in message and "\n" not in message
    valid = field_choices(field) or []
    assert valid and all(name in message for name in valid)


def test_an_extra_source_adapter_is_checked_before_data_loads():
    from funduslab.training.config_names import validate_names

    cfg = config_from_dict({"data": {"extra_sources": [{"adapter": "odir5kk", "root": "x"}]}})
    with pytest.raises(ValueError, match=r"data\.extra_sources\.adapter='odir5kk'.*odir5k"):
        validate_names(cfg)


def test_valid_names_pass_including_layout_spellings():
    from funduslab.training.config_names import validate_names

    validate_names(config_from_dict({}, {"data.adapter": "odir-course", "train.strategy": "DDP",
                                         "data.preprocess": "circle_crop,clahe:clip_limit=3",
                                         "model.dual": "attention", "train.accelerator": "cpu"}))


def test_run_and_cross_validation_check_names_before_reading_data(tmp_path: Path):
    from funduslab.training.cross_validation import cross_validate
    from funduslab.training.runner import run

    cfg = config_from_dict({}, {"data.root": str(tmp_path / "missing"), "train.loss": "focall",
                                "output.out": str(tmp_path / "runs")})
    with pytest.raises(ValueError, match=r"train\.loss='focall'.*valid: .*focal"):
        run(cfg)  # the missing dataset would be a FileNotFoundError
    with pytest.raises(ValueError, match=r"train\.loss='focall'"):
        cross_validate(cfg, folds=3)
    assert not (tmp_path / "runs").exists()


def test_train_without_data_says_to_pass_data(tmp_path: Path, monkeypatch, nothing_may_load):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert "--data" in line and "data.root" in line

    config = tmp_path / "recipe.yaml"
    config.write_text("train:\n  epochs: 1\n")
    line = _one_error_line(runner.invoke(app, ["train", "--config", str(config)]).output)
    assert "--data" in line and str(config) in line

    result = runner.invoke(app, ["train", "--data", "nowhere"])
    assert result.exit_code == 2
    line = _one_error_line(result.output)
    assert "--data" in line and str(tmp_path / "nowhere") in line


def test_version_alone_prints_the_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert f"funduslab {__version__}" in result.output
    result = runner.invoke(app, ["--verbose"])  # options without a verb: the help, not an error
    assert result.exit_code == 0 and "train" in result.output


def test_train_help_shows_choices_and_defaults_and_no_bool_metavar():
    from funduslab.losses import LOSSES
    from funduslab.models.backbones import BACKBONES

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "240"})  # no folded names
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    words = set(re.findall(r"[\w+-]+", result.output))
    assert set(LOSSES.names()) <= words and set(BACKBONES.names()) <= words
    assert "(bce)" in result.output and "(fixed-thresholds)" in result.output  # the defaults
    assert "<bool>" not in runner.invoke(app, ["--help"]).output


def test_every_train_option_has_help():
    import typer.main

    train = typer.main.get_command(app).commands["train"]
    assert not [p.name for p in train.params if not getattr(p, "help", None)]


def _offline(monkeypatch) -> None:
    """What an offline machine does: nothing cached, connections fail with ENETUNREACH."""
    from funduslab.models import weights as wt

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TIMM_OFFLINE", raising=False)
    monkeypatch.setattr(wt, "_cached_hub_file", lambda timm_name: None)
    monkeypatch.setattr(socket, "create_connection", unreachable)


def test_offline_imagenet_weights_fail_fast_as_one_line(tmp_path: Path, monkeypatch,
                                                         nothing_may_load):
    _offline(monkeypatch)
    result = runner.invoke(app, ["train", "--data", str(tmp_path), "--backbone", "resnet18",
                                 "--weights", "imagenet"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.output)
    assert "resnet18" in line and "weights=none" in line and "weights=<path" in line


def test_failed_hub_download_is_a_one_line_user_error(monkeypatch):
    import timm

    from funduslab.models import weights as wt
    from funduslab.models.backbones import create_backbone

    def download(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise urllib.error.URLError("<urlopen error [Errno -3]\nTemporary failure in name "
                                        "resolution>")
        raise AssertionError("only the pretrained build is expected")

    monkeypatch.setattr(wt, "_cached_hub_file", lambda timm_name: None)
    monkeypatch.setattr(wt, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(timm, "create_model", download)
    with pytest.raises(ValueError) as err:  # the CLI's _friendly shows ValueError as one line
        create_backbone("resnet18", "imagenet")
    assert isinstance(err.value, RuntimeError)  # still what earlier callers caught
    message = str(err.value)
    assert "\n" not in message and "name resolution" in message and "weights=<path" in message
