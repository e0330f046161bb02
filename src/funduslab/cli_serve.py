"""CLI verb ``serve``: the local web page and its JSON API over saved models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

__all__ = ["register"]

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``serve`` to ``app``."""

    @app.command()
    @friendly
    def serve(
        models: list[Path] = typer.Argument(..., help="Run folders (single, ensemble or "
                                            "cross-validation), weights files or ensemble "
                                            "bundles; a folder of runs serves each run."),
        port: int = typer.Option(8000, help="TCP port."),
        host: str = typer.Option("127.0.0.1", help="Address to bind: 127.0.0.1 keeps the page "
                                 "on this computer; 0.0.0.0 opens it to the network."),
        cam_method: str = typer.Option("gradcam", help="CAM method: gradcam, gradcam++, "
                                       "layercam, scorecam, eigencam."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
    ) -> None:
        """Serve a local web page: drop fundus photographs, read per-label probabilities,
        decisions at the model's thresholds and a CAM per label (also a JSON API:
        /api/models, /api/predict, /api/predict_csv)."""
        import uvicorn

        from funduslab.web.app import create_app
        from funduslab.web.service import ModelService, load_models
        from funduslab.web.validate import guard_pillow

        if not 0 < port < 65536:
            raise ValueError(f"--port must be between 1 and 65535, got {port}")
        guard_pillow()
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
