"""CLI verb ``predict``: a saved model on new images → predictions, submission, provenance."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from funduslab.cli.common import console, friendly
from funduslab.cli.options import Device, torch_device
from funduslab.cli.registries import with_choices

__all__ = ["register"]

Model = Annotated[Path, typer.Argument(
    help="A run folder (single model or ensemble), its weights file, an ensemble bundle "
         "(<team>_task4.pt), or an .onnx file (funduslab export).")]
Inputs = Annotated[Path, typer.Argument(
    help="A folder of images, or a CSV whose first column names the images (e.g. "
         "onsite_test_submission.csv).")]
Images = Annotated[Optional[Path], typer.Option(
    help="Where a CSV's images are (default: the CSV's folder).")]
Out = Annotated[Optional[Path], typer.Option(
    help="Output folder (default: <inputs name>_predictions).")]
Tta = Annotated[Optional[bool], typer.Option(
    "--tta/--no-tta", help="Average over horizontal/vertical flips (default: as the run did).")]
Threshold = Annotated[Optional[float], typer.Option(
    help="One threshold for every label (default: the run's, 0.5 or tuned on val).")]
BatchSize = Annotated[int, typer.Option(help="Images decoded and predicted at a time.")]
Backend = Annotated[Optional[str], typer.Option(
    help="Inference engine; onnx runs ONNX Runtime and exports a run folder in memory "
         "(default: onnx for a .onnx file, else eager).")]


@friendly
def predict(model: Model, inputs: Inputs, images: Images = None, out: Out = None,
            tta: Tta = None, threshold: Threshold = None, batch_size: BatchSize = 16,
            device: Device = "cpu", backend: Backend = None) -> None:
    """Predict new images with a saved model or an exported .onnx file.

    Writes predictions.csv, submission.csv and predict.json (model, thresholds, TTA, image
    fingerprint, versions).
    """
    from funduslab.inference.backends import load_for_prediction, resolve_backend
    from funduslab.inference.predict_images import (
        list_inputs,
        predict_saved,
        write_prediction_folder,
    )

    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"--threshold must be between 0 and 1, got {threshold}")
    device = torch_device(device)
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


def register(app: typer.Typer) -> None:
    """Attach ``predict`` to ``app``."""
    app.command(cls=with_choices(backend="predict-backends"))(predict)
