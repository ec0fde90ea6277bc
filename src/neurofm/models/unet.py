"""The residual-encoder 3D U-Net, split so each part is usable alone.

``Encoder(x)`` returns one feature map per stage (full resolution first, bottleneck last);
``Decoder(features)`` returns full-resolution features; :class:`UNet` adds a 1x1x1 output conv.
Task models and pretraining models compose the same ``Encoder``, so an encoder state dict moves
between them unchanged (keys ``encoder.*``).

Input: ``(B, in_channels, X, Y, Z)`` with X, Y, Z multiples of ``cfg.divisor`` =
``stem_stride * 2 ** (stages - 1)`` (e.g. 8 for 4 stages) and at least twice that (instance
norm needs more than one bottleneck voxel); anything else is a :class:`NeuroFMError`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurofm.errors import NeuroFMError
from neurofm.models.blocks import (
    Adapter,
    DecoderStage,
    conv_norm_act,
    encoder_stage,
    up_norm_act,
)
from neurofm.models.config import PoolKind, UNetConfig


def global_pool(x: Tensor, mode: PoolKind = "avg") -> Tensor:
    """Pool the spatial axes: ``(B, C, X, Y, Z) -> (B, C)`` (``avg``, ``max``) or ``(B, 2C)``
    (``avgmax``: average then maximum, so a small local finding is not averaged away)."""
    if mode == "avg":
        return x.mean(dim=(2, 3, 4))
    if mode == "max":
        return x.amax(dim=(2, 3, 4))
    return torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)


def check_input(x: Tensor, cfg: UNetConfig) -> None:
    """Refuse inputs the U-Net cannot take with a message that says what would fit."""
    d = cfg.divisor
    if x.ndim != 5 or x.shape[1] != cfg.in_channels or any(s % d or s < 2 * d for s in x.shape[2:]):
        raise NeuroFMError(
            "model input",
            f"shape {tuple(x.shape)}; expected (B, {cfg.in_channels}, X, Y, Z) with X, Y, Z "
            f"multiples of {d} and >= {2 * d} for this U-Net ({cfg.stages} stages, "
            f"stem stride {cfg.stem_stride})",
        )


class Encoder(nn.Module):
    """Stem conv + residual stages (+ optional adapters after each stage).

    ``FIRST_CONV`` names the only weight that sees the input channels; channel adaptation
    (:mod:`neurofm.models.channels`) rewrites it.
    """

    FIRST_CONV = "stem.conv.weight"

    def __init__(self, cfg: UNetConfig, adapter_rank: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        f = cfg.features
        self.stem = conv_norm_act(cfg.in_channels, f[0], cfg, stride=cfg.stem_stride)
        self.stages = nn.ModuleList(
            encoder_stage(f[max(i - 1, 0)], f[i], cfg.blocks[i], 1 if i == 0 else 2, cfg)
            for i in range(cfg.stages)
        )
        self.adapters: nn.ModuleList | None = (
            nn.ModuleList(Adapter(c, adapter_rank, cfg.activation) for c in f)
            if adapter_rank > 0
            else None
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        check_input(x, self.cfg)
        h: Tensor = self.stem(x)
        features = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if self.adapters is not None:
                h = self.adapters[i](h)
            features.append(h)
        return features


class Decoder(nn.Module):
    """Upsampling path from the bottleneck back to input resolution (``features[0]`` channels)."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        f = cfg.features
        # stages[j] upsamples from stage (n-1-j) to stage (n-2-j)
        self.stages = nn.ModuleList(
            DecoderStage(f[i + 1], f[i], cfg) for i in reversed(range(cfg.stages - 1))
        )
        self.final_up = up_norm_act(f[0], f[0], cfg) if cfg.stem_stride == 2 else None

    def forward(self, features: list[Tensor]) -> Tensor:
        h = features[-1]
        for stage, skip in zip(self.stages, reversed(features[:-1]), strict=True):
            h = stage(h, skip)
        if self.final_up is not None:
            h = self.final_up(h)
        return h


class UNet(nn.Module):
    """Encoder + decoder + 1x1x1 conv to ``out_channels`` logits/values at input resolution."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.head = nn.Conv3d(cfg.features[0], cfg.out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.decoder(self.encoder(x)))
        return out

    def embed(self, x: Tensor) -> Tensor:
        """Global-average-pooled bottleneck, ``(B, features[-1])``."""
        return global_pool(self.encoder(x)[-1])
