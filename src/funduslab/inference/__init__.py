"""Serving saved models: loading anything funduslab saved (``saved_model.py``: a run folder, a
weights file, an ensemble bundle, cross-validation folds), predicting new images
(``predict_images.py``), prediction backends (eager PyTorch, ONNX Runtime) and export formats.

Importing this package imports neither onnx nor onnxruntime; they load when a model is exported
or predicted on the ``onnx`` backend.
"""

from funduslab.inference.backends import (
    PREDICT_BACKENDS,
    is_onnx_file,
    load_for_prediction,
    resolve_backend,
)
from funduslab.inference.export import EXPORT_FORMATS, ExportFormat, export_model

__all__ = ["EXPORT_FORMATS", "PREDICT_BACKENDS", "ExportFormat", "export_model", "is_onnx_file",
           "load_for_prediction", "resolve_backend"]
