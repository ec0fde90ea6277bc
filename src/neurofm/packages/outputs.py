"""A package's per-case output: reading it, checking it against the manifest, comparing two.

The runner trusts nothing a package writes: a number file must hold exactly one finite number in
the manifest's range, a mask must be a readable NIfTI on the input grid holding only declared
label values (both read by :mod:`neurofm.io.prediction_files`, as ``evaluate`` reads them). The
comparison is what ``verify`` prints: Dice per label for masks, the absolute difference for
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti
from neurofm.io.prediction_files import Grid, read_mask, read_number
from neurofm.metrics.segmentation import dice
from neurofm.packages.manifest import Manifest


def input_grid(reference_input: Path) -> Grid:
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
