"""Two-stage transfer: stage 1 may use another kind of labels than the target (D/G/A → grades)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments.dr_grading import dr_grading
from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
from funduslab.reporting.tables import mean_std
from funduslab.training.grading import resolve_task
from funduslab.training.two_stage import source_stage_config


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("two_stage")
    return {"course": write_layout("odir-course", root / "course", n=60, seed=1, size=48),
            "aptos": write_layout("aptos", root / "aptos", n=60, seed=2, size=48),
            "odir5k": write_layout("odir5k", root / "odir5k", n=80, seed=3, size=48)}


def _grading_cfg(target: Path, source: dict) -> dict:
    return {"data": {"adapter": "aptos", "root": str(target), "image_size": 48},
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"setup": "two-stage", "formulation": "ordinal", "source": source}}


def test_source_stage_config_takes_the_source_kinds_defaults(layouts):
    course = {"adapter": "odir_course", "root": str(layouts["course"]), "image_size": 48}
    target = load_table("aptos", layouts["aptos"])
    cfg = resolve_task(config_from_dict(_grading_cfg(layouts["aptos"], course)), target)
    assert (cfg.train.loss, cfg.train.monitor, cfg.model.head) == ("coral", "quadratic_kappa",
                                                                   "coral")
    stage = source_stage_config(cfg, load_table("odir_course", layouts["course"]))
    assert (stage.train.task, stage.train.loss, stage.train.monitor) == (
        "multilabel", "bce", "course_average_f1")
    assert stage.model.head == "linear" and "base" not in stage.model.head_options
    assert stage.data.adapter == "odir_course" and stage.train.lr == cfg.train.lr
    # labels other than D/G/A: selected on macro AUROC
    five = load_table("odir5k", layouts["odir5k"], labels=["N", "D", "C"])
    assert source_stage_config(cfg, five).train.monitor == "macro_auroc"
    # the same kind of labels: the target's training options unchanged
    aptos = {"adapter": "aptos", "root": str(layouts["aptos"]), "image_size": 48}
    same = resolve_task(config_from_dict(_grading_cfg(layouts["aptos"], aptos)), target)
    assert source_stage_config(same, target).train == same.train


def test_dr_grading_two_stage_from_a_multilabel_source(layouts, tmp_path: Path):
    out = tmp_path / "runs"
    results = dr_grading(layouts["aptos"], out=out, quick=True, seeds=[0], adapter="aptos",
                         source=layouts["course"], source_adapter="odir_course",
                         backbone="tiny_cnn", weights="none", formulations="ordinal",
                         study_formulation="ordinal", preprocess="none", two_stage=True)
    text = results.read_text()
    assert "val course average f1 (source)" in text and "one stage (baseline)" in text
    run_dir = out / "grading_two_stage_s0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stage1 = metrics["fit"]["source_stage"]
    assert stage1["task"] == "multilabel" and stage1["labels"] == ["D", "G", "A"]
    assert stage1["monitor"] == "val_course_average_f1" and stage1["data_fingerprint"]
    assert (run_dir / "source_stage" / "history.csv").is_file()
    kappas = [metrics["splits"][s]["grading"]["quadratic_weighted_kappa"] for s in ("test", "val")]
    row = next(line for line in text.splitlines() if line.startswith("| stage 2 (target)"))
    assert row.endswith(f"| {mean_std(kappas[:1])} | {mean_std(kappas[1:])} |")
    state, _ = load_funduslab_checkpoint(next(run_dir.glob("*.pt")))
    assert state["head.rank_bias"].shape == (4,)  # the target's CORAL head (K − 1), not D/G/A's
