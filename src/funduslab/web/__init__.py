"""The local web page: upload fundus photographs → probabilities, decisions and Grad-CAMs.

* :mod:`~funduslab.web.validate` — checks on every upload (size, type by content, pixels).
* :mod:`~funduslab.web.service` — the served models behind one lock: predict and CAM (no HTTP).
* :mod:`~funduslab.web.card` — what the model picker and model card show.
* :mod:`~funduslab.web.app` — FastAPI routes and the page (``static/``), ``funduslab serve``.

A thin face over ``inference``/``training.saved_model`` and ``explain`` (DESIGN.md), like the
CLI. Submodules are imported on demand (they pull in torch and FastAPI).
"""

__all__: list[str] = []
