"""Fundus preprocessing: registered image operations and pipelines built from them.

Importing this package registers the built-in steps (:mod:`funduslab.preprocess.ops`) in
:data:`PREPROCESS`.
"""

from funduslab.preprocess import ops as ops
from funduslab.preprocess.pipeline import (
    NAMED_PIPELINES,
    Pipeline,
    StepSpec,
    build_pipeline,
    named_pipeline,
)
from funduslab.preprocess.registry import PREPROCESS, PreprocessFn

__all__ = [
    "NAMED_PIPELINES",
    "PREPROCESS",
    "Pipeline",
    "PreprocessFn",
    "StepSpec",
    "build_pipeline",
    "named_pipeline",
    "ops",
]
