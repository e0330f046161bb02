"""Class activation maps by name, one heat map per disease, computed with pytorch-grad-cam.

Registered methods (``CAMS``):

* ``gradcam``   — Grad-CAM: channels weighted by their spatially averaged gradient
  (Selvaraju et al., ICCV 2017).
* ``gradcam++`` — Grad-CAM++: higher-order weights for several instances of a class
  (Chattopadhay et al., WACV 2018).
* ``layercam``  — LayerCAM: element-wise positive gradients times activations
  (Jiang et al., IEEE TIP 2021).
* ``scorecam``  — Score-CAM: channels weighted by the target score of the image masked by each
  upsampled channel; gradient-free, one forward pass per channel (Wang et al., CVPRW 2020).
* ``eigencam``  — Eigen-CAM: first principal component of the activations (Muhammad & Yeasin,
  IJCNN 2020). It is class-agnostic: every disease gets the same map.

:func:`compute_cams` returns ``(B, K, H, W)`` maps in [0, 1] at the input resolution: each map is
ReLU'd, min–max scaled by pytorch-grad-cam and resized bilinearly to the image. The target layer
and reshape transform come from :mod:`funduslab.explain.targets`. Hooks are released after every
call and exceptions propagate (we do not use the library's context manager, which swallows
``IndexError``).

Speed: the K maps share one forward pass (pytorch-grad-cam's ``BaseCAM.forward`` would run one per
target), and back-propagation stops at the CAM layer: during the call the model's parameters do
not require gradients and the CAM layer's output is detached and marked as requiring them. The
gradient of a score with respect to that output depends only on the layers after it, so the maps
are exactly those of the library's own call, at the cost of about one inference pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.base_cam import BaseCAM
from torch import nn

from funduslab.explain.defaults import DEFAULT_CAM_METHOD
from funduslab.explain.targets import class_targets, reshape_transform_for, target_layer
from funduslab.registry import Registry

__all__ = [
    "CAMS",
    "DEFAULT_CAM_METHOD",
    "QuietScoreCAM",
    "attention_maps",
    "build_cam",
    "cams_and_logits",
    "compute_cams",
]

CamFactory = Callable[[nn.Module, list[nn.Module], Callable | None], BaseCAM]
CAMS: Registry[CamFactory] = Registry("CAM method")


class QuietScoreCAM(ScoreCAM):
    """pytorch-grad-cam's Score-CAM without its progress bar, scoring every output at once.

    Same weights as :class:`pytorch_grad_cam.ScoreCAM`: softmax over channels of the target
    score of the input multiplied by each min–max normalised, upsampled activation channel. The
    model outputs of the masked inputs are kept for the last input tensor, so the maps of the K
    diseases cost one set of masked forward passes, not K.
    """

    batch_size = 64

    def _masked_outputs(self, input_tensor: torch.Tensor, activations: np.ndarray) -> torch.Tensor:
        """Model outputs ``(B, C, K)`` for the input masked by each activation channel."""
        key = (id(input_tensor), input_tensor._version, activations.shape)
        cached = getattr(self, "_cache", None)
        if cached is not None and cached[0] == key and cached[1] is input_tensor:
            return cached[2]
        store = self.activations_and_grads.activations
        kept = len(store)
        with torch.no_grad():
            act = torch.from_numpy(activations).to(self.device)
            up = nn.functional.interpolate(act, size=input_tensor.shape[-2:], mode="bilinear",
                                           align_corners=True)  # as UpsamplingBilinear2d
            flat = up.flatten(2)
            lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
            up = (up - lo) / (hi - lo + 1e-8)
            outputs = []
            for image, masks in zip(input_tensor, up):
                per_image = []
                for start in range(0, len(masks), self.batch_size):
                    masked = image[None] * masks[start : start + self.batch_size, None]
                    per_image.append(self.model(masked).float().cpu())
                    del store[kept:]  # the hooks saw the masked inputs: forget them
                outputs.append(torch.cat(per_image))
        result = torch.stack(outputs)
        self._cache = (key, input_tensor, result)
        return result

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
        outputs = self._masked_outputs(input_tensor, activations)
        scores = torch.tensor([[float(target(o)) for o in per_image]
                               for target, per_image in zip(targets, outputs)])
        return torch.softmax(scores, dim=-1).numpy()


CAMS.register("gradcam")(lambda m, layers, reshape: GradCAM(m, layers, reshape))
CAMS.register("gradcam++")(lambda m, layers, reshape: GradCAMPlusPlus(m, layers, reshape))
CAMS.register("layercam")(lambda m, layers, reshape: LayerCAM(m, layers, reshape))
CAMS.register("scorecam")(lambda m, layers, reshape: QuietScoreCAM(m, layers, reshape))
CAMS.register("eigencam")(lambda m, layers, reshape: EigenCAM(m, layers, reshape))


def build_cam(method: str, model: nn.Module, image_hw: tuple[int, int]) -> BaseCAM:
    """A pytorch-grad-cam object for ``model`` at input size ``image_hw`` (pixels).

    Raises:
        ValueError: unknown ``method`` (the valid names are listed).
    """
    factory = CAMS.get(method)
    return factory(model, [target_layer(model)], reshape_transform_for(model, image_hw))


def cams_and_logits(
    model: nn.Module, images: torch.Tensor, method: str = DEFAULT_CAM_METHOD
) -> tuple[np.ndarray, torch.Tensor]:
    """One heat map per disease for each image, plus the logits of the same forward pass.

    Args:
        model: A :class:`~funduslab.models.classifier.FundusModel` (put in eval mode here).
        images: ``(B, 3, H, W)`` floats in [0, 1] on the model's device.
        method: A name in :data:`CAMS`.

    Returns:
        ``(maps, logits)``: ``(B, K, H, W)`` float32 in [0, 1] and ``(B, K)`` logits (CPU),
        ``K`` the number of model outputs.

    Raises:
        ValueError: unknown method, or images not ``(B, 3, H, W)``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    model.eval()
    layer = target_layer(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    cut = layer.register_forward_hook(lambda m, i, out: out.detach().requires_grad_(True))
    cam = None
    try:
        for p in trainable:
            p.requires_grad_(False)
        cam = build_cam(method, model, (int(images.shape[2]), int(images.shape[3])))
        store = cam.activations_and_grads
        with torch.enable_grad():
            logits = store(images)  # one forward; the hooks keep the CAM layer's activations
            maps = []
            for k in range(int(logits.shape[1])):
                targets = class_targets(k, len(images))
                if cam.uses_gradients:
                    store.gradients = []
                    score = sum(t(o) for t, o in zip(targets, logits))
                    score.backward(retain_graph=True)
                per_layer = cam.compute_cam_per_layer(images, targets, False)
                maps.append(cam.aggregate_multi_layers(per_layer))
    finally:
        cut.remove()
        if cam is not None:
            cam.activations_and_grads.release()
        for p in trainable:
            p.requires_grad_(True)
    stacked = np.clip(np.stack(maps, axis=1), 0.0, 1.0).astype(np.float32)
    return stacked, logits.detach().float().cpu()


def compute_cams(model: nn.Module, images: torch.Tensor,
                 method: str = DEFAULT_CAM_METHOD) -> np.ndarray:
    """``(B, K, H, W)`` heat maps in [0, 1], one per disease; see :func:`cams_and_logits`."""
    return cams_and_logits(model, images, method)[0]


def attention_maps(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """The head's own attention maps, upsampled to the image and min–max scaled per map.

    The head must provide ``attention_maps(features) -> (B, M, h, w)`` on the backbone's feature
    map (the attention heads of :mod:`funduslab.models.heads` do).

    Returns:
        ``(B, M, H, W)`` float32 in [0, 1].

    Raises:
        ValueError: the head has no ``attention_maps``.
    """
    head = model.head
    if not callable(getattr(head, "attention_maps", None)):
        raise ValueError(f"head {type(head).__name__} has no attention_maps(features); "
                         "--attention needs an attention head (e.g. mha or cbam)")
    model.eval()
    with torch.no_grad():
        maps = head.attention_maps(model.forward_features(images)).float()
        if maps.ndim != 4 or maps.shape[0] != images.shape[0]:
            raise ValueError(f"{type(head).__name__}.attention_maps returned "
                             f"{tuple(maps.shape)}, expected (B, M, h, w)")
        maps = nn.functional.interpolate(maps, size=images.shape[-2:], mode="bilinear",
                                         align_corners=False)
        flat = maps.flatten(2)
        lo, hi = flat.min(-1)[0][..., None, None], flat.max(-1)[0][..., None, None]
        maps = (maps - lo) / (hi - lo).clamp_min(1e-7)
    return maps.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)
