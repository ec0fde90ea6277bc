"""Self-supervised pretraining objectives: each computes one batch's loss given the model.

An objective is a small frozen dataclass called as
``loss, logs = objective(model, batch, generator)``: ``batch["image"]`` is ``(B, 1, X, Y, Z)``
(one sequence per sample) for ``mae``/``contrastive``/``hybrid`` and ``(B, 2, X, Y, Z)`` (two
sequences of one session) for ``modality``; ``generator`` drives every random choice (views,
masks), so a seeded generator makes a step reproducible. ``logs`` holds detached scalar tensors
(no device sync per step; call ``.item()`` when logging). Objectives only call ``model(x)``, so
a ``DistributedDataParallel``-wrapped :class:`PretrainModel` works unchanged, and
:func:`build_pretrain_model` builds only the parts an objective uses (no unused parameters).

* ``mae`` — mask 60 % of ``unit``^3 blocks, reconstruct with the U-Net decoder, MSE on masked
  voxels (AMAES);
* ``contrastive`` — two augmented views -> pooled bottleneck -> projection -> InfoNCE (SimCLR);
* ``hybrid`` — both at once: two masked views are reconstructed and contrasted,
  ``reconstruction + weight * contrastive``;
* ``modality`` — the two sequences of a session are the two views of InfoNCE, plus masked
  reconstruction of each so sequence-specific detail survives.

Views use cheap batched torch ops (random resized crop, flips, intensity scale/shift, Gaussian
noise) rather than a TorchIO pipeline: they run on the training device inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurofm.data.augment import simulate_low_resolution
from neurofm.errors import NeuroFMError
from neurofm.models.config import UNetConfig
from neurofm.models.unet import Decoder, Encoder, global_pool
from neurofm.pretrain.losses import ProjectionHead, info_nce, masked_reconstruction_loss
from neurofm.pretrain.masking import random_patch_mask

Logs = dict[str, Tensor]


class PretrainOutput(NamedTuple):
    """Pooled bottleneck embedding, and the reconstruction / projection when the model has them."""

    embedding: Tensor
    reconstruction: Tensor | None
    projection: Tensor | None


class PretrainModel(nn.Module):
    """Single-channel U-Net (+ projection head) for pretraining.

    Input and output channels are fixed at 1 (pretraining sees one sequence at a time).
    ``encoder.*`` (and ``decoder.*``) of its state dict load into task models with
    :func:`~neurofm.models.channels.load_encoder_weights`; ``reconstruction.*`` and
    ``projection.*`` are pretraining-only.
    """

    def __init__(
        self,
        backbone: UNetConfig,
        *,
        reconstruction: bool = True,
        projection_dim: int | None = 128,
        projection_hidden: int = 256,
    ) -> None:
        super().__init__()
        cfg = replace(backbone, in_channels=1, out_channels=1)
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg) if reconstruction else None
        self.reconstruction = (
            nn.Conv3d(cfg.features[0], 1, kernel_size=1) if reconstruction else None
        )
        self.projection = (
            ProjectionHead(cfg.embed_dim, projection_hidden, projection_dim)
            if projection_dim
            else None
        )

    def forward(self, x: Tensor) -> PretrainOutput:
        features = self.encoder(x)
        embedding = global_pool(features[-1])
        rec = None
        if self.decoder is not None and self.reconstruction is not None:
            rec = self.reconstruction(self.decoder(features))
        proj = self.projection(embedding) if self.projection is not None else None
        return PretrainOutput(embedding, rec, proj)

    def embed(self, x: Tensor) -> Tensor:
        """Global-average-pooled bottleneck, ``(B, features[-1])`` (no decoder or projection)."""
        return global_pool(self.encoder(x)[-1])


def _device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` itself on its own device, else a generator on ``device`` seeded from it."""
    if generator.device == device:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> Tensor:
    low, high = bounds
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _resized_crop(v: Tensor, side: tuple[float, float], generator: torch.Generator) -> Tensor:
    """Crop a random box (side fraction drawn from ``side``) of ``(C, X, Y, Z)``; resize back."""
    shape = v.shape[1:]
    frac = float(_uniform(1, side, generator))
    size = [max(2, round(frac * s)) for s in shape]
    if list(size) == list(shape):
        return v
    start = [
        int(torch.randint(0, s - c + 1, (1,), generator=generator, device=generator.device))
        for s, c in zip(shape, size, strict=True)
    ]
    (x0, y0, z0), (cx, cy, cz) = start, size
    crop = v[None, :, x0 : x0 + cx, y0 : y0 + cy, z0 : z0 + cz]
    return F.interpolate(crop, size=tuple(shape), mode="trilinear", align_corners=False)[0]


@dataclass(frozen=True)
class ViewAugment:
    """Random view of a batch: resized crop, simulated low resolution (thick slices), flips,
    intensity scale/shift, Gaussian noise.

    Each sample draws its own parameters from the generator; ``crop`` is the range of the crop
    side as a fraction of the patch side (None: no crop), ``noise_std`` is in the units of the
    normalised intensities.
    """

    flip: bool = True
    crop: tuple[float, float] | None = (0.7, 1.0)
    scale: tuple[float, float] = (0.8, 1.25)
    shift: tuple[float, float] = (-0.2, 0.2)
    noise_std: float = 0.05
    lowres_prob: float = 0.5
    max_lowres_factor: float = 2.5

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        b = x.shape[0]
        crop = self.crop
        out = x if crop is None else torch.stack([_resized_crop(v, crop, generator) for v in x])
        if self.lowres_prob > 0:
            out = torch.stack([self._lowres(v, generator) for v in out])
        if self.flip:
            flips = torch.rand(b, 3, generator=generator, device=generator.device) < 0.5
            flips = flips.to(x.device)
            for axis in range(3):
                out = torch.where(flips[:, axis].view(b, 1, 1, 1, 1), out.flip(2 + axis), out)
        scale = _uniform(b, self.scale, generator).to(x).view(b, 1, 1, 1, 1)
        shift = _uniform(b, self.shift, generator).to(x).view(b, 1, 1, 1, 1)
        out = out * scale + shift
        if self.noise_std > 0:
            g = _device_generator(generator, x.device)
            noise = torch.randn(out.shape, generator=g, device=x.device, dtype=x.dtype)
            out = out + self.noise_std * noise
        return out

    def _lowres(self, v: Tensor, generator: torch.Generator) -> Tensor:
        """Thicker slices with ``lowres_prob``: per-axis factors from [1, max] (see
        ``simulate_low_resolution``). Why: a brain-age model read the thick-slice blur of its own
        training images as youth (-13 to -19 years) without it, -4 to -5 years with it."""
        if float(_uniform(1, (0.0, 1.0), generator)) >= self.lowres_prob:
            return v
        factors = tuple(float(f) for f in _uniform(3, (1.0, self.max_lowres_factor), generator))
        return simulate_low_resolution(v, factors)


class Objective(Protocol):
    """``loss, logs = objective(model, batch, generator)``."""

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Logs]: ...


def _image(batch: Mapping[str, Tensor], channels: int, objective: str) -> Tensor:
    x = batch.get("image")
    if x is None or x.ndim != 5 or x.shape[1] != channels:
        got = "no 'image'" if x is None else f"image of shape {tuple(x.shape)}"
        raise NeuroFMError(
            f"objective {objective}",
            f"expects batch['image'] of shape (B, {channels}, X, Y, Z), {got}",
        )
    return x


def _need(t: Tensor | None, part: str, objective: str) -> Tensor:
    if t is None:
        raise NeuroFMError(
            f"objective {objective}",
            f"the model has no {part}; build it with build_pretrain_model(cfg, {objective!r})",
        )
    return t


def _logs(loss: Tensor, rec: Tensor, con: Tensor) -> Logs:
    return {"loss": loss.detach(), "reconstruction": rec.detach(), "contrastive": con.detach()}


def _reconstruct_and_contrast(
    model: nn.Module,
    views: Tensor,
    generator: torch.Generator,
    unit: int,
    ratio: float,
    temperature: float,
    objective: str,
) -> tuple[Tensor, Tensor]:
    """Mask both halves of ``views`` (2B samples), one forward; (reconstruction, InfoNCE) losses."""
    mask = random_patch_mask(
        views.shape[0], views.shape[2:], unit, ratio, generator=generator, device=views.device
    )
    out: PretrainOutput = model(views.masked_fill(mask, 0.0))
    rec = masked_reconstruction_loss(_need(out.reconstruction, "decoder", objective), views, mask)
    z1, z2 = _need(out.projection, "projection head", objective).chunk(2)
    return rec, info_nce(z1, z2, temperature)


@dataclass(frozen=True)
class MaskedAutoencoding:
    """AMAES: reconstruct an augmented view from its visible ``unit``^3 blocks."""

    unit: int = 4
    ratio: float = 0.6
    augment: ViewAugment | None = ViewAugment(noise_std=0.0)

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Logs]:
        x = _image(batch, 1, "mae")
        view = x if self.augment is None else self.augment(x, generator)
        mask = random_patch_mask(
            x.shape[0], x.shape[2:], self.unit, self.ratio, generator=generator, device=x.device
        )
        out: PretrainOutput = model(view.masked_fill(mask, 0.0))
        loss = masked_reconstruction_loss(_need(out.reconstruction, "decoder", "mae"), view, mask)
        return loss, {"loss": loss.detach(), "reconstruction": loss.detach()}


@dataclass(frozen=True)
class Contrastive:
    """SimCLR on volumes: two augmented views of each patch are the positive pair."""

    temperature: float = 0.1
    augment: ViewAugment = ViewAugment()

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Logs]:
        x = _image(batch, 1, "contrastive")
        views = torch.cat([self.augment(x, generator), self.augment(x, generator)])
        out: PretrainOutput = model(views)
        z1, z2 = _need(out.projection, "projection head", "contrastive").chunk(2)
        loss = info_nce(z1, z2, self.temperature)
        return loss, {"loss": loss.detach(), "contrastive": loss.detach()}


@dataclass(frozen=True)
class Hybrid:
    """Masked reconstruction of two views + ``weight`` x InfoNCE between them, one forward."""

    unit: int = 4
    ratio: float = 0.6
    temperature: float = 0.1
    weight: float = 0.5
    augment: ViewAugment = ViewAugment()

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Logs]:
        x = _image(batch, 1, "hybrid")
        views = torch.cat([self.augment(x, generator), self.augment(x, generator)])
        rec, con = _reconstruct_and_contrast(
            model, views, generator, self.unit, self.ratio, self.temperature, "hybrid"
        )
        loss = rec + self.weight * con
        return loss, _logs(loss, rec, con)


@dataclass(frozen=True)
class ModalityInvariant:
    """Two sequences of one session as the InfoNCE pair + masked reconstruction of each."""

    unit: int = 4
    ratio: float = 0.6
    temperature: float = 0.1
    reconstruction_weight: float = 1.0
    augment: ViewAugment = ViewAugment()

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Logs]:
        x = _image(batch, 2, "modality")
        views = torch.cat([self.augment(x[:, :1], generator), self.augment(x[:, 1:], generator)])
        rec, con = _reconstruct_and_contrast(
            model, views, generator, self.unit, self.ratio, self.temperature, "modality"
        )
        loss = con + self.reconstruction_weight * rec
        return loss, _logs(loss, rec, con)


@dataclass(frozen=True)
class ObjectiveSpec:
    """Registry entry: how to build an objective and what its batches and model need."""

    name: str
    factory: Callable[..., Objective]
    image_channels: int
    reconstruction: bool
    projection: bool
    summary: str

    def build(self, **params: Any) -> Objective:
        """The objective with some parameters changed (e.g. ``ratio=0.75``)."""
        try:
            return self.factory(**params)
        except TypeError as exc:
            raise NeuroFMError(f"objective {self.name}", f"bad parameters {params}: {exc}") from exc


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "mae": ObjectiveSpec(
        "mae", MaskedAutoencoding, 1, True, False, "masked autoencoding (AMAES, ratio 0.6)"
    ),
    "contrastive": ObjectiveSpec(
        "contrastive", Contrastive, 1, False, True, "two augmented views, InfoNCE"
    ),
    "hybrid": ObjectiveSpec(
        "hybrid", Hybrid, 1, True, True, "masked reconstruction + weight x InfoNCE"
    ),
    "modality": ObjectiveSpec(
        "modality", ModalityInvariant, 2, True, True, "two sequences as views + reconstruction"
    ),
}


def get_objective(name: str) -> ObjectiveSpec:
    """Look up an objective; unknown names are a one-line error."""
    if name not in OBJECTIVES:
        raise NeuroFMError(None, f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[name]


def build_pretrain_model(
    backbone: UNetConfig, objective: str, *, projection_dim: int = 128, projection_hidden: int = 256
) -> PretrainModel:
    """A :class:`PretrainModel` with exactly the parts ``objective`` uses."""
    spec = get_objective(objective)
    return PretrainModel(
        backbone,
        reconstruction=spec.reconstruction,
        projection_dim=projection_dim if spec.projection else None,
        projection_hidden=projection_hidden,
    )
