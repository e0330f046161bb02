"""Dual-image mode end to end: partners, paired batches, runs on synthetic DeepDRiD, reloads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from funduslab.config import config_from_dict
from funduslab.data.adapters import load_table
from funduslab.data.synthetic_layouts import write_layout
from funduslab.data.table import SampleTable
from funduslab.models.dual import DualFundusModel
from funduslab.models.factory import model_from_checkpoint
from funduslab.training.data import ArrayDataset
from funduslab.training.grading import GRADING_FORMULATIONS
from funduslab.training.pairs import pair_partners, split_partners
from funduslab.training.predict import predict_logits
from funduslab.training.runner import decode_splits, run


def test_pair_partners_groups_of_two_three_and_one():
    pairs = ["p1_l", "p2_r", "p1_l", "p2_r", "solo", "t", "t", "t", None, ""]
    partners, alone = pair_partners(pairs)
    np.testing.assert_array_equal(partners, [2, 3, 0, 1, 4, 6, 5, 5, 8, 9])
    assert alone == 3  # "solo", None and ""


def _table(with_pair: bool) -> SampleTable:
    frame = pd.DataFrame({"id": list("abcde"), "path": "x", "patient": ["1", "1", "2", "2", "3"],
                          "eye": "left", "split": ["train"] * 4 + ["val"], "labelled": True,
                          "y": [0, 1, 0, 1, 1]})
    if with_pair:
        frame["pair"] = ["1_l", "2_l", "1_l", "2_l", "1_l"]  # "1_l" also in val: not a partner
    return SampleTable(frame, ["y"], source="handmade:/nowhere")


def test_split_partners_stay_within_the_split():
    table = _table(True)
    np.testing.assert_array_equal(split_partners(table, table.split("train"), "x", "mean"),
                                  [2, 3, 0, 1])
    np.testing.assert_array_equal(split_partners(table, table.split("val"), "x", "mean"), [0])


def test_table_without_pairs_names_adapter_and_paired_adapters():
    table = _table(False)
    with pytest.raises(ValueError, match=r"adapter 'aptos'.*'pair'.*deepdrid"):
        split_partners(table, table.split("train"), "aptos", "concat")


def test_array_dataset_returns_anchor_then_partner():
    images = np.arange(4 * 6 * 6 * 3, dtype=np.uint8).reshape(4, 6, 6, 3)
    ds = ArrayDataset(images, np.arange(4), partners=np.array([1, 0, 3, 2]))
    x, y = ds[2]
    assert x.shape == (2, 3, 6, 6) and int(y) == 2
    torch.testing.assert_close(x[0], torch.from_numpy(images[2]).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(x[1], torch.from_numpy(images[3]).permute(2, 0, 1).float() / 255)
    flip = ArrayDataset(images, np.arange(4), transform=lambda t: t.flip(-1),
                        partners=np.array([1, 0, 3, 2]))
    torch.testing.assert_close(flip[2][0][1], x[1].flip(-1))
    with pytest.raises(ValueError, match="partners"):
        ArrayDataset(images, np.arange(4), partners=np.array([1, 0, 4, 2]))


def test_predict_logits_feeds_pairs_and_flips_both_views():
    seen = []

    def model(x: torch.Tensor) -> torch.Tensor:  # records inputs, logit = anchor − partner mean
        seen.append(x.clone())
        return (x[:, 0].mean(dim=(1, 2, 3)) - 2 * x[:, 1].mean(dim=(1, 2, 3)))[:, None]

    model.eval = lambda: model  # predict_logits calls model.eval().to(device)
    model.to = lambda device: model
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    partners = np.array([1, 0, 3, 2, 4])
    out = predict_logits(model, images, batch_size=2, partners=partners)
    means = images.reshape(5, -1).mean(axis=1) / 255
    np.testing.assert_allclose(out[:, 0], means - 2 * means[partners], rtol=1e-5)
    assert all(x.shape[1:] == (2, 3, 4, 4) for x in seen)
    seen.clear()
    predict_logits(model, images[:2], batch_size=2, tta=True, partners=partners[:2])
    torch.testing.assert_close(seen[1], seen[0].flip(-1))
    torch.testing.assert_close(seen[2], seen[0].flip(-2))


def test_loaders_yield_anchor_partner_batches(tmp_path: Path):
    from funduslab.data.split_data import SplitData
    from funduslab.training.context import RunContext
    from funduslab.training.loaders import eval_loader, train_loader

    cfg = _cfg(tmp_path, tmp_path, "loaders", "mean", sampler="patient", batch_size=2)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    split = SplitData("train", list("abcd"), images, np.array([0, 1, 0, 1]), True,
                      patients=["1", "1", "2", "2"], partners=np.array([1, 0, 3, 2]))
    ctx = RunContext(cfg, _table(True), {"train": split}, tmp_path, tmp_path, "fp")
    x, y = next(iter(train_loader(ctx)))
    assert x.shape == (2, 2, 3, 8, 8) and y.shape == (2,)
    x, _ = next(iter(eval_loader(ctx, split)))
    torch.testing.assert_close(x[0, 1], torch.from_numpy(images[1]).permute(2, 0, 1).float() / 255)


@pytest.fixture(scope="module")
def deepdrid_data(tmp_path_factory) -> Path:
    return write_layout("deepdrid", tmp_path_factory.mktemp("dd"), n=24, seed=3, size=32)


def _cfg(data: Path, out: Path, name: str, dual: str, adapter: str = "deepdrid", **train):
    settings = {"setup": "full", "epochs": 1, "batch_size": 4, "lr": 3e-3, "backbone_lr": 3e-3,
                "precision": "32", "warmup_epochs": 0, "formulation": "ce"}
    settings.update(train)
    return config_from_dict({
        "data": {"adapter": adapter, "root": str(data), "image_size": 32,
                 "cache_dir": str(out / "cache")},
        "model": {"backbone": "tiny_cnn", "weights": "none", "dual": dual},
        "train": settings,
        "output": {"out": str(out), "name": name, "figures": False},
    })


@pytest.mark.parametrize("dual,setup,sampler", [("attention", "full", "patient"),
                                                ("concat", "frozen", "random")])
def test_dual_run_on_synthetic_deepdrid_reloads_with_same_outputs(
    deepdrid_data: Path, tmp_path: Path, dual: str, setup: str, sampler: str
):
    run_dir = run(_cfg(deepdrid_data, tmp_path, f"dual_{dual}", dual, setup=setup,
                       sampler=sampler), progress=False)
    table = load_table("deepdrid", deepdrid_data)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "test"}
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert raw["model"]["dual"] == dual

    model = model_from_checkpoint(run_dir / "model.pt")
    assert isinstance(model, DualFundusModel) and model.dual == dual
    raw.pop("provenance")
    cfg = config_from_dict(raw)
    splits, _ = decode_splits(table, cfg, Path(cfg.data.cache_dir))
    form = GRADING_FORMULATIONS.get("ce")
    for name, split in splits.items():
        saved = pd.read_csv(run_dir / "predictions" / f"{name}.csv")
        assert saved["id"].astype(str).tolist() == split.ids  # one row per image, table order
        # partners are the other shot of the same eye
        pair = table.split(name)["pair"].to_numpy()
        assert (pair[split.partners] == pair).all()
        assert (split.partners != np.arange(len(split.ids))).all()
        logits = predict_logits(model, split.images, partners=split.partners)
        probs = form.decode(logits, 5).probs
        np.testing.assert_allclose(probs, saved[[f"p_{k}" for k in range(5)]].to_numpy(),
                                   atol=2e-5)
    # the partner matters: predicting each image alone gives other outputs
    test = splits["test"]
    alone = predict_logits(model, test.images, partners=np.arange(len(test.ids)))
    assert not np.allclose(alone, predict_logits(model, test.images, partners=test.partners),
                           atol=1e-6)


def test_dual_with_an_adapter_without_pairs_is_a_value_error(tmp_path: Path):
    data = write_layout("aptos", tmp_path / "aptos", n=12, seed=1, size=32)
    with pytest.raises(ValueError, match=r"adapter 'aptos'.*deepdrid"):
        run(_cfg(data, tmp_path / "runs", "nopairs", "mean", adapter="aptos"), progress=False)
