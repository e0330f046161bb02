"""Ensembles whose members are trained here on resampled training data: bagging and boosting.

Each member is an ordinary run (:func:`funduslab.training.runner.run`) under
``<out>/<name>/members/member<m>`` whose config sets ``train.sampler: weighted_file`` and
``train.sample_weights`` to a CSV of per-image weights
(:mod:`funduslab.training.sample_weights`); the ensemble's own run folder is then written from
those members like any other ensemble.

* **Bagging** (Breiman, Machine Learning 24, 1996): member ``m`` gets bootstrap counts
  (``N`` draws with replacement from ``np.random.default_rng([seed, m])``) as weights, so
  out-of-bag images are never seen; each epoch then draws ``N`` images ∝ counts. Members also
  get seed ``seed + m`` (different initialisation and augmentation). Combined by soft voting.
* **Boosting** (AdaBoost, Freund & Schapire, J. Comput. Syst. Sci. 55, 1997, by resampling):
  weights start uniform; after member ``m``, each training image's error is its **mean
  per-class 0/1 error** at threshold 0.5, ``e_i = mean_k |y_ik - [p_ik >= 0.5]|`` in [0, 1]
  (multi-label generalisation; ``K = 1`` is AdaBoost exactly; note that with rare labels even
  an all-negative member has ``eps`` well below 0.5). With the weighted error
  ``eps = sum w_i e_i / sum w_i``, the member's vote is ``alpha = 0.5 ln((1 - eps) / eps)`` and
  ``w_i <- w_i exp(alpha (2 e_i - 1))`` (renormalised to mean 1): images the member got wrong
  gain weight, right ones lose it, and for 0/1 errors the member's weighted error under the new
  weights is exactly 0.5, as in AdaBoost. As in AdaBoost.M1, a member no better than chance
  (``eps >= 0.5``) is dropped and stops the sequence (fewer than 2 members kept is an error).
  Members are combined by ``weighted`` averaging with weights ``alpha / sum alpha``. Errors are
  measured on the member's own training predictions, so a member that memorises its training
  split (many epochs) leaves little to boost.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.config import RunConfig
from funduslab.data.folds import load_run_table
from funduslab.ensemble.members import load_members
from funduslab.ensemble.run_folder import write_ensemble_run
from funduslab.registry import Registry
from funduslab.reporting.run_folder import read_predictions
from funduslab.training.sample_weights import write_sample_weights

__all__ = [
    "TRAINED_ENSEMBLES",
    "bagging",
    "bootstrap_counts",
    "boosting",
    "boosting_update",
]

log = logging.getLogger(__name__)

TRAINED_ENSEMBLES: Registry = Registry("trained ensemble method")

_SETUPS = ("full", "partial")
_EPS = 1e-10


def bootstrap_counts(n: int, seed: int, member: int) -> np.ndarray:
    """How often each of ``n`` images appears in member ``member``'s bootstrap sample ``(n,)``."""
    rng = np.random.default_rng([int(seed), int(member)])
    return np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)


def boosting_update(
    weights: np.ndarray, y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5
) -> tuple[np.ndarray, float, float]:
    """One AdaBoost step for multi-label data (see module docstring).

    Args:
        weights: ``(N,)`` current non-negative sample weights.
        y_true: ``(N, K)`` 0/1 truth.
        y_prob: ``(N, K)`` the new member's probabilities.
        threshold: Decision threshold.

    Returns:
        ``(new_weights (N,) with mean 1, alpha, eps)``.
    """
    w = np.asarray(weights, dtype=np.float64)
    y = np.asarray(y_true).reshape(len(w), -1)
    p = np.asarray(y_prob).reshape(y.shape)
    errors = np.mean(y != (p >= threshold), axis=1)  # (N,) in [0, 1]
    eps = float(np.sum(w * errors) / np.sum(w))
    eps_c = min(max(eps, _EPS), 1 - _EPS)
    alpha = 0.5 * np.log((1 - eps_c) / eps_c)
    new = w * np.exp(alpha * (2.0 * errors - 1.0))
    return new * (len(new) / new.sum()), float(alpha), eps


def _member_config(cfg: RunConfig, members_dir: Path, m: int, weights_file: Path) -> RunConfig:
    member = copy.deepcopy(cfg)
    member.output.out = members_dir
    member.output.name = f"member{m}"
    member.train.seed = cfg.train.seed + m
    member.train.sampler = "weighted_file"
    member.train.sample_weights = weights_file.resolve()
    return member


def _train_split(cfg: RunConfig) -> tuple[list[str], np.ndarray, list[str]]:
    if cfg.train.setup not in _SETUPS:
        raise ValueError(f"bagging/boosting resample the images a backbone is trained on: "
                         f"train.setup must be one of {_SETUPS}, got {cfg.train.setup!r} "
                         "(frozen trains on cached features without a sampler)")
    if cfg.train.sampler not in ("random", "weighted_file"):
        log.warning("train.sampler %r is replaced by the ensemble's weighted_file sampler",
                    cfg.train.sampler)
    if getattr(cfg.data, "extra_train", None) is not None:
        raise ValueError("bagging/boosting weight the dataset's own training images; "
                         "unset data.extra_train (generated images) in the base config")
    table = load_run_table(cfg)
    if table.task != "multilabel":
        raise ValueError(f"bagging/boosting support multi-label datasets; {table.source} is "
                         f"{table.task}")
    rows = table.split(cfg.data.train_split)
    return (rows["id"].astype(str).tolist(), rows[table.label_names].to_numpy(dtype=np.int64),
            table.label_names)


def _check_members(n_members: int) -> None:
    if int(n_members) < 2:
        raise ValueError(f"an ensemble needs at least 2 members; got {n_members}")


@TRAINED_ENSEMBLES.register("bagging")
def bagging(cfg: RunConfig, n_members: int, out_dir: Path, tune: bool = False,
            progress: bool = True, train_fn: Callable[..., Path] | None = None) -> Path:
    """Train ``n_members`` members on bootstrap resamples, soft-vote them into ``out_dir``.

    Args:
        cfg: Base config of one member (``output`` is replaced per member).
        n_members: Number of members ``M >= 2``.
        out_dir: The ensemble's run folder; members go to ``out_dir/members``.
        tune: Label predictions with thresholds tuned on validation.
        progress: Show training progress bars.
        train_fn: The training entry point (default :func:`funduslab.training.runner.run`).
    """
    from funduslab.training.runner import run

    _check_members(n_members)
    train_fn = train_fn or run
    ids, _, _ = _train_split(cfg)
    members_dir = Path(out_dir) / "members"
    run_dirs = []
    for m in range(int(n_members)):
        counts = bootstrap_counts(len(ids), cfg.train.seed, m)
        weights_file = members_dir / f"member{m}" / "sample_weights.csv"
        write_sample_weights(weights_file, ids, counts)
        log.info("bagging member %d/%d: %d distinct of %d images", m + 1, n_members,
                 int((counts > 0).sum()), len(ids))
        member_cfg = _member_config(cfg, members_dir, m, weights_file)
        run_dirs.append(train_fn(member_cfg, progress=progress))
    extra = {"trained": "bagging", "n_members": int(n_members), "seed": cfg.train.seed,
             "base_config": cfg.model_dump(mode="json")}
    return write_ensemble_run(load_members(run_dirs), "soft_voting", Path(out_dir), tune=tune,
                              extra_config=extra)


@TRAINED_ENSEMBLES.register("boosting")
def boosting(cfg: RunConfig, n_members: int, out_dir: Path, tune: bool = False,
             progress: bool = True, train_fn: Callable[..., Path] | None = None) -> Path:
    """Train up to ``n_members`` AdaBoost members in sequence; weighted-average them.

    Arguments as :func:`bagging`. ``config.yaml`` records each member's ``eps`` and ``alpha``.
    """
    from funduslab.training.runner import run

    _check_members(n_members)
    train_fn = train_fn or run
    ids, y_train, names = _train_split(cfg)
    members_dir = Path(out_dir) / "members"
    weights = np.ones(len(ids))
    run_dirs, alphas, history = [], [], []
    for m in range(int(n_members)):
        weights_file = members_dir / f"member{m}" / "sample_weights.csv"
        write_sample_weights(weights_file, ids, weights)
        run_dir = train_fn(_member_config(cfg, members_dir, m, weights_file), progress=progress)
        pred_ids, probs = read_predictions(run_dir, cfg.data.train_split, names)
        if pred_ids != ids:
            raise ValueError(f"{run_dir}/predictions/{cfg.data.train_split}.csv is not in the "
                             "training split's order")
        new_weights, alpha, eps = boosting_update(weights, y_train, probs)
        history.append({"member": str(run_dir), "eps": eps, "alpha": alpha})
        log.info("boosting member %d/%d: weighted error %.4f, alpha %.4f", m + 1, n_members,
                 eps, alpha)
        if eps >= 0.5:
            log.warning("boosting stopped: member %d is no better than chance (eps %.3f)", m, eps)
            break
        run_dirs.append(run_dir)
        alphas.append(max(alpha, _EPS))
        weights = new_weights
    if len(run_dirs) < 2:
        raise ValueError(f"boosting kept {len(run_dirs)} member(s): member {len(run_dirs)} had "
                         f"weighted error {history[-1]['eps']:.3f} >= 0.5; train members longer")
    extra: dict[str, Any] = {"trained": "boosting", "n_members": len(run_dirs),
                             "rounds": history, "base_config": cfg.model_dump(mode="json")}
    return write_ensemble_run(load_members(run_dirs), "weighted", Path(out_dir),
                              params={"weights": [float(a) for a in alphas]}, tune=tune,
                              extra_config=extra)
