"""A tiny run whose train split joins a synthetic ODIR-5K source with a label missing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.synthetic_layouts import write_layout
from funduslab.training.runner import run


@pytest.mark.parametrize("loss, sampler", [("class_balanced", "patient"), ("bce", "class_aware")])
def test_run_with_a_joined_source_finishes_and_records_it(tmp_path: Path, loss, sampler):
    course = write_layout("odir-course", tmp_path / "course", n=40, seed=1, size=32)
    odir5k = write_layout("odir5k", tmp_path / "odir5k", n=24, seed=2, size=32)
    extra = {"adapter": "odir5k", "root": str(odir5k), "options": {"labels": ["D", "G"]}}
    cfg = config_from_dict({
        "data": {"root": str(course), "image_size": 32, "cache_dir": str(tmp_path / "cache"),
                 "extra_sources": [extra]},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 8, "precision": "32",
                  "warmup_epochs": 0, "loss": loss, "sampler": sampler, "tune_thresholds": True},
        "output": {"out": str(tmp_path / "runs"), "name": "joined", "figures": False},
    })
    run_dir = run(cfg, progress=False)

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["extra_sources"] == [{**extra, "splits": None}]
    main = load_table("odir_course", course)
    n_main, n_extra = len(main.split("train")), len(load_table("odir5k", odir5k).frame)
    sizes = saved["provenance"]["split_sizes"]
    assert sizes["train"] == n_main + n_extra  # the source joined train …
    assert sizes["val"] == len(main.split("val"))  # … and nothing else
    assert sizes["offsite_test"] == len(main.split("offsite_test"))

    train = pd.read_csv(run_dir / "predictions" / "train.csv")
    assert train["id"].str.startswith("odir5k/").sum() == n_extra
    val = pd.read_csv(run_dir / "predictions" / "val.csv")
    assert not val["id"].str.startswith("odir5k/").any()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("train", "val", "offsite_test"):  # metrics never saw a NaN
        score = metrics["splits"][split]["threshold_0.5"]["course_average_f1"]
        assert np.isfinite(score)
    history = pd.read_csv(run_dir / "history.csv")
    assert np.isfinite(history["train_loss"].dropna()).all()
    assert (run_dir / "submission.csv").is_file()
