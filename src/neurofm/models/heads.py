"""Task models: the shared encoder plus one head per task kind (docs/tasks.md).

* classification -> one logit per case, shape ``(B,)`` (apply a sigmoid for a probability);
  with ``head="mil"`` the decoder scores every voxel and the case logit is the mean of the top
  ``mil_top`` scores;
* regression -> one value per case, shape ``(B,)``;
* segmentation -> the U-Net decoder + a 1x1x1 conv, a one-channel logit map ``(B, 1, X, Y, Z)``.

Pooled heads read the pooled bottleneck (:meth:`TaskModel.embed`; average by default,
``TaskModelConfig.pool``), the same embedding that probes and deployment monitoring use.
``backbone.out_channels`` is ignored here: every task outputs one channel.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from monai.networks.layers.utils import get_act_layer
from torch import Tensor, nn

from neurofm.models.blocks import act_spec
from neurofm.models.config import Activation, HeadKind, TaskModelConfig
from neurofm.models.fusion import late_fusion_embed
from neurofm.models.unet import Decoder, Encoder, global_pool


class PooledHead(nn.Module):
    """Linear or one-hidden-layer MLP from a standardised pooled embedding to one number per case.

    ``center``/``scale`` are buffers (saved with the weights) that standardise the embedding, as
    a scikit-learn ``StandardScaler`` would: pooled features after instance norm sit on large
    constant offsets with small differences between cases, which a linear layer trained with a
    few hundred SGD steps does not find (see :func:`neurofm.train.head_init.init_head`, which sets
    them from the training cases).
    """

    center: Tensor
    scale: Tensor

    def __init__(
        self, in_dim: int, kind: HeadKind, hidden: int, dropout: float, activation: Activation
    ) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(in_dim))
        self.register_buffer("scale", torch.ones(in_dim))
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if kind == "mlp":
            layers += [nn.Linear(in_dim, hidden), get_act_layer(act_spec(activation))]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, embedding: Tensor) -> Tensor:
        out: Tensor = self.net((embedding - self.center) / self.scale).squeeze(-1)
        return out


def restrict_to_head(scores: Tensor, x: Tensor) -> Tensor:
    """Voxel scores ``(B, N)`` with voxels outside the head lowered to the case's lowest score.

    Preprocessing clips every channel below at its air value and pads with it, so a voxel
    where every channel sits at its volume minimum is air (or padding). Lowering rather than
    masking to -inf keeps the top-k mean finite when a volume has fewer than k head voxels.
    """
    flat = x.flatten(2)  # (B, C, N)
    inside = (flat > flat.amin(dim=2, keepdim=True) + 1e-4).any(dim=1)
    floor = scores.detach().amin(dim=1, keepdim=True)
    return torch.where(inside, scores, floor)


VOXEL_PRIOR = 0.01
"""Foreground probability a fresh voxel head (segmentation, MIL) predicts everywhere."""


class TaskModel(nn.Module):
    """Encoder (+ decoder for segmentation) + head, built from a :class:`TaskModelConfig`.

    Parameter names: ``encoder.*`` (adapters under ``encoder.adapters.*``), ``decoder.*``
    (segmentation only), ``head.*`` — :func:`~neurofm.models.channels.load_encoder_weights` and
    :func:`~neurofm.models.adapters.configure_trainable` rely on them.
    """

    def __init__(self, cfg: TaskModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bb = cfg.backbone
        # late fusion: one shared single-channel encoder, run once per input sequence
        encoder_cfg = replace(bb, in_channels=1) if cfg.fusion == "late" else bb
        self.encoder = Encoder(encoder_cfg, adapter_rank=cfg.adapter_rank)
        self.encoder_frozen = False
        self.decoder: Decoder | None
        self.head: nn.Module
        if cfg.dense:
            self.decoder = Decoder(bb)
            voxel_head = nn.Conv3d(bb.features[0], 1, kernel_size=1)
            assert voxel_head.bias is not None
            # start every voxel at a small foreground prior, not PyTorch's random bias (±0.35):
            # with a few hundred steps the bias barely moves, so background (and a MIL head's
            # negative cases) stayed near probability 0.4 (docs/model-quality.md)
            nn.init.constant_(voxel_head.bias, math.log(VOXEL_PRIOR / (1.0 - VOXEL_PRIOR)))
            self.head = voxel_head
        else:
            self.decoder = None
            self.head = PooledHead(
                cfg.embed_dim, cfg.head, cfg.head_hidden, cfg.head_dropout, bb.activation
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.decoder is not None:
            out: Tensor = self.head(self.decoder(self.encoder(x)))
            if self.cfg.head == "mil":  # case logit: mean of the top voxel scores
                scores = out.flatten(1)
                if self.cfg.mil_head_only:
                    scores = restrict_to_head(scores, x)
                top = min(self.cfg.mil_top, scores.shape[1])
                return scores.topk(top, dim=1).values.mean(dim=1)
            return out
        pooled: Tensor = self.head(self.embed(x))
        return pooled

    def embed(self, x: Tensor) -> Tensor:
        """Pooled bottleneck (``cfg.pool``), ``(B, cfg.embed_dim)``; with late fusion the
        sequences' embeddings side by side (:mod:`neurofm.models.fusion`)."""
        if self.cfg.fusion == "late":
            return late_fusion_embed(self.encoder, x, self.cfg.pool)
        return global_pool(self.encoder(x)[-1], self.cfg.pool)

    def train(self, mode: bool = True) -> TaskModel:
        """Like ``nn.Module.train`` but a frozen encoder stays in eval mode.

        Keeps pretrained normalisation statistics fixed (matters for ``norm="batch"``) when
        :func:`~neurofm.models.adapters.configure_trainable` froze the encoder.
        """
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.train(False)
        return self
