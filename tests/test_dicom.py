"""DICOM series reading and writing, checked against headers and world coordinates."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from neurofm.errors import NeuroFMError
from neurofm.io.dicom import (
    diffusion_b_value,
    is_dicom_file,
    read_dicom_series,
    scan_dicom_files,
    write_dicom_series,
)
from neurofm.io.nifti import voxel_spacing


def _testdata(name: str) -> Path:
    path = get_testdata_file(name, download=False)  # shipped in the pydicom wheel, no network
    assert isinstance(path, str), f"{name} missing from pydicom/data/test_files"
    return Path(path)


def _source_index(affine_out: np.ndarray, affine_in: np.ndarray, shape: tuple) -> np.ndarray:
    """For every voxel of the output grid, the voxel of the input grid at the same world point."""
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    world = affine_out[:3, :3] @ ijk + affine_out[:3, 3:]
    src = np.linalg.inv(affine_in)[:3, :3] @ world + np.linalg.inv(affine_in)[:3, 3:]
    assert np.abs(src - np.rint(src)).max() < 1e-4, "grids do not coincide"
    return np.rint(src).astype(int)


@pytest.mark.parametrize(
    ("name", "spacing"),
    [("MR_small.dcm", (0.3125, 0.3125, 0.8)), ("CT_small.dcm", (0.661468,) * 2 + (5.0,))],
)
def test_reads_single_slice_files_against_header(name: str, spacing: tuple) -> None:
    path = _testdata(name)
    ds = pydicom.dcmread(path)
    data, affine = read_dicom_series([path])
    assert data.dtype == np.float32
    assert data.shape == (ds.Columns, ds.Rows, 1)
    np.testing.assert_allclose(voxel_spacing(affine), spacing, rtol=1e-6)
    assert np.all(np.diag(affine)[:3] > 0)  # RAS+
    # Independent geometry: DICOM pixel (r, c) sits at IPP + c*dc*X + r*dr*Y in LPS.
    iop = np.asarray(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    rows, cols = np.indices((ds.Rows, ds.Columns)).reshape(2, -1)
    lps = np.asarray(ds.ImagePositionPatient, float)[:, None] + np.outer(iop[:3], cols * dc)
    lps = lps + np.outer(iop[3:], rows * dr)
    ras = lps * np.array([[-1.0], [-1.0], [1.0]])
    vox = np.linalg.inv(affine)[:3, :3] @ ras + np.linalg.inv(affine)[:3, 3:]
    assert np.abs(vox - np.rint(vox)).max() < 1e-4
    i, j, k = np.rint(vox).astype(int)
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    expected = ds.pixel_array[rows, cols] * slope + intercept
    np.testing.assert_allclose(data[i, j, k], expected)
    if name == "CT_small.dcm":
        assert data.min() < 0  # the -1024 intercept was applied


_AXIAL = np.diag([0.9, 1.1, 2.5, 1.0]) + np.array(
    [[0, 0, 0, -20], [0, 0, 0, 7], [0, 0, 0, 3], [0] * 4]
)
_FLIPPED = np.diag([-1.0, -1.0, 3.0, 1.0])  # LPS-stored axial, x and y reversed
_SAGITTAL = np.array([[0, 0, -2.5, 30], [0.8, 0, 0, -10], [0, 1.2, 0, 5], [0, 0, 0, 1.0]])
_c, _s = np.cos(0.3), np.sin(0.3)
_OBLIQUE = np.array([[_c, 0, _s * 2, 1], [0, 1.0, 0, 2], [-_s, 0, _c * 2, 3], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [_AXIAL, _FLIPPED, _SAGITTAL, _OBLIQUE])
@pytest.mark.parametrize("integer", [True, False])
def test_roundtrip_keeps_values_and_world_coordinates(
    tmp_path: Path, rng: np.random.Generator, affine: np.ndarray, integer: bool
) -> None:
    array = rng.random((5, 6, 4)) * 1000 - 200
    array = np.rint(array) if integer else array
    files = write_dicom_series(array, affine, tmp_path / "s", "t1_mprage")
    assert len(files) == 4
    random.Random(0).shuffle(files)  # file order must not matter
    data, aff = read_dicom_series(files)
    assert np.all(np.diag(aff)[:3] > 0) or affine is _OBLIQUE
    src = _source_index(aff, affine, data.shape)
    expected = array[src[0], src[1], src[2]].reshape(data.shape)
    tol = 0.0 if integer else (array.max() - array.min()) / 65535 * 0.51
    np.testing.assert_allclose(data, expected, atol=tol + 1e-4, rtol=0)
    assert sorted(voxel_spacing(aff)) == pytest.approx(sorted(voxel_spacing(affine)), abs=1e-5)


def test_written_files_are_valid_mr_storage(tmp_path: Path, rng: np.random.Generator) -> None:
    kw = {
        "study_uid": "1.2.826.0.1.3680043.10.1",
        "frame_of_reference_uid": "1.2.826.0.1.3680043.10.2",
    }
    a = write_dicom_series(rng.random((3, 3, 2)), np.eye(4), tmp_path / "a", "FLAIR", **kw)
    b = write_dicom_series(
        rng.random((3, 3, 2)), np.eye(4), tmp_path / "b", "DWI", series_number=2, **kw
    )
    headers = [pydicom.dcmread(p) for p in a + b]  # no force: valid preamble and file meta
    for ds in headers:
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == MRImageStorage == ds.file_meta.MediaStorageSOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.StudyInstanceUID == kw["study_uid"]
        assert ds.FrameOfReferenceUID == kw["frame_of_reference_uid"]
    assert len({ds.SOPInstanceUID for ds in headers}) == 4
    assert len({ds.SeriesInstanceUID for ds in headers}) == 2
    assert all(is_dicom_file(p) for p in a)


def test_scan_groups_series_and_splits_b_values(tmp_path: Path, rng: np.random.Generator) -> None:
    vol = rng.random((3, 3, 2))
    uid, study = "1.2.826.0.1.3680043.10.3", "1.2.826.0.1.3680043.10.4"
    for b in (1000, 0):
        extra = {"DiffusionBValue": b}
        write_dicom_series(
            vol, np.eye(4), tmp_path / f"b{b}", "DWI", series_uid=uid, study_uid=study, extra=extra
        )
    write_dicom_series(vol, np.eye(4), tmp_path / "t1", "T1", series_number=3, study_uid=study)
    (tmp_path / "notes.txt").write_text("not dicom")
    series, notes = scan_dicom_files(
        p for p in sorted(tmp_path.rglob("*")) if p.is_file() and is_dicom_file(p)
    )
    assert notes == []
    assert [(s.description, s.b_value, len(s.files)) for s in series] == [
        ("DWI", 0.0, 2),
        ("DWI", 1000.0, 2),
        ("T1", None, 2),
    ]
    # the whole series at once has two images per position: refused, naming a file
    with pytest.raises(NeuroFMError, match="same slice position") as info:
        read_dicom_series(series[0].files + series[1].files)
    assert ".dcm" in str(info.value)


def test_b_value_from_vendor_tags() -> None:
    ds = pydicom.Dataset()
    ds.SequenceName = "*ep_b1000t"  # Siemens sequence name
    assert diffusion_b_value(ds) == 1000.0
    ds.SequenceName = "*tfl3d1"
    assert diffusion_b_value(ds) is None
    ds.add_new(0x0019100C, "UN", b"800 ")  # Siemens B_value, unparsed private tag
    assert diffusion_b_value(ds) == 800.0
    ge = pydicom.Dataset()
    ge.add_new(0x00431039, "IS", ["1000001000", "8", "0", "0"])  # GE adds 1e9
    assert diffusion_b_value(ge) == 1000.0


def _series(tmp_path: Path, rng: np.random.Generator, n: int = 5) -> list[Path]:
    return write_dicom_series(
        rng.random((4, 4, n)) * 100, np.diag([1.0, 1.0, 2.0, 1.0]), tmp_path / "s", "T2"
    )


def test_garbage_and_truncated_files_are_named(tmp_path: Path, rng: np.random.Generator) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00\x01garbage" * 20)
    with pytest.raises(NeuroFMError, match="junk.dcm"):
        read_dicom_series([junk])
    files = _series(tmp_path, rng)
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[: len(raw) - 20])
    with pytest.raises(NeuroFMError, match="IM00003.dcm: pixel data cannot be decoded"):
        read_dicom_series(files)
    truncated = tmp_path / "MR_truncated.dcm"
    shutil.copy(_testdata("MR_truncated.dcm"), truncated)
    with pytest.raises(NeuroFMError, match="MR_truncated.dcm"):
        read_dicom_series([truncated])


def test_missing_slice_is_rejected_naming_the_file(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    files = _series(tmp_path, rng)
    del files[2]
    with pytest.raises(NeuroFMError, match=r"IM00004.dcm: non-uniform slice spacing: gap 4 mm"):
        read_dicom_series(files)


def test_inconsistent_headers_are_rejected(tmp_path: Path, rng: np.random.Generator) -> None:
    files = _series(tmp_path, rng)
    ds = pydicom.dcmread(files[1])
    ds.PixelSpacing = [1.5, 1.0]
    ds.save_as(files[1])
    with pytest.raises(NeuroFMError, match="IM00002.dcm: PixelSpacing"):
        read_dicom_series(files)
    ds.PixelSpacing = [1.0, 1.0]
    ds.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
    ds.save_as(files[1])
    with pytest.raises(NeuroFMError, match="IM00002.dcm: ImageOrientationPatient"):
        read_dicom_series(files)


def test_multiframe_and_geometry_free_files_are_refused(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    files = _series(tmp_path, rng, n=2)
    ds = pydicom.dcmread(files[0])
    ds.NumberOfFrames = 2
    ds.save_as(files[0])
    with pytest.raises(NeuroFMError, match="IM00001.dcm: multi-frame"):
        read_dicom_series(files)
    ds = pydicom.dcmread(files[1])
    del ds.ImagePositionPatient
    ds.save_as(files[1])
    with pytest.raises(NeuroFMError, match="IM00002.dcm: DICOM image lacks ImagePositionPatient"):
        read_dicom_series(files[1:])


def test_writer_refuses_sheared_affine(tmp_path: Path) -> None:
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(NeuroFMError, match="shear"):
        write_dicom_series(np.ones((2, 2, 2)), shear, tmp_path, "T1")
