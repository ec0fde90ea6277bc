"""Preprocessing as pure functions: resample to a target spacing, crop to the head, normalise.

Input is a :class:`~neurofm.io.nifti.Volume` (channel-first, already RAS+ on load). Output is the
preprocessed array plus a JSON-serialisable :class:`Geometry` with which
:func:`restore_geometry` puts a prediction made on the preprocessed grid back onto the input grid,
in the voxel order and with the affine of the file on disk, so predictions have "the same shape
and affine as the inputs".

Steps and conventions:

- **Resampling** uses ``scipy.ndimage.affine_transform`` (trilinear for images, nearest for masks,
  edge values extended). The target grid keeps the input's direction cosines (oblique ones too,
  like MONAI ``Spacing``) and only changes the voxel size, so target voxel ``j`` sits at input
  voxel coordinate ``j * zoom + offset`` per axis and the inverse map is exact. Both grids cover
  the same field of view with their centres aligned. We compute this three-number grid ourselves
  because the geometry record needs it anyway; scipy does the interpolation.
- **Head crop**: a voxel is head if any channel exceeds ``head_fraction`` of that channel's 99th
  percentile (union over channels); a morphological opening removes isolated noise voxels; the
  bounding box plus ``margin_mm`` is cropped. Only the cropped box is resampled. An image with no
  head voxels is kept whole.
- **Normalisation** per channel over the head voxels of the cropped grid: clip to the
  ``clip_percentiles``, then z-score with the clipped head mean and standard deviation
  (background is not zeroed). ``(0, 100)`` clips nothing, nnU-Net's z-score for MRI: a lesion
  brighter than 99.5 % of the head (a small infarct on DWI) keeps its contrast instead of being
  flattened to the 99.5th percentile. The default is ``(0, 100)`` since development round 12
  (before, ``(0.5, 99.5)``: robust to hot spots, but it removed the contrast of small lesions);
  every cache and run stores its value, and one stored before the setting existed (no key) reads
  back as :data:`CLIP_BEFORE_THE_SETTING`, what made it.
  :attr:`ChannelNorm.pad_value` is where intensity 0 (air) lands, used to pad out-of-volume patch
  voxels so padding looks like background rather than average tissue.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import Volume, voxel_spacing

Triple = tuple[float, float, float]
IntTriple = tuple[int, int, int]
Affine = tuple[tuple[float, ...], ...]

DEFAULT_SPACING: Triple = (1.0, 1.0, 1.0)
"""FOMO25's 1 mm isotropic grid; the demo passes about 4 mm to stay fast on a laptop CPU."""
CLIP_BEFORE_THE_SETTING: tuple[float, float] = (0.5, 99.5)
"""The clip of every cache, run and recipe stored before ``clip_percentiles`` existed: a stored
form without the key reads back as this, not as today's default."""


@dataclass(frozen=True)
class PreprocessParams:
    """Everything that changes the preprocessed output (it is part of the cache fingerprint)."""

    spacing: Triple | None = DEFAULT_SPACING  # None keeps each input's own spacing
    margin_mm: float = 8.0
    head_fraction: float = 0.1
    clip_percentiles: tuple[float, float] = (0.0, 100.0)  # the default recipe's (round 12)

    def __post_init__(self) -> None:
        lo, hi = self.clip_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise NeuroFMError("--clip", f"need percentiles 0 <= LO < HI <= 100, got {lo:g},{hi:g}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChannelNorm:
    """How one channel was normalised: ``(clip(x, lo, hi) - mean) / std``."""

    lo: float
    hi: float
    mean: float
    std: float

    @property
    def pad_value(self) -> float:
        return (min(max(0.0, self.lo), self.hi) - self.mean) / self.std


@dataclass(frozen=True)
class Geometry:
    """Where the preprocessed grid lies relative to the input grid and the file on disk.

    ``input_*`` is the RAS+ grid as loaded, ``file_*`` the grid of the file on disk (the same
    voxels up to axis flips/permutations), ``resampled_*`` the full target-spacing grid and
    ``crop_start``/``crop_stop`` the box of it that was kept.
    """

    input_shape: IntTriple
    input_affine: Affine
    file_shape: IntTriple
    file_affine: Affine
    target_spacing: Triple
    resampled_shape: IntTriple
    resampled_affine: Affine
    crop_start: IntTriple
    crop_stop: IntTriple
    zoom: Triple = field(default=(1.0, 1.0, 1.0))
    offset: Triple = field(default=(0.0, 0.0, 0.0))

    @property
    def shape(self) -> IntTriple:
        """Spatial shape of the preprocessed (cropped) array."""
        a, b = self.crop_start, self.crop_stop
        return (b[0] - a[0], b[1] - a[1], b[2] - a[2])

    @property
    def affine(self) -> np.ndarray:
        """Affine of the preprocessed (cropped) array."""
        aff = np.array(self.resampled_affine, dtype=np.float64)
        aff[:3, 3] = aff[:3, :3] @ np.asarray(self.crop_start, dtype=np.float64) + aff[:3, 3]
        return aff

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        def trip(key: str) -> Any:
            return tuple(d[key])

        def aff(key: str) -> Affine:
            return tuple(tuple(float(v) for v in row) for row in d[key])

        return cls(
            input_shape=trip("input_shape"),
            input_affine=aff("input_affine"),
            file_shape=trip("file_shape"),
            file_affine=aff("file_affine"),
            target_spacing=trip("target_spacing"),
            resampled_shape=trip("resampled_shape"),
            resampled_affine=aff("resampled_affine"),
            crop_start=trip("crop_start"),
            crop_stop=trip("crop_stop"),
            zoom=trip("zoom"),
            offset=trip("offset"),
        )


@dataclass
class Preprocessed:
    """Result of :func:`preprocess`: image ``(C, X, Y, Z)`` float32, optional mask ``(X, Y, Z)``."""

    image: np.ndarray
    channels: list[str]
    geometry: Geometry
    norms: list[ChannelNorm]
    mask: np.ndarray | None = None


def _as_affine(a: np.ndarray) -> Affine:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(a, dtype=np.float64))


def resampled_grid(
    shape: IntTriple, affine: np.ndarray, spacing: Triple | None
) -> tuple[IntTriple, Triple, Triple, np.ndarray]:
    """Target grid of the same field of view: ``(shape, zoom, offset, affine)``.

    Target voxel ``j`` lies at input voxel coordinate ``j * zoom + offset`` on each axis.
    """
    src = np.asarray(voxel_spacing(affine))
    tgt = src if spacing is None else np.asarray(spacing, dtype=np.float64)
    zoom = tgt / src
    n = np.asarray(shape, dtype=np.float64)
    new_shape = np.maximum(1, np.ceil(n / zoom - 1e-6)).astype(int)
    offset = (n - 1) / 2 - (new_shape - 1) / 2 * zoom
    step = np.eye(4)
    step[:3, :3] = np.diag(zoom)
    step[:3, 3] = offset
    new_affine = np.asarray(affine, dtype=np.float64) @ step
    return (
        (int(new_shape[0]), int(new_shape[1]), int(new_shape[2])),
        (float(zoom[0]), float(zoom[1]), float(zoom[2])),
        (float(offset[0]), float(offset[1]), float(offset[2])),
        new_affine,
    )


def head_thresholds(image: np.ndarray, fraction: float) -> np.ndarray:
    """Per-channel intensity above which a voxel counts as head."""
    flat = np.abs(image.reshape(image.shape[0], -1))
    return np.asarray([fraction * np.percentile(c, 99) for c in flat], dtype=np.float64)


def head_mask(image: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Union over channels of ``x > threshold``."""
    return np.any(image > thresholds.reshape(-1, 1, 1, 1).astype(image.dtype), axis=0)


def head_box(
    image: np.ndarray, affine: np.ndarray, margin_mm: float, fraction: float
) -> tuple[IntTriple, IntTriple]:
    """Bounding box ``[start, stop)`` of the head (input voxels), grown by ``margin_mm``."""
    shape = image.shape[1:]
    fg = head_mask(image, head_thresholds(image, fraction))
    opened = ndimage.binary_opening(fg)
    if opened.any():
        fg = opened
    if not fg.any():
        return (0, 0, 0), (int(shape[0]), int(shape[1]), int(shape[2]))
    spacing = voxel_spacing(affine)
    start, stop = [], []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(fg.any(axis=others))
        m = math.ceil(margin_mm / spacing[axis])
        start.append(max(0, int(idx[0]) - m))
        stop.append(min(int(shape[axis]), int(idx[-1]) + 1 + m))
    return (start[0], start[1], start[2]), (stop[0], stop[1], stop[2])


def _box_on_target(
    start: IntTriple, stop: IntTriple, zoom: Triple, offset: Triple, new_shape: IntTriple
) -> tuple[IntTriple, IntTriple]:
    """Target voxels whose centres fall inside the input box ``[start, stop)``."""
    a, b = [], []
    for ax in range(3):
        lo = math.ceil((start[ax] - 0.5 - offset[ax]) / zoom[ax] - 1e-6)
        hi = math.floor((stop[ax] - 0.5 - offset[ax]) / zoom[ax] + 1e-6) + 1
        lo, hi = max(0, lo), min(new_shape[ax], hi)
        if hi <= lo:  # box thinner than one target voxel: keep the nearest one
            lo = min(max(0, lo), new_shape[ax] - 1)
            hi = lo + 1
        a.append(lo)
        b.append(hi)
    return (a[0], a[1], a[2]), (b[0], b[1], b[2])


def _resample(
    array: np.ndarray, zoom: Triple, offset: Triple, start: IntTriple, shape: IntTriple, order: int
) -> np.ndarray:
    """Sample ``array`` (X, Y, Z) on the target voxels ``start + k`` for ``k`` in ``shape``."""
    if zoom == (1.0, 1.0, 1.0) and offset == (0.0, 0.0, 0.0):
        sl = tuple(slice(s, s + n) for s, n in zip(start, shape, strict=True))
        return np.ascontiguousarray(array[sl])
    off = [start[i] * zoom[i] + offset[i] for i in range(3)]
    return ndimage.affine_transform(
        array, np.asarray(zoom), offset=off, output_shape=shape, order=order, mode="nearest"
    )


def _normalise(
    image: np.ndarray, fg: np.ndarray, percentiles: tuple[float, float]
) -> tuple[np.ndarray, list[ChannelNorm]]:
    out = np.empty_like(image, dtype=np.float32)
    norms = []
    for c in range(image.shape[0]):
        x = image[c]
        vals = x[fg] if fg.any() else x.ravel()
        lo, hi = (float(v) for v in np.percentile(vals, percentiles))
        clipped = np.clip(vals, lo, hi)
        mean, std = float(clipped.mean()), float(clipped.std())
        std = std if std > 1e-8 else 1.0
        out[c] = (np.clip(x, lo, hi) - mean) / std
        norms.append(ChannelNorm(lo, hi, mean, std))
    return out, norms


def preprocess(
    volume: Volume,
    params: PreprocessParams | None = None,
    *,
    mask: np.ndarray | None = None,
    file_affine: np.ndarray | None = None,
) -> Preprocessed:
    """Resample, crop to the head and normalise ``volume``; resample ``mask`` (nearest) alike.

    ``file_affine`` is the affine of the source file on disk (before the RAS reorientation done on
    load); :func:`restore_geometry` returns predictions in that file's voxel order and affine.
    """
    p = params or PreprocessParams()
    shape = volume.spatial_shape
    if mask is not None and mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {shape}")
    new_shape, zoom, offset, new_affine = resampled_grid(shape, volume.affine, p.spacing)
    in_start, in_stop = head_box(volume.data, volume.affine, p.margin_mm, p.head_fraction)
    start, stop = _box_on_target(in_start, in_stop, zoom, offset, new_shape)
    crop_shape = (stop[0] - start[0], stop[1] - start[1], stop[2] - start[2])
    resampled = np.stack(
        [_resample(c, zoom, offset, start, crop_shape, order=1) for c in volume.data]
    ).astype(np.float32, copy=False)
    fg = head_mask(resampled, head_thresholds(volume.data, p.head_fraction))
    image, norms = _normalise(resampled, fg, p.clip_percentiles)
    out_mask = None
    if mask is not None:
        out_mask = (_resample(mask, zoom, offset, start, crop_shape, order=0) > 0.5).astype(
            np.uint8
        )
    fa = volume.affine if file_affine is None else np.asarray(file_affine, dtype=np.float64)
    file_shape = to_file_order(np.broadcast_to(np.False_, shape), volume.affine, fa).shape
    geometry = Geometry(
        input_shape=shape,
        input_affine=_as_affine(volume.affine),
        file_shape=(int(file_shape[0]), int(file_shape[1]), int(file_shape[2])),
        file_affine=_as_affine(fa),
        target_spacing=voxel_spacing(new_affine),
        resampled_shape=new_shape,
        resampled_affine=_as_affine(new_affine),
        crop_start=start,
        crop_stop=stop,
        zoom=zoom,
        offset=offset,
    )
    return Preprocessed(image, list(volume.channels), geometry, norms, out_mask)


def to_file_order(array: np.ndarray, ras_affine: np.ndarray, file_affine: np.ndarray) -> np.ndarray:
    """Undo nibabel's ``as_closest_canonical``: RAS+ voxel order back to the file's order."""
    ras = nib.orientations.io_orientation(ras_affine)
    target = nib.orientations.io_orientation(file_affine)
    transform = nib.orientations.ornt_transform(ras, target)
    return np.asarray(nib.orientations.apply_orientation(array, transform))


def restore_geometry(
    array: np.ndarray, geometry: Geometry, order: int = 0, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Map ``array`` on the preprocessed grid (``(X,Y,Z)`` or ``(C,X,Y,Z)``) onto the input file.

    Returns ``(array, affine)`` with the file's shape, voxel order and exact affine. Use
    ``order=0`` for masks and labels, ``order=1`` for probabilities; voxels outside the head crop
    get ``fill``.
    """
    arr = np.asarray(array)
    if arr.ndim == 4:
        outs = [restore_geometry(c, geometry, order, fill)[0] for c in arr]
        return np.stack(outs), np.array(geometry.file_affine, dtype=np.float64)
    if arr.shape != geometry.shape:
        raise ValueError(f"array shape {arr.shape} is not the preprocessed shape {geometry.shape}")
    dtype = arr.dtype if order == 0 else np.dtype(np.float32)
    full = np.full(geometry.resampled_shape, fill, dtype=dtype)
    sl = tuple(slice(a, b) for a, b in zip(geometry.crop_start, geometry.crop_stop, strict=True))
    full[sl] = arr
    zoom = np.asarray(geometry.zoom)
    offset = np.asarray(geometry.offset)
    if np.allclose(zoom, 1.0) and np.allclose(offset, 0.0):
        on_input = full
    else:
        on_input = ndimage.affine_transform(
            full,
            1.0 / zoom,
            offset=-offset / zoom,
            output_shape=geometry.input_shape,
            order=order,
            mode="nearest",
        )
    input_affine = np.array(geometry.input_affine, dtype=np.float64)
    file_affine = np.array(geometry.file_affine, dtype=np.float64)
    out = to_file_order(on_input.astype(dtype, copy=False), input_affine, file_affine)
    return np.ascontiguousarray(out), file_affine
