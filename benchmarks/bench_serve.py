"""Load check of ``funduslab serve``: latency per image with CAMs, throughput under concurrency.

Starts the real app under uvicorn on a free 127.0.0.1 port (in this process, one worker, the
model behind its lock, as ``funduslab serve`` runs it) and sends fundus JPEGs over HTTP:

1. one client, ``--n`` requests one after another → p50 / p95 latency per image;
2. ``--clients`` clients at once, ``--per-client`` requests each → throughput (images/s) and
   p50 / p95 latency under load.

Every request is ``POST /api/predict?cam=true`` (probabilities + a CAM per label, base64 PNGs)
unless ``--no-cam``. Exits 1 if any request fails (nothing may be dropped: the server queues)
or, when given, the single-client p95 exceeds ``--max-p95-ms``.

Without ``--run`` it first writes a small synthetic course set and trains a tiny run on it
(``--backbone tiny_cnn``, ``--image-size 128``, 1 epoch; not timed). Torch uses ``--threads``
threads (default 2, the CI machine's cores).

    python benchmarks/bench_serve.py
    python benchmarks/bench_serve.py --run runs/lite0_full \
        --images ../shared/data/odir-course/images/onsite_test
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import verdict


def train_tiny_run(out: Path, backbone: str, image_size: int) -> tuple[Path, Path]:
    """A synthetic course set and a 1-epoch run on it; returns (run folder, image folder)."""
    from funduslab.config import config_from_dict
    from funduslab.data.synthetic_layouts import write_layout
    from funduslab.training.runner import run

    data = write_layout("odir-course", out / "data", n=96, seed=3, size=max(256, image_size))
    cfg = config_from_dict({
        "data": {"root": str(data), "image_size": image_size, "cache_dir": str(out / "cache"),
                 "augment": "none"},
        "model": {"backbone": backbone, "weights": "none"},
        "train": {"setup": "full", "epochs": 1, "batch_size": 16, "precision": "32",
                  "warmup_epochs": 0, "tune_thresholds": True},
        "output": {"out": str(out / "runs"), "name": f"bench_{backbone}", "figures": False},
    })
    return run(cfg, progress=False), Path(data) / "images" / "onsite_test"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(run_dir: Path, device: str):
    """uvicorn with the app over ``run_dir`` in a daemon thread; returns (server, base URL)."""
    import uvicorn

    from funduslab.web.app import create_app
    from funduslab.web.service import ModelService, load_models
    from funduslab.web.validate import guard_pillow

    guard_pillow()
    service = ModelService(load_models([run_dir], device=device), device=device,
                           max_waiting=256)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise SystemExit("uvicorn did not start within 60 s")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def one_request(client, url: str, path: Path, payload: bytes) -> tuple[bool, float, str]:
    """(ok, seconds, error) of one POST."""
    started = time.perf_counter()
    try:
        r = client.post(url, files={"file": (path.name, payload, "image/jpeg")}, timeout=600)
        ok = r.status_code == 200 and "probabilities" in r.json()
        error = "" if ok else f"{r.status_code}: {r.text[:200]}"
    except Exception as err:  # noqa: BLE001 - a benchmark reports every failure
        ok, error = False, f"{type(err).__name__}: {err}"
    return ok, time.perf_counter() - started, error


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run folder / weights file (default: train "
                        "a tiny synthetic run)")
    parser.add_argument("--images", type=Path, help="folder of JPEGs to send (default: the "
                        "synthetic set's onsite_test images)")
    parser.add_argument("--backbone", default="tiny_cnn", help="backbone of the tiny run")
    parser.add_argument("--image-size", type=int, default=128, help="size of the tiny run, px")
    parser.add_argument("--n", type=int, default=40, help="sequential requests")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--per-client", type=int, default=8, help="requests per client")
    parser.add_argument("--no-cam", action="store_true", help="probabilities only")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-p95-ms", type=float, help="fail above this single-client p95")
    args = parser.parse_args()

    import httpx
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        run_dir, images = args.run, args.images
        if run_dir is None:
            print(f"training a tiny {args.backbone} run at {args.image_size} px (not timed)…",
                  flush=True)
            run_dir, default_images = train_tiny_run(Path(tmp), args.backbone, args.image_size)
            images = images or default_images
        if images is None:
            print("--images is needed with --run", file=sys.stderr)
            return 2
        paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not paths:
            print(f"no JPEGs in {images}", file=sys.stderr)
            return 2
        payloads = {p: p.read_bytes() for p in paths}
        server, base = start_server(run_dir, args.device)
        url = f"{base}/api/predict?cam={'false' if args.no_cam else 'true'}"
        failures: list[str] = []
        try:
            with httpx.Client() as client:
                for p in paths[:3]:  # warm-up: first-call allocations, CAM hooks
                    one_request(client, url, p, payloads[p])
                single = []
                for i in range(args.n):
                    p = paths[i % len(paths)]
                    ok, s, err = one_request(client, url, p, payloads[p])
                    single.append(s)
                    failures += [] if ok else [err]

            def client_job(c: int) -> list[tuple[bool, float, str]]:
                with httpx.Client() as own:
                    return [one_request(own, url, paths[(c * args.per_client + k) % len(paths)],
                                        payloads[paths[(c * args.per_client + k) % len(paths)]])
                            for k in range(args.per_client)]

            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                done = [r for rs in pool.map(client_job, range(args.clients)) for r in rs]
            wall = time.perf_counter() - started
        finally:
            server.should_exit = True
        failures += [err for ok, _, err in done if not ok]
        loaded = [s for _, s, _ in done]
        what = "with CAM" if not args.no_cam else "without CAM"
        print(f"model {run_dir} ({images.name} images), torch threads {args.threads}, {what}")
        print(f"1 client, {args.n} requests: {percentiles(single)} per image")
        print(f"{args.clients} clients x {args.per_client} requests: {len(done) / wall:.2f} "
              f"images/s, {percentiles(loaded)} per request, {len(failures)} failed")
        for err in failures[:5]:
            print(f"  failed: {err}")
    ok = not failures
    message = f"{len(done) + args.n} requests, {len(failures)} failed"
    if args.max_p95_ms is not None:
        p95 = float(np.percentile(np.asarray(single) * 1000, 95))
        ok = ok and p95 <= args.max_p95_ms
        message += f"; single-client p95 {p95:.0f} ms (target <= {args.max_p95_ms:.0f})"
    return verdict(ok, message)


if __name__ == "__main__":
    sys.exit(main())
