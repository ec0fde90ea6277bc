"""Corruptions of a raw case, for testing whether a monitor notices them.

Each is a deterministic function of the volume and a seed, applied before preprocessing (as a
faulty scanner or pipeline would). Noise and ghosting are TorchIO's transforms; the rest are
one-liners on the array that TorchIO does not offer in this form:

- ``rician``: magnitude of complex Gaussian noise, ``sqrt((x + n1)^2 + n2^2)``, the noise of
  low-SNR magnitude images (its background is not zero, unlike Gaussian noise);
- ``wrong_sequence``: the first channel replaced by the second (a series mislabelled);
- ``lr_flip``: left-right mirror (RAS+ arrays: axis 0);
- ``no_skull_strip``: a bright scalp/skull shell around the head (the benchmark's images are
  skull-stripped, so this is what an unstripped scan adds);
- ``intensity_scale``: every channel times 5 (normalisation should undo it: a control);
- ``truncated_fov``: the top 30 % of slices blanked (a field of view that missed the vertex).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torchio as tio
from scipy.ndimage import binary_dilation

from neurofm.io.nifti import Volume

Corruption = Callable[[Volume, int], Volume]


def _with(volume: Volume, data: np.ndarray) -> Volume:
    return Volume(np.ascontiguousarray(data, dtype=np.float32), volume.affine, volume.channels)


def _scale(volume: Volume) -> np.ndarray:
    """Per-channel robust maximum (99th percentile of the head), shape (C, 1, 1, 1)."""
    out = []
    for ch in volume.data:
        fg = ch[ch > 0]
        out.append(np.percentile(fg, 99) if fg.size else 1.0)
    return np.asarray(out, dtype=np.float32)[:, None, None, None]


def _torchio(volume: Volume, transform: tio.Transform, seed: int) -> Volume:
    torch.manual_seed(seed)
    image = tio.ScalarImage(tensor=torch.from_numpy(volume.data.copy()), affine=volume.affine)
    out = transform(image)
    return _with(volume, out.data.numpy())


def gaussian_noise(volume: Volume, seed: int) -> Volume:
    """Additive Gaussian noise, sd 10 % of each channel's robust maximum."""
    rng = np.random.default_rng(seed)
    s = _scale(volume)
    return _with(volume, volume.data + rng.normal(size=volume.data.shape) * 0.1 * s)


def rician_noise(volume: Volume, seed: int) -> Volume:
    """Rician noise, sd 10 % of each channel's robust maximum."""
    rng = np.random.default_rng(seed)
    sd = 0.1 * _scale(volume)
    n1, n2 = (rng.normal(size=volume.data.shape) * sd for _ in range(2))
    return _with(volume, np.sqrt((volume.data + n1) ** 2 + n2**2))


def motion_ghosting(volume: Volume, seed: int) -> Volume:
    """TorchIO ghosting (4-8 ghosts, intensity 0.6-0.9) along a random axis."""
    return _torchio(volume, tio.RandomGhosting(num_ghosts=(4, 8), intensity=(0.6, 0.9)), seed)


def wrong_sequence(volume: Volume, seed: int) -> Volume:
    """The first channel holds a copy of the second."""
    data = volume.data.copy()
    data[0] = data[1 % len(data)]
    return _with(volume, data)


def lr_flip(volume: Volume, seed: int) -> Volume:
    """Left-right mirror image."""
    return _with(volume, volume.data[:, ::-1])


def no_skull_strip(volume: Volume, seed: int) -> Volume:
    """A 2-voxel shell around the head at 1.5x each channel's robust maximum (fat is bright)."""
    head = (volume.data > 0).any(axis=0)
    shell = binary_dilation(head, iterations=3) & ~binary_dilation(head, iterations=1)
    data = volume.data.copy()
    data[:, shell] = (1.5 * _scale(volume))[:, :, 0, 0]
    return _with(volume, data)


def intensity_scale(volume: Volume, seed: int) -> Volume:
    """Every channel times 5."""
    return _with(volume, volume.data * 5.0)


def truncated_fov(volume: Volume, seed: int) -> Volume:
    """The top 30 % of axial slices set to zero."""
    data = volume.data.copy()
    z = data.shape[3]
    data[..., z - round(0.3 * z) :] = 0.0
    return _with(volume, data)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "rician_noise": rician_noise,
    "motion_ghosting": motion_ghosting,
    "wrong_sequence": wrong_sequence,
    "lr_flip": lr_flip,
    "no_skull_strip": no_skull_strip,
    "intensity_scale": intensity_scale,
    "truncated_fov": truncated_fov,
}
