"""``funduslab list``: every registry, every name, one line each; unknown kinds name the valid."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from funduslab.cli import app
from funduslab.cli.registries import KINDS, registry

runner = CliRunner()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_registered_name_is_listed_with_a_description(kind: str) -> None:
    result = runner.invoke(app, ["list", kind], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    names = registry(kind).names()
    assert names, f"nothing registered as {kind}"
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    listed = {row.split("│")[1].strip() for row in rows}
    assert set(names) <= listed
    assert all(row.split("│")[2].strip() for row in rows)  # a description on every row


def test_kinds_overview_and_unknown_kind() -> None:
    result = runner.invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and all(k in result.output for k in KINDS)
    bad = runner.invoke(app, ["list", "backbone"])
    assert bad.exit_code == 2 and "valid kinds" in bad.output and "backbones" in bad.output
