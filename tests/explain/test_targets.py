"""Reshape transforms on known tensors, target layers and feature maps per family."""

from __future__ import annotations

import pytest
import torch
from explain_helpers import tiny_model

from funduslab.explain.targets import reshape_transform_for, target_layer
from funduslab.models.families import patch_grid, swin_nhwc_to_nchw, vit_tokens_to_nchw
from funduslab.models.feature_maps import feature_map_nchw


def test_vit_tokens_drop_prefix_and_fold_row_major():
    b, prefix, h, w, c = 2, 2, 3, 4, 5
    tokens = torch.arange(b * (prefix + h * w) * c, dtype=torch.float32).view(b, prefix + h * w, c)
    out = vit_tokens_to_nchw(tokens, (h, w), num_prefix_tokens=prefix)
    assert out.shape == (b, c, h, w)
    for i in range(h):
        for j in range(w):  # patch (i, j) is token prefix + i·w + j
            torch.testing.assert_close(out[:, :, i, j], tokens[:, prefix + i * w + j, :])


def test_vit_tokens_wrong_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"1 \+ 3\*3"):
        vit_tokens_to_nchw(torch.zeros(1, 9, 4), (3, 3), num_prefix_tokens=1)


def test_swin_nhwc_moves_channels_first():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # (B, h, w, C)
    out = swin_nhwc_to_nchw(x)
    assert out.shape == (2, 5, 3, 4)
    torch.testing.assert_close(out[1, 4, 2, 3], x[1, 2, 3, 4])
    with pytest.raises(ValueError, match="Swin"):
        swin_nhwc_to_nchw(torch.zeros(2, 3, 4))


@pytest.mark.parametrize(("backbone", "layout", "grid"), [
    ("tiny_cnn", None, (2, 2)), ("tiny_vit", "vit", (8, 8)), ("tiny_swin", "swin", (8, 8)),
])
def test_cam_layer_output_becomes_nchw(backbone, layout, grid):
    model = tiny_model(backbone)
    seen = {}
    handle = target_layer(model).register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 3, 64, 64))
    handle.remove()
    reshape = reshape_transform_for(model, (64, 64))
    assert (reshape is None) == (layout is None)
    act = seen["out"] if reshape is None else reshape(seen["out"])
    assert act.ndim == 4 and act.shape[0] == 2 and tuple(act.shape[2:]) == grid
    fmap = feature_map_nchw(model, features, (64, 64))
    assert fmap.shape == (2, model.num_features, *grid)


def test_vit_patch_grid_follows_the_input_size():
    model = tiny_model("tiny_vit")
    assert patch_grid(model.backbone, (64, 48)) == (8, 6)
    with torch.no_grad():
        tokens = model.forward_features(torch.rand(1, 3, 64, 48))
    assert feature_map_nchw(model, tokens, (64, 48)).shape == (1, 32, 8, 6)
