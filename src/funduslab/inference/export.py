"""``funduslab export``: a saved model written in a format other engines run.

Formats are registered by name (only ``onnx`` today), so ``--format`` errors list the valid ones
and a new format is one function here, not a branch in the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funduslab.registry import Registry
from funduslab.inference.saved_model import SavedModel

__all__ = ["EXPORT_FORMATS", "ExportFormat", "export_model"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format.

    Attributes:
        suffix: The file suffix its files must have (``predict`` recognises them by it).
        write: ``write(saved, path, **options) -> report`` writes the file atomically.
    """

    suffix: str
    write: Callable[..., Any]


def _write_onnx(saved: SavedModel, path: Path, **options: Any) -> Any:
    from funduslab.inference.onnx_model import export_onnx

    return export_onnx(saved, path, **options)


EXPORT_FORMATS: Registry[ExportFormat] = Registry("export format")
EXPORT_FORMATS.register("onnx")(ExportFormat(".onnx", _write_onnx))


def export_model(source: Path | str, fmt: str, out: Path | str, **options: Any) -> Any:
    """Load the run folder / weights file ``source`` and write it to ``out`` in format ``fmt``.

    Returns:
        The format's report (ONNX: :class:`~funduslab.inference.onnx_model.OnnxCheck`).

    Raises:
        ValueError: an unknown format, ``out`` without the format's suffix, or a model the
            format cannot hold.
        FileNotFoundError: nothing loadable at ``source``.
    """
    from funduslab.inference.saved_model import load_saved_model

    spec = EXPORT_FORMATS.get(fmt)
    out = Path(out)
    if out.suffix.lower() != spec.suffix:
        raise ValueError(f"--out {out} must end in {spec.suffix} for format {fmt!r} "
                         "(predict recognises the file by it)")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the {spec.suffix} file to write")
    return spec.write(load_saved_model(source, device="cpu"), out, **options)
