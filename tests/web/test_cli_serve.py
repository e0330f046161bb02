"""``funduslab serve``: its help, and one clear line for each mistake before anything binds."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from funduslab.cli import app

cli = CliRunner()


def test_serve_is_a_verb_with_its_options():
    result = cli.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--host", "--cam-method"):
        assert option in result.output


def test_serve_refuses_missing_model_and_bad_port(tmp_path: Path, web_run: Path):
    missing = cli.invoke(app, ["serve", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "error:" in missing.output
    assert "nothing" in missing.output and "Traceback" not in missing.output
    port = cli.invoke(app, ["serve", str(web_run), "--port", "70000"])
    assert port.exit_code == 2 and "--port must be between 1 and 65535" in port.output
    method = cli.invoke(app, ["serve", str(web_run), "--cam-method", "magic"])
    assert method.exit_code == 2 and "magic" in method.output
