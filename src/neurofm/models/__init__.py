"""Backbones, heads, adapters and weight loading for brain-MRI foundation models.

See docs/architecture.md.

Typical use::

    cfg = TaskModelConfig(get_preset("tiny", in_channels=4), kind="classification")
    model = build_task_model(cfg)
    load_encoder_weights(model, pretrained_state, dst_channels=["dwi_b1000", "flair", "adc", "swi"])
    configure_trainable(model, "probe")
"""

from neurofm.models.adapters import AdaptMode, configure_trainable, trainable_parameters
from neurofm.models.channels import LoadReport, adapt_input_kernel, load_encoder_weights
from neurofm.models.config import HeadKind, PoolKind, TaskModelConfig, UNetConfig
from neurofm.models.flops import PresetStats, count_flops, count_parameters, preset_stats
from neurofm.models.heads import PooledHead, TaskModel
from neurofm.models.registry import (
    MODEL_PRESETS,
    build_task_model,
    build_unet,
    channels_last,
    get_preset,
)
from neurofm.models.unet import Decoder, Encoder, UNet, global_pool

__all__ = [
    "MODEL_PRESETS",
    "AdaptMode",
    "Decoder",
    "Encoder",
    "HeadKind",
    "LoadReport",
    "PoolKind",
    "PooledHead",
    "PresetStats",
    "TaskModel",
    "TaskModelConfig",
    "UNet",
    "UNetConfig",
    "adapt_input_kernel",
    "build_task_model",
    "build_unet",
    "channels_last",
    "configure_trainable",
    "count_flops",
    "count_parameters",
    "get_preset",
    "global_pool",
    "load_encoder_weights",
    "preset_stats",
    "trainable_parameters",
]
