"""Imports only point down the layer order (docs/architecture.md).

The order lives here, in one place. Every ``import``/``from`` of a funduslab module — at module
level or inside a function — is read from the source. An import that runs up the order fails
this test unless it is in :data:`KNOWN_UPWARD` (debts still to pay, each one named; empty since
December 2026). Paying one off means deleting its line, so the list can only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import funduslab

SRC = Path(funduslab.__file__).parent

#: Bottom to top. The longest matching prefix decides a module's layer.
LAYERS: dict[str, int] = {
    "funduslab": 0, "funduslab.config": 0, "funduslab.registry": 0,
    "funduslab.metrics": 1, "funduslab.plots": 1,
    "funduslab.data": 2, "funduslab.preprocess": 2,
    "funduslab.models": 3, "funduslab.losses": 3,
    "funduslab.runs": 4, "funduslab.reporting.run_folder": 4, "funduslab.reporting.record": 4,
    "funduslab.training": 5,
    # ensemble below inference: a saved model may be an ensemble, rebuilt from its bundle or, for
    # a folder without one, from its members' folders (ensemble/bundle.py)
    "funduslab.ensemble": 6,
    "funduslab.inference": 7, "funduslab.explain": 7, "funduslab.generate": 7,
    "funduslab.handin": 7,
    "funduslab.reporting": 8,
    "funduslab.experiments": 9,
    "funduslab.cli": 10, "funduslab.__main__": 10, "funduslab.web": 10,
}

#: Upward imports that exist today (importer → imported), to be removed one by one.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module} has no layer: add its package to LAYERS")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("funduslab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("funduslab"):
                found.add(target)
                # "from funduslab.cli import train" names a module, not an attribute
                found |= {f"{target}.{a.name}" for a in node.names
                          if (SRC.parent / f"{target}.{a.name}".replace(".", "/")).with_suffix(
                              ".py").is_file()}
    return found


def upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        for target in _imports(path, module):
            if layer(target) > layer(module):
                found.add((module, target))
    return found


def test_no_new_import_runs_up_the_layers() -> None:
    new = sorted(upward_imports() - KNOWN_UPWARD)
    assert not new, "imports that run up the layer order (docs/architecture.md): " + ", ".join(
        f"{a} → {b}" for a, b in new)


def test_paid_off_exceptions_are_removed_from_the_list() -> None:
    stale = sorted(KNOWN_UPWARD - upward_imports())
    assert not stale, f"no longer imported, delete from KNOWN_UPWARD: {stale}"


def test_every_module_has_a_layer() -> None:
    for path in SRC.rglob("*.py"):
        layer(_module_name(path))
