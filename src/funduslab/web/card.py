"""What the model picker and the model card show about a served model, as JSON-ready dicts.

Everything comes from the loaded model and its run folder (:class:`~funduslab.runs.RunFolder`:
``config.yaml``, ``metrics.json``, and ``long_tail.json`` where the screening preset wrote one).
A bare weights file or bundle has no folder, so its card says less. Headline metrics are taken
from the test split the run reported (``offsite_test`` first) at the thresholds the run used;
a figure that carries a bootstrap interval (``{"value", "ci_low", "ci_high"}``) keeps it.
The card is a reminder of what the model is for (Mitchell et al., "Model Cards for Model
Reporting", FAT* 2019), not a clinical claim: funduslab models are research and teaching tools.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from funduslab.inference.saved_model import SavedModel
from funduslab.runs import RunFolder
from funduslab.training.task_kinds import task_kind

__all__ = ["NOT_A_MEDICAL_DEVICE", "describe_model"]

NOT_A_MEDICAL_DEVICE = ("Not a medical device: research and teaching use only. Do not use it "
                        "to diagnose, screen or treat anyone.")

_SPLIT_ORDER = ("offsite_test", "test", "onsite_test", "val")


def _folder(path: Path) -> RunFolder | None:
    folder = RunFolder(path)
    return folder if path.is_dir() and folder.config_path.is_file() else None


def _backbones(model: Any) -> list[str]:
    """Backbone registry names of a model, or of an ensemble's members (in order, unique)."""
    from funduslab.models.backbones import backbone_info

    members = getattr(model, "members", None)
    if members is not None:
        names = [n for m in members for n in _backbones(m)]
        return list(dict.fromkeys(names))
    try:
        return [backbone_info(model.backbone).name]
    except (AttributeError, TypeError):
        return ["unknown"]


def _kind(saved: SavedModel, folder: RunFolder | None) -> str:
    members = getattr(saved.model, "members", None)
    if members is None:
        return "single model"
    if folder is not None and folder.provenance.get("cross_validation"):
        return f"cross-validation ({len(members)} fold models averaged)"
    method = getattr(saved.model, "method", "ensemble")
    return f"ensemble ({method}, {len(members)} members)"


def _figure(name: str, label: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict) and "value" in value:
        out = {"name": name, "label": label, "value": value.get("value")}
        if value.get("ci_low") is not None and value.get("ci_high") is not None:
            out.update(ci_low=value["ci_low"], ci_high=value["ci_high"])
        return out
    if isinstance(value, (int, float)) and value == value:  # NaN: undefined, not shown
        return {"name": name, "label": label, "value": float(value)}
    return None


def headline_metrics(folder: RunFolder | None, task: str) -> dict[str, Any] | None:
    """``{"split", "thresholds", "n", "figures": [{name, label, value[, ci_low, ci_high]}]}``
    for the run's test split, or ``None`` when the folder has no ``metrics.json``."""
    if folder is None or not folder.has_metrics:
        return None
    metrics = folder.metrics
    splits = metrics.get("splits") or {}
    split = next((s for s in _SPLIT_ORDER if s in splits), next(iter(splits), None))
    if split is None:
        return None
    entry = splits[split]
    kind = task_kind(task)
    block_name = kind.score_block(metrics, entry)
    block = entry.get(block_name) or {}
    figures = [f for key, label in kind.headlines if
               (f := _figure(key, label, block.get(key))) is not None]
    long_tail = folder.path / "long_tail.json"
    if long_tail.is_file():  # the screening preset's bootstrap CIs of AUROC
        try:
            doc = json.loads(long_tail.read_text())
        except (OSError, ValueError):
            doc = {}
        for key in ("macro_auroc", "micro_auroc"):
            fig = _figure(key, key.replace("_auroc", " AUROC") + " (long-tail report)",
                          doc.get(key))
            if fig is not None:
                figures.append(fig)
    thresholds = {"tuned_thresholds": "tuned on val", "threshold_0.5": "0.5"}.get(block_name,
                                                                                 block_name)
    return {"split": split, "thresholds": thresholds, "n": block.get("n_samples"),
            "figures": figures}


def _training_data(folder: RunFolder | None, saved: SavedModel) -> str:
    if folder is None:
        return (f"unknown: {saved.source.name} is a bare weights file; its run folder "
                "records the training data")
    config = folder.config
    prov = folder.provenance
    data = config.get("data") or {}
    sizes = prov.get("split_sizes") or {}
    size_text = ", ".join(f"{k} {v}" for k, v in sizes.items()) or "split sizes not recorded"
    if folder.is_ensemble:
        members = (config.get("ensemble") or {}).get("members") or []
        return (f"ensemble of {len(members)} runs ({', '.join(map(str, members[:6]))}); "
                f"images: {size_text}")
    source = prov.get("data_source") or f"{data.get('adapter', '?')}:{data.get('root', '?')}"
    adapter, _, root = str(source).partition(":")
    return (f"{adapter} data from {Path(root).name or root} ({size_text}); data fingerprint "
            f"{prov.get('data_fingerprint', 'not recorded')}")


def _card(folder: RunFolder | None, saved: SavedModel, task: str) -> dict[str, Any]:
    what = task_kind(task).output_phrase(saved.label_names)
    limits = [
        f"Sees the image at {saved.image_size}×{saved.image_size} px after "
        f"'{saved.preprocess}' preprocessing; fine lesions may vanish at that size.",
        "Trained on a small labelled set: figures on other cameras, populations or image "
        "quality may be much worse.",
        "Decisions use the thresholds the run chose; they trade sensitivity for specificity "
        "on its own validation split only.",
        "CAM heat maps show where the score is sensitive, not a lesion segmentation.",
    ]
    return {
        "training_data": _training_data(folder, saved),
        "intended_use": (f"Research and teaching: {what} for one colour fundus photograph, "
                         "to compare transfer-learning recipes and inspect what they attend to."),
        "limits": limits,
        "not_a_medical_device": NOT_A_MEDICAL_DEVICE,
    }


def describe_model(index: int, name: str, path: Path, saved: SavedModel,
                   cam_note: str | None) -> dict[str, Any]:
    """The picker entry and model card of one served model (JSON-ready).

    Args:
        index: Position in the served list (what ``?model=`` takes, besides the name).
        name: Unique display name.
        path: Where it was loaded from (only its last component is shown).
        saved: The loaded model.
        cam_note: Why CAMs are unavailable, or ``None`` when they are.
    """
    folder = _folder(path)
    task = saved.task
    return {
        "index": index,
        "name": name,
        "source": path.name,
        "task": task if saved.formulation is None else f"{task} ({saved.formulation})",
        "kind": _kind(saved, folder),
        "backbone": " + ".join(_backbones(saved.model)),
        "labels": list(saved.label_names),
        "thresholds": [float(t) for t in saved.thresholds],
        "image_size": saved.image_size,
        "preprocess": saved.preprocess,
        "tta": bool(saved.tta),
        "cam": cam_note is None,
        "cam_note": cam_note,
        "metrics": headline_metrics(folder, task),
        "card": _card(folder, saved, task),
    }
