"""Experiment presets (``funduslab suite <name>``): the course tasks and the demo.

A preset is a function ``(data, team, out, quick, seeds, source, sets, **options) -> Path`` (the
results.md it wrote), registered by name in :data:`PRESETS`. Inside, it is data: a
:class:`~funduslab.experiments.study.Study` (base config, rows of overrides, seeds, a quick
overlay, an optional combine step, a renderer) run by
:func:`~funduslab.experiments.study.run_study`.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from funduslab.registry import Registry

__all__ = ["PRESETS", "parse_preset_options", "run_preset"]

PRESETS: Registry = Registry("preset")


def run_preset(name: str, sets: Sequence[str] = (), **kwargs: Any) -> Path:
    """Run a registered preset (``ValueError`` lists the valid names).

    ``sets`` are ``key=value`` config overrides with dotted keys (``train.epochs=6``) laid over
    every row of the preset's study, after its quick overlay; an unknown key raises
    ``ValueError`` listing the valid keys of its section.
    """
    return PRESETS.get(name)(sets=tuple(sets), **kwargs)


def parse_preset_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["epochs=6", "resnet_image_size=128"]`` → typed kwargs of preset ``name``.

    Values are converted to the type of the preset parameter (its default's, or for a ``None``
    default its annotation's: ``int | None`` takes an integer or ``none``). A bool takes
    ``true/false``, ``yes/no``, ``on/off`` or ``1/0``; a number must be finite. An unknown key,
    a malformed pair or a value of the wrong kind raises ``ValueError`` naming the option.
    """
    preset = PRESETS.get(name)
    params = inspect.signature(preset).parameters
    fixed = {"data", "team", "out", "quick", "seeds", "source", "sets"}
    allowed = {k: p for k, p in params.items() if k not in fixed}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise ValueError(f"preset option {pair!r} not understood; {name} takes "
                             f"KEY=VALUE with KEY one of: {', '.join(sorted(allowed)) or 'none'}")
        options[key] = _convert_option(name, key, value, allowed[key].default,
                                       _hint(preset, key))
    return options


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


def _hint(preset: Any, key: str) -> Any:
    try:
        return typing.get_type_hints(preset).get(key)
    except (NameError, TypeError):  # an annotation that does not resolve: go by the default
        return None


def _convert_option(name: str, key: str, value: str, default: Any, hint: Any) -> Any:
    """``value`` as the type of preset option ``key`` (see :func:`parse_preset_options`)."""
    kind: Any = type(default)
    if default is None:
        kinds = [a for a in typing.get_args(hint) if a is not type(None)] or [str]
        if value.strip().lower() in ("none", "null"):
            return None
        kind = kinds[0] if kinds[0] in (bool, int, float) else str
    if kind is bool:
        word = value.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ValueError(f"preset {name} option {key}={value!r}: expected true or false")
    if kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise ValueError(f"preset {name} option {key}={value!r}: expected {what}") from None
        if not math.isfinite(number):
            raise ValueError(f"preset {name} option {key}={value!r}: expected a finite number")
        return number
    return value


from funduslab.experiments import course_task1  # noqa: E402,F401  (registers "course-task1")
from funduslab.experiments import course_task2  # noqa: E402,F401  (registers "course-task2")
from funduslab.experiments import course_task3  # noqa: E402,F401  (registers "course-task3")
from funduslab.experiments import course_task4  # noqa: E402,F401  (registers "course-task4")
from funduslab.experiments import screening  # noqa: E402,F401  (registers "screening")
from funduslab.experiments import dr_grading  # noqa: E402,F401  (registers "dr-grading")
from funduslab.experiments import lesion_patches  # noqa: E402,F401  (registers "lesion-patches")
from funduslab.experiments import course_best  # noqa: E402,F401  (registers "course-best")
