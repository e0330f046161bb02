"""ViT/Swin at 224 and 256 px: weights saved at one size load at another; offline ImageNet."""

from __future__ import annotations

import logging

import pytest
import timm
import torch

from funduslab.models import weights as wt
from funduslab.models.backbones import backbone_info, create_backbone
from funduslab.models.families import swin_window_size


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_swin_window_follows_the_paper_rule() -> None:
    assert [swin_window_size(s) for s in (224, 256, 384, 64, 250, 288)] == [7, 8, 12, 7, 7, 9]


def test_tiny_vit_weights_from_32px_load_at_64px_with_resampled_positions(tmp_path, caplog):
    torch.manual_seed(0)
    small = create_backbone("tiny_vit", "none", img_size=32)
    state = small.state_dict()
    torch.save(state, tmp_path / "vit32.pth")
    with caplog.at_level(logging.INFO, logger="funduslab.models.weights"):
        big = create_backbone("tiny_vit", tmp_path / "vit32.pth", img_size=64)
    assert "resampled 1 tensor(s)" in caplog.text
    assert "pos_embed (1, 17, 32)→(1, 65, 32)" in caplog.text
    from timm.layers import resample_abs_pos_embed

    want = resample_abs_pos_embed(state["pos_embed"], new_size=(8, 8), num_prefix_tokens=1)
    torch.testing.assert_close(big.pos_embed.detach(), want)
    torch.testing.assert_close(big.pos_embed[:, 0], state["pos_embed"][:, 0])  # class token kept
    for key, value in big.state_dict().items():
        if key != "pos_embed":
            torch.testing.assert_close(value, state[key], msg=key)
    with torch.no_grad():
        assert big.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 32)


def test_tiny_swin_bias_tables_are_resized_for_a_larger_window(tmp_path, caplog):
    torch.manual_seed(0)
    src = create_backbone("tiny_swin", "none", img_size=64)  # window 4 → tables (7·7, heads)
    state = src.state_dict()
    torch.save(state, tmp_path / "swin.pth")
    with caplog.at_level(logging.INFO, logger="funduslab.models.weights"):
        big = create_backbone("tiny_swin", tmp_path / "swin.pth", img_size=64, window_size=8)
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    assert f"{key} (49, 1)→(225, 1)" in caplog.text
    table = big.state_dict()[key].reshape(15, 15, 1)
    torch.testing.assert_close(table[7, 7], state[key].reshape(7, 7, 1)[3, 3])  # zero offset
    for k, v in big.state_dict().items():
        if "relative_position" not in k:
            torch.testing.assert_close(v, state[k], msg=k)
    with torch.no_grad():
        assert big.eval()(torch.rand(1, 3, 64, 64)).shape == (1, big.num_features)
    same = create_backbone("tiny_swin", tmp_path / "swin.pth", img_size=32)  # window unchanged
    torch.testing.assert_close(same.state_dict()[key], state[key])


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["vit_small_patch16_224", "swin_tiny_patch4_window7_224"])
def test_real_size_224_checkpoint_loads_and_runs_at_256(name: str, tmp_path, caplog) -> None:
    torch.manual_seed(0)
    m224 = create_backbone(name, "none", img_size=224).eval()
    torch.save(m224.state_dict(), tmp_path / "w224.pth")
    with caplog.at_level(logging.INFO, logger="funduslab.models.weights"):
        m256 = create_backbone(name, tmp_path / "w224.pth", img_size=256).eval()
    assert backbone_info(m256).input_size == (256, 256)
    if name.startswith("vit"):
        assert "pos_embed (1, 197, 384)→(1, 257, 384)" in caplog.text
    else:
        assert m256.layers[0].blocks[0].attn.window_size == (8, 8)
        assert "relative_position_bias_table (169, 3)→(225, 3)" in caplog.text
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out256 = m256(x)
        out224 = m224(x[:, :, :224, :224])
    for out in (out256, out224):
        assert out.shape == (1, m224.num_features) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "swin_tiny_patch4_window7_224"])
def test_imagenet_without_network_names_the_model_and_the_way_out(name: str, monkeypatch):
    monkeypatch.setattr(wt, "_cached_hub_file", lambda timm_name: None)
    monkeypatch.setattr(wt, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(RuntimeError, match=rf"{name}.*no network.*weights=<path"):
        create_backbone(name, "imagenet", img_size=256)

    real_create = timm.create_model

    def failing_download(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("connection reset")
        return real_create(*args, **kwargs)  # pragma: no cover - only pretrained builds here

    monkeypatch.setattr(wt, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(timm, "create_model", failing_download)
    message = rf"downloading .*{name}.*connection reset.*weights=<path"
    with pytest.raises(RuntimeError, match=message):
        create_backbone(name, "imagenet", img_size=224)
