"""Named registries: one per kind of component (backbone, head, loss, preprocessing step, ...).

Configs and the CLI refer to components by name; adding a component means writing one function or
class and decorating it with ``@REGISTRY.register("name")``. Unknown names raise ``ValueError``
listing the valid ones, so a typo in a config tells the user what they could have written.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "import_modules_of"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → component mapping for one kind of component.

    Args:
        kind: Human-readable kind, used in error messages (e.g. ``"loss"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; a duplicate name is a programming error."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the component registered as ``name``.

        Raises:
            ValueError: if ``name`` is unknown; the message lists the valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none registered)"
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def import_modules_of(package: str, path: Iterable[str]) -> None:
    """Import every public module of ``package`` (``path``: its ``__path__``), in name order.

    A package whose modules register components calls this at its end, so a new component is
    one new file: nothing lists the modules by hand. Modules named ``_…`` are helpers, skipped.
    """
    for name in sorted(m.name for m in pkgutil.iter_modules(path)):
        if not name.startswith("_"):
            importlib.import_module(f"{package}.{name}")
