"""``--set key=value``: one config field of every row of a study, typed by the config model.

A key is a dotted path into :class:`funduslab.config.RunConfig` (``train.epochs``,
``data.image_size``, ``train.loss_options.gamma``); the value is read as YAML (``6``, ``0.5``,
``true``, ``[1, 2]``, ``{gamma: 2}``) and then as plain text, and the first reading the field's
type accepts wins — so ``model.weights=none`` stays the string ``none`` while an ``int | None``
field reads ``none`` as ``None``. Checking the key against the model here, not at training time,
lets a typo fail at once with the valid keys of its section.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from funduslab.config import RunConfig

__all__ = ["parse_sets", "set_field"]


def parse_sets(pairs: Sequence[str]) -> dict[str, Any]:
    """``["train.epochs=6", "model.head=se"]`` → ``{"train.epochs": 6, "model.head": "se"}``.

    Raises:
        ValueError: a pair without ``=``, an unknown key (the valid keys of its section listed),
            or a value the field's type rejects (the key and value named).
    """
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = str(pair).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {pair!r} not understood; write KEY=VALUE with a dotted config "
                             "key, e.g. --set train.epochs=6")
        values[key] = _typed(key, text.strip(), set_field(key))
    return values


def set_field(key: str) -> Any:
    """The type of config field ``key`` (``Any`` inside a free-form options dict).

    Raises:
        ValueError: a part of ``key`` its section does not have (the valid keys listed), or a
            dotted key that goes through a value which is not a section.
    """
    model: type[BaseModel] = RunConfig
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            raise ValueError(_unknown(key, parts[:depth], part, list(fields)))
        info = fields[part]
        annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata \
            else info.annotation
        if depth == len(parts) - 1:
            return annotation
        inner = _section(info.annotation)
        if inner is None:
            if get_origin(info.annotation) is dict:
                return Any  # adapter / loss / head options: any key
            raise ValueError(f"--set {key}: {'.'.join(parts[:depth + 1])} is a value, not a "
                             "section")
        model = inner
    return Any  # unreachable: the loop returns at the last part


def _unknown(key: str, parents: list[str], part: str, valid: list[str]) -> str:
    if not parents:
        homes = [f"{s}.{part}" for s, f in RunConfig.model_fields.items()
                 if _section(f.annotation) and part in _section(f.annotation).model_fields]
        hint = f" (did you mean {' or '.join(homes)}?)" if homes else ""
        return (f"--set {key}: unknown section {part!r}{hint}; keys are dotted, starting with "
                f"one of: {', '.join(valid)}")
    section = ".".join(parents)
    return f"--set {key}: {section} has no key {part!r}; valid {section} keys: {', '.join(valid)}"


def _section(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``DataConfig | None`` → ``DataConfig``), else ``None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _typed(key: str, text: str, annotation: Any) -> Any:
    """``text`` as a value of ``annotation``: its YAML reading, else the text, else ``None``."""
    try:
        loaded = yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        loaded = text
    if annotation is Any:
        return loaded
    adapter = TypeAdapter(annotation)
    readings = [loaded, text] + ([None] if text.lower() == "none" else [])
    problem = ""
    for reading in readings:
        try:
            return adapter.dump_python(adapter.validate_python(reading), mode="json")
        except ValidationError as err:
            problem = problem or err.errors()[0]["msg"]
    raise ValueError(f"--set {key}={text!r}: {problem}")
