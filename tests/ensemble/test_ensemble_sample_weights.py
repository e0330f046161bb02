"""The ``weighted_file`` sampler that resampling ensembles train their members with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from funduslab.config import TrainConfig
from funduslab.data.split_data import SplitData
from funduslab.training.sample_weights import (
    build_train_sampler,
    read_sample_weights,
    write_sample_weights,
)
from funduslab.training.samplers import SAMPLERS


def _split(n: int) -> SplitData:
    return SplitData("train", [f"img{i}" for i in range(n)], np.zeros((n, 2, 2, 3), np.uint8),
                     np.zeros((n, 3), np.float32), True)


def _weights_file(tmp_path: Path, ids, weights) -> Path:
    path = tmp_path / "w.csv"
    write_sample_weights(path, ids, np.asarray(weights, float))
    return path


def test_weighted_file_is_registered_and_needs_a_path():
    assert "weighted_file" in SAMPLERS
    with pytest.raises(ValueError, match="train.sample_weights"):
        SAMPLERS.get("weighted_file")(_split(4), 0)


def test_sampler_is_deterministic_per_seed_and_draws_by_weight(tmp_path: Path):
    split = _split(5)
    weights = [0.0, 1.0, 2.0, 3.0, 4.0]
    path = _weights_file(tmp_path, split.ids[::-1], weights[::-1])  # file order is irrelevant
    cfg = TrainConfig(sampler="weighted_file", sample_weights=path, seed=11)
    a = list(build_train_sampler(cfg, split))
    b = list(build_train_sampler(cfg, split))
    c = list(build_train_sampler(cfg.model_copy(update={"seed": 12}), split))
    assert len(a) == 5 and a == b and a != c
    sampler = build_train_sampler(cfg, split)
    epochs = [list(sampler) for _ in range(2000)]  # the generator advances: epochs differ
    assert epochs[0] == a and epochs[1] != a
    draws = np.concatenate(epochs)
    freq = np.bincount(draws, minlength=5) / draws.size
    assert freq[0] == 0.0  # weight 0: never drawn (out-of-bag)
    np.testing.assert_allclose(freq, np.array(weights) / 10.0, atol=0.015)


def test_weights_align_to_split_ids_and_bad_files_are_named(tmp_path: Path):
    ids = ["a", "b", "c"]
    path = _weights_file(tmp_path, ["c", "a", "b", "zz"], [3, 1, 2, 9])
    np.testing.assert_allclose(read_sample_weights(path, ids), [1, 2, 3])
    with pytest.raises(ValueError, match="no weight for 1 training ids"):
        read_sample_weights(path, ids + ["d"])
    with pytest.raises(ValueError, match=">= 0"):
        read_sample_weights(_weights_file(tmp_path, ids, [1, -1, 1]), ids)
    with pytest.raises(ValueError, match="all weights are 0"):
        read_sample_weights(_weights_file(tmp_path, ids, [0, 0, 0]), ids)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_sample_weights(tmp_path / "nope.csv", ids)


def test_sample_weights_with_another_sampler_is_an_error_not_ignored(tmp_path: Path):
    cfg = TrainConfig(sampler="random", sample_weights=tmp_path / "w.csv")
    with pytest.raises(ValueError, match="weighted_file"):
        build_train_sampler(cfg, _split(3))
    assert build_train_sampler(TrainConfig(), _split(3)) is None  # plain shuffling unchanged


def test_training_loader_draws_with_the_files_weights(tmp_path: Path):
    from funduslab.config import config_from_dict
    from funduslab.training.context import RunContext
    from funduslab.training.loaders import train_loader

    split = _split(6)
    path = _weights_file(tmp_path, split.ids, [0, 0, 1, 1, 2, 0])
    cfg = config_from_dict({"data": {"image_size": 16, "augment": "none"},
                            "train": {"sampler": "weighted_file", "sample_weights": str(path),
                                      "batch_size": 2, "seed": 3}})
    ctx = RunContext(cfg, None, {"train": split}, tmp_path, tmp_path, "fp")
    loader = train_loader(ctx)
    np.testing.assert_allclose(loader.sampler.weights.numpy(), [0, 0, 1, 1, 2, 0])
    drawn = np.concatenate([list(loader.sampler) for _ in range(50)])
    assert set(drawn) <= {2, 3, 4}
