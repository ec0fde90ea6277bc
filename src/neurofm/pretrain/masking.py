"""Patch-unit masking for masked autoencoding (AMAES-style), MAE-reference argsort trick.

The volume is tiled into ``unit``^3 blocks; per sample exactly ``round(ratio * n_blocks)``
blocks are masked, chosen by sorting uniform noise (a random permutation without a Python
loop). Blocks at the far edge are cropped when a size is not a multiple of ``unit``, so the
voxel ratio is then only approximately ``ratio``; the block ratio is always exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from neurofm.errors import NeuroFMError


def random_patch_mask(
    batch: int,
    spatial_shape: Sequence[int],
    unit: int,
    ratio: float = 0.6,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Bool mask ``(batch, 1, X, Y, Z)``, True on masked voxels, constant on each unit block.

    Randomness comes only from ``generator`` (drawn on its device, so a CPU generator makes
    the same mask for CPU and CUDA runs); the mask is returned on ``device``.
    """
    if unit < 1 or not 0.0 <= ratio <= 1.0 or len(spatial_shape) != 3:
        raise NeuroFMError(
            "random_patch_mask",
            f"need unit >= 1, 0 <= ratio <= 1 and a 3D shape; got unit={unit}, ratio={ratio}, "
            f"shape={tuple(spatial_shape)}",
        )
    grid = tuple(math.ceil(s / unit) for s in spatial_shape)
    n_units = math.prod(grid)
    n_masked = round(ratio * n_units)
    noise_device = generator.device if generator is not None else None
    noise = torch.rand(batch, n_units, generator=generator, device=noise_device)
    order = noise.argsort(dim=1)
    units = torch.zeros(batch, n_units, dtype=torch.bool, device=noise_device)
    units.scatter_(1, order[:, :n_masked], True)
    mask = units.view(batch, 1, *grid)
    if device is not None:
        mask = mask.to(device)
    for axis in (2, 3, 4):
        mask = mask.repeat_interleave(unit, dim=axis)
    x, y, z = spatial_shape
    return mask[:, :, :x, :y, :z].contiguous()
