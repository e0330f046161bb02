"""``readme.md`` of a hand-in: what each file is, how to run it, and the measured figures.

Figures are read from each run's ``metrics.json`` at the thresholds the run used (0.5, or tuned
on val, in which case the val figures are optimistic and say so), never recomputed.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["render_readme"]

_KIND_TEXT = {
    "torchvision": "plain torchvision state dict: loads strictly with the course template's code",
    "timm": "plain state dict for `timm.create_model(arch, num_classes={k})`",
    "wrapped": "plain state dict for the timm backbone + head modules defined in {script}",
}


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _splits(metrics: dict[str, Any]) -> list[str]:
    names = [s for s in (metrics.get("splits") or {}) if s != "train"]
    return sorted(names, key=lambda s: (s != "val", s))


def _figures(entry: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    used = (metrics.get("thresholds") or {}).get("used", "0.5")
    block = "tuned_thresholds" if used == "tuned_on_val" else "threshold_0.5"
    rows = []
    for split in _splits(metrics):
        scores = (metrics["splits"][split] or {}).get(block)
        if not scores:
            continue
        per = scores.get("per_class") or {}
        cells = [" / ".join(_fmt(per.get(n, {}).get(m)) for m in ("precision", "recall", "f1"))
                 for n in entry["label_names"]]
        note = " (thresholds tuned here)" if split == "val" and block == "tuned_thresholds" else ""
        rows.append(f"| `{entry['file']}` | {split}{note} | "
                    f"{_fmt(scores.get('course_average_f1'))} | " + " | ".join(cells) + " |")
    return rows


def _loading(entry: dict[str, Any], script: str) -> str:
    k, f = entry["num_outputs"], entry["file"]
    if entry["kind"] == "torchvision" and entry["arch"] == "resnet18":
        return (f"m = torchvision.models.resnet18(); m.fc = nn.Linear(512, {k})\n"
                f"m.load_state_dict(torch.load(\"{f}\"))")
    if entry["kind"] == "torchvision":
        return (f"m = torchvision.models.efficientnet_b0(); m.classifier[1] = nn.Linear(1280, "
                f"{k})\nm.load_state_dict(torch.load(\"{f}\"))")
    if entry["kind"] == "timm" and entry["arch"] != "tiny_cnn" and not entry["timm_kwargs"]:
        return (f"m = timm.create_model(\"{entry['arch']}\", num_classes={k})\n"
                f"m.load_state_dict(torch.load(\"{f}\"))")
    module = script.removesuffix(".py")
    return (f"import {module}  # beside this readme\n"
            f"entry = next(e for e in {module}.MODELS if e[\"file\"] == \"{f}\")\n"
            f"m = {module}.load_model(entry, pathlib.Path(\".\"))")


def render_readme(team: str, script: str, entries: list[dict[str, Any]],
                  metrics: list[dict[str, Any]], checks: list[dict[str, Any]]) -> str:
    """The Markdown text.

    Args:
        team: Team name.
        script: The entry point's file name (``<team>.py``).
        entries: ``NAME.py``'s manifest, one per model.
        metrics: Each model's ``metrics.json``, same order.
        checks: Per model ``{"max_logit_diff", "decode"}`` from bundling.
    """
    from funduslab import __version__

    lines = [f"# {team}: course hand-in", "",
             f"Written by `funduslab bundle` (funduslab {__version__}) on "
             f"{time.strftime('%Y-%m-%d')}.", ""]
    lines += _files_section(script, entries)
    lines += _how_to_run_section(script, entries)
    lines += _inputs_section(entries)
    lines += _loading_section(script, entries)
    lines += _figures_section(entries, metrics)
    lines += _file_names_section(team)
    lines += _checks_section(script, entries, checks)
    return "\n".join(lines) + "\n"


def _files_section(script: str, entries: list[dict[str, Any]]) -> list[str]:
    lines = ["## Files", "", "| file | what it is |",
             "|---|---|",
             f"| `{script}` | the entry point: loads each model below and writes the Kaggle CSV "
             f"`id,{','.join(entries[0]['label_names'])}` for a folder of images; needs only "
             "torch, torchvision, timm, Pillow, pandas (and numpy) |",
             "| `readme.md` | this file |"]
    for e in entries:
        kind = _KIND_TEXT[e["kind"]].format(k=e["num_outputs"], script=f"`{script}`")
        if e["arch"] == "tiny_cnn":
            kind = f"plain state dict for funduslab's small test ResNet, built in `{script}`"
        lines.append(f"| `{e['file']}` | task {e['task']}, run `{e['run']}`: {e['kind']} "
                     f"`{e['arch']}`, head {e.get('head', 'linear')}; {kind} |")
    return lines


def _how_to_run_section(script: str, entries: list[dict[str, Any]]) -> list[str]:
    return ["", "## How to run", "", "```bash",
            "pip install torch torchvision timm pillow pandas",
            f"python {script} --images onsite_test_images --out submission.csv",
            f"python {script} --images onsite_test_images --template "
            "onsite_test_submission.csv --out submission.csv", "```", "",
            "The image ids are the file names (sorted), or the first column of `--template` in "
            "its order. With several models and no `--model FILE`, each model writes "
            "`<out>_<file>.csv` (e.g. `submission_" + entries[0]["file"][:-3] + ".csv`). "
            "`--device cuda` runs on a GPU."]


def _inputs_section(entries: list[dict[str, Any]]) -> list[str]:
    """What each model expects: size, preprocessing, normalisation, TTA, bf16, thresholds."""
    lines = ["", "## Input each model expects", "",
             "Each image is read as 8-bit RGB, padded with black to a centred square, resized to "
             "the size below as OpenCV does (area averaging when shrinking, bicubic when "
             "enlarging), scaled to [0, 1] and normalised with the mean/std below. A label is 1 "
             "where the sigmoid of its logit reaches its threshold.", "",
             "| file | image size | preprocessing | mean | std | flip TTA | bf16 | thresholds |",
             "|---|---|---|---|---|---|---|---|"]
    for e in entries:
        thr = ", ".join(f"{n} {t:.3f}" for n, t in zip(e["label_names"], e["thresholds"]))
        lines.append(f"| `{e['file']}` | {e['image_size']} | {e['preprocess']} | "
                     f"{', '.join(f'{v:.3f}' for v in e['mean'])} | "
                     f"{', '.join(f'{v:.3f}' for v in e['std'])} | {'yes' if e['tta'] else 'no'} "
                     f"| {'yes' if e['bf16'] else 'no'} | {thr} |")
    return lines


def _loading_section(script: str, entries: list[dict[str, Any]]) -> list[str]:
    lines = ["", "## Loading a model yourself", ""]
    for e in entries:
        lines += [f"`{e['file']}`:", "", "```python", _loading(e, script), "```", ""]
    return lines


def _figures_section(entries: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> list[str]:
    header = " | ".join(f"{n} P / R / F1" for n in entries[0]["label_names"])
    lines = ["## Measured figures", "",
             "From each run's `metrics.json`, at the thresholds the run used. Course average F1 "
             "= mean over diseases of the per-disease F1 averaged over both classes (the course "
             "template's figure); P / R / F1 are for the positive class.", "",
             f"| file | split | course average F1 | {header} |",
             "|---|---|---|" + "---|" * len(entries[0]["label_names"])]
    for e, m in zip(entries, metrics):
        lines += _figures(e, m)
    return lines


def _file_names_section(team: str) -> list[str]:
    return ["", "## File names", "",
            f"`{team}_task<k>-<j>.pt`; the task is the run's `output.task`, or `--task RUN=k-j`. "
            "Two runs with the same task are refused when their architecture is the same; "
            "otherwise each of their files gets the architecture as a suffix (`_resnet18`, "
            "`_efficientnet` for EfficientNet-B0, `_efficientnet_lite0`, …; a head other than "
            "linear adds `_<head>`, SE blocks inside the backbone `_sestages`).", ""]


def _checks_section(script: str, entries: list[dict[str, Any]],
                    checks: list[dict[str, Any]]) -> list[str]:
    lines = ["## Checks made when bundling", ""]
    for e, c in zip(entries, checks):
        lines.append(f"- `{e['file']}`: rebuilt from the file as `{script}` rebuilds it, its "
                     f"logits differ from funduslab's by at most {c['max_logit_diff']:.1e} (two "
                     f"random images at {e['image_size']} px); image decoding: {c['decode']}.")
    return lines
