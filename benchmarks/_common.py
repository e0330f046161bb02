"""Helpers shared by the benchmark scripts: locating ../shared data and printing a verdict."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def course_root(arg: str | None) -> Path:
    """The course folder from ``--data`` or ``../shared/data/odir-course``; exit 2 if absent."""
    root = Path(arg) if arg else SHARED / "odir-course"
    if not (root / "train.csv").is_file():
        print(f"course data not found at {root}; pass --data", file=sys.stderr)
        raise SystemExit(2)
    return root


def verdict(ok: bool, message: str) -> int:
    """Print PASS/FAIL with ``message``; return the exit status."""
    print(("PASS: " if ok else "FAIL: ") + message, flush=True)
    return 0 if ok else 1


def cap_isa(isa: str | None) -> None:
    """Re-run this script with PyTorch's kernels capped at ``isa`` (``avx2``), or do nothing.

    ``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA`` make ATen and oneDNN use the code paths of
    an AVX2-only CPU (no AVX-512, no native bf16), so one machine measures both kinds of VM's
    kernels. Clock and memory stay this machine's: a proxy for an AVX2 VM, not the VM itself.
    """
    if not isa or os.environ.get("ATEN_CPU_CAPABILITY") == isa.lower():
        return
    env = {**os.environ, "ATEN_CPU_CAPABILITY": isa.lower(), "ONEDNN_MAX_CPU_ISA": isa.upper()}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def kernels() -> str:
    """Which CPU kernels run: ATen's capability, oneDNN's cap, and whether bf16 is native."""
    import torch

    from funduslab.training.fit import native_cpu_bf16

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "none")
    return (f"CPU capability {torch.backends.cpu.get_cpu_capability()} (oneDNN cap {cap}), "
            f"native bf16 {'yes' if native_cpu_bf16() else 'no'}")
