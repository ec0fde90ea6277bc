"""Patch augmentation, TorchIO-style: sample parameters first, then apply them deterministically.

:func:`sample_augment` draws an :class:`AugmentParams` from a numpy Generator (pure, seedable,
printable, reproducible); :func:`apply_augment` applies it to an image and its mask so both move
together. The apply step is built on MONAI's torch array transforms (``Flip``, ``Affine`` on
``grid_sample``, ``AdjustContrast``) rather than TorchIO's deterministic ones, because TorchIO
wraps every call in a Subject copy and resamples with SimpleITK: on a 4-channel 64^3 patch its
affine was 2-3x slower here and it cannot run on a GPU, while these run on whatever device the
tensor is on (so a trainer may also augment whole batches on the GPU).

Hand-written parts and why: the additive Gaussian noise is one line of seeded torch; the bias
field uses TorchIO's polynomial (:meth:`torchio.BiasField.generate_bias_field`) evaluated on a
4x coarser grid and upsampled trilinearly, which is exact enough for a smooth field and 64x
cheaper than evaluating the polynomial at every voxel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchio as tio
from monai.transforms import AdjustContrast, Affine, Flip


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the random augmentations (nnU-Net-like defaults)."""

    flip_prob: float = 0.5  # per axis
    affine_prob: float = 0.3
    max_rotation_deg: float = 15.0
    scale_range: tuple[float, float] = (0.85, 1.15)
    gamma_prob: float = 0.3
    max_log_gamma: float = 0.3
    noise_prob: float = 0.15
    max_noise_std: float = 0.1  # in units of the normalised intensity (z-score)
    bias_prob: float = 0.2
    bias_order: int = 3
    max_bias_coefficient: float = 0.1  # 20 cubic terms: typical field within about +-30 %
    lowres_prob: float = 0.25  # thick slices / lower resolution (nnU-Net SimulateLowResolution)
    max_lowres_factor: float = 2.5  # per axis, drawn from [1, max]


# Named augmentation strengths a recipe or ``neurofm finetune --augment`` chooses between.
# "full" is the default every run used before the choice existed; "geometric" keeps only flips
# and the affine (no thick slices, bias field, gamma or noise), so comparing the two measures
# what the intensity and resolution augmentations do out of domain; "strong" doubles how often
# those are applied.
AUGMENT_PROFILES: dict[str, AugmentConfig | None] = {
    "none": None,
    "geometric": AugmentConfig(gamma_prob=0.0, noise_prob=0.0, bias_prob=0.0, lowres_prob=0.0),
    "full": AugmentConfig(),
    "strong": AugmentConfig(gamma_prob=0.6, noise_prob=0.3, bias_prob=0.4, lowres_prob=0.5),
}


def augment_profile(name: str) -> AugmentConfig | None:
    """The named profile's configuration (None: no augmentation); names are checked by the
    settings that carry them."""
    return AUGMENT_PROFILES[name]


@dataclass(frozen=True)
class AugmentParams:
    """One concrete augmentation; the identity by default."""

    flip_axes: tuple[int, ...] = ()  # spatial axes 0..2
    rotation: tuple[float, float, float] = (0.0, 0.0, 0.0)  # radians
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    gamma: tuple[float, ...] = ()  # one per channel; empty: none
    noise_std: float = 0.0
    noise_seed: int = 0
    bias_order: int = 3
    bias_coefficients: tuple[float, ...] = ()
    lowres: tuple[float, float, float] = (1.0, 1.0, 1.0)  # downsampling factor per axis

    @property
    def has_affine(self) -> bool:
        return self.rotation != (0.0, 0.0, 0.0) or self.scale != (1.0, 1.0, 1.0)


def _n_bias_coefficients(order: int) -> int:
    """Number of monomials x^i y^j z^k with i + j + k <= order (TorchIO's ordering)."""
    return math.comb(order + 3, 3)


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]))


def _plain(t: Any) -> torch.Tensor:
    """MONAI's output as a plain tensor: patches carry no MetaTensor metadata."""
    return torch.as_tensor(t).as_subclass(torch.Tensor)


def sample_augment(cfg: AugmentConfig, rng: np.random.Generator, n_channels: int) -> AugmentParams:
    """Draw one :class:`AugmentParams` (the only random step)."""
    flips = tuple(int(a) for a in range(3) if rng.random() < cfg.flip_prob)
    rotation, scale = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if rng.random() < cfg.affine_prob:
        r = np.deg2rad(cfg.max_rotation_deg)
        rotation = _triple(rng.uniform(-r, r, 3))
        scale = _triple(rng.uniform(cfg.scale_range[0], cfg.scale_range[1], 3))
    gamma: tuple[float, ...] = ()
    if rng.random() < cfg.gamma_prob:
        g = cfg.max_log_gamma
        gamma = tuple(float(math.exp(v)) for v in rng.uniform(-g, g, n_channels))
    noise_std = float(rng.uniform(0, cfg.max_noise_std)) if rng.random() < cfg.noise_prob else 0.0
    coefficients: tuple[float, ...] = ()
    if rng.random() < cfg.bias_prob:
        n = _n_bias_coefficients(cfg.bias_order)
        c = cfg.max_bias_coefficient
        coefficients = tuple(float(v) for v in rng.uniform(-c, c, n))
    lowres = (1.0, 1.0, 1.0)
    if rng.random() < cfg.lowres_prob:
        lowres = _triple(rng.uniform(1.0, cfg.max_lowres_factor, 3))
    return AugmentParams(
        flip_axes=flips,
        rotation=rotation,
        scale=scale,
        gamma=gamma,
        noise_std=noise_std,
        noise_seed=int(rng.integers(2**31)),
        bias_order=cfg.bias_order,
        bias_coefficients=coefficients,
        lowres=lowres,
    )


def simulate_low_resolution(image: torch.Tensor, factors: tuple[float, ...]) -> torch.Tensor:
    """``(C, X, Y, Z)`` resampled down by ``factors`` per axis (area average) and back up
    (trilinear): the blur of thick slices or a coarser scan, at the original shape.

    Why: on the demo data a brain-age model read thick-slice blur as youth (predictions 13-19
    years lower on its own training images blurred along one axis), which is what the target
    site with 2x thicker slices then showed.
    """
    shape = tuple(image.shape[1:])
    small = tuple(max(1, round(n / f)) for n, f in zip(shape, factors, strict=True))
    if small == shape:
        return image
    down = F.interpolate(image[None], size=small, mode="area")
    return F.interpolate(down, size=shape, mode="trilinear", align_corners=False)[0]


def bias_field(shape: tuple[int, ...], order: int, coefficients: tuple[float, ...]) -> torch.Tensor:
    """Multiplicative smooth field ``(X, Y, Z)`` (TorchIO's polynomial on a coarse grid)."""
    coarse = tuple(max(2, math.ceil(n / 4)) for n in shape)
    field = tio.BiasField.generate_bias_field(torch.zeros(1, *coarse), order, list(coefficients))
    # generate_bias_field returns exp(polynomial); upsample its log so the field stays positive
    small = torch.from_numpy(np.log(field.astype(np.float32)))[None, None]
    up = F.interpolate(small, size=shape, mode="trilinear", align_corners=True)
    return torch.exp(up[0, 0])


def apply_augment(
    image: torch.Tensor, mask: torch.Tensor | None, params: AugmentParams
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``params`` to ``image`` ``(C, X, Y, Z)`` and ``mask`` ``(1, X, Y, Z)``.

    Spatial steps (flip, then rotation and scaling about the patch centre: trilinear with edge
    values for the image, nearest with zeros for the mask) move both; the low-resolution
    simulation and intensity steps (bias field, per-channel gamma, Gaussian noise) touch the
    image only.
    """
    if params.flip_axes:
        flip = Flip(spatial_axis=list(params.flip_axes))
        image = _plain(flip(image))
        mask = None if mask is None else _plain(flip(mask))
    if params.has_affine:
        affine = Affine(rotate_params=params.rotation, scale_params=params.scale, image_only=True)
        image = _plain(affine(image, mode="bilinear", padding_mode="border"))
        if mask is not None:
            mask = _plain(affine(mask, mode="nearest", padding_mode="zeros"))
    if params.lowres != (1.0, 1.0, 1.0):
        image = simulate_low_resolution(image, params.lowres)
    if params.bias_coefficients:
        field = bias_field(tuple(image.shape[1:]), params.bias_order, params.bias_coefficients)
        image = image * field.to(image.device)
    if params.gamma:
        image = torch.stack(
            [
                _plain(AdjustContrast(gamma=g, retain_stats=True)(c[None]))[0]
                for c, g in zip(image, params.gamma, strict=True)
            ]
        )
    if params.noise_std > 0:
        gen = torch.Generator().manual_seed(params.noise_seed)
        noise = torch.randn(image.shape, generator=gen) * params.noise_std
        image = image + noise.to(image.device)
    return image.contiguous(), None if mask is None else mask.contiguous()
