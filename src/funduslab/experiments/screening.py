"""Many-label screening (RFMiD-style): fit, select on macro AUROC, report the long tail.

``funduslab suite screening --data <root>`` fine-tunes one backbone on every label of a
many-label set (``rfmid`` layout, or ODIR-5K eyes with a chosen label subset), selects the epoch
on validation macro AUROC, tunes one threshold per label on validation, and writes ``results.md``:
macro/micro AUROC over seeds, per-label AUROC with 95 % bootstrap CIs on the test split and the
rare labels flagged (:mod:`funduslab.reporting.longtail`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funduslab.config import atomic_write_text
from funduslab.data.adapters import load_table
from funduslab.experiments import PRESETS
from funduslab.experiments.variants import Variant, run_variants
from funduslab.reporting.longtail import long_tail_report, render_long_tail
from funduslab.reporting.run_folder import read_metrics, read_predictions, write_json
from funduslab.reporting.tables import markdown_table, mean_std

__all__ = ["screening", "screening_run_name"]

DEFAULT_ODIR5K_LABELS = "N,D,C,H,M"  # G and A have too few positives in odir5k-source


def screening_run_name(backbone: str, setup: str = "full", dual: str = "none",
                       preprocess: str = "none", tta: bool = False, with_runs: str = "") -> str:
    """Run-folder stem of one screening recipe (seed suffix ``_s<k>`` added by the runner).

    ``backbone`` and ``preprocess`` are one name each, or several joined by ``|`` for the soft
    vote of every backbone × pipeline member; ``with_runs`` adds ``_with_<their stems>``.
    """
    pipes, backbones = _alternatives(preprocess, "none"), _alternatives(backbone, backbone)
    ensemble = len(pipes) * len(backbones) > 1
    tag = "" if pipes == ["none"] and not ensemble else "_" + ("ens_" if ensemble else "") + (
        "_".join(p.replace("+", "-").replace(",", "-") for p in pipes))
    extras = "".join(f"_with_{_run_stem(t)}" for t in _run_templates(with_runs))
    return (f"screening_{'-'.join(backbones)}" + ("" if setup == "full" else f"_{setup}")
            + ("" if dual == "none" else f"_{dual}") + tag + ("_tta" if tta else "") + extras)


def _run_templates(with_runs: str) -> list[str]:
    """``"a_s{seed}|b_s{seed}"`` → ``["a_s{seed}", "b_s{seed}"]`` (empty → ``[]``)."""
    return [t.strip() for t in with_runs.split("|") if t.strip()]


def _run_stem(template: str) -> str:
    """``runs/full/screening_x_s{seed}`` → ``screening_x``: the recipe of a seeded run folder."""
    return Path(template).name.replace("_s{seed}", "").replace("{seed}", "").strip("_")


def _extra_runs(with_runs: str, seeds: list[int]) -> dict[str, list[Path]]:
    """Each ``with_runs`` template's run folder per seed, checked before anything trains.

    Raises:
        ValueError: a template without ``{seed}``.
        FileNotFoundError: a seed's folder has no ``predictions/`` (names the folder).
    """
    runs: dict[str, list[Path]] = {}
    for template in _run_templates(with_runs):
        if "{seed}" not in template:
            raise ValueError(f"with_runs entry {template!r} has no {{seed}}: write the run "
                             "folder as a path with {seed} for the seed, e.g. "
                             "runs/full/screening_x_s{seed}")
        runs[template] = [Path(template.format(seed=seed)) for seed in seeds]
        for d in runs[template]:
            if not (d / "predictions").is_dir():
                raise FileNotFoundError(f"{d} has no predictions/: with_runs needs a finished run "
                                        f"folder for every seed ({', '.join(map(str, seeds))})")
    return runs


def _alternatives(value: str, default: str) -> list[str]:
    """``"a|b"`` → ``["a", "b"]`` (empty → ``[default]``)."""
    return [p.strip() for p in value.split("|") if p.strip()] or [default]


@PRESETS.register("screening")
def screening(
    data: Path, team: str = "funduslab", out: Path = Path("runs"), quick: bool = False,
    seeds: list[int] | None = None, source: Path | None = None, adapter: str = "odir5k",
    labels: str = DEFAULT_ODIR5K_LABELS, backbone: str = "tf_efficientnet_lite0",
    weights: str = "imagenet", image_size: int = 256, epochs: int = 12, sampler: str = "random",
    split_seed: int = 0, rare_below: int = 10, test_split: str = "test",
    batch_size: int = 32, num_workers: int = 0, setup: str = "full", dual: str = "none",
    preprocess: str = "none", tta: bool = False, with_runs: str = "",
) -> Path:
    """Run the screening benchmark; return the path of ``results.md``.

    Args:
        labels: Comma-separated label subset (``odir5k`` only; ``rfmid`` uses every column).
        split_seed: Seed of the patient-level split (``odir5k``); the same for every model seed,
            so seeds vary only the fit.
        rare_below: Labels with fewer training positives are flagged in the report.
        batch_size: Training batch (quick mode: 8).
        num_workers: DataLoader workers; 0 on a 2-core CPU, 4–8 on a GPU machine.
        setup: ``full`` fine-tuning, or ``frozen`` (a head on cached ImageNet features: minutes
            per seed on a CPU).
        dual: ``model.dual`` fusion (``concat`` / ``mean`` / ``attention``): each ODIR-5K eye is
            seen beside its fellow eye, which carries the patient-level signs (diabetes,
            hypertension); ``none``: single images.
        preprocess: ``data.preprocess`` pipeline (``funduslab.preprocess.NAMED_PIPELINES``,
            e.g. ``ben_graham``). Several joined by ``|`` (``none|ben_graham``) train one model
            per pipeline and seed; the reported model is, per seed, their soft vote (average
            probability). The pipelines show different evidence (Ben Graham's local contrast
            brings out lesions; the plain image keeps colour), so their errors differ.
        tta: Evaluate every model with flip TTA (``train.tta``; frozen runs use cached flipped
            views); the run folders get a ``_tta`` suffix.
        backbone: A timm / funduslab backbone name, or several joined by ``|``
            (``tf_efficientnet_lite0|tf_efficientnet_lite2``): like ``preprocess``, one model
            per backbone × pipeline and seed, soft-voted per seed.
        with_runs: Finished run folders of other recipes to vote with, one path per recipe
            with ``{seed}`` for the seed, several joined by ``|``
            (``runs/full/screening_tf_efficientnet_lite0_s{seed}``): e.g. a full fine-tune
            beside frozen members, which a frozen-feature cache cannot train. Per seed, each
            counts as one member beside this recipe's model (its vote, if it has members), so
            one extra run gets half the weight. Folders get ``_with_<their stems>``.

    Raises:
        ValueError: a missing test split, a setup other than ``full`` / ``frozen``, or a
            ``with_runs`` entry without ``{seed}``.
        FileNotFoundError: a ``with_runs`` folder missing for one of the seeds.
    """
    seeds = seeds or [0, 1, 2]
    if setup not in ("full", "frozen"):
        raise ValueError(f"setup must be 'full' or 'frozen', got {setup!r}")
    extra_runs = _extra_runs(with_runs, seeds)
    options: dict = {}
    if adapter == "odir5k":
        options = {"labels": [s.strip() for s in labels.split(",") if s.strip()],
                   "seed": split_seed}
    table = load_table(adapter, Path(data), **options)
    if test_split not in table.splits:
        raise ValueError(f"{data} has no {test_split!r} split (splits: {table.splits}); "
                         "pass --opt test_split=<name>")
    base = {
        "data": {"adapter": adapter, "root": str(data), "options": options,
                 "image_size": 64 if quick else image_size, "num_workers": num_workers},
        "model": {"backbone": backbone, "weights": weights, "dual": dual},
        "train": {"setup": setup, "epochs": 2 if quick else epochs,
                  "batch_size": 8 if quick else batch_size, "monitor": "macro_auroc",
                  "tune_thresholds": True, "sampler": sampler, "tta": tta},
        "output": {"out": str(out), "figures": not quick},
    }
    backbones = _alternatives(backbone, backbone)
    members: dict[tuple[str, str], list[Path]] = {}  # (backbone, pipeline) → run per seed
    for net in backbones:
        for pipe in _alternatives(preprocess, "none"):
            base["model"]["backbone"], base["data"]["preprocess"] = net, pipe
            variant = Variant(name=screening_run_name(net, setup, dual, pipe, tta),
                              note=f"{net}, {weights} weights, setup {setup}, dual {dual}, "
                                   f"preprocess {pipe}")
            [(_, members[net, pipe])] = run_variants(base, [variant], seeds, team=team,
                                                     progress=not quick)
    from funduslab.ensemble import load_members, write_ensemble_run

    if len(members) == 1:
        [run_dirs] = members.values()
    else:  # per seed, the soft vote of the members' models
        stem = screening_run_name(backbone, setup, dual, preprocess, tta)
        run_dirs = [write_ensemble_run(load_members([dirs[i] for dirs in members.values()]),
                                       "soft_voting", Path(out) / f"{stem}_s{seed}")
                    for i, seed in enumerate(seeds)]
    if extra_runs:  # per seed, this recipe's model (or vote) beside each other recipe's run
        stem = screening_run_name(backbone, setup, dual, preprocess, tta, with_runs)
        run_dirs = [write_ensemble_run(load_members([own] + [d[i] for d in extra_runs.values()]),
                                       "soft_voting", Path(out) / f"{stem}_s{seed}")
                    for i, (own, seed) in enumerate(zip(run_dirs, seeds))]

    names = table.label_names
    truth = table.split(test_split).set_index("id")[names]
    truth.index = truth.index.astype(str)
    train_split = table.splits[0] if "train" not in table.splits else "train"
    train_pos = table.split(train_split)[names].sum()
    reports = []
    for run_dir in run_dirs:
        ids, probs = read_predictions(run_dir, test_split, names)
        y = truth.loc[ids].to_numpy(dtype=int)
        rep = long_tail_report(y, probs, names, train_pos.to_numpy(), rare_below=rare_below,
                               n_boot=200 if quick else 1000)
        write_json(run_dir / "long_tail.json", rep)
        reports.append(rep)
    text = _render(reports, run_dirs, seeds, names, adapter, labels, " + ".join(backbones),
                   test_split, setup, dual)
    if extra_runs:
        text += ("\nEach seed's model is voted with run folders of other recipes: "
                 + ", ".join(f"`{t}`" for t in extra_runs) + ".\n")
    if len(members) > 1 or extra_runs:
        rows = {(f"`{net}`", f"`{pipe}`"): dirs for (net, pipe), dirs in members.items()}
        rows |= {(f"run folder `{_run_stem(t)}`", f"`{_preprocess_of(dirs[0])}`"): dirs
                 for t, dirs in extra_runs.items()}
        text += _members_table(rows, test_split, several_models=len(rows) > len(
            _alternatives(preprocess, "none")))
    atomic_write_text(Path(out) / "results.md", text)
    return Path(out) / "results.md"


def _preprocess_of(run_dir: Path) -> str:
    from funduslab.ensemble.members import read_run_config

    return str(read_run_config(run_dir)["data"].get("preprocess") or "none")


def _members_table(members: dict[tuple[str, str], list[Path]], split: str,
                   several_models: bool = False) -> str:
    """Each member's own macro AUROC (val, test), beside the ensemble's in the report.

    ``members``: (model, preprocessing) as displayed → the member's run folder per seed.
    """
    def macro(d: Path, name: str) -> float:
        entry = read_metrics(d)["splits"].get(name, {}).get("threshold_0.5", {})
        return float(entry.get("macro_auroc", float("nan")))

    rows = [([net] if several_models else [])
            + [pipe, mean_std([macro(d, "val") for d in dirs]),
               mean_std([macro(d, split) for d in dirs])]
            for (net, pipe), dirs in members.items()]
    head = (["model"] if several_models else []) + [
        "preprocess", "val macro AUROC", f"{split} macro AUROC"]
    return ("\n## Ensemble members (their own figures, mean ± std over the seeds)\n\n"
            + markdown_table(head, rows))


def _render(reports, run_dirs, seeds, names, adapter, labels, backbone, split, setup="full",
            dual="none") -> str:
    macro = [r["macro_auroc"]["value"] for r in reports]
    micro = [r["micro_auroc"]["value"] for r in reports]
    per_label = [[n, mean_std([r["labels"][k]["auroc"] for r in reports])]
                 for k, n in enumerate(names)]
    f1 = [read_metrics(d)["splits"][split]["tuned_thresholds"]["macro_f1"] for d in run_dirs]
    summary = markdown_table(
        ["split", "macro AUROC", "micro AUROC", "macro F1 (thresholds tuned on val)"],
        [[split, mean_std(macro), mean_std(micro), mean_std(f1)]])
    label_table = markdown_table(["label", f"AUROC (mean ± std over {len(seeds)} seeds)"],
                                 per_label)
    what = f"labels {labels}" if adapter == "odir5k" else "every label column"
    return (
        f"# Many-label screening — {adapter}, {what}\n\n"
        f"Backbone {backbone}, "
        + ("full fine-tuning" if setup == "full" else "a head on frozen features") + ", "
        + ("single images" if dual == "none"
           else f"each eye beside its fellow eye (`{dual}` fusion)")
        + f"; epoch chosen on val macro AUROC; seeds "
        f"{', '.join(map(str, seeds))}; split {split} (patient-level).\n\n"
        + summary + "\n" + label_table + "\n"
        + render_long_tail(reports[0], f"Long tail, seed {seeds[0]} ({split})")
        + f"\nMean macro AUROC {np.mean(macro):.4f} over {len(seeds)} seed(s).\n"
    )
