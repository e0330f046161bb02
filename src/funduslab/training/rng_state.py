"""Random state that must travel with a checkpoint, so a resumed run repeats the uninterrupted one.

Lightning restores weights, optimiser, scheduler and loop counters from ``last.ckpt``, but not
the random streams an epoch draws from: the training loader's shuffling generator (re-seeded
when the loader is rebuilt, so a resumed epoch 4 would replay epoch 0's order), a sampler's own
generator, and the global torch / NumPy / Python streams that augmentation and dropout use.
:class:`RandomStateCheckpoint` saves all of them with every checkpoint (``last.ckpt`` is written
at the end of a training epoch, after validation) and puts them back as the checkpoint is
restored. Lightning then builds the first resumed epoch's iterator (which draws the loader's
seed and prefetches a batch) from exactly the state the uninterrupted run had at that point.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

__all__ = ["RandomStateCheckpoint"]

log = logging.getLogger(__name__)


def _generators(loader: DataLoader) -> dict[str, Any]:
    """The loader's own random streams by role (torch Generators or NumPy Generators)."""
    found: dict[str, Any] = {}
    if isinstance(getattr(loader, "generator", None), torch.Generator):
        found["loader"] = loader.generator
    sampler = getattr(loader, "sampler", None)
    for attr in ("generator", "_rng"):
        value = getattr(sampler, attr, None)
        if isinstance(value, (torch.Generator, np.random.Generator)):
            found[f"sampler.{attr}"] = value
    return found


def _get(gen: Any) -> Any:
    return gen.get_state() if isinstance(gen, torch.Generator) else gen.bit_generator.state


def _set(gen: Any, state: Any) -> None:
    if isinstance(gen, torch.Generator):
        gen.set_state(state)
    else:
        gen.bit_generator.state = state


def _plain_numpy_state() -> tuple:
    """NumPy's legacy global state with its key as a list: a checkpoint stays loadable with
    ``weights_only=True``."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return name, key.tolist(), int(pos), int(has_gauss), float(gauss)


class RandomStateCheckpoint(Callback):
    """Save the random streams with each checkpoint; restore them when training resumes.

    Args:
        loader: The training loader whose generators (its own, its sampler's) are tracked.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    @property
    def state_key(self) -> str:
        return "RandomStateCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "numpy": _plain_numpy_state(),
            "python": random.getstate(),
            "generators": {k: _get(g) for k, g in _generators(self.loader).items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        name, key, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, gauss))
        random.setstate(state_dict["python"])
        current = _generators(self.loader)
        for key, saved in state_dict.get("generators", {}).items():
            if key in current:
                _set(current[key], saved)
            else:
                log.warning("resumed run has no %s random stream to restore; its draws will "
                            "differ from the uninterrupted run", key)
