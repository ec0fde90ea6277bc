"""A package's per-case output: reading it, checking it against the manifest, comparing two.

The runner trusts nothing a package writes: a number file must hold exactly one finite number in
the manifest's range, a mask must be a readable NIfTI on the input grid (same shape, affine
within 1e-3 after both are put in RAS+) holding only declared label values. The comparison is
what ``verify`` prints: Dice per label for masks, the absolute difference for numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti
from neurofm.packages.manifest import Manifest

AFFINE_TOL = 1e-3


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


def read_mask(
    path: Path, labels: set[int], grid: tuple[tuple[int, ...], np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A label mask (RAS+) with only 0 and ``labels``; on ``grid`` = (shape, affine) if given."""
    data, affine = load_nifti(path)
    if grid is not None:
        shape, ref_affine = grid
        if tuple(data.shape) != tuple(shape):
            raise NeuroFMError(
                path, f"mask shape {tuple(data.shape)} differs from the input {tuple(shape)}"
            )
        if not np.allclose(affine, ref_affine, atol=AFFINE_TOL):
            worst = float(np.abs(affine - ref_affine).max())
            raise NeuroFMError(
                path, f"mask affine differs from the input's by {worst:.3g} (> {AFFINE_TOL})"
            )
    values = set(np.unique(data).tolist())
    bad = sorted(v for v in values if v not in labels | {0})
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5])
        raise NeuroFMError(
            path, f"mask has values {shown} outside the declared labels {sorted(labels | {0})}"
        )
    return data.astype(np.uint8), affine


def input_grid(reference_input: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and RAS+ affine of an input image: the grid a mask output must lie on."""
    data, affine = load_nifti(reference_input)
    return tuple(data.shape), affine


def validate_output(manifest: Manifest, path: Path, reference_input: Path | None) -> str:
    """Check one case's output file; returns a short description (``0.731``, ``1234 voxels``)."""
    if not path.is_file() or path.is_symlink():
        raise NeuroFMError(path, "expected output file was not written")
    if manifest.outputs.kind == "mask":
        grid = input_grid(reference_input) if reference_input is not None else None
        mask, _ = read_mask(path, set(manifest.outputs.labels), grid)
        return f"{int((mask > 0).sum())} voxels"
    return f"{read_number(path, manifest.number_range):.6g}"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; two empty masks agree perfectly (DESIGN.md §1)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing an output with the reference, with the lines a user reads."""

    ok: bool
    lines: list[str]


def compare_outputs(manifest: Manifest, output: Path, reference: Path) -> Comparison:
    """Compare one output with its reference within the self-test tolerances."""
    tol = manifest.selftest.tolerances
    if manifest.outputs.kind != "mask":
        got, want = read_number(output, None), read_number(reference, None)
        diff = abs(got - want)
        ok = diff <= tol.abs_max
        mark = "ok" if ok else "MISMATCH"
        line = f"{mark}: value {got:.6g} vs reference {want:.6g} (|diff| {diff:.3g}"
        return Comparison(ok, [f"{line}, allowed {tol.abs_max:g})"])
    labels = set(manifest.outputs.labels)
    want_mask, want_affine = read_mask(reference, labels)
    got_mask, _ = read_mask(output, labels, (want_mask.shape, want_affine))
    ok, lines = True, []
    for value, name in sorted(manifest.outputs.labels.items()):
        a, b = got_mask == value, want_mask == value
        d = dice(a, b)
        good = d >= tol.dice_min
        ok &= good
        lines.append(
            f"{'ok' if good else 'MISMATCH'}: label {value} ({name}) Dice {d:.4f} "
            f"(min {tol.dice_min:g}; {int(a.sum())} voxels vs reference {int(b.sum())}, "
            f"{int(np.logical_and(a, b).sum())} shared)"
        )
    return Comparison(ok, lines)
