"""The screening preset runs end to end on synthetic ODIR-5K-style data."""

from __future__ import annotations

import json
from pathlib import Path

from funduslab.data.synthetic_layouts import write_layout
from funduslab.experiments.screening import screening


def test_screening_quick_writes_long_tail_report(tmp_path: Path):
    data = write_layout("odir5k", tmp_path / "odir5k", n=120, seed=3, size=64)
    results = screening(data, out=tmp_path / "runs", quick=True, seeds=[0],
                        backbone="tiny_cnn", weights="none", labels="N,D,C")
    text = results.read_text()
    assert "macro AUROC" in text and "| N |" in text and "95 % CI" in text
    run_dir = next((tmp_path / "runs").glob("screening_tiny_cnn_s0"))
    rep = json.loads((run_dir / "long_tail.json").read_text())
    assert [r["name"] for r in rep["labels"]] == ["N", "D", "C"]
    cfg = (run_dir / "config.yaml").read_text()
    assert "macro_auroc" in cfg  # selected on validation macro AUROC
