"""NIfTI in and out, in neurofm's in-memory convention.

A :class:`Volume` is channel-first ``(C, X, Y, Z)`` float32 in RAS+ voxel order with its 4x4
affine beside it (docs/architecture.md). Files are reoriented on load with nibabel's
``as_closest_canonical`` so nothing later has to guess the orientation.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from neurofm.errors import NeuroFMError


@dataclass
class Volume:
    """Channel-first image with its affine and the names of its channels."""

    data: np.ndarray
    affine: np.ndarray
    channels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.data.ndim != 4:
            raise ValueError(f"Volume data must be (C, X, Y, Z), got shape {self.data.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        x, y, z = self.data.shape[1:]
        return (int(x), int(y), int(z))

    @property
    def spacing(self) -> tuple[float, float, float]:
        return voxel_spacing(self.affine)


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis (column norms of the affine)."""
    s = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return (float(s[0]), float(s[1]), float(s[2]))


def load_nifti(
    path: str | Path, *, allow_4d_singleton: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI as float32 ``(X, Y, Z)`` in RAS+ order plus its affine.

    Raises NeuroFMError naming the file for unreadable, truncated, non-3D, empty or non-finite data.
    """
    path = Path(path)
    if not path.exists():
        raise NeuroFMError(path, "file does not exist")
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise NeuroFMError(path, f"not a NIfTI image ({type(img).__name__})")
        if 0 in img.shape:
            raise NeuroFMError(path, f"zero-size dimension in shape {tuple(img.shape)}")
        img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except NeuroFMError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise NeuroFMError(
            path, f"corrupt or truncated NIfTI ({exc.__class__.__name__}: {exc})"
        ) from exc
    except Exception as exc:  # nibabel raises assorted types for garbage headers
        raise NeuroFMError(path, f"unreadable NIfTI ({exc.__class__.__name__}: {exc})") from exc
    if allow_4d_singleton and data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise NeuroFMError(path, f"{data.ndim}D image {data.shape} where a 3D volume is expected")
    if min(data.shape) == 0:
        raise NeuroFMError(path, f"zero-size dimension in shape {data.shape}")
    if not np.isfinite(data).all():
        n_bad = int((~np.isfinite(data)).sum())
        raise NeuroFMError(path, f"{n_bad} NaN/Inf voxels")
    return data, np.asarray(img.affine, dtype=np.float64)


def load_volume(files: Mapping[str, str | Path] | Sequence[tuple[str, str | Path]]) -> Volume:
    """Load several sequences of one session into one channel-first Volume.

    All sequences must share shape and affine (to 1e-3 mm); a mismatch is an error naming the file,
    because silently resampling would hide a registration problem.
    """
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    if not items:
        raise NeuroFMError(None, "no sequences given")
    arrays: list[np.ndarray] = []
    ref_affine: np.ndarray | None = None
    ref_name = ""
    for _, p in items:
        data, affine = load_nifti(p)
        if ref_affine is None:
            ref_affine, ref_name = affine, Path(p).name
        else:
            if data.shape != arrays[0].shape:
                raise NeuroFMError(
                    p, f"shape {data.shape} differs from {ref_name} {arrays[0].shape}"
                )
            if not np.allclose(affine, ref_affine, atol=1e-3):
                raise NeuroFMError(p, f"affine differs from {ref_name}")
        arrays.append(data)
    assert ref_affine is not None
    return Volume(np.stack(arrays), ref_affine, [name for name, _ in items])


def save_nifti(
    data: np.ndarray, affine: np.ndarray, path: str | Path, dtype: type | None = None
) -> Path:
    """Write a 3D array as NIfTI atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
