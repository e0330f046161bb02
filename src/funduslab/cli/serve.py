"""CLI verb ``serve``: the local web page and its JSON API over saved models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.options import Device, torch_device
from funduslab.cli.registries import with_choices
from funduslab.explain.defaults import DEFAULT_CAM_METHOD

__all__ = ["register"]

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

Models = Annotated[list[Path], typer.Argument(
    help="Run folders (single, ensemble or cross-validation), weights files or ensemble "
         "bundles; a folder of runs serves each run.")]
Port = Annotated[int, typer.Option(help="TCP port.")]
Host = Annotated[str, typer.Option(
    help="Address to bind: 127.0.0.1 keeps the page on this computer; 0.0.0.0 opens it to the "
         "network.")]
CamMethod = Annotated[str, typer.Option("--cam-method", help="CAM method of the heat maps.")]


@friendly
def serve(models: Models, port: Port = 8000, host: Host = "127.0.0.1",
          cam_method: CamMethod = DEFAULT_CAM_METHOD, device: Device = "cpu") -> None:
    """Serve a local web page that predicts dropped fundus photographs.

    The page shows per-label probabilities, decisions at the model's thresholds and a CAM per
    label; a JSON API offers the same (/api/models, /api/predict, /api/predict_csv).
    """
    import uvicorn

    from funduslab.web.app import create_app
    from funduslab.web.service import ModelService, load_models
    from funduslab.web.validate import guard_pillow

    if not 0 < port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {port}")
    guard_pillow()
    device = torch_device(device)
    with console.status(f"loading {len(models)} model path(s)"):
        served = load_models(models, device=device)
        service = ModelService(served, cam_method=cam_method, device=device)
    open_to_all = host in ("0.0.0.0", "::")
    allowed = None if open_to_all else list(dict.fromkeys([host, *_LOCAL_HOSTS]))
    for model in served:
        console.print(f"  [{model.index}] {model.name}  ({model.info['task']}, "
                      f"{model.info['backbone']})")
    if open_to_all:
        console.print("[bold yellow]warning:[/] bound to every network interface: anyone "
                      "who can reach this machine can use the page")
    shown = f"[{host}]" if ":" in host else host
    console.print(f"[green]serving {len(served)} model(s)[/] at http://{shown}:{port}/  "
                  "(Ctrl-C stops)")
    uvicorn.run(create_app(service, allowed_hosts=allowed), host=host, port=port,
                log_level="warning", workers=1)


def register(app: typer.Typer) -> None:
    """Attach ``serve`` to ``app``."""
    app.command(cls=with_choices(cam_method="cams"))(serve)
