"""Lesion-patch extraction: geometry, labels, FOV filter, rebalancing, atomic output, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from funduslab.data.adapters import load_table
from funduslab.data.imageio import read_mask, read_rgb
from funduslab.data.patches import (
    LESIONS,
    PatchOptions,
    extract_image_patches,
    grid_origins,
    window_counts,
)
from funduslab.data.patches_rebalance import REBALANCERS, primary_lesion, rebalance
from funduslab.data.patches_write import write_patch_set
from funduslab.data.synthetic_layouts import write_layout


def bright(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 120, np.uint8)


def brute_counts(mask: np.ndarray, origins: np.ndarray, size: int) -> np.ndarray:
    return np.array([mask[y:y + size, x:x + size].sum() for y, x in origins])


# ----------------------------------------------------------------------------- geometry
def test_grid_patch_count_and_coordinates_for_a_known_grid():
    got = grid_origins(100, 120, 32, 32)
    ys, xs = [0, 32, 64], [0, 32, 64]  # 96 > 100 - 32: no fourth row/column
    assert got.tolist() == [[y, x] for y in ys for x in xs]
    assert len(grid_origins(100, 120, 32, 16)) == 5 * 6  # (68 // 16 + 1) × (88 // 16 + 1)
    patches = extract_image_patches(bright(100, 120), {}, PatchOptions(size=32, stride=16))
    assert len(patches.origins) == 30 and not patches.labels.any()


def test_window_counts_match_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((57, 63)) < 0.1
    origins = np.stack([rng.integers(0, 57 - 9, 40), rng.integers(0, 63 - 9, 40)], 1)
    np.testing.assert_array_equal(window_counts(mask, origins, 9), brute_counts(mask, origins, 9))


def test_labels_agree_with_hand_built_masks():
    ma = np.zeros((64, 64), bool)
    ma[5, 40] = True                       # one pixel in patch (0, 32)
    he = np.zeros((64, 64), bool)
    he[30:36, 10:14] = True                # straddles rows 0/1: 2×4 px above y=32, 4×4 below
    opts = PatchOptions(size=32, min_pixels=1)
    got = extract_image_patches(bright(64, 64), {"MA": ma, "HE": he}, opts)
    assert got.origins.tolist() == [[0, 0], [0, 32], [32, 0], [32, 32]]
    expected = np.zeros((4, 4), int)
    expected[1, 0] = 1                      # MA in (0, 32)
    expected[0, 1] = expected[2, 1] = 1     # HE in (0, 0) and (32, 0)
    np.testing.assert_array_equal(got.labels, expected)
    assert LESIONS == ("MA", "HE", "EX", "SE")


@pytest.mark.parametrize("min_pixels, positive", [(8, [1, 1]), (9, [0, 1]), (16, [0, 1]),
                                                  (17, [0, 0])])
def test_min_pixels_threshold_is_inclusive(min_pixels, positive):
    he = np.zeros((64, 32), bool)
    he[30:36, 10:14] = True                 # 8 px in the top patch, 16 px in the bottom one
    got = extract_image_patches(bright(64, 32), {"HE": he},
                                PatchOptions(size=32, min_pixels=min_pixels))
    assert got.labels[:, 1].tolist() == positive


def test_min_pixels_per_lesion_and_bad_values():
    mask = np.zeros((32, 32), bool)
    mask[:2, :2] = True                     # 4 px
    opts = PatchOptions(size=32, min_pixels={"MA": 4, "HE": 5})
    got = extract_image_patches(bright(32, 32), {"MA": mask, "HE": mask, "EX": mask}, opts)
    assert got.labels.tolist() == [[1, 0, 1, 0]]  # EX uses the default 1
    with pytest.raises(ValueError, match="min_pixels"):
        PatchOptions(min_pixels=0)
    with pytest.raises(ValueError, match="unknown lesion"):
        PatchOptions(min_pixels={"XX": 2})


def test_outside_fov_patches_are_dropped():
    img = bright(32, 128)
    img[:, :48] = 0                         # black left: patch 0 all out, patch 1 half out
    got = extract_image_patches(img, {}, PatchOptions(size=32, min_fov_fraction=0.5))
    assert got.origins[:, 1].tolist() == [32, 64, 96]
    np.testing.assert_allclose(got.fov_fraction, [0.5, 1.0, 1.0])
    strict = extract_image_patches(img, {}, PatchOptions(size=32, min_fov_fraction=0.51))
    assert strict.origins[:, 1].tolist() == [64, 96]


def test_lesion_centred_patches_contain_their_lesions_and_are_seeded():
    masks = {"MA": np.zeros((200, 200), bool), "EX": np.zeros((200, 200), bool)}
    masks["MA"][50, 60] = masks["MA"][150, 20] = True
    masks["EX"][100:104, 190:196] = True    # near the right edge: the patch is clipped inside
    opts = PatchOptions(size=32, mode="lesion_centred", jitter=0.0, background_per_image=0)
    got = extract_image_patches(bright(200, 200), masks, opts, np.random.default_rng(0))
    assert len(got.origins) == 3
    assert (got.origins >= 0).all() and (got.origins + 32 <= 200).all()
    assert got.labels[:, 0].sum() == 2 and got.labels[:, 2].sum() == 1
    jit = PatchOptions(size=32, mode="lesion_centred", jitter=0.25, background_per_image=5)
    a = extract_image_patches(bright(200, 200), masks, jit, np.random.default_rng(1))
    b = extract_image_patches(bright(200, 200), masks, jit, np.random.default_rng(1))
    c = extract_image_patches(bright(200, 200), masks, jit, np.random.default_rng(2))
    np.testing.assert_array_equal(a.origins, b.origins)
    assert a.origins.shape != c.origins.shape or (a.origins != c.origins).any()


def test_patch_larger_than_image_and_mask_mismatch_raise():
    with pytest.raises(ValueError, match="larger than image img7"):
        extract_image_patches(bright(64, 100), {}, PatchOptions(size=65), image_id="img7")
    with pytest.raises(ValueError, match="MA mask"):
        extract_image_patches(bright(64, 64), {"MA": np.zeros((32, 32), bool)},
                              PatchOptions(size=32))


# ----------------------------------------------------------------------------- rebalancing
def _labels() -> np.ndarray:
    rows = ([[1, 0, 0, 0]] * 10 + [[0, 1, 0, 0]] * 6 + [[1, 0, 1, 0]] * 3 + [[0, 0, 0, 1]] * 2
            + [[0, 0, 0, 0]] * 20)
    return np.array(rows)                   # positives MA 13, HE 6, EX 3, SE 2


def test_primary_lesion_is_the_rarest_positive():
    prim = primary_lesion(_labels())
    assert np.bincount(prim + 1, minlength=5).tolist() == [20, 10, 6, 3, 2]
    assert (prim[16:19] == 2).all()         # MA+EX patches count as EX (3 < 13)


def test_rebalancing_counts_are_exact():
    labels = _labels()
    keep = rebalance(labels, "lesion_seed", seed=0, healthy_ratio=1.5)
    assert np.bincount(primary_lesion(labels[keep]) + 1, minlength=5).tolist() == [3, 2, 2, 2, 2]
    keep = rebalance(labels, "cap_per_class", seed=0, cap=4)
    assert np.bincount(primary_lesion(labels)[keep] + 1, minlength=5).tolist() == [4, 4, 4, 3, 2]
    assert rebalance(labels, "none").tolist() == list(range(len(labels)))
    assert len(np.unique(keep)) == len(keep) and (np.diff(keep) > 0).all()
    assert {"none", "lesion_seed", "cap_per_class"} <= set(REBALANCERS.names())


def test_rebalancing_is_seeded_and_names_are_checked():
    labels = _labels()
    a = rebalance(labels, "lesion_seed", seed=3)
    np.testing.assert_array_equal(a, rebalance(labels, "lesion_seed", seed=3))
    assert not np.array_equal(a, rebalance(labels, "lesion_seed", seed=4))
    with pytest.raises(ValueError, match="valid names: cap_per_class, lesion_seed, none"):
        rebalance(labels, "smote")
    with pytest.raises(TypeError, match="lesion_seed"):
        rebalance(labels, "lesion_seed", cap=3)


# ----------------------------------------------------------------------------- patch sets
@pytest.fixture(scope="module")
def idrid(tmp_path_factory) -> Path:
    return write_layout("idrid", tmp_path_factory.mktemp("idrid"), n=6, seed=2, size=128)


def test_patch_set_pixels_labels_and_splits(idrid: Path, tmp_path: Path):
    table = load_table("idrid", idrid)
    frame = write_patch_set(table, tmp_path / "set", PatchOptions(size=32, mode="grid"), seed=0)
    csv = pd.read_csv(tmp_path / "set" / "patches.csv")
    assert list(csv.columns[:11]) == ["id", "path", "source_id", "patient", "x", "y", *LESIONS,
                                      "split"]
    assert len(csv) == len(frame) > 0
    assert csv.groupby("source_id")["split"].nunique().max() == 1   # no image in two splits
    test_ids = set(table.frame.loc[table.frame["split"] == "test", "id"])
    assert set(csv.loc[csv["split"] == "test", "source_id"]) == test_ids
    assert set(csv["split"]) == {"train", "val", "test"}
    rows = table.frame.set_index("id")
    for _, p in csv.sample(12, random_state=0).iterrows():
        src = rows.loc[p["source_id"]]
        img = read_rgb(src["path"])
        y, x = p["y"], p["x"]
        np.testing.assert_array_equal(read_rgb(tmp_path / "set" / p["path"]),
                                      img[y:y + 32, x:x + 32])
        for k in LESIONS:
            mask = read_mask(src[f"mask_{k}"]) if src[f"mask_{k}"] else np.zeros((128, 128))
            assert p[k] == int(mask[y:y + 32, x:x + 32].sum() >= 1)


def test_patch_set_is_deterministic_and_rebalances_train_only(idrid: Path, tmp_path: Path):
    table = load_table("idrid", idrid)
    opts = PatchOptions(size=32, mode="lesion_centred")
    a = write_patch_set(table, tmp_path / "a", opts, rebalance_name="lesion_seed", seed=5)
    b = write_patch_set(table, tmp_path / "b", opts, rebalance_name="lesion_seed", seed=5)
    pd.testing.assert_frame_equal(a, b)
    c = write_patch_set(table, tmp_path / "c", opts, rebalance_name="none", seed=5)
    assert not a.equals(c)
    for split in ("val", "test"):                     # untouched by rebalancing
        pd.testing.assert_frame_equal(a[a["split"] == split].reset_index(drop=True),
                                      c[c["split"] == split].reset_index(drop=True))
    kept = a[a["split"] == "train"][list(LESIONS)].to_numpy()
    full = c[c["split"] == "train"][list(LESIONS)].to_numpy()
    counts = full.sum(axis=0)
    m = int(counts[counts > 0].min())
    groups = np.bincount(primary_lesion(full) + 1, minlength=5)   # healthy, MA, HE, EX, SE
    expected = np.minimum(groups, m)                               # healthy_ratio 1: m healthy
    np.testing.assert_array_equal(np.bincount(primary_lesion(kept) + 1, minlength=5), expected)
    assert sorted(p.name for p in (tmp_path / "a" / "patches").iterdir()) == \
        sorted(Path(p).name for p in a["path"])     # discarded PNGs removed


def test_patch_set_output_is_atomic(idrid: Path, tmp_path: Path, monkeypatch):
    table = load_table("idrid", idrid)
    out = tmp_path / "set"
    first = write_patch_set(table, out, PatchOptions(size=32), seed=0)
    import funduslab.data.patches_write as pw

    calls = {"n": 0}
    real = pw.read_rgb

    def flaky(path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk went away")
        return real(path)

    monkeypatch.setattr(pw, "read_rgb", flaky)
    with pytest.raises(OSError, match="disk went away"):
        write_patch_set(table, out, PatchOptions(size=64), seed=0)
    pd.testing.assert_frame_equal(pd.read_csv(out / "patches.csv"),
                                  first.astype({"fov_fraction": float}), check_dtype=False)
    assert [p.name for p in tmp_path.iterdir()] == ["set"]   # no temporary folder left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to replace"):
        write_patch_set(table, tmp_path / "mine", PatchOptions(size=32))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_clear_errors_for_missing_masks_and_oversized_patches(idrid: Path, tmp_path: Path):
    copy = tmp_path / "idrid"
    shutil.copytree(idrid, copy)
    with pytest.raises(ValueError, match="larger than image IDRiD_01"):
        write_patch_set(load_table("idrid", copy), tmp_path / "big", PatchOptions(size=129))
    assert not (tmp_path / "big").exists()
    shutil.rmtree(copy / "A. Segmentation" / "2. All Segmentation Groundtruths")
    with pytest.raises(FileNotFoundError, match="no lesion masks found.*Microaneurysms"):
        write_patch_set(load_table("idrid", copy), tmp_path / "x", PatchOptions(size=32))
    with pytest.raises(ValueError, match="unknown patch rebalancing 'smote'"):
        write_patch_set(load_table("idrid", idrid), tmp_path / "y", PatchOptions(size=32),
                        rebalance_name="smote")


def test_patches_adapter_reads_the_set_for_the_engine(idrid: Path, tmp_path: Path):
    frame = write_patch_set(load_table("idrid", idrid), tmp_path / "set", PatchOptions(size=32))
    table = load_table("patches", tmp_path / "set")
    assert table.label_names == list(LESIONS) and table.task == "multilabel"
    assert set(table.splits) == {"train", "val", "test"}
    np.testing.assert_array_equal(table.frame[list(LESIONS)].to_numpy(),
                                  frame[list(LESIONS)].to_numpy())
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in table.frame["path"])
    assert load_table("patches", tmp_path / "set", splits="val").splits == ["val"]
    Path(table.frame["path"].iloc[0]).unlink()
    with pytest.raises(FileNotFoundError, match="row 1 .*patch image not found"):
        load_table("patches", tmp_path / "set")


def test_cli_patches_prints_counts_per_lesion(idrid: Path, tmp_path: Path):
    import typer
    from typer.testing import CliRunner

    from funduslab.cli.patches import register

    app = typer.Typer()
    register(app)

    @app.command()
    def _other() -> None:  # a second command so that Typer keeps "patches" as a sub-command
        pass

    runner = CliRunner()
    result = runner.invoke(app, ["patches", "--data", str(idrid), "--out", str(tmp_path / "p"),
                                 "--patch-size", "32", "--mode", "lesion_centred",
                                 "--rebalance", "lesion_seed", "--seed", "1"])
    assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "p" / "patches.csv")
    n_ma = int(csv.loc[csv["split"] == "train", "MA"].sum())
    line = next(ln for ln in result.output.splitlines()  # the counts row, not a log line
                if "train" in ln and "INFO" not in ln)
    assert str(n_ma) in line and "MA" in result.output and "SE" in result.output
    bad = runner.invoke(app, ["patches", "--data", str(tmp_path / "none"), "--out",
                              str(tmp_path / "q")])
    assert bad.exit_code == 2 and "not found" in bad.output


def test_graded_idrid_has_images_without_lesions_and_is_seeded(tmp_path: Path):
    from funduslab.data.patches_synth import write_graded_idrid

    a = write_graded_idrid(tmp_path / "a", n=10, seed=1, size=64)
    b = write_graded_idrid(tmp_path / "b", n=10, seed=1, size=64)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    table = load_table("idrid", a)
    assert table.splits == ["train", "test"] and len(table.split("test")) == 3
    labels = table.frame[list(LESIONS)]
    assert (labels.sum(axis=1) == 0).any() and labels["MA"].any()   # grade 0 and grade ≥ 1 eyes
    with pytest.raises(ValueError, match="grades"):
        write_graded_idrid(tmp_path / "c", n=4, grades=(5,))
