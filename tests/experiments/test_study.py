"""The study runner: base → row → quick → --set → identity; every row × seed; combine; render."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from funduslab.experiments import PRESETS, parse_preset_options
from funduslab.experiments.sets import parse_sets
from funduslab.experiments.study import (
    Row,
    Study,
    StudyResult,
    merge_config,
    resolve_base,
    run_study,
    select_rows,
    study_configs,
)

BASE = {"data": {"image_size": 48},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 3, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0},
        "output": {"figures": True}}
QUICK = {"data": {"image_size": 32}, "train": {"epochs": 1}, "output": {"figures": False}}
ROWS = (Row("plain", "the base"),
        Row("se", "an SE head", {"model": {"head": "se"}}, task="3-1",
            quick={"train": {"batch_size": 8}}))


def _render(result: StudyResult) -> str:
    lines = [f"{name}: {', '.join(p.name for p in runs)}" for name, runs in result.runs.items()]
    return "# study\n\n" + "\n".join(lines) + f"\ncombined: {result.combined}\n"


def _study(**changes) -> Study:
    study = Study("toy", BASE, ROWS, _render, seeds=(3,), quick=QUICK,
                  combine=lambda result: sorted(result.runs))
    return dataclasses.replace(study, **changes)


def test_sets_are_typed_by_the_config_model():
    assert parse_sets(["train.epochs=6", "train.lr=1e-3", "train.tta=yes", "model.weights=none",
                       "train.freeze_epochs=none", "model.attention_stages=[1, 2]",
                       "train.loss_options.gamma=2", "data.preprocess=ben_graham"]) == {
        "train.epochs": 6, "train.lr": 0.001, "train.tta": True, "model.weights": "none",
        "train.freeze_epochs": None, "model.attention_stages": [1, 2],
        "train.loss_options.gamma": 2, "data.preprocess": "ben_graham"}
    with pytest.raises(ValueError, match=r"train has no key 'epoch'; valid train keys: setup, "
                                         r"epochs, batch_size"):
        parse_sets(["train.epoch=3"])
    with pytest.raises(ValueError, match=r"did you mean train\.epochs\?.*data, model, train, "
                                         r"output"):
        parse_sets(["epochs=3"])
    with pytest.raises(ValueError, match="train.epochs='many'"):
        parse_sets(["train.epochs=many"])
    with pytest.raises(ValueError, match="greater than or equal to 16"):
        parse_sets(["data.image_size=8"])
    with pytest.raises(ValueError, match="train.epochs is a value, not a section"):
        parse_sets(["train.epochs.x=1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_sets(["train.epochs"])


def test_configs_merge_base_row_quick_sets_then_identity(tmp_path: Path):
    configs = study_configs(_study(), tmp_path / "data", tmp_path / "out", [0, 1], quick=True,
                            sets=["train.epochs=2"], team="team")
    plain, se = configs["plain"][1], configs["se"][0]
    assert (plain.data.image_size, plain.train.epochs, plain.train.batch_size) == (32, 2, 16)
    assert (se.model.head, se.train.batch_size, se.output.figures) == ("se", 8, False)
    assert (plain.output.name, plain.train.seed, plain.output.team) == ("plain_s1", 1, None)
    assert (se.output.team, se.output.task) == ("team", "3-1")  # a course task names its weights
    assert plain.data.root == tmp_path / "data" and plain.output.out == tmp_path / "out"
    full = study_configs(_study(), None, tmp_path, [0])["plain"][0]
    assert (full.data.image_size, full.train.epochs, full.output.figures) == (48, 3, True)
    with pytest.raises(ValueError, match="set by the study per run"):
        study_configs(_study(), None, tmp_path, [0], sets=["train.seed=4"])
    with pytest.raises(ValueError, match="not a known backbone"):  # registry names, up front
        study_configs(_study(), None, tmp_path, [0], sets=["model.backbone=tiny_cnnn"])


def test_finish_has_the_last_word_before_the_identity(tmp_path: Path):
    def finish(row: Row, raw: dict) -> dict:
        return merge_config(raw, {"train": {"source_epochs": raw["train"]["epochs"]},
                                  "output": {"name": "ignored"}})

    cfg = study_configs(_study(finish=finish), None, tmp_path, [0], quick=True,
                        sets=["train.epochs=4"])["se"][0]
    assert cfg.train.source_epochs == 4 and cfg.output.name == "se_s0"


def test_run_study_trains_combines_renders_and_skips_finished_runs(synth_course: Path,
                                                                  tmp_path: Path):
    out = tmp_path / "study"
    path = run_study(_study(), synth_course, out, quick=True, sets=["data.image_size=32"],
                     team="demo")
    assert path == out / "results.md"
    assert path.read_text() == ("# study\n\nplain: plain_s3\nse: se_s3\n"
                                "combined: ['plain', 'se']\n")
    assert (out / "se_s3" / "demo_task3-1.pt").is_file() and (out / "plain_s3" / "model.pt")
    saved = yaml.safe_load((out / "se_s3" / "config.yaml").read_text())
    assert (saved["model"]["head"], saved["train"]["epochs"], saved["train"]["seed"]) == (
        "se", 1, 3)
    stamps = {d: (out / d / "metrics.json").stat().st_mtime_ns for d in ("plain_s3", "se_s3")}
    run_study(_study(), synth_course, out, quick=True, sets=["data.image_size=32"], team="demo")
    assert stamps == {d: (out / d / "metrics.json").stat().st_mtime_ns for d in stamps}

    # finished runs stand in for a row only when trained under exactly its recipe and seed
    again = _study(rows=(dataclasses.replace(ROWS[0], reuse=str(out / "plain_s*")),))
    reused = run_study(again, synth_course, tmp_path / "again", quick=True,
                       sets=["data.image_size=32"])
    assert "plain: plain_s3" in reused.read_text()
    assert not (tmp_path / "again" / "plain_s3").exists()
    with pytest.raises(ValueError, match=r"data\.image_size: 32 → 48"):
        run_study(again, synth_course, tmp_path / "other", quick=True,
                  sets=["data.image_size=48"])
    with pytest.raises(ValueError, match="has seed 0"):
        run_study(again, synth_course, tmp_path / "other", seeds=[0], quick=True,
                  sets=["data.image_size=32"])


def test_rows_and_resolved_base():
    assert [r.name for r in select_rows(ROWS, "se", "toy")] == ["se"]
    assert select_rows(ROWS, "", "toy") == ROWS
    with pytest.raises(ValueError, match="unknown row.*toy rows are: plain, se"):
        select_rows(ROWS, "plain,sse", "toy")
    raw = resolve_base(BASE, QUICK, True, ["train.epochs=5"])
    assert (raw["data"]["image_size"], raw["train"]["epochs"]) == (32, 5)
    assert resolve_base(BASE, QUICK)["data"]["image_size"] == 48 and BASE["train"]["epochs"] == 3


def test_every_preset_takes_sets_and_keeps_them_out_of_its_options():
    import inspect

    for name in PRESETS.names():
        assert "sets" in inspect.signature(PRESETS.get(name)).parameters, name
        with pytest.raises(ValueError, match="not understood"):
            parse_preset_options(name, ["sets=train.epochs=3"])
