"""Adaptation modes: which parameters of a :class:`TaskModel` train.

* ``full`` — everything trains (full finetuning);
* ``probe`` — the encoder is frozen; the head trains (for segmentation the decoder counts as
  part of the head: a pretrained decoder reconstructs images, it does not segment them);
* ``adapter`` — the encoder is frozen except its zero-initialised bottleneck adapters
  (``TaskModelConfig.adapter_rank > 0``); decoder and head train as in ``probe``.

Freezing sets ``requires_grad=False`` so frozen parameters get no ``.grad`` and no optimiser
state; pass only :func:`trainable_parameters` to the optimiser.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import nn

from neurofm.errors import NeuroFMError
from neurofm.models.heads import TaskModel

AdaptMode = Literal["full", "probe", "adapter"]


def configure_trainable(model: TaskModel, mode: AdaptMode) -> int:
    """Freeze/unfreeze ``model`` in place for ``mode``; returns the number of trainable params."""
    if mode not in get_args(AdaptMode):
        raise NeuroFMError(None, f"unknown adaptation mode {mode!r} (known: {get_args(AdaptMode)})")
    if mode == "adapter" and model.encoder.adapters is None:
        raise NeuroFMError(
            "TaskModelConfig", "adapter mode needs adapters: build the model with adapter_rank > 0"
        )
    for p in model.parameters():
        p.requires_grad_(mode == "full")
    for name, p in model.named_parameters():
        in_head = not name.startswith("encoder.")
        if in_head or (mode == "adapter" and name.startswith("encoder.adapters.")):
            p.requires_grad_(True)
    model.encoder_frozen = mode != "full"
    model.train(model.training)
    return sum(p.numel() for p in trainable_parameters(model))


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should see after :func:`configure_trainable`."""
    return [p for p in model.parameters() if p.requires_grad]
