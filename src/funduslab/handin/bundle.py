"""``funduslab bundle``: run folders → the course hand-in zip.

The zip holds ``<team>.py`` (:mod:`funduslab.handin.standalone` with the models' manifest filled
in), ``readme.md`` (:mod:`funduslab.handin.readme`) and one ``<team>_task<k>-<j>.pt`` per run
(:mod:`funduslab.handin.export`, named by :mod:`funduslab.handin.plan`). Nothing is written until
every run has been exported and checked, and the zip is written atomically.
"""

from __future__ import annotations

import io
import logging
import pprint
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from funduslab.config import atomic_write_bytes
from funduslab.handin import standalone, standalone_models
from funduslab.handin.export import export_model, verify_export
from funduslab.handin.plan import (
    HandinRun,
    assign_files,
    check_team,
    load_handin_run,
    parse_tasks,
    resize_steps,
)
from funduslab.handin.readme import render_readme

__all__ = ["BundleReport", "bundle_runs", "render_script"]

log = logging.getLogger(__name__)
_PLACEHOLDER = "MODELS: list = []"
#: standalone.py's import of the networks, replaced by their code from the marker on.
_MODELS_IMPORT = ("from funduslab.handin.standalone_models import build_model  "
                  "# noqa: E402 (inlined in NAME.py)\n")
_MODELS_MARKER = "# ---- models (inlined into NAME.py from here) "
_MODELS_HEADER = "# ---- models "


@dataclass
class BundleReport:
    """What was written.

    Attributes:
        path: The zip.
        members: File names in the zip.
        entries: ``NAME.py``'s manifest, one per model.
        checks: Per model ``{"max_logit_diff", "decode"}``.
    """

    path: Path
    members: list[str]
    entries: list[dict[str, Any]]
    checks: list[dict[str, Any]]


def render_script(team: str, entries: list[dict[str, Any]]) -> str:
    """The source of ``<team>.py``: the standalone predictor with the networks of
    :mod:`~funduslab.handin.standalone_models` inlined and its manifest filled in."""
    source = Path(standalone.__file__).read_text(encoding="utf-8")
    models = Path(standalone_models.__file__).read_text(encoding="utf-8")
    if source.count(_PLACEHOLDER) != 1 or source.count(_MODELS_IMPORT) != 1 \
            or models.count(_MODELS_MARKER) != 1:  # pragma: no cover - guards edits
        raise RuntimeError(f"{standalone.__file__} must hold the lines {_PLACEHOLDER!r} and "
                           f"{_MODELS_IMPORT!r} once, {standalone_models.__file__} the line "
                           f"{_MODELS_MARKER!r}")
    body = models[models.index(_MODELS_MARKER):].replace(_MODELS_MARKER, _MODELS_HEADER, 1)
    source = source.replace(_MODELS_IMPORT, body.rstrip("\n") + "\n")
    manifest = pprint.pformat(entries, width=96, sort_dicts=False)
    source = source.replace(_PLACEHOLDER, f"MODELS: list = {manifest}")
    return source.replace("NAME.py", f"{team}.py").replace("NAME_task", f"{team}_task")


def _entry(r: HandinRun, kind: str, arch: str, recipe: dict[str, Any]) -> dict[str, Any]:
    saved, model = r.saved, r.saved.model
    return {
        "file": r.file, "task": r.task, "run": r.run_dir.name, "kind": kind, "arch": arch,
        **recipe,
        "num_outputs": int(saved.num_outputs), "label_names": list(saved.label_names),
        "thresholds": [float(t) for t in saved.thresholds],
        "image_size": int(saved.image_size), "preprocess": str(r.meta.get("preprocess") or "none"),
        "resize_steps": resize_steps(r.meta.get("preprocess") or "none", saved.image_size,
                                     str(r.run_dir)),
        "mean": [float(v) for v in model.mean.flatten().tolist()],
        "std": [float(v) for v in model.std.flatten().tolist()],
        "tta": bool(saved.tta), "bf16": bool(saved.bf16),
    }


def _decode_check(entry: dict[str, Any], workdir: Path) -> str:
    """Compare NAME.py's decoding with funduslab's on a test image that needs padding and a
    non-integer shrink; a difference is reported, not fatal (it is OpenCV-build dependent)."""
    from funduslab.data.cache import decode_preprocessed
    from funduslab.data.imageio import write_image_atomic
    from funduslab.preprocess import build_pipeline

    size = int(entry["image_size"])
    h, w = int(size * 2.3) + 1, size * 2 + 3
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    image = (np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1)
             + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
    path = write_image_atomic(workdir / f"check_{size}.png", image)
    ours = standalone.decode(path, entry)
    theirs = decode_preprocessed(path, build_pipeline(entry["preprocess"], size), size)
    differ = int((ours != theirs).sum())
    if differ:
        log.warning("%s: NAME.py's decoding differs from funduslab's in %d of %d values",
                    entry["file"], differ, ours.size)
        return f"differs from funduslab's in {differ} of {ours.size} values of a test image"
    return "identical to funduslab's on a test image (padding + area shrink)"


def _pt_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def bundle_runs(team: str, runs: list[Path], out: Path | None = None,
                tasks: list[str] | None = None) -> BundleReport:
    """Write the hand-in zip of ``runs`` for ``team``.

    Args:
        team: Team name (letters, digits, ``_``, ``-``).
        runs: Finished single-model run folders.
        out: The zip (default ``<team>.zip`` in the current folder).
        tasks: ``RUN=k-j`` overrides of the runs' ``output.task``.

    Raises:
        ValueError: see :func:`~funduslab.handin.plan.load_handin_run`,
            :func:`~funduslab.handin.plan.assign_files` and
            :func:`~funduslab.handin.export.export_model`; also no runs, a run given twice or an
            ``out`` that is not a ``.zip``.
        FileNotFoundError: a run folder that is missing or unfinished.
    """
    team = check_team(team)
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("no run folders given: funduslab bundle --team NAME RUN...")
    seen = [r.resolve() for r in runs]
    twice = [str(r) for i, r in enumerate(runs) if seen[i] in seen[:i]]
    if twice:
        raise ValueError(f"run {twice[0]} is given twice")
    out = Path(out) if out is not None else Path(f"{team}.zip")
    if out.suffix.lower() != ".zip" or out.is_dir():
        raise ValueError(f"--out {out} must name a .zip file")
    overrides = parse_tasks(list(tasks or []), runs)
    chosen = assign_files(team, [load_handin_run(r, overrides.get(r)) for r in runs])
    entries, checks, files = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in chosen:
            exported = export_model(r.saved.model, r.meta, str(r.run_dir))
            entry = _entry(r, exported.kind, exported.arch, exported.recipe)
            diff = verify_export(r.saved.model, entry, exported.state, str(r.run_dir))
            checks.append({"max_logit_diff": diff, "decode": _decode_check(entry, Path(tmp))})
            entries.append(entry)
            files[r.file] = _pt_bytes(exported.state)
            log.info("%s → %s (%s %s, max |Δlogit| %.1e)", r.run_dir, r.file, exported.kind,
                     exported.arch, diff)
    script = f"{team}.py"
    members = {script: render_script(team, entries).encode(),
               "readme.md": render_readme(team, script, entries, [r.metrics for r in chosen],
                                          checks).encode(),
               **files}
    buffer = io.BytesIO()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # rw-r--r-- once unzipped
            archive.writestr(info, data)
    atomic_write_bytes(out, buffer.getvalue())
    return BundleReport(out, list(members), entries, checks)
