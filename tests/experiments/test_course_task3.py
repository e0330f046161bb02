"""The course-task3 preset runs end to end on the synthetic course split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from funduslab.experiments import PRESETS
from funduslab.experiments.course_task3 import course_task3, parameter_count, throughput
from funduslab.models.factory import model_from_checkpoint


def test_course_task3_quick_writes_table_and_task_weights(synth_course: Path, tmp_path: Path):
    out = tmp_path / "runs"
    results = course_task3(synth_course, team="demo", out=out, quick=True, seeds=[0],
                           backbone="tiny_cnn", weights="none")
    assert PRESETS.get("course-task3") is course_task3
    text = results.read_text()
    for row in ("| 3-1 | se |", "| 3-2 | mha |", "| — | linear |", "| — | class_query |",
                "| — | cbam |", "| — | se_stages |"):
        assert row in text, row
    assert "parameters" in text and "train images/s" in text
    assert (out / "se_s0" / "demo_task3-1.pt").is_file()
    assert (out / "mha_s0" / "demo_task3-2.pt").is_file()
    # the saved models are the variants: SE head, MHA head, SE blocks inside the backbone
    assert model_from_checkpoint(out / "se_s0" / "demo_task3-1.pt").head.__class__.__name__ == "SEHead"
    staged = model_from_checkpoint(out / "se_stages_s0" / "model.pt")
    assert set(staged.backbone.se_blocks) == {"layer1", "layer2", "layer3", "layer4"}

    # cost columns against independent computations
    linear, se = out / "linear_s0", out / "se_s0"
    assert parameter_count(se) > parameter_count(linear)
    # tiny_cnn features are 128 wide, SE bottleneck 8: 128·8+8 + 8·128+128 extra parameters
    assert parameter_count(se) - parameter_count(linear) == 128 * 8 + 8 + 8 * 128 + 128
    cfg = yaml.safe_load((linear / "config.yaml").read_text())
    n_train = cfg["provenance"]["split_sizes"]["train"]
    epochs = len(pd.read_csv(linear / "history.csv"))
    seconds = json.loads((linear / "metrics.json").read_text())["timing_s"]["fit_and_data"]
    assert epochs == 2
    assert abs(throughput(linear) - epochs * n_train / seconds) < 1e-9
    assert f"{throughput(linear):.0f} |" in text.split("| linear |")[1].splitlines()[0] + " |"
    # a record of results/ keeps no weights: its count comes from its config, and is the same
    from funduslab.reporting.record import write_record

    record = write_record(se, tmp_path / "records" / "se_s0")
    assert not list(record.glob("*.pt"))
    assert parameter_count(record) == parameter_count(se)
