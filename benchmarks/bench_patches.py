"""Benchmark: lesion-patch extraction speed (funduslab issue 8).

Writes 50 synthetic IDRiD-style images at 1024×1024 (not timed), then times extracting them into
128-px patches — grid (stride 128) and lesion-centred with ``lesion_seed`` rebalancing — on one
core, including decoding, labelling, PNG writing and the atomic swap. Target: each ≤ 20 s.
Prints the figures; exits 1 on a miss.

Usage: ``python benchmarks/bench_patches.py [--n 50] [--size 1024] [--patch 128] [--budget 20]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per extraction")
    args = parser.parse_args()

    import cv2

    cv2.setNumThreads(1)
    from funduslab.data.adapters import load_table
    from funduslab.data.patches import PatchOptions
    from funduslab.data.patches_write import write_patch_set
    from funduslab.data.synthetic_layouts import write_layout

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        root = write_layout("idrid", Path(tmp) / "idrid", n=args.n, seed=0, size=args.size)
        runs = [
            ("grid", PatchOptions(size=args.patch, mode="grid"), "none"),
            ("lesion_centred", PatchOptions(size=args.patch, mode="lesion_centred"),
             "lesion_seed"),
        ]
        print(f"{args.n} images {args.size}×{args.size} → {args.patch}-px patches, 1 thread")
        for name, options, strategy in runs:
            started = time.perf_counter()
            table = load_table("idrid", root)
            frame = write_patch_set(table, Path(tmp) / name, options, rebalance_name=strategy,
                                    seed=0)
            seconds = time.perf_counter() - started
            ok = seconds <= args.budget
            failed |= not ok
            pos = frame[["MA", "HE", "EX", "SE"]].sum().to_dict()
            print(f"  {name:15s} {seconds:6.2f} s  ({len(frame)} patches, "
                  f"{len(frame) / seconds:.0f} patches/s, positives {pos})  "
                  f"{'OK' if ok else 'MISS'} (target ≤ {args.budget:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
