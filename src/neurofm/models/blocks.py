"""U-Net building blocks: MONAI's nnU-Net residual block plus the two pieces MONAI lacks.

The encoder reuses MONAI's ``UnetResBlock`` (conv-norm-act-conv-norm, projected skip when the
shape changes, act) — the ResEnc basic block — and MONAI's ``Convolution`` (conv-norm-act).
Hand-written here because MONAI has no equivalent: the decoder stage with a single conv after the
skip concatenation (MONAI's ``UnetUpBlock`` uses two; nnU-Net ResEnc uses one, which halves
decoder cost on CPU) and the zero-initialised residual bottleneck adapter.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.blocks.dynunet_block import UnetResBlock, get_conv_layer
from monai.networks.layers.utils import get_act_layer
from torch import Tensor, nn

from neurofm.models.config import Activation, Norm, UNetConfig

_NORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "instance": ("instance", {"affine": True}),
    "batch": ("batch", {}),
}
_ACTS: dict[str, tuple[str, dict[str, Any]]] = {
    "leakyrelu": ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
    "relu": ("relu", {"inplace": True}),
    "gelu": ("gelu", {}),
}


def norm_spec(norm: Norm) -> tuple[str, dict[str, Any]]:
    """MONAI factory spec of a norm (instance norm is affine, as in nnU-Net)."""
    return _NORMS[norm]


def act_spec(activation: Activation) -> tuple[str, dict[str, Any]]:
    """MONAI factory spec of an activation (leaky ReLU slope 0.01, as in nnU-Net)."""
    return _ACTS[activation]


def conv_norm_act(
    in_channels: int, out_channels: int, cfg: UNetConfig, stride: int = 1
) -> Convolution:
    """3x3x3 conv (no bias: the norm follows) -> norm -> activation; key of the conv: ``conv``."""
    return Convolution(
        3,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=3,
        act=act_spec(cfg.activation),
        norm=norm_spec(cfg.norm),
        bias=False,
    )


def up_norm_act(in_channels: int, out_channels: int, cfg: UNetConfig) -> nn.Module:
    """2x2x2 stride-2 transposed conv -> norm -> activation (undoes a strided stem)."""
    layer: nn.Module = get_conv_layer(
        3,
        in_channels,
        out_channels,
        kernel_size=2,
        stride=2,
        act=act_spec(cfg.activation),
        norm=norm_spec(cfg.norm),
        is_transposed=True,
        conv_only=False,
    )
    return layer


def encoder_stage(
    in_channels: int, out_channels: int, n_blocks: int, stride: int, cfg: UNetConfig
) -> nn.Sequential:
    """``n_blocks`` residual blocks; the first one downsamples by ``stride``."""
    blocks = [
        UnetResBlock(
            3,
            in_channels if i == 0 else out_channels,
            out_channels,
            kernel_size=3,
            stride=stride if i == 0 else 1,
            norm_name=norm_spec(cfg.norm),
            act_name=act_spec(cfg.activation),
        )
        for i in range(n_blocks)
    ]
    return nn.Sequential(*blocks)


class DecoderStage(nn.Module):
    """Transposed-conv upsampling by 2, concatenation with the skip, one conv-norm-act."""

    def __init__(self, in_channels: int, out_channels: int, cfg: UNetConfig) -> None:
        super().__init__()
        self.up = get_conv_layer(
            3,
            in_channels,
            out_channels,
            kernel_size=2,
            stride=2,
            conv_only=True,
            is_transposed=True,
        )
        self.conv = conv_norm_act(2 * out_channels, out_channels, cfg)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        out: Tensor = self.conv(torch.cat([self.up(x), skip], dim=1))
        return out


class Adapter(nn.Module):
    """Residual bottleneck adapter ``x + up(act(down(x)))`` with 1x1x1 convs.

    ``up`` starts at zero, so inserting adapters into a pretrained encoder leaves its outputs
    unchanged until training moves them (Houlsby-style parameter-efficient finetuning).
    """

    def __init__(self, channels: int, rank: int, activation: Activation) -> None:
        super().__init__()
        self.down = nn.Conv3d(channels, rank, kernel_size=1)
        self.act = get_act_layer(act_spec(activation))
        self.up = nn.Conv3d(rank, channels, kernel_size=1)
        for p in self.up.parameters():
            nn.init.zeros_(p)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(self.act(self.down(x)))
