"""Preprocessing pipelines: an ordered list of registered steps with their parameters.

A pipeline is written as a list of step names or ``{"name": ..., <params>}`` mappings, or as a
compact string ``"circle_crop,clahe:clip_limit=3.0:tile_grid=8,resize:size=256"`` (steps
separated by ``,``; ``:key=value`` pairs after a name; ``8x8`` is a list of ints; ``true``/``false``
are booleans). Its :meth:`Pipeline.spec` is canonical — every parameter, defaults included, in
sorted order — so two pipelines that compute the same thing have the same spec, and the spec can
key a cache.

:data:`NAMED_PIPELINES` holds the variants compared in the DR preprocessing study (none, FOV crop,
CLAHE, crop + CLAHE, Ben Graham, Ben Graham + blur, unsharp mask); :func:`named_pipeline` appends
the resize to the training size.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from funduslab.preprocess.registry import PREPROCESS

__all__ = ["NAMED_PIPELINES", "Pipeline", "StepSpec", "build_pipeline", "named_pipeline"]

StepSpec = str | Mapping[str, Any]

NAMED_PIPELINES: dict[str, tuple[StepSpec, ...]] = {
    "none": (),
    "circle_crop": ("circle_crop",),
    "clahe": ("clahe",),
    "circle_crop+clahe": ("circle_crop", "clahe"),
    "ben_graham": ("ben_graham",),
    "ben_graham+blur": ("ben_graham", {"name": "gaussian_blur", "sigma": 1.0}),
    "sharpen": ("sharpen",),
}

_GRID = re.compile(r"^\d+(x\d+)+$")


def _parse_value(text: str) -> Any:
    """Turn a ``key=value`` value into bool/None/int/float/list of ints, else keep the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if _GRID.match(low):
        return [int(v) for v in low.split("x")]
    for cast in (int, float):
        try:
            return cast(low)
        except ValueError:
            pass
    return text.strip()


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _parse_string(text: str) -> list[dict[str, Any]]:
    """``"a,b:k=v:k2=v2"`` → ``[{"name": "a"}, {"name": "b", "k": v, "k2": v2}]``."""
    steps: list[dict[str, Any]] = []
    stripped = text.strip()
    if stripped.lower() in ("", "none"):
        return steps
    for token in stripped.split(","):
        parts = [p.strip() for p in token.split(":")]
        if not parts[0]:
            raise ValueError(f"empty step name in pipeline string {text!r}")
        step: dict[str, Any] = {"name": parts[0]}
        for part in parts[1:]:
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    f"cannot parse {part!r} in pipeline string {text!r}; "
                    "write parameters as step:key=value (e.g. resize:size=256)"
                )
            step[key.strip()] = _parse_value(value)
        steps.append(step)
    return steps


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars → Python, tuples → lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _step_defaults(name: str) -> dict[str, Any]:
    """Keyword parameters of a registered step and their defaults (``inspect.Parameter.empty``)."""
    fn = PREPROCESS.get(name)
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop the image argument
    return {p.name: p.default for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _canonical_step(step: StepSpec) -> tuple[str, dict[str, Any]]:
    """Resolve one step spec to ``(name, full parameter dict)``; errors name the step."""
    if isinstance(step, str):
        parsed = _parse_string(step)
        if len(parsed) != 1:
            raise ValueError(f"expected one pipeline step, got {step!r}")
        step = parsed[0]
    if not isinstance(step, Mapping):
        raise TypeError(
            f"a pipeline step must be a name or a mapping with a 'name' key, got {step!r}"
        )
    given = dict(step)
    name = given.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"pipeline step {step!r} lacks a 'name' (one of {PREPROCESS.names()})")
    if isinstance(given.get("params"), Mapping):
        given.update(given.pop("params"))
    defaults = _step_defaults(name)  # raises ValueError listing valid step names
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"preprocessing step {name!r} has no parameter(s) {unknown}; "
            f"its parameters are {sorted(defaults)}"
        )
    full: dict[str, Any] = {}
    for key in sorted(defaults):
        default = defaults[key]
        if key not in given:
            if default is inspect.Parameter.empty:
                raise ValueError(f"preprocessing step {name!r} needs parameter {key!r}")
            value = default
        else:
            value = given[key]
        value = _jsonable(value)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # 2 and 2.0 mean the same; keep one spelling for the spec
        full[key] = value
    return name, full


class Pipeline:
    """An ordered, deterministic sequence of preprocessing steps.

    Args:
        steps: Step names / ``{"name": ..., **params}`` mappings (``{"name": ..., "params":
            {...}}`` is accepted too), or one compact string (see the module docstring).
            ``None``, ``""`` and ``"none"`` give the identity pipeline.

    Raises:
        ValueError: for an unknown step (the message lists the valid names), an unknown
            parameter (the message lists the step's parameters) or an unparsable string.

    Example:
        >>> Pipeline("circle_crop,resize:size=64").spec()[1]
        {'name': 'resize', 'pad_to_square': True, 'size': 64}
    """

    def __init__(self, steps: str | Sequence[StepSpec] | Pipeline | None = None) -> None:
        if steps is None:
            items: Sequence[StepSpec] = []
        elif isinstance(steps, str):
            items = _parse_string(steps)
        elif isinstance(steps, Pipeline):
            items = steps.spec()
        else:
            items = list(steps)
        self._steps: list[tuple[str, dict[str, Any]]] = [_canonical_step(s) for s in items]

    @property
    def names(self) -> list[str]:
        """Step names in order."""
        return [name for name, _ in self._steps]

    def spec(self) -> list[dict[str, Any]]:
        """Canonical, JSON-serialisable description: ``[{"name": ..., <all params>}, ...]``."""
        return [{"name": name, **dict(params)} for name, params in self._steps]

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the canonical spec."""
        text = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Apply the steps in order to an ``(H, W, 3)`` uint8 RGB image; returns uint8 RGB."""
        out = rgb
        for name, params in self._steps:
            out = PREPROCESS.get(name)(out, **params)
            if not (
                isinstance(out, np.ndarray)
                and out.dtype == np.uint8
                and out.ndim == 3
                and out.shape[2] == 3
            ):
                raise TypeError(
                    f"preprocessing step {name!r} returned {type(out).__name__} "
                    f"{getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}; "
                    "steps must return (H, W, 3) uint8"
                )
        return out

    def __str__(self) -> str:
        """Compact string listing only parameters that differ from the defaults."""
        tokens = []
        for name, params in self._steps:
            defaults = _step_defaults(name)
            extra = [
                f"{k}={_format_value(v)}"
                for k, v in params.items()
                if _jsonable(defaults[k]) != v
            ]
            tokens.append(":".join([name, *extra]))
        return ",".join(tokens) or "none"

    def __repr__(self) -> str:
        return f"Pipeline({str(self)!r})"

    def __len__(self) -> int:
        return len(self._steps)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(self.fingerprint())


def named_pipeline(name: str, size: int) -> Pipeline:
    """A study variant from :data:`NAMED_PIPELINES` followed by ``resize(size)``.

    Args:
        name: One of the keys of :data:`NAMED_PIPELINES`.
        size: Training resolution in pixels (square output).

    Raises:
        ValueError: if ``name`` is unknown (the message lists the variants).
    """
    if name not in NAMED_PIPELINES:
        raise ValueError(
            f"unknown preprocessing pipeline {name!r}; valid names: {sorted(NAMED_PIPELINES)}"
        )
    return Pipeline([*NAMED_PIPELINES[name], {"name": "resize", "size": size}])


def build_pipeline(spec: str | Sequence[StepSpec] | Pipeline | None, size: int) -> Pipeline:
    """Resolve a config value to a pipeline that ends in ``resize(size)``.

    A string naming a study variant gives :func:`named_pipeline`; anything else is parsed by
    :class:`Pipeline`, and ``resize(size)`` is appended unless the last step already is a
    resize to ``size``.
    """
    if isinstance(spec, str) and spec.strip() in NAMED_PIPELINES:
        return named_pipeline(spec.strip(), size)
    pipeline = Pipeline(spec)
    last = pipeline.spec()[-1] if len(pipeline) else None
    if last is not None and last["name"] == "resize" and last["size"] == size:
        return pipeline
    return Pipeline([*pipeline.spec(), {"name": "resize", "size": size}])
