"""fit_task checkpoints: last.ckpt follows training, best.ckpt follows the monitor."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from funduslab.config import TrainConfig
from funduslab.training.fit import fit_task
from funduslab.training.module import FitOptions, FundusTask


def _task(lr: float) -> FundusTask:
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    return FundusTask(net, nn.BCEWithLogitsLoss(), ["D", "G"],
                      FitOptions(lr=lr, backbone_lr=lr, epochs=3, warmup_epochs=0))


def _loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = (x[:, :2] > 0).float()
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(TensorDataset(x, y), batch_size=32)


def test_last_checkpoint_is_the_final_epoch_even_when_the_monitor_never_improves(
        tmp_path: Path, caplog, one_torch_thread):
    """lr 0: val loss is flat, so best stays at epoch 0 — last.ckpt must still reach epoch 2,
    or an interrupted run would resume from the best epoch and train the tail again."""
    cfg = TrainConfig(epochs=3, monitor="val_loss", precision="32", accelerator="cpu")
    train, val = _loaders()
    with caplog.at_level(logging.WARNING, logger="funduslab.training.fit"):
        info = fit_task(_task(0.0), train, val, cfg, tmp_path, progress=False)
    ckpts = tmp_path / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(ckpts / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2
    assert best["epoch"] == 0
    assert Path(info["best_checkpoint"]).name == "best.ckpt"
    assert "stayed at" in caplog.text and "val_loss" in caplog.text


def test_rerunning_a_finished_fit_trains_nothing_more(tmp_path: Path, one_torch_thread):
    cfg = TrainConfig(epochs=3, monitor="val_loss", precision="32", accelerator="cpu")
    train, val = _loaders()
    first = _task(0.05)
    fit_task(first, train, val, cfg, tmp_path, progress=False)
    history = (tmp_path / "history.csv").read_text()
    again = _task(0.05)
    fit_task(again, train, val, cfg, tmp_path, progress=False)
    assert (tmp_path / "history.csv").read_text() == history
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2


def test_auto_precision_follows_the_gpu(monkeypatch) -> None:
    """bf16 where the GPU has it (no loss scaler), fp16 on older GPUs; explicit choices stay."""
    from funduslab.training import fit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert fit.resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert fit.resolve_precision("auto", "gpu") == "16-mixed"
    assert fit.resolve_precision("32", "gpu") == "32"
    assert fit.resolve_precision("auto", "cpu") in ("bf16-mixed", "32")


def test_evaluation_runs_where_the_run_trains(monkeypatch) -> None:
    """A run trained on a GPU predicts (and extracts frozen features) there, in its precision."""
    from funduslab.training import fit

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert fit.evaluation_device(TrainConfig(accelerator="auto")) == "cuda"
    assert fit.evaluation_bf16(TrainConfig(accelerator="auto"))
    assert not fit.evaluation_bf16(TrainConfig(accelerator="auto", precision="32"))
    assert fit.evaluation_device(TrainConfig(accelerator="cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert fit.evaluation_device(TrainConfig()) == "cpu"
