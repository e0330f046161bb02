"""Explainability: where the model looks, and training it to look consistently.

* :mod:`~funduslab.explain.targets` — CAM target layers, ViT/Swin reshape transforms.
* :mod:`~funduslab.explain.cams` — the ``CAMS`` registry (gradcam, gradcam++, layercam, scorecam,
  eigencam) and head attention maps, via pytorch-grad-cam.
* :mod:`~funduslab.explain.panels` — overlays and per-image panel figures.
* :mod:`~funduslab.explain.select` — the most / least confident images of a run.
* :mod:`~funduslab.explain.run_explain` — ``funduslab explain`` on a run folder.
* :mod:`~funduslab.explain.score` — ``funduslab explain --score``: maps checked against lesion
  masks (:mod:`~funduslab.explain.localisation`: pointing game, energy, baselines;
  :mod:`~funduslab.explain.faithfulness`: deletion, ROAD; :mod:`~funduslab.explain.score_report`:
  summary and figure).
* attention-consistency training (Guo et al., CVPR 2019) lives in :mod:`funduslab.training.guided`.

Submodules are imported on demand (they pull in torch and pytorch-grad-cam).
"""

__all__: list[str] = []
