"""The one model registry: named :class:`UNetConfig` presets and the builders.

* ``tiny`` — CPU demo size: strided stem, 4 stages of 8..64 channels; inputs multiple of 16
  (a 2 x 1 x 48^3 forward+backward takes 0.10-0.2 s on one CPU thread);
* ``tiny-wide`` — ``tiny`` at twice the width (16..128 channels): ~4x its parameters and FLOPs,
  the CPU-affordable step towards ``small`` for asking whether width helps;
* ``small`` — 5 stages of 16..256 channels, 1-2 residual blocks per stage; multiples of 16;
* ``large`` — nnU-Net ResEnc-L layout: 6 stages of 32..320 channels, (1, 3, 4, 6, 6, 6)
  blocks; multiples of 32, for a GPU.

Variants are overrides of a preset (``get_preset("small", in_channels=4)``), never subclasses.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch
from torch import nn

from neurofm.errors import NeuroFMError
from neurofm.models.config import TaskModelConfig, UNetConfig
from neurofm.models.heads import TaskModel
from neurofm.models.unet import UNet

MODEL_PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(features=(8, 16, 32, 64), blocks=(1, 1, 1, 1), stem_stride=2),
    "tiny-wide": UNetConfig(features=(16, 32, 64, 128), blocks=(1, 1, 1, 1), stem_stride=2),
    "small": UNetConfig(features=(16, 32, 64, 128, 256), blocks=(1, 2, 2, 2, 2)),
    "large": UNetConfig(features=(32, 64, 128, 256, 320, 320), blocks=(1, 3, 4, 6, 6, 6)),
}


def get_preset(name: str, **overrides: Any) -> UNetConfig:
    """The preset ``name`` with some fields replaced; unknown names/fields are one-line errors."""
    if name not in MODEL_PRESETS:
        raise NeuroFMError(
            None, f"unknown model preset {name!r} (known: {', '.join(MODEL_PRESETS)})"
        )
    known = {f.name for f in fields(UNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise NeuroFMError(name, f"unknown U-Net field(s) {unknown} (known: {sorted(known)})")
    return replace(MODEL_PRESETS[name], **overrides)


def channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Store conv weights channels-last-3d (faster on GPUs with cuDNN); feed inputs likewise."""
    if not enabled:
        return model
    return model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]


def build_unet(cfg: UNetConfig, *, channels_last_3d: bool = False) -> UNet:
    """A freshly initialised U-Net for ``cfg``."""
    model = UNet(cfg)
    channels_last(model, channels_last_3d)
    return model


def build_task_model(cfg: TaskModelConfig, *, channels_last_3d: bool = False) -> TaskModel:
    """A freshly initialised task model for ``cfg`` (load pretrained weights afterwards)."""
    model = TaskModel(cfg)
    channels_last(model, channels_last_3d)
    return model
