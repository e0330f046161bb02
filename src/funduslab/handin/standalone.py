"""Course hand-in predictor: the saved models of this folder → a Kaggle submission ``id,D,G,A``.

Written by ``funduslab bundle``; runs with torch, torchvision, timm, Pillow, pandas and numpy
only (no funduslab, no OpenCV). Each model is fed exactly as it was trained: the image is read as
8-bit RGB, padded with black to a centred square, resized like OpenCV (``INTER_AREA`` when
shrinking, bicubic when enlarging), scaled to [0, 1] and normalised with the run's mean/std. The
labels use the thresholds the run chose, and flip averaging / bf16 autocast when the run used them.

Usage::

    python NAME.py --images onsite_test_images --out submission.csv
    python NAME.py --images DIR --template onsite_test_submission.csv --model NAME_task1-1.pt

With several models and no ``--model``, one CSV per model is written as ``<out>_<model>.csv``.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

# One entry per saved model; written by funduslab bundle (see readme.md).
MODELS: list = []

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


# ---- images -----------------------------------------------------------------------------------
def _on_black(color: np.ndarray, alpha: np.ndarray, alpha_max: float) -> np.ndarray:
    weight = alpha.astype(np.float64)[..., None] / alpha_max
    return np.rint(color.astype(np.float64) * weight).clip(0, 255).astype(np.uint8)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB; grey is replicated, alpha composited on black, 16-bit grey scaled
    by 255/65535 (the rules funduslab trained with)."""
    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "PA":
            im = im.convert("RGBA")
        mode = im.mode
        arr = np.array(im)
    if mode == "RGB":
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if mode in ("RGBA", "LA"):
        color = arr[..., :3] if mode == "RGBA" else np.repeat(arr[..., :1], 3, axis=2)
        return _on_black(color, arr[..., -1], 255.0)
    if mode in ("L", "1"):
        return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
    if mode.startswith("I") or mode == "F":
        wide = arr.astype(np.float64)
        wide = np.nan_to_num(wide) * 255.0 if mode == "F" else wide * (255.0 / 65535.0)
        gray = np.rint(np.clip(wide, 0.0, 255.0)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    with Image.open(path) as im:
        return np.array(im.convert("RGB"), dtype=np.uint8)


@functools.lru_cache(maxsize=16)
def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_AREA weights: source index and float32 weight per (output, tap)."""
    scale = 1.0 / (dst / src)
    taps = []
    for d in range(dst):
        lo = d * scale
        hi = lo + scale
        cell = min(scale, src - lo)
        s1, s2 = math.ceil(lo), math.floor(hi)
        s2 = min(s2, src - 1)
        s1 = min(s1, s2)
        row = [(s1 - 1, (s1 - lo) / cell)] if s1 - lo > 1e-3 else []
        row += [(s, 1.0 / cell) for s in range(s1, s2)]
        if hi - s2 > 1e-3:
            row.append((s2, min(min(hi - s2, 1.0), cell) / cell))
        taps.append(row)
    n = max(len(r) for r in taps)
    index, weight = np.zeros((dst, n), np.int64), np.zeros((dst, n), np.float32)
    for d, row in enumerate(taps):
        for k, (s, w) in enumerate(row):
            index[d, k], weight[d, k] = s, np.float32(w)
    return index, weight


def _resize_area(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shrink like ``cv2.resize(..., INTER_AREA)`` (same taps, same float32 sums)."""
    h, w = rgb.shape[:2]
    sy, sx = 1.0 / (size / h), 1.0 / (size / w)
    ky, kx = int(round(sy)), int(round(sx))
    eps = 2.220446049250313e-16
    if abs(sy - ky) < eps and abs(sx - kx) < eps and (h, w) == (ky * size, kx * size):
        blocks = rgb.reshape(size, ky, size, kx, 3).astype(np.int64)  # whole-number factors
        if ky == kx == 2:
            total = (blocks[:, 0, :, 0] + blocks[:, 0, :, 1]
                     + blocks[:, 1, :, 0] + blocks[:, 1, :, 1])
            return ((total + 2) >> 2).astype(np.uint8)
        total = blocks.sum(axis=(1, 3)).astype(np.float32)
        return np.clip(np.rint(total * np.float32(1.0 / (ky * kx))), 0, 255).astype(np.uint8)
    xi, xw = _area_taps(w, size)
    yi, yw = _area_taps(h, size)
    src = rgb.astype(np.float32)
    rows = np.zeros((h, size, 3), np.float32)
    for t in range(xi.shape[1]):  # horizontal pass, taps in OpenCV's order
        rows = rows + src[:, xi[:, t], :] * xw[:, t][None, :, None]
    out = yw[:, 0][:, None, None] * rows[yi[:, 0]]
    for t in range(1, yi.shape[1]):  # vertical pass
        out = out + yw[:, t][:, None, None] * rows[yi[:, t]]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _cubic_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's bicubic (A = -0.75) fixed-point weights (×2048) and clamped source indices."""
    scale, a, one = 1.0 / (dst / src), np.float32(-0.75), np.float32(1.0)
    index, weight = np.zeros((dst, 4), np.int64), np.zeros((dst, 4), np.int64)
    for d in range(dst):
        f = np.float32((d + 0.5) * scale - 0.5)
        s = math.floor(f)
        x = np.float32(f - np.float32(s))
        c0 = ((a * (x + one) - np.float32(5) * a) * (x + one) + np.float32(8) * a) * (x + one) \
            - np.float32(4) * a
        c1 = ((a + np.float32(2)) * x - (a + np.float32(3))) * x * x + one
        c2 = ((a + np.float32(2)) * (one - x) - (a + np.float32(3))) * (one - x) * (one - x) + one
        for k, c in enumerate((c0, c1, c2, one - c0 - c1 - c2)):
            index[d, k] = min(max(s - 1 + k, 0), src - 1)
            weight[d, k] = int(np.rint(np.float32(c * np.float32(2048))))
    return index, weight


def _resize_cubic(rgb: np.ndarray, size: int) -> np.ndarray:
    """Enlarge like OpenCV's reference bicubic (OpenCV builds with Intel IPP differ from it by
    one grey level in some pixels)."""
    xi, xw = _cubic_taps(rgb.shape[1], size)
    yi, yw = _cubic_taps(rgb.shape[0], size)
    rows = (rgb.astype(np.int64)[:, xi, :] * xw[None, :, :, None]).sum(axis=2)
    out = (rows[yi] * yw[:, :, None, None]).sum(axis=1)
    return np.clip((out + (1 << 21)) >> 22, 0, 255).astype(np.uint8)


def resize(rgb: np.ndarray, size: int, pad_to_square: bool = True) -> np.ndarray:
    """funduslab's ``resize`` step: pad to a centred black square (or stretch), then shrink
    (area) or enlarge (bicubic) to ``size × size``."""
    h, w = rgb.shape[:2]
    if pad_to_square and h != w:
        side = max(h, w)
        square = np.zeros((side, side, 3), dtype=np.uint8)
        oy, ox = (side - h) // 2, (side - w) // 2
        square[oy:oy + h, ox:ox + w] = rgb
        rgb, h, w = square, side, side
    if (h, w) == (size, size):
        return rgb.copy()
    return _resize_area(rgb, size) if size < min(h, w) else _resize_cubic(rgb, size)


def decode(path: str | os.PathLike, entry: dict) -> np.ndarray:
    """One image as the model's run decoded it: ``(S, S, 3)`` uint8."""
    rgb = read_rgb(path)
    for size, pad in entry["resize_steps"]:
        rgb = resize(rgb, int(size), bool(pad))
    size = int(entry["image_size"])
    return rgb if rgb.shape[:2] == (size, size) else resize(rgb, size)


from funduslab.handin.standalone_models import build_model  # noqa: E402 (inlined in NAME.py)


def load_model(entry: dict, folder: Path) -> nn.Module:
    path = folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: keep the .pt files beside this script or "
                                "pass --weights-dir")
    return build_model(entry, torch.load(path, map_location="cpu", weights_only=True))


# ---- prediction -------------------------------------------------------------------------------
@torch.no_grad()
def predict_logits(model: nn.Module, entry: dict, images: np.ndarray,
                   device: str = "cpu", batch_size: int = 16) -> np.ndarray:
    """``(N, K)`` logits of ``(N, S, S, 3)`` uint8 images, with the run's TTA and precision."""
    dev = torch.device(device)
    model.to(dev)
    mean = torch.tensor(entry["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(entry["std"], device=dev).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start:start + batch_size])).to(dev)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        views = [x, x.flip(-1), x.flip(-2)] if entry["tta"] else [x]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bool(entry["bf16"])):
            logits = torch.stack([model((v - mean) / std).float() for v in views]).mean(0)
        out.append(logits.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, int(entry["num_outputs"])), np.float32)


def list_images(images: Path, template: Path | None) -> tuple[list[str], list[Path]]:
    """Ids and paths: every image in ``images`` by name, or the template's first column."""
    if not images.is_dir():
        raise FileNotFoundError(f"image folder not found: {images}")
    names = sorted(p.name for p in images.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if template is None:
        if not names:
            raise FileNotFoundError(f"{images} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        return names, [images / n for n in names]
    frame = pd.read_csv(template, dtype=str, keep_default_na=False, skipinitialspace=True)
    ids = [str(i).strip() for i in frame.iloc[:, 0]]
    every = {p.name: p.name for p in images.iterdir() if p.is_file()}
    lower = {n.lower(): n for n in every}
    stems = {}
    for n in names:
        stems.setdefault(os.path.splitext(n)[0], n)
    paths = []
    for i in ids:
        found = every.get(i) or lower.get(i.lower()) or (
            stems.get(i) if Path(i).suffix.lower() not in IMAGE_EXTENSIONS else None)
        if found is None:
            raise FileNotFoundError(f"{template}: image {i!r} not found in {images}")
        paths.append(images / found)
    return ids, paths


def submission(entry: dict, model: nn.Module, ids: list[str], paths: list[Path],
               device: str = "cpu", batch_size: int = 16) -> pd.DataFrame:
    """The Kaggle frame ``id, <label>…`` (0/1) at the run's thresholds."""
    chunks = []
    for start in range(0, len(paths), batch_size):
        images = np.stack([decode(p, entry) for p in paths[start:start + batch_size]])
        chunks.append(predict_logits(model, entry, images, device, batch_size))
    logits = np.concatenate(chunks) if chunks else np.zeros((0, len(entry["label_names"])))
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    preds = (probs >= np.asarray(entry["thresholds"], dtype=np.float64)).astype(int)
    frame = pd.DataFrame({"id": ids})
    for k, name in enumerate(entry["label_names"]):
        frame[name] = preds[:, k]
    return frame


def _choose(model: str | None) -> list[dict]:
    if model is None:
        return list(MODELS)
    chosen = [e for e in MODELS if model in (e["file"], Path(e["file"]).stem, e["task"])]
    if not chosen:
        raise ValueError(f"no model {model!r}; choose one of {[e['file'] for e in MODELS]}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of fundus images")
    parser.add_argument("--out", type=Path, default=Path("submission.csv"), help="CSV to write")
    parser.add_argument("--template", type=Path, help="CSV whose first column lists the ids")
    parser.add_argument("--model", help="one .pt file (or its task, e.g. 1-1); default: all")
    parser.add_argument("--weights-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)
    try:
        entries = _choose(args.model)
        ids, paths = list_images(args.images, args.template)
        for entry in entries:
            out = args.out if len(entries) == 1 else args.out.with_name(
                f"{args.out.stem}_{Path(entry['file']).stem}{args.out.suffix or '.csv'}")
            model = load_model(entry, args.weights_dir)
            frame = submission(entry, model, ids, paths, args.device, args.batch_size)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(f".{out.name}.tmp")
            try:  # a full disk leaves the previous submission, not half of a new one
                frame.to_csv(tmp, index=False)
                os.replace(tmp, out)
            except OSError as err:
                raise OSError(f"cannot write {out}: {err.strerror or err}") from None
            finally:
                tmp.unlink(missing_ok=True)
            print(f"{entry['file']}: {len(ids)} images -> {out}")
    except (OSError, ValueError) as err:  # missing files, bad images, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
