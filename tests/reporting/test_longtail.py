"""Long-tail report: per-label AUROC agrees with scikit-learn, CIs bracket it, rare labels flagged."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from funduslab.reporting.longtail import long_tail_report, render_long_tail


@pytest.fixture()
def scored():
    rng = np.random.default_rng(0)
    y = np.zeros((300, 3), dtype=int)
    y[:150, 0] = 1        # common label
    y[:40, 1] = 1         # mid
    y[::60, 2] = 1        # 5 positives: rare
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, y.shape), 0, 1)
    return y, p


def test_auroc_matches_sklearn_and_ci_brackets_point(scored):
    y, p = scored
    rep = long_tail_report(y, p, ["a", "b", "c"], train_positives=[400, 90, 6], n_boot=200)
    for k, row in enumerate(rep["labels"]):
        assert row["auroc"] == pytest.approx(roc_auc_score(y[:, k], p[:, k]))
        assert row["ci_low"] <= row["auroc"] <= row["ci_high"]
    assert rep["macro_auroc"]["value"] == pytest.approx(
        np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(3)]))
    assert rep["micro_auroc"]["value"] == pytest.approx(roc_auc_score(y.ravel(), p.ravel()))
    assert [r["rare"] for r in rep["labels"]] == [False, False, True]
    # the rare label's interval is the widest: few positives, little certainty
    widths = [r["ci_high"] - r["ci_low"] for r in rep["labels"]]
    assert widths[2] > widths[0]


def test_rare_flag_falls_back_to_split_positives_and_markdown_lists_rarest_first(scored):
    y, p = scored
    rep = long_tail_report(y, p, ["a", "b", "c"], n_boot=50)
    assert [r["rare"] for r in rep["labels"]] == [False, False, True]
    md = render_long_tail(rep)
    body = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert body[0].startswith("| c |") and "**rare**" in body[0]
    assert "macro auroc" in md


def test_label_without_positives_is_nan_not_an_error():
    y = np.zeros((20, 2), dtype=int)
    y[:10, 0] = 1
    p = np.random.default_rng(1).uniform(size=(20, 2))
    rep = long_tail_report(y, p, ["x", "y"], n_boot=20)
    assert np.isnan(rep["labels"][1]["auroc"])
    assert "—" in render_long_tail(rep)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="label names"):
        long_tail_report(np.zeros((4, 2)), np.zeros((4, 3)), ["a", "b"])
