"""Combiners on hand-built member probabilities, checked against numpy / scikit-learn."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss

from funduslab.ensemble import ENSEMBLES, EnsembleData, combine
from funduslab.ensemble.combiners import (
    MaxVoting,
    SoftVoting,
    Stacking,
    WeightedAveraging,
)
from funduslab.ensemble.run_folder import build_combiner
from funduslab.ensemble.weight_search import simplex_grid


def _members(seed: int = 0, n: int = 60, k: int = 3, noise=(0.15, 0.35, 0.6)):
    """Members of decreasing quality around a known truth: ``(M, N, K)`` probs and ``(N, K)`` y."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(int)
    # each member moves every probability from the truth toward the wrong side by |N(0, s)|
    P = np.stack([np.clip(y + (1 - 2 * y) * np.abs(rng.normal(0, s, y.shape)), 0.01, 0.99)
                  for s in noise])
    return P, y


def _course_f1(y, pred):
    return np.mean([f1_score(y[:, c], pred[:, c], average="macro") for c in range(y.shape[1])])


def test_registry_lists_the_four_methods_and_rejects_unknown():
    assert ENSEMBLES.names() == ["max_voting", "soft_voting", "stacking", "weighted"]
    assert all(ENSEMBLES.get(n).method == n for n in ENSEMBLES.names())  # the name in bundles
    with pytest.raises(ValueError, match="max_voting, soft_voting, stacking, weighted"):
        ENSEMBLES.get("median")
    with pytest.raises(ValueError, match="no parameter"):
        build_combiner("soft_voting", meta="logistic")


def test_soft_voting_is_the_mean_probability():
    P, y = _members()
    np.testing.assert_allclose(SoftVoting().fit(P).predict_proba(P), P.mean(axis=0))


def test_max_voting_is_the_majority_of_member_decisions():
    # 3 members, 1 sample, 3 classes: votes (1,1,0) → 1, (0,0,1) → 0, (1,1,1) → 1
    P = np.array([[[0.9, 0.2, 0.7]], [[0.6, 0.4, 0.8]], [[0.1, 0.7, 0.5]]])
    mv = MaxVoting().fit(P)
    np.testing.assert_allclose(mv.predict_proba(P), [[2 / 3, 1 / 3, 1.0]])
    np.testing.assert_array_equal(mv.predict(P), [[1, 0, 1]])
    # member threshold 0.75: decisions (1,0,0),(0,0,1),(0,0,0) → 1/3, 0, 1/3
    strict = MaxVoting(threshold=0.75).fit(P)
    np.testing.assert_allclose(strict.predict_proba(P), [[1 / 3, 0, 1 / 3]])


def test_max_voting_ties_count_as_positive():
    P = np.array([[[0.9, 0.1]], [[0.2, 0.3]]])  # class 0 split 1–1 (tie), class 1 0–2
    mv = MaxVoting().fit(P)
    np.testing.assert_allclose(mv.predict_proba(P), [[0.5, 0.0]])
    np.testing.assert_array_equal(mv.predict(P), [[1, 0]])


def test_weighted_log_loss_weights_on_simplex_and_beat_every_member():
    P, y = _members()
    w = WeightedAveraging().fit(P, y)
    assert (w.weights_ >= 0).all() and w.weights_.sum() == pytest.approx(1.0)
    ens = log_loss(y.ravel(), w.predict_proba(P).ravel())
    members = [log_loss(y.ravel(), p.ravel()) for p in P]
    assert ens <= min(members) + 1e-9
    assert ens <= log_loss(y.ravel(), P.mean(0).ravel()) + 1e-9
    assert w.val_score_ == pytest.approx(ens, rel=1e-5)
    assert np.argmax(w.weights_) == 0  # the least noisy member gets the most weight
    np.testing.assert_allclose(w.predict_proba(P), np.tensordot(w.weights_, P, axes=1))


def test_weighted_f1_grid_is_at_least_the_best_member_on_val():
    P, y = _members(seed=3, noise=(0.45, 0.5, 0.55))
    w = WeightedAveraging(objective="course_average_f1", grid_steps=10).fit(P, y)
    assert (w.weights_ >= 0).all() and w.weights_.sum() == pytest.approx(1.0)
    assert np.allclose(w.weights_ * 10, np.round(w.weights_ * 10))  # on the 0.1 grid
    ens = _course_f1(y, (w.predict_proba(P) >= 0.5).astype(int))
    best_member = max(_course_f1(y, (p >= 0.5).astype(int)) for p in P)
    assert ens >= best_member
    assert w.val_score_ == pytest.approx(ens)


def test_weighted_validation_predictions_are_out_of_fold():
    P, y = _members()
    w = WeightedAveraging(cv=4).fit(P, y)
    assert w.oof_proba_.shape == y.shape
    # each held-out fold is the weighted mean under weights fit on the other three folds
    from sklearn.model_selection import KFold

    for fit_idx, held in KFold(4, shuffle=True, random_state=0).split(np.arange(y.shape[0])):
        part = WeightedAveraging(cv=0).fit(P[:, fit_idx], y[fit_idx])
        np.testing.assert_allclose(w.oof_proba_[held], part.predict_proba(P[:, held]))
        assert not hasattr(part, "oof_proba_")
    # in-sample log loss is the minimum over the simplex; out-of-fold cannot beat it
    assert log_loss(y.ravel(), w.oof_proba_.ravel()) >= w.val_score_ - 1e-9
    assert not hasattr(WeightedAveraging(weights=[1, 1, 1]).fit(P), "oof_proba_")


def test_weighted_fixed_weights_are_normalised_and_validated():
    P, _ = _members()
    w = WeightedAveraging(weights=[2, 1, 1]).fit(P)
    np.testing.assert_allclose(w.weights_, [0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="non-negative"):
        WeightedAveraging(weights=[1, -1, 1]).fit(P)
    with pytest.raises(ValueError, match="objective"):
        WeightedAveraging(objective="accuracy").fit(P, np.zeros(P.shape[1:], int))


def test_simplex_grid_enumerates_every_point():
    g = simplex_grid(3, 4)
    assert len(g) == comb(6, 2) == len({tuple(r) for r in g})
    np.testing.assert_allclose(g.sum(axis=1), 1.0)
    assert (g >= 0).all()


def test_stacking_meta_models_match_sklearn_and_oof_differs_from_in_sample():
    P, y = _members(n=80)
    st = Stacking(cv=4).fit(P, y)
    logit = np.log(np.clip(P, 1e-7, 1 - 1e-7) / (1 - np.clip(P, 1e-7, 1 - 1e-7)))
    for k in range(y.shape[1]):
        ref = LogisticRegression(C=1.0, max_iter=1000).fit(logit[:, :, k].T, y[:, k])
        np.testing.assert_allclose(st.predict_proba(P)[:, k],
                                   ref.predict_proba(logit[:, :, k].T)[:, 1], atol=1e-6)
    assert st.oof_proba_.shape == y.shape
    assert not np.allclose(st.oof_proba_, st.predict_proba(P))
    gb = Stacking(meta="gradient_boosting", cv=3).fit(P, y)
    assert gb.predict_proba(P).shape == y.shape


def test_stacking_single_label_class_falls_back_to_prevalence():
    P, y = _members()
    y[:, 2] = 0
    st = Stacking().fit(P, y)
    np.testing.assert_allclose(st.predict_proba(P)[:, 2], 0.0)
    np.testing.assert_allclose(st.oof_proba_[:, 2], 0.0)


@pytest.mark.parametrize("method", ["max_voting", "soft_voting", "weighted", "stacking"])
def test_combiners_need_fit_and_matching_members(method):
    P, y = _members()
    est = ENSEMBLES.get(method)()
    with pytest.raises(NotFittedError):
        est.predict_proba(P)
    est.fit(P, y)
    with pytest.raises(ValueError, match="members"):
        est.predict_proba(P[:2])


def _data(P_val, y_val, P_test, y_test) -> EnsembleData:
    n_val, n_test = P_val.shape[1], P_test.shape[1]
    return EnsembleData(
        run_dirs=[],
        label_names=["D", "G", "A"],
        ids={"val": [f"v{i}" for i in range(n_val)], "test": [f"t{i}" for i in range(n_test)]},
        probs={"val": P_val, "test": P_test},
        targets={"val": y_val, "test": y_test},
        data={"val_split": "val"},
    )


@pytest.mark.parametrize("method", ["weighted", "stacking"])
def test_fitting_never_sees_test_labels(method):
    P, y = _members(n=90)
    val, test = slice(0, 60), slice(60, 90)
    truth = _data(P[:, val], y[val], P[:, test], y[test])
    garbage = _data(P[:, val], y[val], P[:, test], 1 - y[test])
    _, a = combine(truth, build_combiner(method))
    _, b = combine(garbage, build_combiner(method))
    for split in ("val", "test"):
        np.testing.assert_array_equal(a[split], b[split])
    # …while changing the validation labels does change the fit
    _, c = combine(_data(P[:, val], 1 - y[val], P[:, test], y[test]), build_combiner(method))
    assert not np.allclose(a["test"], c["test"])
