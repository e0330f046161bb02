"""The CAM method used unless a user names one, in a module light enough for the CLI to import.

``DEFAULT_CAM_METHOD`` is what ``funduslab explain``, the HTML report and the web page draw: the
method that scored best against the synthetic generator's lesion masks
(``benchmarks/bench_explain_quality.py``; docs/results.md, "Explanations").
"""

DEFAULT_CAM_METHOD = "gradcam"

__all__ = ["DEFAULT_CAM_METHOD"]
