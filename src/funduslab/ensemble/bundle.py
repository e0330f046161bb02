"""One weights file for an ensemble: its members' weights plus the fitted combiner's numbers.

A bundle is what course Task 4 saves as ``<team>_task4.pt`` when the best method is an ensemble::

    {"format": "funduslab-ensemble", "version": 1, "method": "stacking",
     "combiner": {"method", "n_members", "n_classes", <tensors/floats of the rule>},
     "label_names": [...], "thresholds": [...],
     "members": [{"state_dict", "metadata", "tta", "bf16", "run_dir"} | {"bundle": {...}}, ...]}

Plain tensors and primitives only, so ``torch.load(path, weights_only=True)`` reads it.
:class:`EnsembleModel` re-implements each combination rule in torch from the fitted numbers
(Kuncheva, *Combining Pattern Classifiers*, Wiley 2014; stacking: Wolpert, Neural Networks
1992) and returns the **logit** of the ensemble probability, so
:func:`funduslab.training.predict.predict_probabilities` runs it unchanged. Each member runs as
its run predicted: under bf16 autocast if it was trained ``bf16-mixed`` and with flip TTA if its
run used ``train.tta`` — so call ``predict_probabilities(model, images)`` with the default
``tta=False, bf16=False``. A member that is itself an ensemble run folder is bundled recursively
(from its own ``ensemble.pt`` when it has one, so its members need not be at hand).
``funduslab ensemble`` keeps a bundle as ``ensemble.pt`` (``BUNDLE_FILENAME``) in the ensemble
run folder, and :mod:`funduslab.inference.saved_model` prefers it to the members: the folder
predicts wherever it is copied.

Where the numbers come from (:func:`save_ensemble_bundle`): ``max_voting`` / ``soft_voting``
from ``config.yaml``'s ``ensemble.params``; ``weighted`` from ``ensemble.learned.weights_``.
Stacking's meta-models are not stored in the run folder, so pass the fitted combiner, or the
bundle refits it on the members' saved validation probabilities exactly as
:func:`~funduslab.ensemble.run_folder.write_ensemble_run` did (``load_members`` + ``combine``;
logistic regression is deterministic) and checks the refit against the ensemble's saved
predictions. Only logistic meta-models are a formula in torch; gradient boosting is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from funduslab.ensemble.combiners import ENSEMBLES, GRADIENT_BOOSTING_HINT, Stacking, _Combiner
from funduslab.ensemble.members import load_members, resolve_member
from funduslab.ensemble.run_folder import BUNDLE_FILENAME, build_combiner, combine
from funduslab.ensemble.weight_search import EPS
from funduslab.models.checkpoints import save_torch_atomic
from funduslab.models.funduslab_checkpoints import load_funduslab_checkpoint
from funduslab.runs import RunFolder

__all__ = [
    "BUNDLE_FILENAME",
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "EnsembleModel",
    "combiner_numbers",
    "ensemble_payload",
    "load_ensemble_bundle",
    "model_from_payload",
    "read_bundle_payload",
    "save_ensemble_bundle",
]

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "funduslab-ensemble"
BUNDLE_VERSION = 1
METHODS = ENSEMBLES.names()  # every registered combiner bundles through its rule


def combiner_numbers(combiner: Any) -> dict[str, Any]:
    """The numbers a *fitted* combiner applies, as tensors/floats/str (``weights_only``-safe).

    Returns:
        ``{"method", "n_members", "n_classes", **combiner.numbers()}``: e.g. ``threshold`` (max
        voting), ``weights`` ``(M,)`` (weighted), or ``coef`` ``(K, M)``, ``intercept``,
        ``constant`` and ``is_constant`` ``(K,)`` (stacking).

    Raises:
        ValueError: not fitted, a gradient-boosting stacker, or not a funduslab combiner.
    """
    if not isinstance(combiner, _Combiner) or combiner.method not in ENSEMBLES:
        raise ValueError(f"cannot bundle a {type(combiner).__name__}; combiners: {METHODS}")
    if isinstance(combiner, Stacking) and combiner.meta != "logistic":
        raise ValueError(f"{GRADIENT_BOOSTING_HINT} (meta={combiner.meta!r})")
    check_is_fitted(combiner)  # NotFittedError is a ValueError
    return {"method": combiner.method, "n_members": int(combiner.n_members_),
            "n_classes": int(combiner.n_classes_), **combiner.numbers()}


class EnsembleModel(nn.Module):
    """Members + combination rule; ``(B, 3, H, W)`` images in [0, 1] → ensemble logits ``(B, K)``.

    Args:
        members: The member models (``FundusModel``, ``DualFundusModel`` or ``EnsembleModel``),
            each mapping images to logits.
        combiner: :func:`combiner_numbers` of the fitted combiner.
        label_names: ``K`` label names.
        thresholds: ``K`` decision thresholds the ensemble run used (0.5 or tuned on val).
        member_tta: Per member, average its logits over horizontal/vertical flips (as its run).
        member_bf16: Per member, run it under bfloat16 autocast (as its run predicted).
    """

    def __init__(self, members: Sequence[nn.Module], combiner: dict[str, Any],
                 label_names: Sequence[str] = (), thresholds: Sequence[float] | None = None,
                 member_tta: Sequence[bool] | None = None,
                 member_bf16: Sequence[bool] | None = None) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        M = len(self.members)
        self.method = str(combiner.get("method"))
        if self.method not in METHODS:
            raise ValueError(f"combiner method {self.method!r} is not one of {list(METHODS)}")
        if int(combiner.get("n_members", M)) != M:
            raise ValueError(f"combiner was fitted on {combiner['n_members']} members; got {M}")
        self.label_names = list(label_names)
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        self.member_tta = [bool(v) for v in (member_tta or [False] * M)]
        self.member_bf16 = [bool(v) for v in (member_bf16 or [False] * M)]
        self.rule = ENSEMBLES.get(self.method).rule
        ENSEMBLES.get(self.method).check_numbers(combiner, M)
        self.numbers: dict[str, Any] = {}  # floats; tensors become buffers (they follow .to())
        for key, value in combiner.items():
            if key in ("method", "n_members", "n_classes"):
                continue
            if isinstance(value, torch.Tensor):
                self.register_buffer(key, value.clone())
            else:
                self.numbers[key] = value

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's float32 logits ``(M, B, K)``, with its own precision and TTA."""
        out = []
        for model, tta, bf16 in zip(self.members, self.member_tta, self.member_bf16):
            views = [x, x.flip(-1), x.flip(-2)] if tta else [x]
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(torch.stack([model(v).float() for v in views]).mean(0))
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` (or dual pairs) → logits of the ensemble probability (B, K)."""
        z = self.member_logits(x)
        with torch.autocast(x.device.type, enabled=False):
            numbers = {**self.numbers, **dict(self.named_buffers(recurse=False))}
            q = self.rule(torch.sigmoid(z.double()), numbers)  # the combiner's own rule
            return torch.logit(q.clamp(EPS, 1 - EPS)).float()


def _member_entry(run_dir: Path, label_names: list[str]) -> dict[str, Any]:
    folder = RunFolder(run_dir)
    if "ensemble" in folder.config:  # FileNotFoundError names a folder without config.yaml
        own = folder.bundle  # its own bundle: its members may have moved away
        nested = read_bundle_payload(own) if own is not None else ensemble_payload(run_dir, None)
        if nested["label_names"] != label_names:
            raise ValueError(f"{run_dir} predicts labels {nested['label_names']}; the ensemble "
                             f"predicts {label_names}")
        return {"bundle": nested, "run_dir": str(run_dir)}
    path = folder.require_weights()
    state, meta = load_funduslab_checkpoint(path)
    if list(meta.get("label_names") or []) != label_names:
        raise ValueError(f"{path} predicts labels {meta.get('label_names')}; the ensemble "
                         f"predicts {label_names}")
    _member_model(state, meta, str(path))  # fail now, not when the bundle is loaded
    return {"state_dict": state, "metadata": meta, "run_dir": str(run_dir),
            "tta": folder.tta, "bf16": folder.bf16}


def _refit_stacking(run_dir: Path, params: dict[str, Any], members: list[Path]) -> Any:
    """Refit stacking as write_ensemble_run did; check it against the saved predictions."""
    data = load_members(members)
    combiner, probs = combine(data, build_combiner("stacking", **params))
    folder = RunFolder(run_dir)
    saved_splits = folder.prediction_splits
    for split, p in probs.items():
        if split == data.val_split or split not in saved_splits:
            continue  # validation holds out-of-fold predictions
        ids, saved = folder.predictions(split, data.label_names)
        if ids != data.ids[split] or not np.allclose(p, saved, atol=1e-5):
            raise ValueError(f"refitting {run_dir}'s stacking does not reproduce its "
                             f"predictions/{split}.csv: have its members changed? Pass the "
                             "fitted combiner to save_ensemble_bundle instead")
    log.info("stacking meta-models refitted on %s of %d members", data.val_split, len(members))
    return combiner


def ensemble_payload(ensemble_run_dir: Path, combiner: Any = None) -> dict[str, Any]:
    """The bundle document of an ensemble run folder (members' weights + combiner numbers);
    see :func:`save_ensemble_bundle` for ``combiner``."""
    run_dir = Path(ensemble_run_dir)
    folder = RunFolder(run_dir)
    ens = folder.config.get("ensemble")
    if not isinstance(ens, dict):
        raise ValueError(f"{folder.config_path} has no ensemble section: not an ensemble "
                         "run")
    method, params = str(ens.get("method")), dict(ens.get("params") or {})
    if method not in METHODS:
        raise ValueError(f"{run_dir}: ensemble method {method!r}; bundles hold {list(METHODS)}")
    if method == "stacking" and combiner is None and params.get("meta", "logistic") != "logistic":
        raise ValueError(f"{run_dir}: {GRADIENT_BOOSTING_HINT} (meta={params.get('meta')!r})")
    recorded, absolute = list(ens.get("members") or []), list(ens.get("members_absolute") or [])
    members = [resolve_member(str(m), run_dir, absolute[i] if i < len(absolute) else None)
               for i, m in enumerate(recorded)]
    if combiner is None and method == "stacking":
        combiner = _refit_stacking(run_dir, params, members)
    elif combiner is None:  # the numbers write_ensemble_run stored: params + learned
        combiner = build_combiner(method, **params)
        for key, value in (ens.get("learned") or {}).items():
            setattr(combiner, key, np.asarray(value) if isinstance(value, list) else value)
    numbers = combiner_numbers(combiner)
    if numbers["method"] != method or numbers["n_members"] != len(members):
        raise ValueError(f"the combiner is {numbers['method']} of {numbers['n_members']} members; "
                         f"{run_dir} is {method} of {len(members)}")
    names = list(folder.provenance.get("label_names") or [])
    th = (folder.metrics.get("thresholds") or {}) if folder.has_metrics else {}
    thresholds = (th.get("tuned_on_val") if th.get("used") == "tuned_on_val" else None)
    return {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "method": method,
        "combiner": numbers, "label_names": names,
        "thresholds": [float(t) for t in (thresholds or [0.5] * len(names))],
        "members": [_member_entry(m, names) for m in members], "source": str(run_dir),
    }


def save_ensemble_bundle(ensemble_run_dir: Path | str, path: Path | str,
                         combiner: Any = None) -> Path:
    """Write the ensemble in ``ensemble_run_dir`` (members' weights + combiner) to ``path``.

    Args:
        ensemble_run_dir: A folder written by ``write_ensemble_run`` (``funduslab ensemble``,
            bagging, boosting); its members' run folders must still hold their weights.
        path: Output file, e.g. ``runs/best/<team>_task4.pt``; written atomically.
        combiner: The fitted combiner. Needed only for stacking, whose meta-models the run
            folder does not store; when omitted they are refitted on the members' saved
            validation probabilities (deterministic) and checked against the saved predictions.

    Raises:
        ValueError: not an ensemble folder, gradient-boosting stacking, members that disagree.
        FileNotFoundError: a member's folder or weights are gone.
    """
    payload = ensemble_payload(Path(ensemble_run_dir), combiner)
    path = save_torch_atomic(payload, path)
    log.info("ensemble %s of %d members saved to %s", payload["method"],
             len(payload["members"]), path)
    return path


def _member_model(state: dict[str, torch.Tensor], meta: dict[str, Any], where: str) -> nn.Module:
    """Rebuild a member exactly as ``model_from_checkpoint`` does."""
    from funduslab.models.factory import model_from_state

    return model_from_state(state, meta, where=where).eval()


def model_from_payload(payload: Any, where: str) -> EnsembleModel:
    """Rebuild the :class:`EnsembleModel` a bundle document describes (``where`` names it in
    errors)."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt != BUNDLE_FORMAT:
        single = fmt == "funduslab"
        hint = " (a single-model checkpoint: use model_from_checkpoint)" if single else ""
        raise ValueError(f"{where} is not a funduslab ensemble bundle{hint}; format: {fmt!r}, "
                         f"expected {BUNDLE_FORMAT!r}")
    if int(payload.get("version", 0)) > BUNDLE_VERSION:
        raise ValueError(f"{where} has bundle version {payload['version']}; this funduslab reads "
                         f"up to {BUNDLE_VERSION}: upgrade funduslab")
    models, tta, bf16 = [], [], []
    for m, entry in enumerate(payload["members"]):
        name = f"{where} member {m} ({entry.get('run_dir', '?')})"
        if "bundle" in entry:
            models.append(model_from_payload(entry["bundle"], name))
        else:
            models.append(_member_model(entry["state_dict"], entry["metadata"], name))
        tta.append(bool(entry.get("tta", False)))
        bf16.append(bool(entry.get("bf16", False)))
    try:
        return EnsembleModel(models, payload["combiner"], payload.get("label_names") or (),
                             payload.get("thresholds"), tta, bf16).eval()
    except (KeyError, AttributeError, ValueError) as err:
        raise ValueError(f"{where}: the combiner does not fit the members: {err}") from None


def read_bundle_payload(path: Path | str) -> Any:
    """The raw document of a bundle file (``weights_only=True``; format checked on use)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ensemble bundle not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors vary by torch version
        raise ValueError(f"{path} could not be read as a weights-only torch file: {err}") from None


def load_ensemble_bundle(path: Path | str) -> EnsembleModel:
    """Read a bundle written by :func:`save_ensemble_bundle` (``weights_only=True``).

    Raises:
        FileNotFoundError: missing file.
        ValueError: another format, a newer version, or a member that does not fit its
            metadata (the file and member are named).
    """
    return model_from_payload(read_bundle_payload(path), str(path))
