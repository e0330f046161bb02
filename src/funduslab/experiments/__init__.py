"""Experiment presets (``funduslab suite <name>``): the course tasks and the demo.

A preset is a function ``(data, team, out, quick, seeds, source) -> Path`` (the results.md it
wrote), registered by name in :data:`PRESETS`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from funduslab.registry import Registry

__all__ = ["PRESETS", "parse_preset_options", "run_preset"]

PRESETS: Registry = Registry("preset")


def run_preset(name: str, **kwargs: Any) -> Path:
    """Run a registered preset (``ValueError`` lists the valid names)."""
    return PRESETS.get(name)(**kwargs)


def parse_preset_options(name: str, pairs: list[str]) -> dict[str, Any]:
    """``["epochs=6", "resnet_image_size=128"]`` → typed kwargs of preset ``name``.

    Values are converted with the type of the preset parameter's default; an unknown key or a
    malformed pair raises ``ValueError`` listing the preset's options.
    """
    params = inspect.signature(PRESETS.get(name)).parameters
    fixed = {"data", "team", "out", "quick", "seeds", "source"}
    allowed = {k: p for k, p in params.items() if k not in fixed}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise ValueError(f"preset option {pair!r} not understood; {name} takes "
                             f"KEY=VALUE with KEY one of: {', '.join(sorted(allowed)) or 'none'}")
        default = allowed[key].default
        if isinstance(default, bool):
            options[key] = value.lower() in {"1", "true", "yes"}
        elif isinstance(default, (int, float)):
            options[key] = type(default)(value)
        elif default is None and value.lstrip("-").isdigit():
            options[key] = int(value)
        else:
            options[key] = value
    return options


from funduslab.experiments import course_task1  # noqa: E402,F401  (registers "course-task1")
from funduslab.experiments import course_task2  # noqa: E402,F401  (registers "course-task2")
from funduslab.experiments import course_task3  # noqa: E402,F401  (registers "course-task3")
from funduslab.experiments import course_task4  # noqa: E402,F401  (registers "course-task4")
from funduslab.experiments import screening  # noqa: E402,F401  (registers "screening")
from funduslab.experiments import dr_grading  # noqa: E402,F401  (registers "dr-grading")
from funduslab.experiments import lesion_patches  # noqa: E402,F401  (registers "lesion-patches")
from funduslab.experiments import course_best  # noqa: E402,F401  (registers "course-best")
