"""Metrics: multi-label detection, ordinal grading, calibration, bootstrap intervals — one home.

Everything that reports a number (training logs, ``metrics.json``, reports, ensembles) calls these
functions; see DESIGN.md, "Metrics have one home".
"""

from funduslab.metrics.bootstrap import BootstrapCI, bootstrap_ci, bootstrap_metrics
from funduslab.metrics.calibration import (
    ReliabilityBins,
    ece_per_class,
    expected_calibration_error,
    reliability_bins,
)
from funduslab.metrics.grading import (
    apply_grade_thresholds,
    cohen_kappa,
    grading_metrics,
    optimize_grade_thresholds,
)
from funduslab.metrics.multilabel import (
    apply_thresholds,
    auroc_per_class,
    average_precision_per_class,
    course_average_f1,
    multilabel_metrics,
    per_class_report,
    tune_thresholds,
)

__all__ = [
    "BootstrapCI",
    "ReliabilityBins",
    "apply_grade_thresholds",
    "apply_thresholds",
    "auroc_per_class",
    "average_precision_per_class",
    "bootstrap_ci",
    "bootstrap_metrics",
    "cohen_kappa",
    "course_average_f1",
    "ece_per_class",
    "expected_calibration_error",
    "grading_metrics",
    "multilabel_metrics",
    "optimize_grade_thresholds",
    "per_class_report",
    "reliability_bins",
    "tune_thresholds",
]
