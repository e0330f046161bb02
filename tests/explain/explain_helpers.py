"""Helpers for the explain tests: seeded tiny models and a stand-in attention head."""

from __future__ import annotations

import torch
from torch import nn

from funduslab.models.backbones import backbone_info, create_backbone
from funduslab.models.classifier import FundusModel, build_head
from funduslab.models.heads import HEADS

STANDIN_HEAD = "_test_attention"


class StandInAttentionHead(nn.Module):
    """Attention head with the contract ``attention_maps(features) -> (B, M, h, w)``.

    ``M`` spatial softmax maps from a 1×1 conv; logits from the attention-pooled features.
    """

    needs_feature_map = True

    def __init__(self, num_features: int, num_outputs: int, dropout: float = 0.0,
                 maps: int = 2) -> None:
        super().__init__()
        self.att = nn.Conv2d(num_features, maps, 1)
        self.fc = nn.Linear(num_features * maps, num_outputs)

    def attention_maps(self, features: torch.Tensor) -> torch.Tensor:  # (B,C,h,w)->(B,M,h,w)
        a = self.att(features)
        return torch.softmax(a.flatten(2), dim=-1).view_as(a)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        a = self.attention_maps(features)
        return self.fc(torch.einsum("bmhw,bchw->bmc", a, features).flatten(1))


if STANDIN_HEAD not in HEADS:
    HEADS.register(STANDIN_HEAD)(StandInAttentionHead)


def tiny_model(backbone: str, head: str = "linear", outputs: int = 3, seed: int = 0,
               **head_options) -> FundusModel:
    """A seeded FundusModel with random weights, in eval mode."""
    torch.manual_seed(seed)
    b = create_backbone(backbone, "none")
    info = backbone_info(b)
    model = FundusModel(b, build_head(head, info.num_features, outputs, 0.0, **head_options),
                        info.mean, info.std)
    return model.eval()
