"""CLI verb ``predict``: a saved model on new images → predictions, submission, provenance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

__all__ = ["register"]


def register(app: typer.Typer, console: Console, friendly) -> None:
    """Attach ``predict`` to ``app``."""

    @app.command()
    @friendly
    def predict(
        model: Path = typer.Argument(..., help="A run folder (single model or ensemble), its "
                                     "weights file, an ensemble bundle (<team>_task4.pt), or an "
                                     ".onnx file (funduslab export)."),
        inputs: Path = typer.Argument(..., help="A folder of images, or a CSV whose first "
                                      "column names the images (e.g. "
                                      "onsite_test_submission.csv)."),
        images: Optional[Path] = typer.Option(None, help="Where a CSV's images are (default: "
                                              "the CSV's folder)."),
        out: Optional[Path] = typer.Option(None, help="Output folder (default: "
                                           "<inputs name>_predictions)."),
        tta: Optional[bool] = typer.Option(None, "--tta/--no-tta", help="Average over "
                                           "horizontal/vertical flips (default: as the run did)."),
        threshold: Optional[float] = typer.Option(None, help="One threshold for every label "
                                                  "(default: the run's, 0.5 or tuned on val)."),
        batch_size: int = typer.Option(16, help="Images decoded and predicted at a time."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
        backend: Optional[str] = typer.Option(None, help="eager (PyTorch) or onnx (ONNX "
                                              "Runtime; a run folder is exported in memory) "
                                              "(default: onnx for a .onnx file, else eager)."),
    ) -> None:
        """Predict new images with a saved model or an exported .onnx file; write
        predictions.csv, submission.csv and predict.json (model, thresholds, TTA, image
        fingerprint, versions)."""
        from funduslab.inference.backends import load_for_prediction, resolve_backend
        from funduslab.training.predict_images import (
            list_inputs,
            predict_saved,
            write_prediction_folder,
        )

        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"--threshold must be between 0 and 1, got {threshold}")
        engine = resolve_backend(model, backend)
        saved = load_for_prediction(model, engine, device=device)
        found = list_inputs(inputs, images)
        target = out or Path(f"{inputs.stem if inputs.is_file() else inputs.name}_predictions")
        started = time.time()
        with console.status(f"predicting {len(found.ids)} images ({engine})") as status:
            outputs = predict_saved(
                saved, found.paths, tta=tta, batch_size=batch_size, device=device,
                progress=lambda done, total: status.update(f"predicted {done}/{total} images"))
        write_prediction_folder(target, saved, found, outputs, threshold=threshold, tta=tta,
                                seconds=time.time() - started)
        console.print(f"[green]predicted {len(found.ids)} images[/] → {target}/submission.csv, "
                      "predictions.csv, predict.json")
