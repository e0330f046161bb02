"""One run from config to run folder: data → setup → predictions → metrics → files.

This is the single path every CLI verb and preset goes through, so every run folder has the
same shape (see :mod:`funduslab.reporting.run_folder`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import lightning as L
import numpy as np

from funduslab.config import RunConfig, save_config
from funduslab.training.config_names import validate_names
from funduslab.data.folds import load_run_table
from funduslab.data.join import join_extra_sources
from funduslab.data.cache import ImageCache
from funduslab.data.split_data import SplitData
from funduslab.data.table import SampleTable
from funduslab.models.funduslab_checkpoints import save_funduslab_checkpoint
from funduslab.models.factory import checkpoint_metadata
from funduslab.plots.figures import plot_history
from funduslab.preprocess import build_pipeline
from funduslab.reporting.run_folder import (
    FAILED_FILE,
    clean_up_failed_run,
    environment_info,
    weights_filename,
    write_json,
)
from funduslab.runs.lock import run_folder_lock
from funduslab.training.context import RunContext
from funduslab.training.features import cached_split_logits
from funduslab.training.fit import evaluation_bf16, evaluation_device
from funduslab.training.predict import predict_logits
from funduslab.training.grading import resolve_task
from funduslab.training.recipe import resolve_recipe
from funduslab.training.resume import check_resumable, is_finished
from funduslab.training.setups import fit_model
from funduslab.training.task_kinds import task_kind

__all__ = ["decode_splits", "run", "split_logits"]

log = logging.getLogger(__name__)


def decode_splits(
    table: SampleTable, cfg: RunConfig, cache_dir: Path
) -> tuple[dict[str, SplitData], str]:
    """Decode (or load from cache) every split; return the splits and a data fingerprint.

    With ``data.extra_sources`` set, those datasets' labelled rows are appended to the train
    split only, labels matched by name and NaN where a source lacks one
    (:func:`funduslab.data.join.join_extra_sources`).
    With ``data.extra_train`` set, ``round(data.extra_train_ratio × n_real)`` generated images
    are appended to the train split only (never val/test); see :mod:`funduslab.data.mixing`.
    With ``model.dual`` other than ``none`` every split gets ``partners`` from the table's
    ``pair`` column (:func:`funduslab.training.pairs.split_partners`; generated images are their
    own partners).

    Raises:
        ValueError: ``model.dual`` is set but the adapter's table has no ``pair`` column.
    """
    dual = cfg.model.dual != "none"
    if dual:
        from funduslab.training.pairs import split_partners
    joined = None
    if cfg.data.extra_sources:  # other datasets' rows join the train split only (data/join.py)
        table, joined = join_extra_sources(table, cfg.data)
    pipeline = build_pipeline(cfg.data.preprocess, cfg.data.image_size)
    cache = ImageCache(cache_dir)
    splits: dict[str, SplitData] = {}
    digest = hashlib.sha256()
    if joined is not None:
        digest.update(f"extra_sources:{joined};".encode())
    for name in table.splits:
        rows = table.split(name)
        partners = (split_partners(table, rows, cfg.data.adapter, cfg.model.dual) if dual
                    else None)  # before decoding: a table without pairs fails fast
        paths = [Path(p) for p in rows["path"]]
        images = cache.get(paths, pipeline, cfg.data.image_size, workers=cfg.data.num_workers)
        key = cache.fingerprint(paths, pipeline, cfg.data.image_size)
        digest.update(f"{name}:{key};".encode())
        targets = rows[table.label_names].to_numpy(dtype=np.float32)
        targets = task_kind(table.task).targets(targets)  # grading: (N,) integer grades
        labelled = bool(rows["labelled"].all())
        splits[name] = SplitData(name, rows["id"].astype(str).tolist(), images, targets, labelled,
                                 patients=rows["patient"].astype(str).tolist(),
                                 partners=partners)
    if cfg.data.extra_train is not None:  # generated images join the train split only
        from funduslab.data.mixing import mix_generated

        train = cfg.data.train_split
        real = splits[train]
        splits[train], key = mix_generated(real, cfg, table, cache)
        if real.partners is not None and splits[train].partners is None:
            n_real, n_all = len(real.ids), len(splits[train].ids)  # generated: own partners
            splits[train].partners = np.concatenate([real.partners, np.arange(n_real, n_all)])
        digest.update(f"extra_train:{key};".encode())
    return splits, digest.hexdigest()[:16]


def run(cfg: RunConfig, progress: bool = True) -> Path:
    """Fit and evaluate one configuration; return its run folder.

    A run that fails (an error, Ctrl-C) removes the folder it created when nothing resumable is
    in it, and otherwise leaves ``failed.json`` beside its checkpoints
    (:func:`~funduslab.reporting.run_folder.clean_up_failed_run`).

    Raises:
        RunFolderBusy: another live process is writing the same run folder
            (:func:`~funduslab.runs.lock.run_folder_lock`); nothing in it is touched.
    """
    validate_names(cfg)  # every registry name, before any folder, data or model
    run_dir = cfg.run_dir
    created = not run_dir.exists()
    state = {"training": False}  # a folder we did not create is marked only once training began
    with run_folder_lock(run_dir, created):  # one writer per folder, held until clean-up is done
        try:
            done = _run(cfg, run_dir, progress, state)
        except BaseException as err:
            if created or state["training"]:
                clean_up_failed_run(run_dir, created, err)
            raise
        (run_dir / FAILED_FILE).unlink(missing_ok=True)
    return done


def _run(cfg: RunConfig, run_dir: Path, progress: bool, state: dict[str, bool]) -> Path:
    started = time.time()
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cfg.data.cache_dir or cfg.output.out / ".cache")
    table = load_run_table(cfg)
    cfg = resolve_task(cfg, table)  # task kind, grading loss/monitor/head → config.yaml
    cfg = resolve_recipe(cfg)  # the fast recipe's knobs → config.yaml
    check_resumable(run_dir, cfg)  # never resume checkpoints written under another config
    if is_finished(run_dir, cfg, weights_filename(cfg.output.team, cfg.output.task)):
        log.info("%s already holds this run's results (same config); nothing to do — delete its "
                 "metrics.json to evaluate again, or set output.resume: false to retrain", run_dir)
        return run_dir
    for needed in (cfg.data.train_split,):
        table.split(needed)  # clear error when a split is missing or empty
    splits, fingerprint = decode_splits(table, cfg, cache_dir)
    save_config(cfg, run_dir / "config.yaml", _provenance(cfg, table, splits, fingerprint))
    state["training"] = True
    ctx = RunContext(cfg, table, splits, run_dir, cache_dir, fingerprint, {"progress": progress})
    model, fit_info = fit_model(ctx)
    if not fit_info.get("is_global_zero", True):
        return run_dir  # DDP: rank 0 writes the run folder
    fit_s = time.time() - started

    t_eval = time.time()
    outputs = split_logits(ctx, model)
    metrics, chosen = ctx.kind.evaluate(ctx, outputs)  # training/task_kinds.py
    metrics["fit"] = fit_info
    metrics["timing_s"] = {"fit_and_data": round(fit_s, 1),
                           "evaluation": round(time.time() - t_eval, 1),
                           "total": round(time.time() - started, 1)}
    write_json(run_dir / "metrics.json", metrics)

    _save_weights(ctx, model, chosen)
    if cfg.output.figures and (run_dir / "history.csv").is_file():
        plot_history(run_dir / "history.csv", run_dir / "figures" / "curves.png")
    log.info("run %s finished in %.0f s", run_dir, time.time() - started)
    return run_dir


def _provenance(cfg: RunConfig, table: SampleTable, splits: dict[str, SplitData],
                fingerprint: str) -> dict:
    """What ``config.yaml`` records beside the config: seed, data and environment."""
    return {
        "seed": cfg.train.seed,
        "data_fingerprint": fingerprint,
        "data_source": table.source,
        "label_names": table.label_names,
        "split_sizes": {k: len(v.ids) for k, v in splits.items()},
        "environment": environment_info(),
    }


def _save_weights(ctx: RunContext, model, chosen: np.ndarray) -> None:
    """The run's ``.pt``: weights plus what a saved model needs to predict on its own."""
    cfg, table = ctx.cfg, ctx.table
    weights = ctx.run_dir / weights_filename(cfg.output.team, cfg.output.task)
    save_funduslab_checkpoint(weights, model, {
        **checkpoint_metadata(model),
        "head": cfg.model.head,
        "head_options": cfg.model.head_options,
        "label_names": table.label_names,
        "image_size": cfg.data.image_size,
        "preprocess": cfg.data.preprocess,
        "thresholds": [float(t) for t in chosen],
        "setup": cfg.train.setup,
        "task": cfg.train.task,
        "formulation": ctx.kind.formulation(cfg),
        "num_outputs": ctx.kind.num_outputs(ctx),
    })


def split_logits(ctx: RunContext, model) -> dict[str, np.ndarray]:
    """Model outputs ``(N, K)`` for every split.

    A frozen backbone's features are already cached from the fit, so a frozen run applies the
    head to them (:func:`~funduslab.training.features.cached_split_logits`; flip TTA from cached
    flipped views); every other run predicts from the decoded images (flip TTA when
    ``train.tta`` is set), on the GPU when the run trained on one.
    """
    cfg = ctx.cfg
    if cfg.train.setup == "frozen":
        return cached_split_logits(ctx, model)
    bf16, device = evaluation_bf16(cfg.train, model), evaluation_device(cfg.train)
    outputs = {name: predict_logits(model, s.images, batch_size=cfg.train.batch_size,
                                    tta=cfg.train.tta, bf16=bf16, device=device,
                                    partners=s.partners)
               for name, s in ctx.splits.items()}
    model.to("cpu")  # the checkpoint and later steps expect CPU tensors
    return outputs
