"""The course hand-in: run folders → one zip with ``<team>.py``, ``readme.md`` and
``<team>_task<k>-<j>.pt`` files the course template can load (``funduslab bundle``).

Modules: :mod:`.standalone` (the predictor that becomes ``<team>.py``; torch, torchvision, timm,
Pillow, pandas and numpy only), :mod:`.export` (model → torchvision / timm / wrapped state dict,
checked against funduslab's logits), :mod:`.plan` (tasks and file names), :mod:`.readme`,
:mod:`.bundle` (the zip).
"""

from funduslab.handin.bundle import BundleReport, bundle_runs

__all__ = ["BundleReport", "bundle_runs"]
