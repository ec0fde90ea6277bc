"""Parameter and FLOP counts of the presets, for choosing a model that fits the hardware.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls,
2 FLOPs per multiply-add; norms and activations are not counted) on a model built on the
``meta`` device, so counting even the large preset allocates nothing and takes milliseconds.
A training step costs about 3x the forward FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from neurofm.models.registry import build_unet, get_preset


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_flops(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of ``module`` on one input of ``input_shape``, on the module's device."""
    device = next(module.parameters()).device
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(torch.zeros(input_shape, device=device))
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class PresetStats:
    """Size and cost of one preset at one cubic patch size (FLOPs None if the patch won't fit)."""

    name: str
    features: tuple[int, ...]
    blocks: tuple[int, ...]
    divisor: int
    params_unet: int
    params_encoder: int
    flops_unet: int | None
    flops_encoder: int | None


def preset_stats(name: str, patch: int) -> PresetStats:
    """Parameters and forward FLOPs (batch 1, one channel, ``patch``^3) of U-Net and encoder."""
    cfg = get_preset(name)
    with torch.device("meta"):
        model = build_unet(cfg)
    fits = patch % cfg.divisor == 0 and patch >= 2 * cfg.divisor
    shape = (1, cfg.in_channels, patch, patch, patch)
    return PresetStats(
        name=name,
        features=cfg.features,
        blocks=cfg.blocks,
        divisor=cfg.divisor,
        params_unet=count_parameters(model),
        params_encoder=count_parameters(model.encoder),
        flops_unet=count_flops(model, shape) if fits else None,
        flops_encoder=count_flops(model.encoder, shape) if fits else None,
    )
