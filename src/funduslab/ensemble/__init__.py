"""Ensembles from run folders (voting, weighted, stacking) or trained here (bagging, boosting).

``ENSEMBLES`` holds combiners of existing members' saved probabilities; ``TRAINED_ENSEMBLES``
holds methods that train their own members with :func:`funduslab.training.runner.run`. Every
ensemble writes a run folder shaped like a single model's.
"""

from funduslab.ensemble.bundle import (
    EnsembleModel,
    load_ensemble_bundle,
    save_ensemble_bundle,
)
from funduslab.ensemble.combiners import (
    ENSEMBLES,
    MaxVoting,
    SoftVoting,
    Stacking,
    WeightedAveraging,
)
from funduslab.ensemble.members import EnsembleData, load_members
from funduslab.ensemble.resampled import TRAINED_ENSEMBLES, bagging, boosting
from funduslab.ensemble.run_folder import build_combiner, combine, write_ensemble_run

__all__ = [
    "ENSEMBLES",
    "TRAINED_ENSEMBLES",
    "EnsembleData",
    "EnsembleModel",
    "MaxVoting",
    "SoftVoting",
    "Stacking",
    "WeightedAveraging",
    "bagging",
    "boosting",
    "build_combiner",
    "combine",
    "save_ensemble_bundle",
    "load_ensemble_bundle",
    "load_members",
    "write_ensemble_run",
]
