"""Which generator masks show the evidence for each label of a synthetic layout.

A label's mask is the union of the findings the generator drew *because of* that label, so a CAM
for the label should point into it. Choices worth knowing:

* DR (``D``, ``DR``): every DR lesion, ``MA HE EX SE NV``.
* Glaucoma (``G``) and optic-disc cupping (RFMiD ``ODC``): the whole optic disc ``OD``, not only
  the cup — the cup-to-disc ratio is read off the cup *and* the rim around it.
* AMD (``A``, ``ARMD``): ``drusen`` and geographic atrophy ``GA``; drusen alone for RFMiD ``DN``.
* Hypertensive retinopathy (``H``): flame haemorrhages ``FH``. Its narrowed arterioles are
  everywhere, so they are not in the mask.
* Pathological myopia (``M``, ``MYA``): the peripapillary crescent and chorioretinal patches,
  ``myopic_atrophy``; tessellation is diffuse and left out.
* Cotton-wool spots (RFMiD ``CWS``): ``SE``. IDRiD labels ``MA HE EX SE``: their own mask.
* No mask (nothing local to point at): cataract / media haze (``C``, ``MH``), tessellation
  (``TSLN``), normal (``N``), ``Disease_Risk``.

DeepDRiD and APTOS are grading layouts (one grade, no per-label CAM), so they get no masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from funduslab.data.synthetic import DR_MASKS

__all__ = ["LABEL_FINDINGS", "label_masks"]

_AMD = ("drusen", "GA")
#: layout → label → generator mask names whose union is that label's evidence
LABEL_FINDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "odir-course": {"D": DR_MASKS, "G": ("OD",), "A": _AMD},
    "odir5k": {"D": DR_MASKS, "G": ("OD",), "A": _AMD, "H": ("FH",), "M": ("myopic_atrophy",)},
    "rfmid": {"DR": DR_MASKS, "ARMD": _AMD, "DN": ("drusen",), "MYA": ("myopic_atrophy",),
              "ODC": ("OD",), "CWS": ("SE",)},
    "idrid": {"MA": ("MA",), "HE": ("HE",), "EX": ("EX",), "SE": ("SE",)},
}


def label_masks(layout: str, labels: Mapping[str, int],
                masks: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """Masks of the positive labels of one image: label → (``(H, W)`` bool, ``"MA+HE"``).

    Args:
        layout: A key of :data:`LABEL_FINDINGS`.
        labels: The image's labels as written (0/1).
        masks: :func:`~funduslab.data.synthetic.render_fundus` masks.
    """
    out = {}
    for label, names in LABEL_FINDINGS[layout].items():
        if labels.get(label):
            union = np.logical_or.reduce([masks[name] for name in names])
            out[label] = (union, "+".join(names))
    return out
