"""The registry of preprocessing steps (``circle_crop``, ``ben_graham``, ``clahe`` …).

Every step is a function ``step(rgb, **params) -> rgb`` on ``(H, W, 3)`` ``uint8`` RGB arrays,
registered with ``@PREPROCESS.register("name")``; pipelines and configs refer to steps by name.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from funduslab.registry import Registry

__all__ = ["PREPROCESS", "PreprocessFn"]

PreprocessFn = Callable[..., np.ndarray]

PREPROCESS: Registry[PreprocessFn] = Registry("preprocessing step")
