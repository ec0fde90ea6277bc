"""A class-conditional noise-prediction (epsilon) U-Net on the ResEnc backbone.

It reuses :class:`~neurofm.models.unet.Encoder` and :class:`~neurofm.models.unet.Decoder`
unchanged (keys ``encoder.*`` / ``decoder.*``, so a pretraining run loads with
:func:`~neurofm.models.channels.load_encoder_weights`) and walks their stages itself, modulating
the output of every encoder and decoder stage with FiLM (``h * (1 + scale) + shift``) computed
from ``embed(t) + embed(y)``: a sinusoidal timestep embedding through a small MLP plus a learned
class embedding. Class index ``n_classes`` is the "null" (unconditional) class that class
dropout trains. The FiLM projections start at zero, so a pretrained backbone computes what it
computed before until training moves them. The output is a 1x1x1 conv back to the input
channels: the predicted noise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from neurofm.errors import NeuroFMError
from neurofm.models.config import UNetConfig
from neurofm.models.unet import Decoder, Encoder, check_input


@dataclass(frozen=True)
class DiffusionUNetConfig:
    """Backbone, number of real classes, embedding width and class-dropout rate."""

    backbone: UNetConfig = field(default_factory=UNetConfig)
    n_classes: int = 2
    embed_dim: int = 64
    class_dropout: float = 0.1

    def __post_init__(self) -> None:
        where = "DiffusionUNetConfig"
        if self.n_classes < 2 or self.embed_dim < 2 or self.embed_dim % 2:
            raise NeuroFMError(where, "needs n_classes >= 2 and an even embed_dim >= 2")
        if not 0.0 <= self.class_dropout < 1.0:
            raise NeuroFMError(where, f"class_dropout must be in [0, 1) (got {self.class_dropout})")

    @property
    def null_class(self) -> int:
        """The label of the unconditional branch."""
        return self.n_classes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionUNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NeuroFMError(cls.__name__, f"unknown field(s) {unknown} (known: {sorted(known)})")
        values = dict(data)
        if "backbone" in values:
            values["backbone"] = UNetConfig.from_dict(values["backbone"])
        return cls(**values)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style sinusoidal embedding of integer timesteps, ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class FiLM(nn.Module):
    """Feature-wise affine modulation from the conditioning vector, zero at initialisation."""

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.proj(cond).reshape(h.shape[0], -1, 1, 1, 1).chunk(2, dim=1)
        return h * (1 + scale) + shift


class DiffusionUNet(nn.Module):
    """``forward(x_t, t, y) -> predicted noise`` with the shape of ``x_t``."""

    def __init__(self, cfg: DiffusionUNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        b, e = cfg.backbone, cfg.embed_dim
        self.encoder = Encoder(b)
        self.decoder = Decoder(b)
        self.head = nn.Conv3d(b.features[0], b.in_channels, kernel_size=1)
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_embed = nn.Embedding(cfg.n_classes + 1, e)
        self.cond_act = nn.SiLU()
        self.enc_film = nn.ModuleList(FiLM(e, c) for c in b.features)
        self.dec_film = nn.ModuleList(FiLM(e, b.features[i]) for i in reversed(range(b.stages - 1)))

    def condition(self, t: Tensor, y: Tensor) -> Tensor:
        """The conditioning vector ``(B, embed_dim)`` of timesteps and class labels."""
        if bool((y < 0).any()) or bool((y > self.cfg.null_class).any()):
            raise NeuroFMError(
                "diffusion model", f"class labels must be in [0, {self.cfg.null_class}]"
            )
        emb = self.time_mlp(timestep_embedding(t, self.cfg.embed_dim)) + self.class_embed(y.long())
        out: Tensor = self.cond_act(emb)
        return out

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        check_input(x, self.cfg.backbone)
        if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
            raise NeuroFMError("diffusion model", "t and y need one value per batch item")
        cond = self.condition(t, y)
        h: Tensor = self.encoder.stem(x)
        features = []
        for stage, film in zip(self.encoder.stages, self.enc_film, strict=True):
            h = film(stage(h), cond)
            features.append(h)
        h = features[-1]
        skips = reversed(features[:-1])
        for stage, skip, film in zip(self.decoder.stages, skips, self.dec_film, strict=True):
            h = film(stage(h, skip), cond)
        if self.decoder.final_up is not None:
            h = self.decoder.final_up(h)
        out: Tensor = self.head(h)
        return out

    def drop_classes(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Replace each label by the null class with probability ``class_dropout``."""
        drop = torch.rand(y.shape, generator=generator) < self.cfg.class_dropout
        return torch.where(drop.to(y.device), torch.full_like(y, self.cfg.null_class), y)
