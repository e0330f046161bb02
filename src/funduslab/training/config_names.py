"""Config fields that name a registered component, checked against their registries.

:func:`validate_names` checks every such field (adapter, backbone, loss, …) before any data is
decoded or model built, so a typo fails in a second with the valid names; :func:`field_choices`
lists a field's valid values (for ``--help``). Registries are imported by module name, only
when a name is checked or listed, so reading a config never imports torch.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Literal, get_args, get_origin

from funduslab.config import RunConfig

__all__ = ["field_choices", "validate_names"]

#: Config fields whose value names a registered component: field → (module, registry, how to list
#: its names, values accepted besides the registered ones). Cheapest import first: the modules are
#: imported only when a name is checked or listed, so reading a config never imports torch.
_NAMED_FIELDS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "data.adapter": ("funduslab.data.adapters", "ADAPTERS", "names", ("auto",)),
    "data.preprocess": ("funduslab.preprocess", "PREPROCESS", "names", ()),
    "train.loss": ("funduslab.losses", "LOSSES", "names", ()),
    "model.backbone": ("funduslab.models.backbones", "BACKBONES", "names", ()),
    "train.sampler": ("funduslab.training.sample_weights", "SAMPLERS", "names", ()),
    "model.head": ("funduslab.models.heads", "HEADS", "names", ()),
    "model.dual": ("funduslab.models.dual", "FUSIONS", "names", ("none",)),
    "train.accelerator": ("lightning.pytorch.accelerators", "AcceleratorRegistry",
                          "available_accelerators", ("auto", "gpu")),
    "train.strategy": ("lightning.pytorch.strategies", "StrategyRegistry", "available_strategies",
                       ("auto",)),
    "train.formulation": ("funduslab.training.grading", "GRADING_FORMULATIONS", "names", ()),
    "train.setup": ("funduslab.training.setups", "SETUPS", "names", ()),
}


def field_choices(field: str) -> list[str] | None:
    """The valid values of a dotted config field, or ``None`` when it takes any value of its type.

    A field that names a registered component lists its registry (importing the registering
    module; ``data.preprocess`` lists the named pipelines, then the steps a comma list may use);
    a ``Literal`` field lists its values.
    """
    if field in _NAMED_FIELDS:
        module, attr, lister, extra = _NAMED_FIELDS[field]
        names = sorted(getattr(getattr(importlib.import_module(module), attr), lister)())
        if field == "data.preprocess":
            extra = tuple(importlib.import_module(module).NAMED_PIPELINES)
        return list(dict.fromkeys([*extra, *names]))
    model: Any = RunConfig
    *parents, leaf = field.split(".")
    for part in parents:
        model = model.model_fields[part].annotation
    annotation = model.model_fields[leaf].annotation
    return [str(v) for v in get_args(annotation)] if get_origin(annotation) is Literal else None


def _named_values(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(field, value)`` of every registry name in ``cfg``, in the order of ``_NAMED_FIELDS``."""
    values: list[tuple[str, str]] = []
    for field in _NAMED_FIELDS:
        section, leaf = field.split(".")
        values.append((field, str(getattr(getattr(cfg, section), leaf))))
        if field == "data.adapter" and cfg.train.source is not None:
            values.append(("train.source.adapter", cfg.train.source.adapter))
        if field == "data.adapter":
            values += [("data.extra_sources.adapter", s.adapter) for s in cfg.data.extra_sources]
        if field == "data.preprocess" and cfg.train.source is not None:
            values.append(("train.source.preprocess", cfg.train.source.preprocess))
        if field == "model.head" and isinstance(cfg.model.head_options.get("base"), str):
            values.append(("model.head_options.base", cfg.model.head_options["base"]))
    return values


#: Fields checked against another field's registry.
_SAME_REGISTRY = {"train.source.adapter": "data.adapter",
                  "data.extra_sources.adapter": "data.adapter",
                  "train.source.preprocess": "data.preprocess",
                  "model.head_options.base": "model.head"}


def _name_problem(field: str, value: str, size: int) -> str | None:
    """What is wrong with ``value`` as the registry name ``field`` holds, or ``None``."""
    registry_field = _SAME_REGISTRY.get(field, field)
    if registry_field == "data.preprocess":
        from funduslab.preprocess import NAMED_PIPELINES, build_pipeline

        try:
            build_pipeline(value, size)  # parses and checks every step; decodes nothing
        except ValueError as err:
            return (f"{field}={value!r}: {err} (or one of the named pipelines: "
                    f"{', '.join(NAMED_PIPELINES)})")
        return None
    if registry_field == "data.adapter":
        value = value.replace("-", "_")  # load_table accepts the layout spelling odir-course
    if registry_field == "train.strategy":
        value = value.lower()  # Lightning lower-cases strategy names
    valid = field_choices(registry_field) or []
    if value in valid:
        return None
    module, attr, _, _ = _NAMED_FIELDS[registry_field]
    kind = getattr(getattr(sys.modules[module], attr), "kind", registry_field.split(".")[1])
    return f"{field}={value!r} is not a known {kind}; valid: {', '.join(valid)}"


def validate_names(cfg: RunConfig) -> None:
    """Check every name in ``cfg`` that refers to a registry, before any data or model loads.

    Covers the dataset adapter (also of ``train.source``), the preprocessing pipeline and its
    steps, backbone, head (and ``head_options.base``), dual-image fusion, loss, sampler, setup,
    grading formulation and Lightning's accelerator and strategy. Registries are imported
    cheapest first; once a problem is found, only registries already imported are still
    checked, so a typo is reported within the import time of its own registry.

    Raises:
        ValueError: one line naming each bad field, its value and the valid values.
    """
    problems: list[str] = []
    for field, value in _named_values(cfg):
        module = _NAMED_FIELDS[_SAME_REGISTRY.get(field, field)][0]
        if problems and module not in sys.modules:
            continue  # report what is known without importing more
        problem = _name_problem(field, value, cfg.data.image_size)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError("; ".join(problems))
