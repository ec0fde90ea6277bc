"""Reading one case's model output: a number file or a label mask on the reference grid.

The one reader behind ``evaluate`` (scoring predictions) and the package runner (checking what a
sandboxed package wrote): neither trusts the file. A number file must hold exactly one finite
number, inside a given range; a mask must be a readable NIfTI holding only allowed label values
and, where a grid is given, lie on it (same shape, RAS+ affines within :data:`AFFINE_TOL`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti

AFFINE_TOL = 1e-3
"""Largest absolute difference between two affines that still counts as the same grid."""

Grid = tuple[tuple[int, ...], np.ndarray]
"""A voxel grid: shape and RAS+ affine."""


def read_number(path: Path, value_range: tuple[float, float] | None) -> float:
    """One finite number (the whole file, whitespace aside), inside ``value_range`` if given."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable output ({exc.__class__.__name__})") from exc
    try:
        value = float(text)
    except ValueError:
        shown = text[:40] + ("…" if len(text) > 40 else "")
        raise NeuroFMError(path, f"output is not one number: {shown!r}") from None
    if not math.isfinite(value):
        raise NeuroFMError(path, f"output {value} is not finite")
    if value_range is not None and not value_range[0] <= value <= value_range[1]:
        raise NeuroFMError(
            path,
            f"output {value:g} outside the allowed range [{value_range[0]:g}, {value_range[1]:g}]",
        )
    return value


def check_grid(path: Path, shape: tuple[int, ...], affine: np.ndarray, grid: Grid) -> None:
    """The image at ``path`` (its ``shape`` and RAS+ ``affine``) lies on ``grid``."""
    want_shape, want_affine = grid
    if tuple(shape) != tuple(want_shape):
        raise NeuroFMError(
            path, f"mask shape {tuple(shape)} differs from the input {tuple(want_shape)}"
        )
    if not np.allclose(affine, want_affine, atol=AFFINE_TOL):
        worst = float(np.abs(affine - want_affine).max())
        raise NeuroFMError(
            path, f"mask affine differs from the input's by {worst:.3g} (> {AFFINE_TOL})"
        )


def read_mask(
    path: Path, labels: set[int], grid: Grid | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A label mask (RAS+) with only 0 and ``labels``; on ``grid`` = (shape, affine) if given."""
    data, affine = load_nifti(path)
    if grid is not None:
        check_grid(path, tuple(data.shape), affine, grid)
    values = set(np.unique(data).tolist())
    bad = sorted(v for v in values if v not in labels | {0})
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise NeuroFMError(
            path, f"mask has values {shown} outside the declared labels {sorted(labels | {0})}"
        )
    return data.astype(np.uint8), affine
