"""Every registered backbone family, through the same checks (a new family is tested here
without editing a list: it must bring a tiny test backbone, see ``models/tiny_backbones.py``)."""

from __future__ import annotations

import pytest
import torch

from funduslab.models.backbones import BACKBONES, backbone_info, create_backbone
from funduslab.models.families import FAMILIES, family_of
from funduslab.models.feature_maps import feature_map_nchw
from funduslab.models.heads.feature_map import FeatureMapHead
from funduslab.training.layer_decay import layer_depth_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_backbone_of(family: str) -> str:
    names = [n for n in BACKBONES.names()
             if BACKBONES.get(n).timm_name is None and BACKBONES.get(n).family == family]
    assert names, f"family {family!r} has no tiny test backbone in models/tiny_backbones.py"
    return names[0]


def _build(family: str, size: int):
    torch.manual_seed(0)
    return create_backbone(_tiny_backbone_of(family), "none", img_size=size)


def test_every_backbone_names_a_registered_family() -> None:
    for name in BACKBONES.names():
        assert BACKBONES.get(name).family in FAMILIES, name
    with pytest.raises(ValueError, match="valid names: cnn, swin, vit"):
        family_of("mlp")


@pytest.mark.parametrize("family", FAMILIES.names())
@pytest.mark.parametrize("size", [64, 96])
def test_features_become_the_same_nchw_map_on_both_paths(family: str, size: int) -> None:
    """The family's reshape and the attention heads' layout reading agree, at two input sizes."""
    backbone = _build(family, size)
    info = backbone_info(backbone)
    assert info.gradcam_layout == family_of(family).feature_layout
    with torch.no_grad():
        features = backbone.forward_features(torch.rand(2, 3, size, size))
    fmap = feature_map_nchw(backbone, features, (size, size))
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, info.num_features)
    assert fmap.shape[2] >= 2 and fmap.shape[3] >= 2
    head = FeatureMapHead(info.num_features, feature_layout=family_of(family).feature_layout,
                          num_prefix_tokens=info.num_prefix_tokens)
    torch.testing.assert_close(head.feature_grid(features), fmap)


@pytest.mark.parametrize("family", FAMILIES.names())
def test_layer_decay_numbers_every_parameter_from_stem_to_top(family: str) -> None:
    backbone = _build(family, 64)
    ids, depth = layer_depth_ids(backbone)
    names = {n for n, _ in backbone.named_parameters()}
    assert set(ids) == names
    assert min(ids.values()) == 0 and max(ids.values()) == depth
    assert depth >= len(backbone_info(backbone).stages)
    assert len(set(ids.values())) == depth + 1  # no depth id left unused


def test_swin_blocks_of_one_stage_get_their_own_depth() -> None:
    swin = family_of("swin")
    assert swin.block_index("layers.2.blocks.3.attn.qkv.weight", "layers.2") == 3
    assert swin.block_index("layers.2.downsample.norm.weight", "layers.2") == 0
    assert family_of("vit").block_index("blocks.3.attn.qkv.weight", "blocks.3") == 0


def test_size_options_build_transformers_for_the_input() -> None:
    assert family_of("cnn").size_options(256, timm_model=True) == {}
    assert family_of("vit").size_options(256, timm_model=True)["img_size"] == 256
    assert family_of("swin").size_options(256, timm_model=True)["window_size"] == 8
    assert "window_size" not in family_of("swin").size_options(256, timm_model=False)
