"""The CAM method used unless a user names one, in a module light enough for the CLI to import.

``DEFAULT_CAM_METHOD`` is what ``funduslab explain``, the HTML report and the web page draw.
Measured against the synthetic generator's lesion masks (``benchmarks/bench_explain_quality.py``,
docs/results.md, "Explanations"), Grad-CAM, Grad-CAM++, LayerCAM and EigenCAM tie within the
seed spread; Grad-CAM is kept: label-specific (EigenCAM draws one map for every label), the
cheapest, and level with the best.
"""

DEFAULT_CAM_METHOD = "gradcam"

__all__ = ["DEFAULT_CAM_METHOD"]
