"""Experiment presets (``funduslab suite <name>``): the course tasks and the demo.

A preset is a function ``(data, team, out, quick, seeds, source) -> Path`` (the results.md it
wrote), registered by name in :data:`PRESETS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funduslab.registry import Registry

__all__ = ["PRESETS", "run_preset"]

PRESETS: Registry = Registry("preset")


def run_preset(name: str, **kwargs: Any) -> Path:
    """Run a registered preset (``ValueError`` lists the valid names)."""
    return PRESETS.get(name)(**kwargs)


from funduslab.experiments import course_task1  # noqa: E402,F401  (registers "course-task1")
