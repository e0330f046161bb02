"""The networks of the course hand-in predictor (``NAME.py``): torchvision and timm models with
funduslab's heads rebuilt in eval mode, under funduslab's own state-dict keys.

``funduslab bundle`` inlines everything below the marker line into ``NAME.py`` (which imports
nothing from funduslab), in place of :mod:`funduslab.handin.standalone`'s import of it; kept as
its own module so each file stays short and both are tested as funduslab code.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["build_model"]

# ---- models (inlined into NAME.py from here) --------------------------------------------------
class SE(nn.Module):
    """Squeeze-and-excitation gate; ``doubled`` = funduslab's identity-initialised 2σ form."""

    def __init__(self, channels: int, reduced: int, doubled: bool) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.doubled = doubled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean(dim=(2, 3), keepdim=True)))))
        return x * (2.0 * z if self.doubled else z)


class Head(nn.Module):
    """funduslab's heads in eval mode (dropout is the identity): ``linear`` (``fc``), ``mlp``
    (``net``: linear → GELU → linear) and ``se`` (``gate`` on the feature map → pool →
    ``fc``)."""

    def __init__(self, name: str, channels: int, outputs: int, state: dict) -> None:
        super().__init__()
        self.name = name
        if name == "mlp":
            hidden = int(state["head.net.1.weight"].shape[0])
            self.net = nn.Sequential(nn.Identity(), nn.Linear(channels, hidden), nn.GELU(),
                                     nn.Identity(), nn.Linear(hidden, outputs))
            return
        if name == "se":
            self.gate = SE(channels, int(state["head.gate.fc1.weight"].shape[0]), doubled=False)
        self.fc = nn.Linear(channels, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pooled (B, C), or (B, C, h, w) for se
        if self.name == "mlp":
            return self.net(x)
        return self.fc(self.gate(x).mean(dim=(2, 3)) if self.name == "se" else x)


def sine_positions(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """funduslab's 2-D sine encoding ``(h·w, dim)`` (DETR): half the channels the row, half the
    column, positions normalised to (0, 2π]."""
    ys = torch.arange(1, h + 1, dtype=torch.float32, device=device) / h * (2 * math.pi)
    xs = torch.arange(1, w + 1, dtype=torch.float32, device=device) / w * (2 * math.pi)
    quarter = dim // 4
    freq = 10000.0 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    ey, ex = ys[:, None] / freq, xs[:, None] / freq
    ey = torch.cat([ey.sin(), ey.cos()], dim=1)[:, None, :].expand(h, w, dim // 2)
    ex = torch.cat([ex.sin(), ex.cos()], dim=1)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([ey, ex], dim=2).reshape(h * w, dim)


class Block(nn.Module):
    """Pre-norm transformer block in eval mode: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Identity(),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class PositionTable(nn.Module):
    """A learned ``(1, dim, g, g)`` position table (``head.pos.table``)."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(shape))


class MHAHead(nn.Module):
    """funduslab's ``mha`` head in eval mode: the last feature map's tokens, projected, given
    positions (sine, learned or none), through pre-norm blocks, normalised, pooled (token mean
    or class token) into ``fc``. Sizes come from the tensors; heads and positions from
    ``options``."""

    name = "mha"

    def __init__(self, channels: int, outputs: int, state: dict, options: dict) -> None:
        super().__init__()
        dim = int(state["head.proj.weight"].shape[0])
        layers = len({k.split(".")[2] for k in state if k.startswith("head.blocks.")})
        hidden = int(state["head.blocks.0.mlp.0.weight"].shape[0])
        self.proj = nn.Linear(channels, dim)
        self.pos_kind = options.get("pos", "sine")
        if "head.pos.table" in state:
            self.pos = PositionTable(state["head.pos.table"].shape)
        if "head.cls_token" in state:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList(Block(dim, int(options.get("num_heads", 4)), hidden)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, outputs)

    def forward(self, f: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, K)
        b, _, h, w = f.shape
        x = self.proj(f.flatten(2).transpose(1, 2))
        if self.pos_kind == "sine":
            x = x + sine_positions(h, w, x.shape[-1], x.device).to(x.dtype)[None]
        elif self.pos_kind == "learned":
            table = self.pos.table
            if table.shape[-2:] != (h, w):
                table = nn.functional.interpolate(table, size=(h, w), mode="bicubic",
                                                  align_corners=False)
            x = x + table.flatten(2).transpose(1, 2).to(x.dtype)
        cls = getattr(self, "cls_token", None)
        if cls is not None:
            x = torch.cat([cls.expand(b, -1, -1).to(x.dtype), x], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.fc(x[:, 0] if cls is not None else x.mean(dim=1))


class FundusNet(nn.Module):
    """A timm backbone (no classifier) + funduslab's head, with the same state-dict keys."""

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone.forward_features(x)
        return self.head(f if self.head.name in ("se", "mha") else
                         self.backbone.forward_head(f, pre_logits=True))


def _timm_net(entry: dict, num_classes: int) -> nn.Module:
    import timm

    if entry["arch"] == "tiny_cnn":  # funduslab's 4-stage test ResNet
        from timm.models.resnet import BasicBlock, ResNet

        return ResNet(BasicBlock, layers=(1, 1, 1, 1), channels=(16, 32, 64, 128), stem_width=16,
                      num_classes=num_classes)
    return timm.create_model(entry["arch"], pretrained=False, num_classes=num_classes,
                             **entry.get("timm_kwargs", {}))


def _hook(se: nn.Module):
    return lambda _module, _inputs, output: se(output)


def _wrapped(entry: dict, state: dict) -> nn.Module:
    backbone = _timm_net(entry, 0)
    blocks = nn.ModuleDict()
    for point in entry.get("se_points", []):
        key = point.replace(".", "_")
        fc1 = state[f"backbone.se_blocks.{key}.fc1.weight"]
        blocks[key] = SE(int(fc1.shape[1]), int(fc1.shape[0]), doubled=True)
        backbone.get_submodule(point).register_forward_hook(_hook(blocks[key]))
    if len(blocks):
        backbone.se_blocks = blocks
    channels, outputs = int(backbone.num_features), int(entry["num_outputs"])
    head = (MHAHead(channels, outputs, state, entry.get("head_options", {}))
            if entry["head"] == "mha" else Head(entry["head"], channels, outputs, state))
    return FundusNet(backbone, head)


def build_model(entry: dict, state: dict) -> nn.Module:
    """The network of one entry with ``state`` loaded strictly, in eval mode.

    ``torchvision`` entries are built exactly as the course template builds them.
    """
    import torchvision

    k = int(entry["num_outputs"])
    if entry["kind"] == "torchvision" and entry["arch"] == "resnet18":
        model = torchvision.models.resnet18()
        model.fc = nn.Linear(512, k)
    elif entry["kind"] == "torchvision" and entry["arch"] == "efficientnet_b0":
        model = torchvision.models.efficientnet_b0()
        model.classifier[1] = nn.Linear(1280, k)
    elif entry["kind"] == "timm":
        model = _timm_net(entry, k)
    elif entry["kind"] == "wrapped":
        model = _wrapped(entry, state)
    else:
        raise ValueError(f"unknown model kind {entry['kind']!r} for {entry['arch']!r}")
    model.load_state_dict(state)
    return model.eval()
