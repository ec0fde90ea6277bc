"""NIfTI reading/writing, sequence names and task specs."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti, load_volume, save_nifti, voxel_spacing
from neurofm.sequences import normalise_sequence
from neurofm.tasks import get_task


def test_load_reorients_to_ras(write_nifti, rng) -> None:
    data = rng.random((4, 5, 6)).astype(np.float32)
    las = np.diag([-2.0, 2.0, 3.0, 1.0])  # x flipped
    path = write_nifti("las.nii.gz", data, las)
    out, affine = load_nifti(path)
    np.testing.assert_allclose(out, data[::-1])
    assert affine[0, 0] > 0
    # the world coordinate of each voxel is unchanged by the reorientation
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], las @ [3, 0, 0, 1])


def test_save_roundtrip_keeps_geometry(tmp_path: Path, rng) -> None:
    data = rng.random((3, 4, 5)).astype(np.float32)
    aff = np.array([[1.0, 0, 0, -10], [0, 1.5, 0, 4], [0, 0, 4.0, 2], [0, 0, 0, 1]])
    p = save_nifti(data, aff, tmp_path / "x.nii.gz")
    back, aff2 = load_nifti(p)
    np.testing.assert_allclose(back, data)
    np.testing.assert_allclose(aff2, aff)
    assert voxel_spacing(aff2) == (1.0, 1.5, 4.0)
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.mark.parametrize(
    ("shape", "msg"), [((4, 5), "2D image"), ((4, 5, 6, 2), "4D image"), ((4, 0, 6), "zero-size")]
)
def test_bad_dimensionality(write_nifti, shape, msg) -> None:
    path = write_nifti("bad.nii.gz", np.ones(shape))
    with pytest.raises(NeuroFMError, match=msg) as info:
        load_nifti(path)
    assert "bad.nii.gz" in str(info.value)


def test_nan_and_truncated(write_nifti, tmp_path: Path) -> None:
    arr = np.ones((4, 4, 4))
    arr[1, 1, 1] = np.nan
    with pytest.raises(NeuroFMError, match="NaN/Inf"):
        load_nifti(write_nifti("nan.nii.gz", arr))
    good = write_nifti("good.nii.gz", np.ones((20, 20, 20)))
    raw = good.read_bytes()
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(NeuroFMError, match="trunc.nii.gz"):
        load_nifti(trunc)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"not a nifti at all" * 10))
    with pytest.raises(NeuroFMError, match="garbage.nii.gz"):
        load_nifti(garbage)


def test_load_volume_stacks_and_checks_geometry(write_nifti) -> None:
    a = write_nifti("a/t1.nii.gz", np.zeros((4, 4, 4)))
    b = write_nifti("a/t2.nii.gz", np.ones((4, 4, 4)))
    vol = load_volume({"t1": a, "t2": b})
    assert vol.data.shape == (2, 4, 4, 4)
    assert vol.channels == ["t1", "t2"]
    c = write_nifti("a/flair.nii.gz", np.ones((4, 4, 5)))
    with pytest.raises(NeuroFMError, match=r"flair.nii.gz: shape"):
        load_volume({"t1": a, "flair": c})
    d = write_nifti("a/adc.nii.gz", np.ones((4, 4, 4)), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(NeuroFMError, match="affine differs"):
        load_volume({"t1": a, "adc": d})
    _ = nib  # nibabel used by fixture


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("T1w", "t1"),
        ("sub-01_ses-1_T1w.nii.gz", "t1"),
        ("FLAIR", "flair"),
        ("DWI", "dwi_b1000"),
        ("b1000", "dwi_b1000"),
        ("ADC", "adc"),
        ("T2star", "t2s"),
        ("T2*", "t2s"),
        ("swi.nii.gz", "swi"),
        ("dwi_b1000", "dwi_b1000"),
    ],
)
def test_sequence_aliases(name: str, canonical: str) -> None:
    assert normalise_sequence(name) == canonical


def test_unknown_sequence_and_task() -> None:
    with pytest.raises(NeuroFMError, match="unknown sequence"):
        normalise_sequence("localizer")
    with pytest.raises(NeuroFMError, match="unknown task"):
        get_task("tumour")


def test_task_select_one_of() -> None:
    t = get_task("infarct")
    assert t.select({"dwi_b1000", "flair", "adc", "t2s"}) == ["dwi_b1000", "flair", "adc", "t2s"]
    assert t.select({"dwi_b1000", "flair", "adc", "swi", "t2s"})[-1] == "swi"
    with pytest.raises(NeuroFMError, match="missing required"):
        t.select({"flair", "adc", "swi"}, "case1")
