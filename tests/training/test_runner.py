"""End-to-end runs on tiny synthetic data: run folder shape, resume, reproducibility, setups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny_runs import tiny_config as shared_tiny_config

from funduslab.config import RunConfig, config_from_dict
from funduslab.training.runner import run


def tiny_config(data: Path, out: Path, name: str, **train) -> RunConfig:
    return shared_tiny_config(data, out, name, figures=True,
                              **{"epochs": 2, "lr": 3e-3, "backbone_lr": 3e-3, **train})


@pytest.fixture(scope="module")
def full_run(synth_course: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    return run(tiny_config(synth_course, out, "full", tune_thresholds=True), progress=False)


def test_run_folder_has_every_file_design_promises(full_run: Path, synth_course: Path):
    for name in ("config.yaml", "metrics.json", "submission.csv", "history.csv", "unit_task1-3.pt",
                 "figures/curves.png"):
        assert (full_run / name).is_file(), name
    for split in ("train", "val", "offsite_test", "onsite_test"):
        assert (full_run / "predictions" / f"{split}.csv").is_file()
    cfg = yaml.safe_load((full_run / "config.yaml").read_text())
    prov = cfg["provenance"]
    assert prov["seed"] == 0 and len(prov["data_fingerprint"]) == 16
    assert prov["environment"]["packages"]["torch"]


def test_submission_follows_template_order_and_columns(full_run: Path, synth_course: Path):
    template = pd.read_csv(synth_course / "onsite_test_submission.csv")
    sub = pd.read_csv(full_run / "submission.csv")
    assert list(sub.columns) == ["id", "D", "G", "A"]
    assert sub["id"].tolist() == template["id"].tolist()
    assert set(np.unique(sub[["D", "G", "A"]].to_numpy())) <= {0, 1}


def test_metrics_cover_labelled_splits_both_threshold_kinds(full_run: Path):
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "offsite_test"}
    entry = metrics["splits"]["offsite_test"]
    assert set(entry) == {"threshold_0.5", "tuned_thresholds"}
    assert metrics["thresholds"]["used"] == "tuned_on_val"
    assert len(metrics["thresholds"]["tuned_on_val"]) == 3
    per_class = entry["threshold_0.5"]["per_class"]
    assert set(per_class) == {"D", "G", "A"}
    assert 0.0 <= entry["threshold_0.5"]["course_average_f1"] <= 1.0


def test_predictions_csv_matches_submission_for_unlabelled_split(full_run: Path):
    pred = pd.read_csv(full_run / "predictions" / "onsite_test.csv")
    sub = pd.read_csv(full_run / "submission.csv")
    np.testing.assert_array_equal(pred[["D", "G", "A"]].to_numpy(), sub[["D", "G", "A"]].to_numpy())
    assert ((pred[["p_D", "p_G", "p_A"]] >= 0) & (pred[["p_D", "p_G", "p_A"]] <= 1)).all().all()


def test_saved_weights_load_with_weights_only_and_reproduce_predictions(full_run: Path, synth_course):
    from funduslab.models.factory import model_from_checkpoint

    state = torch.load(full_run / "unit_task1-3.pt", weights_only=True)
    assert isinstance(state, dict)
    model = model_from_checkpoint(full_run / "unit_task1-3.pt")
    from funduslab.data.adapters import load_table
    from funduslab.training.predict import predict_probabilities
    from funduslab.training.runner import decode_splits

    history = pd.read_csv(full_run / "history.csv")
    assert len(history) == 2 and {"train_loss", "val_loss", "val_course_average_f1"} <= set(history)
    raw = yaml.safe_load((full_run / "config.yaml").read_text())
    raw.pop("provenance")
    cfg = config_from_dict(raw)
    table = load_table("odir_course", synth_course)
    splits, _ = decode_splits(table, cfg, Path(cfg.data.cache_dir))
    probs = predict_probabilities(model, splits["offsite_test"].images)
    saved = pd.read_csv(full_run / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    np.testing.assert_allclose(probs, saved.to_numpy(), atol=2e-5)


def test_same_seed_same_numbers_and_resume_does_not_retrain(synth_course: Path, tmp_path: Path):
    a = run(tiny_config(synth_course, tmp_path / "a", "r", epochs=1), progress=False)
    b = run(tiny_config(synth_course, tmp_path / "b", "r", epochs=1), progress=False)
    pa = pd.read_csv(a / "predictions" / "offsite_test.csv")
    pb = pd.read_csv(b / "predictions" / "offsite_test.csv")
    pd.testing.assert_frame_equal(pa, pb)
    # A finished run is not run again: same config → the folder is returned untouched.
    stamp = (a / "metrics.json").stat().st_mtime_ns
    again = run(tiny_config(synth_course, tmp_path / "a", "r", epochs=1), progress=False)
    assert (again / "metrics.json").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(pa, pd.read_csv(again / "predictions" / "offsite_test.csv"))
    # An evaluation-only change (TTA) re-evaluates from last.ckpt but trains nothing more.
    history = (a / "history.csv").read_text()
    tta = run(tiny_config(synth_course, tmp_path / "a", "r", epochs=1, tta=True), progress=False)
    assert (tta / "metrics.json").stat().st_mtime_ns != stamp
    assert (tta / "history.csv").read_text() == history
    assert yaml.safe_load((tta / "config.yaml").read_text())["train"]["tta"] is True


def test_frozen_setup_keeps_backbone_and_uses_feature_cache(synth_course: Path, tmp_path: Path):
    cfg = tiny_config(synth_course, tmp_path, "frozen", setup="frozen", epochs=3)
    run_dir = run(cfg, progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["fit"]["trained"] == "head"
    assert list((tmp_path / "cache").glob("features-*.pt")), "features were not cached"
    from funduslab.models.backbones import create_backbone
    from funduslab.models.factory import model_from_checkpoint

    import lightning as L

    model = model_from_checkpoint(run_dir / "unit_task1-3.pt")
    L.seed_everything(0, verbose=False)  # the run seeds before building: same initial backbone
    fresh = create_backbone("tiny_cnn", "none")
    for (k, v), (_, w) in zip(model.backbone.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(v, w, msg=k)


def test_frozen_run_evaluates_on_cached_features_without_rerunning_the_backbone(
    synth_course: Path, tmp_path: Path, monkeypatch
):
    from funduslab.data.adapters import load_table
    from funduslab.models.classifier import FundusModel
    from funduslab.models.factory import model_from_checkpoint
    from funduslab.training.predict import predict_probabilities
    from funduslab.training.runner import decode_splits

    first = run(tiny_config(synth_course, tmp_path, "s0", setup="frozen", epochs=2), progress=False)
    # The cached-feature predictions are the saved model's predictions on the images.
    model = model_from_checkpoint(first / "unit_task1-3.pt")
    cfg = tiny_config(synth_course, tmp_path, "s0", setup="frozen", epochs=2)
    splits, _ = decode_splits(load_table("odir_course", synth_course), cfg, tmp_path / "cache")
    for name in ("val", "offsite_test", "onsite_test"):
        saved = pd.read_csv(first / "predictions" / f"{name}.csv")[["p_D", "p_G", "p_A"]]
        np.testing.assert_allclose(predict_probabilities(model, splits[name].images),
                                   saved.to_numpy(), atol=2e-5)
    # Every split's features are cached now: another seed fits and evaluates without a backbone.
    def no_backbone(self, x):
        raise AssertionError("the backbone ran although every split's features were cached")

    monkeypatch.setattr(FundusModel, "forward_features", no_backbone)
    second = run(tiny_config(synth_course, tmp_path, "s1", setup="frozen", epochs=2, seed=1),
                 progress=False)
    assert (second / "submission.csv").is_file()
    metrics = json.loads((second / "metrics.json").read_text())
    assert set(metrics["splits"]) == {"train", "val", "offsite_test"}
    a = pd.read_csv(first / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    b = pd.read_csv(second / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    assert not np.allclose(a.to_numpy(), b.to_numpy())  # the seed changed the head
    # A warm cache changes nothing: seed 0 again (new folder, features loaded, not extracted)
    # gives the first run's numbers exactly (the head trains in the same mode either way).
    again = run(tiny_config(synth_course, tmp_path, "s0_again", setup="frozen", epochs=2),
                progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(first / "predictions" / "offsite_test.csv"),
                                  pd.read_csv(again / "predictions" / "offsite_test.csv"))


def test_frozen_run_with_tta_averages_cached_flipped_views(synth_course: Path, tmp_path: Path):
    from funduslab.data.adapters import load_table
    from funduslab.models.factory import model_from_checkpoint
    from funduslab.training.predict import predict_probabilities
    from funduslab.training.runner import decode_splits

    cfg = tiny_config(synth_course, tmp_path, "tta", setup="frozen", epochs=2, tta=True)
    run_dir = run(cfg, progress=False)
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 3 * 4  # 3 views × 4 splits
    model = model_from_checkpoint(run_dir / "unit_task1-3.pt")
    splits, _ = decode_splits(load_table("odir_course", synth_course), cfg, tmp_path / "cache")
    images = splits["offsite_test"].images
    saved = pd.read_csv(run_dir / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    np.testing.assert_allclose(predict_probabilities(model, images, tta=True), saved.to_numpy(),
                               atol=2e-5)
    assert not np.allclose(predict_probabilities(model, images), saved.to_numpy(), atol=1e-4)


def test_none_setup_evaluates_a_saved_model_unchanged(full_run: Path, synth_course: Path, tmp_path):
    cfg = tiny_config(synth_course, tmp_path, "none", setup="none")
    cfg.model.weights = str(full_run / "unit_task1-3.pt")
    run_dir = run(cfg, progress=False)
    before = pd.read_csv(full_run / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    after = pd.read_csv(run_dir / "predictions" / "offsite_test.csv")[["p_D", "p_G", "p_A"]]
    np.testing.assert_allclose(before.to_numpy(), after.to_numpy(), atol=2e-5)


def test_none_setup_refuses_a_checkpoint_of_another_model(full_run: Path, synth_course: Path,
                                                          tmp_path: Path):
    """A config naming one backbone must not evaluate (and record) another one's weights."""
    cfg = tiny_config(synth_course, tmp_path, "other", setup="none")
    cfg.model.backbone = "tiny_vit"
    cfg.model.weights = str(full_run / "unit_task1-3.pt")
    with pytest.raises(ValueError, match=r"model\.backbone='tiny_cnn' \(config: 'tiny_vit'\)"
                                         r".*--backbone tiny_cnn"):
        run(cfg, progress=False)
    assert not (tmp_path / "other" / "metrics.json").exists()


def test_none_setup_without_a_checkpoint_says_what_to_pass(synth_course: Path, tmp_path: Path):
    cfg = tiny_config(synth_course, tmp_path, "bad", setup="none")
    with pytest.raises(ValueError, match="checkpoint file"):
        run(cfg, progress=False)


def test_partial_setup_trains_only_last_stage(synth_course: Path, tmp_path: Path):
    import lightning as L

    from funduslab.models.factory import model_from_checkpoint

    cfg = tiny_config(synth_course, tmp_path, "partial", setup="partial", partial_stages=1, epochs=1)
    run_dir = run(cfg, progress=False)
    trained = model_from_checkpoint(run_dir / "unit_task1-3.pt")
    from funduslab.models.backbones import create_backbone, stage_parameter_groups

    L.seed_everything(0, verbose=False)
    init = create_backbone("tiny_cnn", "none")
    groups_t = dict(stage_parameter_groups(trained.backbone))
    groups_i = dict(stage_parameter_groups(init))
    for p, q in zip(groups_t["stem"], groups_i["stem"]):
        torch.testing.assert_close(p, q)
    last = [k for k in groups_t if k.startswith("stage")][-1]
    assert any(not torch.equal(p, q) for p, q in zip(groups_t[last], groups_i[last]))


def test_frozen_setup_draws_training_features_with_the_configured_sampler(
        synth_course: Path, tmp_path: Path, monkeypatch):
    """class_aware must reach the head's loader too: without it a skewed grading set trains a
    majority-grade head whose validation kappa never leaves 0."""
    import numpy as np

    from funduslab.training import features

    seen = {}

    def spy(task, train_dl, val_dl, cfg, run_dir, **kw):
        seen["loader"] = train_dl
        raise KeyboardInterrupt  # stop before fitting: only the loader matters here

    monkeypatch.setattr(features, "fit_task", spy)
    cfg = tiny_config(synth_course, tmp_path, "frozen_ca", setup="frozen", sampler="class_aware")
    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=False)
    loader = seen["loader"]
    targets = loader.dataset.tensors[1].numpy()
    drawn = np.concatenate([targets[list(iter(loader.sampler))] for _ in range(5)])
    rare = int(targets.mean(axis=0).argmin())
    assert drawn[:, rare].mean() > targets[:, rare].mean() + 0.05


def test_feature_extraction_leaves_module_modes_as_they_were():
    from funduslab.models.factory import build_model
    from funduslab.config import ModelConfig
    from funduslab.training.features import extract_features

    model = build_model(ModelConfig(backbone="tiny_cnn", weights="none"), 3, 32)
    model.train()
    model.backbone.eval()
    before = [m.training for m in model.modules()]
    extract_features(model, np.zeros((4, 32, 32, 3), np.uint8), batch_size=2)
    assert [m.training for m in model.modules()] == before
