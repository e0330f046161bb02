"""Combiners: turn members' probabilities ``(M, N, K)`` into ensemble probabilities ``(N, K)``.

scikit-learn style (``__init__`` stores parameters, ``fit`` returns ``self``, learned attributes
end in ``_``, ``predict_proba`` checks it was fitted). ``fit`` only ever receives the validation
split; the run-folder writer never passes test labels. Methods (Kuncheva, *Combining Pattern
Classifiers*, Wiley 2014):

* ``max_voting`` — hard (majority) voting on each member's 0/1 decision ``p >= threshold``;
  the ensemble "probability" is the fraction of members voting positive, so a label is
  positive when at least half the members say so. **Ties** (an even number of members split
  exactly in half) count as **positive**, consistent with ``p >= 0.5`` everywhere else and
  erring toward sensitivity, which screening prefers.
* ``soft_voting`` — mean probability.
* ``weighted`` — weighted mean with weights on the simplex (``w >= 0``, ``sum w = 1``) fit on
  validation: ``objective="log_loss"`` (default) minimises the mean binary cross-entropy with
  scipy SLSQP — convex in ``w``, so the optimum is global — while
  ``objective="course_average_f1"`` maximises the course average F-score at threshold 0.5 by an
  exhaustive simplex grid of step ``1 / grid_steps``. Both also score every single member
  (a simplex vertex) and keep the best, so the ensemble is never worse than the best member on
  validation by construction. Ties go to the first candidate (uniform weights are tried first).
  Because the weights are chosen on validation, its validation predictions are out-of-fold
  (``cv`` folds: weights fit on the other folds), as for stacking: an in-sample validation score
  would win every comparison on validation by construction.
* ``stacking`` (Wolpert, Neural Networks 1992) — per class, a meta-model (logistic regression on
  the members' logits, or gradient boosting) fit on validation probabilities; the validation
  predictions it reports are out-of-fold (``cross_val_predict``, stratified ``cv`` folds), so
  validation metrics are not in-sample.

**One definition per rule.** Each combiner's :meth:`~_Combiner.rule` is the combination written
once, in torch on float64 ``(M, B, K)`` probabilities, from the numbers :meth:`~_Combiner.numbers`
returns. ``predict_proba`` calls it here, and :class:`funduslab.ensemble.bundle.EnsembleModel`
calls the same rule inside a saved ensemble (``ensemble.pt``), so the two cannot drift apart.
A new combiner is one registered class in this file.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_is_fitted

from funduslab.ensemble.weight_search import EPS, log_loss, log_loss_grad, simplex_grid
from funduslab.metrics import course_average_f1
from funduslab.registry import Registry

__all__ = [
    "ENSEMBLES",
    "MaxVoting",
    "SoftVoting",
    "Stacking",
    "WeightedAveraging",
    "check_member_probs",
]

log = logging.getLogger(__name__)

ENSEMBLES: Registry = Registry("ensemble method")

GRADIENT_BOOSTING_HINT = (
    "stacking with a gradient_boosting meta-model is a tree ensemble, not a formula a bundle can "
    "hold; refit the ensemble with `--meta logistic` to save it as one file")


def check_member_probs(P: Any, name: str = "P") -> np.ndarray:
    """``(M, N, K)`` float64 probabilities in [0, 1] (``ValueError`` otherwise)."""
    arr = np.asarray(P, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be (members, samples, classes); got shape {arr.shape}")
    if arr.shape[0] < 1 or not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise ValueError(f"{name} must hold finite probabilities in [0, 1] for >= 1 member")
    return arr


def _check_targets(y: Any, P: np.ndarray) -> np.ndarray:
    if y is None:
        raise ValueError("this ensemble method is fit on labelled validation data; y is None")
    t = np.asarray(y)
    if t.ndim == 1:
        t = t[:, None]
    if t.shape != P.shape[1:]:
        raise ValueError(f"y has shape {t.shape}; expected {P.shape[1:]} (samples, classes)")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("y must be 0/1 per class")
    return t.astype(np.int64)


class _Combiner(BaseEstimator):
    """Shared ``fit`` checks, ``predict_proba`` through :meth:`rule`, and ``predict``.

    Attributes:
        method: The registry name, also stored in bundles.
    """

    method = ""

    @staticmethod
    def rule(P: torch.Tensor, numbers: dict[str, Any]) -> torch.Tensor:
        """Members' probabilities ``(M, B, K)`` float64 → ensemble probabilities ``(B, K)``."""
        raise NotImplementedError

    def numbers(self) -> dict[str, Any]:
        """The fitted numbers :meth:`rule` applies (tensors, floats): what a bundle stores.

        Raises:
            ValueError: the fitted combiner is not a formula a bundle can hold.
        """
        return {}

    @staticmethod
    def check_numbers(numbers: dict[str, Any], n_members: int) -> None:
        """Raise ``ValueError`` when ``numbers`` do not fit ``n_members`` members."""

    def _fit_shapes(self, P: np.ndarray) -> None:
        self.n_members_, _, self.n_classes_ = P.shape

    def _check_predict(self, P: Any) -> np.ndarray:
        check_is_fitted(self)
        P = check_member_probs(P)
        if (P.shape[0], P.shape[2]) != (self.n_members_, self.n_classes_):
            raise ValueError(f"fitted on {self.n_members_} members × {self.n_classes_} classes; "
                             f"got {P.shape[0]} × {P.shape[2]}")
        return P

    def predict_proba(self, P: Any) -> np.ndarray:
        """``(N, K)`` ensemble probabilities of members' probabilities ``(M, N, K)``."""
        P = self._check_predict(P)
        return self.rule(torch.from_numpy(P), self.numbers()).numpy()

    def predict(self, P: Any, threshold: float | np.ndarray = 0.5) -> np.ndarray:
        """``(N, K)`` 0/1 labels: ``predict_proba(P) >= threshold``."""
        return (self.predict_proba(P) >= np.asarray(threshold)).astype(np.int64)


@ENSEMBLES.register("max_voting")
class MaxVoting(_Combiner):
    """Hard majority voting; ``predict_proba`` is the fraction of members voting positive.

    Args:
        threshold: Member decision threshold on probabilities.
    """

    method = "max_voting"

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def fit(self, P: Any, y: Any = None) -> MaxVoting:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1]; got {self.threshold!r}")
        self._fit_shapes(check_member_probs(P))
        return self

    @staticmethod
    def rule(P: torch.Tensor, numbers: dict[str, Any]) -> torch.Tensor:
        return (P >= float(numbers["threshold"])).double().mean(0)

    def numbers(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold)}


@ENSEMBLES.register("soft_voting")
class SoftVoting(_Combiner):
    """Mean of the members' probabilities."""

    method = "soft_voting"

    def fit(self, P: Any, y: Any = None) -> SoftVoting:
        self._fit_shapes(check_member_probs(P))
        return self

    @staticmethod
    def rule(P: torch.Tensor, numbers: dict[str, Any]) -> torch.Tensor:
        return P.mean(0)


@ENSEMBLES.register("weighted")
class WeightedAveraging(_Combiner):
    """Weighted mean of the members' probabilities; weights fit on validation (see module doc).

    Args:
        objective: ``"log_loss"`` (minimise, SLSQP) or ``"course_average_f1"`` (maximise, grid).
        grid_steps: Grid resolution for ``course_average_f1`` (weights are multiples of 1/steps).
        weights: Fixed weights (normalised to sum 1); ``fit`` then learns nothing. Used by boosting.
        cv: Folds for the out-of-fold validation predictions (``oof_proba_``); 0 turns them off.
    """

    method = "weighted"

    _OBJECTIVES = ("log_loss", "course_average_f1")

    def __init__(self, objective: str = "log_loss", grid_steps: int = 10,
                 weights: list[float] | None = None, cv: int = 5) -> None:
        self.objective = objective
        self.grid_steps = grid_steps
        self.weights = weights
        self.cv = cv

    def fit(self, P: Any, y: Any = None) -> WeightedAveraging:
        P = check_member_probs(P)
        self._fit_shapes(P)
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (P.shape[0],) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {P.shape[0]} non-negative numbers, not all 0; "
                                 f"got {self.weights!r}")
            self.weights_ = w / w.sum()
            self.val_score_ = None
            return self
        if self.objective not in self._OBJECTIVES:
            raise ValueError(f"objective must be one of {self._OBJECTIVES}; got {self.objective!r}")
        t = _check_targets(y, P)
        self.weights_, self.val_score_ = self._search(P, t)
        log.info("weighted ensemble: weights %s, val %s %.4f", np.round(self.weights_, 3),
                 self.objective, self.val_score_)
        n = P.shape[1]
        if int(self.cv) >= 2 and n >= int(self.cv):
            oof = np.empty(P.shape[1:], dtype=np.float64)
            folds = KFold(int(self.cv), shuffle=True, random_state=0)
            for fit_idx, held in folds.split(np.arange(n)):
                w, _ = self._search(P[:, fit_idx], t[fit_idx])
                oof[held] = np.tensordot(w, P[:, held], axes=1)
            self.oof_proba_ = oof
        return self

    def _search(self, P: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
        """The best weights on ``(P, t)`` and their objective value."""
        M = P.shape[0]
        vertices = list(np.eye(M))
        if self.objective == "log_loss":
            uniform = np.full(M, 1.0 / M)
            res = minimize(log_loss, uniform, args=(P, t), jac=log_loss_grad, method="SLSQP",
                           bounds=[(0.0, 1.0)] * M,
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}])
            opt = np.clip(res.x, 0.0, None)
            candidates = [uniform, opt / opt.sum(), *vertices]
            scores = [-log_loss(w, P, t) for w in candidates]
        else:
            if int(self.grid_steps) < 1:
                raise ValueError(f"grid_steps must be >= 1; got {self.grid_steps!r}")
            grid = simplex_grid(M, int(self.grid_steps))
            candidates = [np.full(M, 1.0 / M), *grid, *vertices]
            scores = [course_average_f1(t, (np.tensordot(w, P, axes=1) >= 0.5).astype(int))
                      for w in candidates]
        best = int(np.argmax(scores))  # first maximum: uniform, then optimiser/grid, then members
        sign = -1.0 if self.objective == "log_loss" else 1.0
        return np.asarray(candidates[best], dtype=np.float64), sign * float(scores[best])

    @staticmethod
    def rule(P: torch.Tensor, numbers: dict[str, Any]) -> torch.Tensor:
        return torch.einsum("m,mbk->bk", torch.as_tensor(numbers["weights"]).double(), P)

    def numbers(self) -> dict[str, Any]:
        check_is_fitted(self)
        return {"weights": torch.as_tensor(np.asarray(self.weights_, dtype=np.float64))}

    @staticmethod
    def check_numbers(numbers: dict[str, Any], n_members: int) -> None:
        shape = tuple(torch.as_tensor(numbers["weights"]).shape)
        if shape != (n_members,):
            raise ValueError(f"weights have shape {shape}; expected ({n_members},)")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


@ENSEMBLES.register("stacking")
class Stacking(_Combiner):
    """Per-class meta-model on the members' probabilities for that class (see module doc).

    Args:
        meta: ``"logistic"`` (L2 logistic regression on member logits, ``C``) or
            ``"gradient_boosting"`` (scikit-learn ``GradientBoostingClassifier``, 50 trees of
            depth 2).
        cv: Folds for the out-of-fold validation predictions (reduced to the smaller class count).
        C: Inverse regularisation strength of the logistic meta-model.
        random_state: Seed of the fold shuffling and gradient boosting.
    """

    method = "stacking"

    _METAS = ("logistic", "gradient_boosting")

    def __init__(self, meta: str = "logistic", cv: int = 5, C: float = 1.0,
                 random_state: int = 0) -> None:
        self.meta = meta
        self.cv = cv
        self.C = C
        self.random_state = random_state

    def _meta_model(self) -> BaseEstimator:
        if self.meta == "logistic":
            return LogisticRegression(C=self.C, max_iter=1000)
        return GradientBoostingClassifier(n_estimators=50, max_depth=2,
                                          random_state=self.random_state)

    def fit(self, P: Any, y: Any = None) -> Stacking:
        if self.meta not in self._METAS:
            raise ValueError(f"meta must be one of {self._METAS}; got {self.meta!r}")
        if int(self.cv) < 2:
            raise ValueError(f"cv must be >= 2 folds; got {self.cv!r}")
        P = check_member_probs(P)
        t = _check_targets(y, P)
        self._fit_shapes(P)
        self.models_, oof = [], np.empty(t.shape, dtype=np.float64)
        for k in range(t.shape[1]):
            X, yk = _logit(P[:, :, k].T), t[:, k]  # (N, M)
            smaller = int(min(yk.sum(), len(yk) - yk.sum()))
            model = self._meta_model() if smaller >= 2 else DummyClassifier(strategy="prior")
            if smaller < 2:
                log.warning("stacking: class %d has %d sample(s) of one label in validation; "
                            "using the validation prevalence", k, smaller)
                oof[:, k] = yk.mean()
            else:
                folds = StratifiedKFold(min(int(self.cv), smaller), shuffle=True,
                                        random_state=self.random_state)
                oof[:, k] = cross_val_predict(clone(model), X, yk, cv=folds,
                                              method="predict_proba")[:, 1]
            self.models_.append(model.fit(X, yk))
        self.oof_proba_ = oof
        return self

    @staticmethod
    def rule(P: torch.Tensor, numbers: dict[str, Any]) -> torch.Tensor:
        """Logistic meta-model per class on the members' logits; constant-prior classes."""
        z = torch.logit(P.clamp(EPS, 1 - EPS))  # (M, B, K), as the meta-models were fit
        coef = torch.as_tensor(numbers["coef"]).double()
        s = torch.einsum("km,mbk->bk", coef, z) + torch.as_tensor(numbers["intercept"]).double()
        constant = torch.as_tensor(numbers["constant"]).double().expand_as(s)
        return torch.where(torch.as_tensor(numbers["is_constant"]), constant, torch.sigmoid(s))

    def numbers(self) -> dict[str, Any]:
        """Per class ``coef (K, M)``, ``intercept (K,)``, ``constant (K,)``, ``is_constant``.

        Raises:
            ValueError: a gradient-boosting meta-model (trees, not a formula).
        """
        check_is_fitted(self)
        M, K = self.n_members_, self.n_classes_
        coef, intercept = torch.zeros(K, M, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
        constant, is_constant = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.bool)
        for k, model in enumerate(self.models_):
            classes = [int(c) for c in model.classes_]
            if isinstance(model, DummyClassifier):
                prior = float(model.class_prior_[classes.index(1)]) if 1 in classes else 0.0
                constant[k], is_constant[k] = prior, True
            elif isinstance(model, LogisticRegression) and classes == [0, 1]:
                coef[k] = torch.as_tensor(model.coef_[0], dtype=torch.float64)
                intercept[k] = float(model.intercept_[0])
            else:
                raise ValueError(f"stacking class {k}: a {type(model).__name__} with classes "
                                 f"{classes} is not a formula; {GRADIENT_BOOSTING_HINT}")
        return {"coef": coef, "intercept": intercept, "constant": constant,
                "is_constant": is_constant}

    @staticmethod
    def check_numbers(numbers: dict[str, Any], n_members: int) -> None:
        shape = tuple(torch.as_tensor(numbers["coef"]).shape)
        if len(shape) != 2 or shape[1] != n_members:
            raise ValueError(f"stacking coef has shape {shape}; expected (K, {n_members})")

    def predict_proba(self, P: Any) -> np.ndarray:
        if self.meta == "logistic":
            return super().predict_proba(P)
        P = self._check_predict(P)  # gradient boosting: the trees themselves
        cols = [_positive_proba(m, _logit(P[:, :, k].T)) for k, m in enumerate(self.models_)]
        return np.stack(cols, axis=1)


def _positive_proba(model: BaseEstimator, X: np.ndarray) -> np.ndarray:
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(X))
