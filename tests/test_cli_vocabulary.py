"""One CLI vocabulary: every option has help, no markup leaks into ``--help``, a concept has one
option name on every verb (old spellings still parse), and valid values come from the registries."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.cli.options import lightning_accelerator, torch_device
from funduslab.cli.registries import choice_names

#: the primary name of each shared concept, and the old names that may only be aliases of it
CONCEPTS: dict[str, tuple[str, ...]] = {
    "--device": ("--accelerator",),
    "--image-size": ("--size",),
    "--cam-method": ("--method",),
}
#: names kept for one meaning only: option name → the verbs where it is primary
ONE_MEANING: dict[str, set[str]] = {"--cv": {"train"}, "--weights": {"train", "pretrain"}}


def _commands() -> Iterator[tuple[str, Any]]:
    """Every verb of the app, sub-groups walked, as ("data check", command)."""
    def walk(group: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(command, "commands"):
                yield from walk(command, path)
            else:
                yield path, command

    yield from walk(typer.main.get_command(app), "")


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.name != "help"]


def test_every_verb_option_and_argument_has_help() -> None:
    missing = [f"{verb} {p.name}" for verb, command in _commands()
               for p in _options(command) if not (getattr(p, "help", None) or "").strip()]
    missing += [verb for verb, command in _commands() if not (command.help or "").strip()]
    assert not missing, f"no help: {missing}"


def test_no_markup_leaks_into_help() -> None:
    """No reST double backticks; no [word …] that Rich would read as a style tag and drop."""
    texts = [(verb, command.help or "") for verb, command in _commands()]
    texts += [(f"{verb} {p.name}", getattr(p, "help", "") or "")
              for verb, command in _commands() for p in _options(command)]
    bad = [where for where, text in texts if "``" in text or re.search(r"\[[a-z#/@]", text)]
    assert not bad, f"markup in help: {bad}"


def test_one_option_name_per_concept_across_verbs() -> None:
    primary = {(verb, p.opts[0]) for verb, command in _commands()
               for p in _options(command) if p.param_type_name == "option"}
    names = {name for _, name in primary}
    for new, old in CONCEPTS.items():
        assert new in names, f"{new} is no verb's option"
        assert not names & set(old), f"use {new}, not {sorted(names & set(old))}"
    for name, verbs in ONE_MEANING.items():
        assert {verb for verb, opt in primary if opt == name} <= verbs, name


@pytest.mark.parametrize(("verb", "old", "param", "value"), [
    (["synth", "--out", "x"], ["--size", "32"], "image_size", 32),
    (["patches", "--data", "d", "--out", "x"], ["--size", "32"], "patch_size", 32),
    (["train"], ["--accelerator", "cpu"], "device", "cpu"),
    (["explain", "run"], ["--method", "layercam"], "cam_method", "layercam"),
    (["ensemble", "stacking", "--out", "x"], ["--cv", "3"], "oof_folds", 3),
    (["ensemble", "weighted", "--out", "x"], ["--weights", "1,2"], "member_weights", "1,2"),
])
def test_old_spellings_still_parse(verb: list[str], old: list[str], param: str,
                                   value: object) -> None:
    group = typer.main.get_command(app)
    command = group.commands[verb[0]]
    ctx = command.make_context(verb[0], [*verb[1:], *old])
    assert ctx.params[param] == value


def test_device_spellings_are_one_device() -> None:
    from funduslab.cli.train import _overrides

    assert torch_device("GPU") == "cuda" and torch_device("gpu:1") == "cuda:1"
    assert torch_device("cuda:0") == "cuda:0" and torch_device("cpu") == "cpu"
    assert torch_device("auto") in ("cpu", "cuda")
    assert lightning_accelerator("cuda") == "gpu" and lightning_accelerator("cpu") == "cpu"
    with pytest.raises(ValueError, match="train.devices"):  # Lightning would refuse cuda:0
        lightning_accelerator("cuda:0")
    assert _overrides({"device": "cuda", "epochs": None}) == {"train.accelerator": "gpu"}


@pytest.mark.parametrize(("verb", "kinds"), [
    ("ensemble", ("ensembles", "trained-ensembles")),
    ("explain", ("cams", "faithfulness")),
    ("export", ("export-formats",)),
    ("patches", ("rebalancers",)),
    ("suite", ("presets",)),
    ("synth", ("layouts",)),
])
def test_help_names_the_registered_values(verb: str, kinds: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    missing = [name for name in choice_names(kinds) if name not in result.output]
    assert not missing, f"{verb} --help does not name {missing}"


def test_top_level_help_loads_no_registry() -> None:
    """The verbs' valid values are read when their own help is shown, not at start-up."""
    code = ("import sys\nfrom funduslab.cli import app\ntry:\n    app(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'funduslab.models', 'funduslab.explain.cams') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
