"""Benchmark the synthetic fundus generator: images rendered per second on one core.

Usage: python benchmarks/bench_synth.py [--n 300] [--size 256] [--target 100] [--clock cpu]
Exits 1 when the rate is below ``--target`` images/s. OpenCV runs on one thread; the rate is
judged on process CPU time by default (``--clock cpu``), which a busy shared machine does not
distort; ``--clock wall`` judges wall-clock time instead. Both are printed.
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2

from funduslab.data.synthetic import (
    image_rng,
    render_fundus,
    sample_course_spec,
    sample_many_label_spec,
)

SAMPLERS = {"course": sample_course_spec, "many": sample_many_label_spec}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images to render")
    parser.add_argument("--size", type=int, default=256, help="image side, px")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=100.0, help="minimum images/s")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default="course")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="which time the target is judged on")
    parser.add_argument("--jpeg", action="store_true", help="also time JPEG encoding")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    sampler = SAMPLERS[args.sampler]
    for i in range(5):  # warm-up (imports, caches)
        rng = image_rng(args.seed, 10**6 + i)
        render_fundus(sampler(rng, args.size), rng)
    t0, c0 = time.perf_counter(), time.process_time()
    encode = 0.0
    for i in range(args.n):
        rng = image_rng(args.seed, i)
        spec = sampler(rng, args.size)
        img, _ = render_fundus(spec, rng)
        if args.jpeg:
            t1 = time.process_time()
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, spec.camera.jpeg_quality])
            encode += time.process_time() - t1
    wall = args.n / (time.perf_counter() - t0 - encode)
    cpu = args.n / (time.process_time() - c0 - encode)
    rate = cpu if args.clock == "cpu" else wall
    print(f"rendered {args.n} images at {args.size} px ({args.sampler}) on 1 thread: "
          f"{cpu:.1f} images/s CPU time ({1000 / cpu:.2f} ms/image), {wall:.1f} images/s wall")
    if args.jpeg:
        print(f"JPEG encoding: {1000 * encode / args.n:.2f} ms/image")
    if rate < args.target:
        print(f"FAIL: {rate:.1f} images/s ({args.clock}) is below the target {args.target:.0f}",
              file=sys.stderr)
        return 1
    print(f"OK: target {args.target:.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
