"""Shared fixtures: tiny random volumes written as real NIfTI files (TorchIO-style)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def write_nifti(tmp_path: Path) -> Callable[..., Path]:
    """Write an array as NIfTI under tmp_path; returns the path."""

    def _write(name: str, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        aff = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), aff), str(path))
        return path

    return _write


@pytest.fixture(scope="session")
def tiny_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded benchmark's tiny preset, written once per test session."""
    from neurofm.synth import build_benchmark

    out = tmp_path_factory.mktemp("bench") / "raw"
    return build_benchmark(out, "tiny", seed=0, progress=False)


@pytest.fixture(scope="session")
def tiny_prepared(tiny_benchmark: Path) -> Path:
    """The tiny benchmark prepared at 8 mm (volumes about 24 voxels across)."""
    from neurofm.data.prepare import prepare
    from neurofm.data.preprocess import PreprocessParams

    dst = tiny_benchmark.parent / "prepared"
    prepare(
        tiny_benchmark, dst, params=PreprocessParams(spacing=(8.0, 8.0, 8.0)), show_progress=False
    )
    return dst


TINY_RECIPE = """
name = "tiny-test"
[seeds]
development = [0, 1]
confirmation = [7, 8]
[benchmark]
preset = "tiny"
spacing = 8.0
[pretrain]
steps = 4
contrastive_batch = 4
reconstruction_batch = 2
[finetune]
steps = 4
segmentation_steps = 4
patience = 2
[tasks.infarct]
objective = "mae"
head = "mil"
[tasks.meningioma]
objective = "mae"
[tasks.brain_age]
objective = "contrastive"
[evaluation]
n_boot = 200
"""
"""A study recipe that runs in minutes on the tiny benchmark (study tests)."""
