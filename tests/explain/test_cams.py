"""CAM methods on every backbone family: shape, range, one map per disease, Grad-CAM = CAM."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from explain_helpers import StandInAttentionHead, tiny_model

from funduslab.explain.cams import CAMS, attention_maps, build_cam, cams_and_logits, compute_cams
from funduslab.explain.targets import class_targets, reshape_transform_for, target_layer

FAMILIES = ["tiny_cnn", "tiny_vit", "tiny_swin"]


def test_registry_has_the_promised_methods():
    assert {"gradcam", "gradcam++", "eigencam", "scorecam", "layercam"} <= set(CAMS.names())


@pytest.mark.parametrize("backbone", FAMILIES)
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "eigencam", "scorecam", "layercam"])
def test_each_method_gives_one_unit_range_map_per_disease(backbone, method, images):
    model = tiny_model(backbone)
    x = images[:1] if method == "scorecam" else images  # one forward per channel: keep it small
    cams = compute_cams(model, x, method)
    assert cams.shape == (len(x), 3, 64, 64) and cams.dtype == np.float32
    assert np.isfinite(cams).all() and cams.min() >= 0.0 and cams.max() <= 1.0
    peaks = cams.reshape(len(x), 3, -1).max(-1)
    # each map is min–max scaled: its peak is 1 unless the ReLU'd map was empty (all 0)
    assert np.all(np.isclose(peaks, 1.0, atol=1e-4) | (peaks == 0.0))
    assert (peaks > 0).any()
    assert not any(p.grad is not None for p in model.parameters())  # gradients cleaned up


LIBRARY = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM",
           "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}


@pytest.mark.parametrize("backbone", FAMILIES)
@pytest.mark.parametrize("method", sorted(LIBRARY))
def test_shared_forward_and_truncated_backprop_match_the_library_call(backbone, method, images):
    """Our one-forward, stop-at-the-layer computation equals pytorch-grad-cam's own call."""
    import pytorch_grad_cam

    model = tiny_model(backbone)
    x = images[:1] if method == "scorecam" else images
    ours, logits = cams_and_logits(model, x, method)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x))
    assert all(p.requires_grad for p in model.parameters())  # restored
    cam = getattr(pytorch_grad_cam, LIBRARY[method])(
        model, [target_layer(model)], reshape_transform_for(model, (64, 64)))
    try:
        reference = np.stack([cam(x, class_targets(k, len(x))) for k in range(3)], axis=1)
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_gradient_methods_differ_between_diseases_eigencam_does_not(images):
    model = tiny_model("tiny_swin")
    grad = compute_cams(model, images, "gradcam")
    assert not np.allclose(grad[:, 0], grad[:, 1])
    eigen = compute_cams(model, images, "eigencam")
    np.testing.assert_allclose(eigen[:, 0], eigen[:, 1])


def test_efficientnet_lite0_gradcam(images):
    model = tiny_model("tf_efficientnet_lite0")
    cams = compute_cams(model, images, "gradcam")
    assert cams.shape == (2, 3, 64, 64) and 0.0 <= cams.min() and cams.max() <= 1.0


def test_gradcam_equals_the_cam_of_a_linear_head_on_average_pooling():
    """With global average pooling and a linear head, d logit_k / d A_c = W_kc / (h·w): Grad-CAM's
    channel weights are proportional to W, so its map is the normalised ReLU of Zhou's CAM."""
    model = tiny_model("tiny_cnn")
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    cams = compute_cams(model, x, "gradcam")
    with torch.no_grad():
        fmap = model.forward_features(x)  # (B, 128, 4, 4): output of layer4, the CAM layer
        raw = torch.einsum("kc,bchw->bkhw", model.head.fc.weight, fmap).clamp_min(0).numpy()
    for b in range(2):
        for k in range(3):
            m = raw[b, k] - raw[b, k].min()
            m = m / (m.max() + 1e-7)
            up = cv2.resize(m, (128, 128))  # bilinear; grad-cam rescales after resizing
            expected = (up - up.min()) / (up.max() - up.min() + 1e-7)
            np.testing.assert_allclose(cams[b, k], expected, atol=1e-4)


def test_unknown_method_lists_the_valid_ones(images):
    with pytest.raises(ValueError, match="gradcam"):
        build_cam("gradcamz", tiny_model("tiny_cnn"), (64, 64))


def test_images_must_be_nchw_rgb():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        compute_cams(tiny_model("tiny_cnn"), torch.rand(2, 1, 64, 64))


class _HotCornerHead(StandInAttentionHead):
    """Map 0 attends the top-left feature cell, map 1 the bottom-right one."""

    def attention_maps(self, features):
        b, _, h, w = features.shape
        hot = torch.zeros(b, 2, h, w)
        hot[:, 0, 0, 0] = hot[:, 1, -1, -1] = 5.0
        return torch.softmax(hot.flatten(2), -1).view(b, 2, h, w)


def test_attention_maps_follow_the_head_and_are_upsampled(images):
    model = tiny_model("tiny_cnn")
    model.head = _HotCornerHead(model.num_features, 3)
    maps = attention_maps(model, images)  # tiny_cnn at 64 px: 2×2 feature map
    assert maps.shape == (2, 2, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_allclose(maps[:, 0, 0, 0], 1.0)
    np.testing.assert_allclose(maps[:, 0, -1, -1], 0.0, atol=1e-6)
    np.testing.assert_allclose(maps[:, 1, -1, -1], 1.0)
    np.testing.assert_allclose(maps[:, 1, 0, 0], 0.0, atol=1e-6)
    assert (np.diff(maps[0, 0, 0, :]) <= 1e-6).all()  # decays away from the hot corner


def test_attention_maps_need_an_attention_head(images):
    with pytest.raises(ValueError, match="attention_maps"):
        attention_maps(tiny_model("tiny_cnn"), images)


@pytest.mark.parametrize("head", ["cbam", "mha", "class_query"])
@pytest.mark.parametrize("backbone", FAMILIES)
def test_real_attention_heads_give_maps_and_cams(head, backbone, images):
    from funduslab.config import ModelConfig
    from funduslab.models.factory import build_model
    from funduslab.models.heads import HEADS

    if head not in HEADS:
        pytest.skip(f"head {head!r} is not registered")
    model = build_model(ModelConfig(backbone=backbone, weights="none", head=head), 3, 64).eval()
    maps = attention_maps(model, images)
    assert maps.ndim == 4 and maps.shape[0] == 2 and maps.shape[2:] == (64, 64)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert compute_cams(model, images, "gradcam").shape == (2, 3, 64, 64)
