"""Running a :class:`FundusTask` with Lightning: precision, checkpoints, history, resume."""

from __future__ import annotations

import csv
import io
import logging
import signal
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader

from funduslab.config import TrainConfig, atomic_write_text
from funduslab.training.checkpoint_io import use_atomic_checkpoints
from funduslab.training.module import FundusTask
from funduslab.training.rng_state import RandomStateCheckpoint

__all__ = [
    "HistoryWriter", "TrainingInterrupted", "evaluation_bf16", "evaluation_device", "fit_task",
    "has_depthwise_convolutions", "native_cpu_bf16", "resolve_accelerator",
    "resolve_precision",
]

log = logging.getLogger(__name__)

# Lightning announces hardware and tips at INFO on every Trainer; funduslab reports what matters.
for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
# a resumed run writes into its own checkpoint folder on purpose
warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
# frozen stages (train.freeze_stages, setup partial) keep their BatchNorm in eval mode on purpose
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")



class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during fitting; the message says what was kept and how to resume."""


_MONITOR_MODE = {
    "course_average_f1": ("val_course_average_f1", "max"),
    "macro_auroc": ("val_macro_auroc", "max"),
    "val_loss": ("val_loss", "min"),
    "quadratic_kappa": ("val_quadratic_kappa", "max"),
}


def resolve_accelerator(requested: str) -> str:
    """``auto`` → ``gpu`` when CUDA is available, else ``cpu``."""
    if requested != "auto":
        return requested
    return "gpu" if torch.cuda.is_available() else "cpu"


def resolve_precision(requested: str, accelerator: str, model: nn.Module | None = None) -> str:
    """``auto`` → mixed precision where the hardware does it natively and it pays, else ``32``.

    GPUs with bf16 (Ampere and later) get ``bf16-mixed``: it has fp32's range, so no loss scaler
    and no overflowed steps. Older GPUs get ``16-mixed``. CPUs with AVX-512-BF16 or AMX get
    ``bf16-mixed`` unless ``model`` has depthwise convolutions (EfficientNet, MobileNet,
    ConvNeXt): oneDNN's bf16 depthwise kernels are slower than fp32 ones. A Lite0 training step
    ran at 10.6-13.0 images/s in bf16 and 13.0-15.8 in fp32, ResNet18 at 48.2 in bf16 and 17.7 in
    fp32 (``benchmarks/bench_train_step.py --levers bf16,fp32 [--backbone resnet18]``, 2-core
    Intel Xeon with AMX, 256 px, batch 32, 2026-12-05).
    """
    if requested != "auto":
        return requested
    if accelerator == "gpu":
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
            else "16-mixed"
    if model is not None and has_depthwise_convolutions(model):
        return "32"
    return "bf16-mixed" if native_cpu_bf16() else "32"


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX) and PyTorch may use it.

    ``ATEN_CPU_CAPABILITY=avx2`` (with ``ONEDNN_MAX_CPU_ISA=AVX2``) caps the kernels at those of
    an AVX2-only VM, where bf16 is emulated; ``auto`` then picks fp32 as it would there.
    """
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
        return False
    return bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def has_depthwise_convolutions(model: nn.Module) -> bool:
    """Whether any 2-D convolution of ``model`` is depthwise (one group per input channel)."""
    return any(isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
               for m in model.modules())


def evaluation_bf16(train_cfg: TrainConfig, model: nn.Module | None = None) -> bool:
    """Whether a run evaluates (and a frozen run extracts features) under bfloat16 autocast:
    the precision it trains ``model`` in, so predictions match what the saved model gives."""
    accelerator = resolve_accelerator(train_cfg.accelerator)
    return resolve_precision(train_cfg.precision, accelerator, model) == "bf16-mixed"


def evaluation_device(train_cfg: TrainConfig) -> str:
    """Where a run predicts its splits and extracts frozen features: the GPU it trains on, if any
    (on a GPU machine the CPU would be the bottleneck of a frozen run), else the CPU."""
    return "cuda" if resolve_accelerator(train_cfg.accelerator) == "gpu" else "cpu"


class HistoryWriter(Callback):
    """Writes ``history.csv`` (one row per epoch: train/val loss and metrics) after every epoch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs validation before this hook, so the row holds both sides of the epoch.
        if trainer.global_rank != 0:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch}
        for key, value in sorted(trainer.callback_metrics.items()):
            row[key] = round(float(value), 6)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state.get("rows", []))


def fit_task(
    task: FundusTask,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    cfg: TrainConfig,
    run_dir: Path,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, float | str]:
    """Fit ``task``; keep the best epoch by ``cfg.monitor``; load its weights back into ``task``.

    Checkpoints go to ``run_dir/checkpoints``: an interrupted run restarts from ``last.ckpt``
    when ``resume`` is true.

    Returns:
        ``{"best_epoch_score": …, "best_checkpoint": path, "precision": …}``.
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    accelerator = resolve_accelerator(cfg.accelerator)
    precision = resolve_precision(cfg.precision, accelerator, task.net)
    monitor, mode = _monitor_and_mode(cfg, val_loader)
    checkpoint, callbacks = _fit_callbacks(cfg, run_dir, train_loader, monitor, mode, progress)
    trainer = _build_trainer(cfg, accelerator, precision, callbacks, run_dir, progress)
    use_atomic_checkpoints(trainer)  # a full disk never leaves a truncated last.ckpt
    last = ckpt_dir / "last.ckpt"
    ckpt_path = str(last) if resume and last.is_file() else None
    if ckpt_path:
        log.info("resuming from %s", last)
    _fit_or_raise_interrupted(trainer, task, train_loader, val_loader, ckpt_path, last, cfg.epochs)
    best = checkpoint.best_model_path or str(last)
    _warn_if_monitor_flat(run_dir / "history.csv", monitor)
    _load_best_weights(task, best)
    score = checkpoint.best_model_score
    return {
        "best_score": float(score) if score is not None else float("nan"),
        "monitor": monitor,
        "best_checkpoint": str(best),
        "precision": precision,
        "world_size": trainer.world_size,
        "is_global_zero": trainer.is_global_zero,
    }


def _monitor_and_mode(cfg: TrainConfig, val_loader: DataLoader | None) -> tuple[str, str]:
    """The logged metric that picks the best epoch, and whether higher or lower is better;
    without a validation loader only the training loss is there to watch."""
    monitor, mode = _MONITOR_MODE[cfg.monitor]
    if val_loader is None:
        return "train_loss", "min"
    return monitor, mode


def _fit_callbacks(
    cfg: TrainConfig, run_dir: Path, train_loader: DataLoader, monitor: str, mode: str,
    progress: bool,
) -> tuple[ModelCheckpoint, list[Callback]]:
    """The best-epoch checkpoint, and every callback of the fit (that checkpoint first)."""
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(
        dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
        enable_version_counter=False,
    )
    # Lightning's save_last only rewrites last.ckpt on epochs that improve the monitor, so a run
    # interrupted after a plateau would resume from its best epoch and retrain the tail. This
    # one saves the current state after every epoch.
    latest = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
        save_on_train_epoch_end=True, enable_version_counter=False,
    )
    callbacks: list[Callback] = [checkpoint, latest, HistoryWriter(run_dir / "history.csv"),
                                 RandomStateCheckpoint(train_loader)]
    if cfg.early_stopping:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    return checkpoint, callbacks


def _build_trainer(
    cfg: TrainConfig, accelerator: str, precision: str, callbacks: list[Callback], run_dir: Path,
    progress: bool,
) -> L.Trainer:
    """The Lightning Trainer of one fit: no logger (``history.csv`` comes from
    :class:`HistoryWriter`), no model summary, no sanity validation."""
    return L.Trainer(
        accelerator=accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=precision,
        max_epochs=cfg.epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=False,
        num_sanity_val_steps=0,
        default_root_dir=run_dir,
        log_every_n_steps=10,
    )


def _fit_or_raise_interrupted(
    trainer: L.Trainer, task: FundusTask, train_loader: DataLoader,
    val_loader: DataLoader | None, ckpt_path: str | None, last: Path, epochs: int,
) -> None:
    """Run ``trainer.fit``; turn Lightning's silent exit on Ctrl-C into
    :class:`TrainingInterrupted` saying what was kept and how to resume."""
    try:
        trainer.fit(task, train_loader, val_loader, ckpt_path=ckpt_path)
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Lightning turns Ctrl-C into a silent exit(1) and leaves SIGINT ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
        done = "no epoch finished yet" if not last.is_file() else f"{last} holds the last epoch"
        raise TrainingInterrupted(
            f"training interrupted in epoch {trainer.current_epoch + 1} of {epochs}; {done}: "
            "run the same command again to resume") from None


def _load_best_weights(task: FundusTask, best: str) -> None:
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=False)  # our own file
        task.load_state_dict(state["state_dict"])


def _warn_if_monitor_flat(history: Path, monitor: str) -> None:
    """Say so when the selection metric never moved: the "best" epoch is then simply the first."""
    try:
        import pandas as pd

        values = pd.read_csv(history)[monitor].dropna()
    except (OSError, KeyError, ValueError):
        return
    if len(values) > 1 and values.nunique() == 1:
        log.warning("%s stayed at %g for all %d epochs, so the first epoch's weights were kept; "
                    "the model is not learning what the monitor measures (for skewed grades try "
                    "train.sampler: class_sqrt or class_aware, or monitor: val_loss)", monitor,
                    float(values.iloc[0]), len(values))
