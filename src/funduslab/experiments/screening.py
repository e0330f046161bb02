"""Many-label screening (RFMiD-style): fit, select on macro AUROC, report the long tail.

``funduslab suite screening --data <root>`` fine-tunes one backbone on every label of a
many-label set (``rfmid`` layout, or ODIR-5K eyes with a chosen label subset), selects the epoch
on validation macro AUROC, tunes one threshold per label on validation, and writes ``results.md``:
macro/micro AUROC over seeds, per-label AUROC with 95 % bootstrap CIs on the test split and the
rare labels flagged (:mod:`funduslab.reporting.longtail`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from funduslab.data.adapters import load_table
from funduslab.experiments import PRESETS
from funduslab.experiments.study import Row, Study, StudyResult, run_study
from funduslab.reporting.longtail import long_tail_report, render_long_tail
from funduslab.reporting.run_folder import read_metrics, read_predictions, write_json
from funduslab.reporting.tables import markdown_table, mean_std

__all__ = ["screening", "screening_run_name"]

DEFAULT_ODIR5K_LABELS = "N,D,C,H,M"  # G and A have too few positives in odir5k-source
_SEEDS = (0, 1, 2)
#: ``--quick``: 64 px, 2 epochs, batch 8, no figures.
QUICK: dict[str, Any] = {"data": {"image_size": 64}, "train": {"epochs": 2, "batch_size": 8},
                         "output": {"figures": False}}
#: Bootstrap resamples of the per-label AUROC CIs (``--quick``: fewer).
BOOTSTRAP, QUICK_BOOTSTRAP = 1000, 200


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
    preprocess: str = "none", tta: bool = False, with_runs: str = "", sets: Sequence[str] = (),
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

    ``sets`` are ``key=value`` config overrides of every model (``train.epochs=6``).
    """
    extra_runs, options, table = _inputs(Path(data), seeds, adapter, labels, split_seed,
                                         test_split, setup, with_runs)
    base = {"data": {"adapter": adapter, "options": options, "image_size": image_size,
                     "num_workers": num_workers},
            "model": {"backbone": backbone, "weights": weights, "dual": dual},
            "train": {"setup": setup, "epochs": epochs, "batch_size": batch_size,
                      "monitor": "macro_auroc", "tune_thresholds": True, "sampler": sampler,
                      "tta": tta}}
    recipe = dict(backbone=backbone, setup=setup, dual=dual, preprocess=preprocess, tta=tta,
                  with_runs=with_runs)
    study = _study(base, recipe, weights, table, extra_runs, labels, test_split, rare_below)
    return run_study(study, Path(data), Path(out), seeds, quick, sets, team)


def _study(base: dict[str, Any], recipe: dict[str, Any], weights: str, table: Any,
           extra_runs: dict[str, list[Path]], labels: str, split: str, rare_below: int) -> Study:
    """One row per member model; the combine step votes them and reports the long tail."""
    combine = partial(_combine, table=table, recipe=recipe, extra_runs=extra_runs, split=split,
                      rare_below=rare_below)
    report = partial(_report, table=table, labels=labels, split=split)
    return Study("screening", base, _member_rows(recipe, weights), report, seeds=_SEEDS,
                 quick=QUICK, combine=combine)


def _inputs(data: Path, seeds: list[int] | None, adapter: str, labels: str, split_seed: int,
            split: str, setup: str, with_runs: str) -> tuple[dict[str, list[Path]],
                                                             dict[str, Any], Any]:
    """The options' problems, before anything trains; the ``with_runs`` folders per seed, the
    adapter options and the dataset's table."""
    if setup not in ("full", "frozen"):
        raise ValueError(f"setup must be 'full' or 'frozen', got {setup!r}")
    extra_runs = _extra_runs(with_runs, seeds or list(_SEEDS))
    options = _adapter_options(adapter, labels, split_seed)
    return extra_runs, options, _test_table(adapter, data, options, split)


def _adapter_options(adapter: str, labels: str, split_seed: int) -> dict[str, Any]:
    """ODIR-5K: the label subset and the split seed; other layouts take every label column."""
    if adapter != "odir5k":
        return {}
    return {"labels": [s.strip() for s in labels.split(",") if s.strip()], "seed": split_seed}


def _test_table(adapter: str, data: Path, options: dict[str, Any], split: str) -> Any:
    """The dataset's table; ``ValueError`` when it has no ``split`` to report on."""
    table = load_table(adapter, data, **options)
    if split not in table.splits:
        raise ValueError(f"{data} has no {split!r} split (splits: {table.splits}); "
                         "pass --opt test_split=<name>")
    return table


def _member_rows(recipe: dict[str, Any], weights: str) -> tuple[Row, ...]:
    """One row per backbone × pipeline (one row: no vote), named by its recipe."""
    setup, dual, tta = recipe["setup"], recipe["dual"], recipe["tta"]
    return tuple(Row(screening_run_name(net, setup, dual, pipe, tta),
                     f"{net}, {weights} weights, setup {setup}, dual {dual}, preprocess {pipe}",
                     {"model": {"backbone": net}, "data": {"preprocess": pipe}})
                 for net in _alternatives(recipe["backbone"], recipe["backbone"])
                 for pipe in _alternatives(recipe["preprocess"], "none"))


def _combine(result: StudyResult, table: Any, recipe: dict[str, Any],
             extra_runs: dict[str, list[Path]], split: str, rare_below: int) -> dict[str, Any]:
    """Per seed, the reported model — the single member, or the soft vote of the members (and
    of ``with_runs``' folders) — and its long-tail report (``long_tail.json`` beside it)."""
    from funduslab.ensemble import load_members, write_ensemble_run

    members = [result.runs[row.name] for row in result.study.rows]
    run_dirs = members[0]
    if len(members) > 1:  # per seed, the soft vote of the members' models
        stem = screening_run_name(**{**recipe, "with_runs": ""})
        run_dirs = [write_ensemble_run(load_members([dirs[i] for dirs in members]),
                                       "soft_voting", result.out / f"{stem}_s{seed}")
                    for i, seed in enumerate(result.seeds)]
    if extra_runs:  # per seed, this recipe's model (or vote) beside each other recipe's run
        stem = screening_run_name(**recipe)
        run_dirs = [write_ensemble_run(load_members([own] + [d[i] for d in extra_runs.values()]),
                                       "soft_voting", result.out / f"{stem}_s{seed}")
                    for i, (own, seed) in enumerate(zip(run_dirs, result.seeds))]
    names = table.label_names
    truth = table.split(split).set_index("id")[names]
    truth.index = truth.index.astype(str)
    train_split = table.splits[0] if "train" not in table.splits else "train"
    train_pos = table.split(train_split)[names].sum()
    reports = []
    for run_dir in run_dirs:
        ids, probs = read_predictions(run_dir, split, names)
        y = truth.loc[ids].to_numpy(dtype=int)
        rep = long_tail_report(y, probs, names, train_pos.to_numpy(), rare_below=rare_below,
                               n_boot=QUICK_BOOTSTRAP if result.quick else BOOTSTRAP)
        write_json(run_dir / "long_tail.json", rep)
        reports.append(rep)
    return {"run_dirs": run_dirs, "reports": reports, "extra_runs": extra_runs,
            "preprocess": recipe["preprocess"]}


def _report(result: StudyResult, table: Any, labels: str, split: str) -> str:
    """``results.md``: the reported models' figures, then each member's when there are several."""
    cfg, combined = result.config(), result.combined
    extra_runs = combined["extra_runs"]
    member = {r.name: (r.overrides["model"]["backbone"], r.overrides["data"]["preprocess"])
              for r in result.study.rows}
    backbones = dict.fromkeys(net for net, _ in member.values())
    text = _render(combined["reports"], combined["run_dirs"], result.seeds, table.label_names,
                   cfg.data.adapter, labels, " + ".join(backbones), split, cfg.train.setup,
                   cfg.model.dual)
    if extra_runs:
        text += ("\nEach seed's model is voted with run folders of other recipes: "
                 + ", ".join(f"`{t}`" for t in extra_runs) + ".\n")
    if len(result.study.rows) > 1 or extra_runs:
        rows = {(f"`{net}`", f"`{pipe}`"): result.runs[name]
                for name, (net, pipe) in member.items()}
        rows |= {(f"run folder `{_run_stem(t)}`", f"`{_preprocess_of(dirs[0])}`"): dirs
                 for t, dirs in extra_runs.items()}
        text += _members_table(rows, split, several_models=len(rows) > len(
            _alternatives(combined["preprocess"], "none")))
    return text


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
