"""DICOM MR series in and out, in neurofm's in-memory convention (float32 RAS+ plus affine).

Reading leans on libraries: pydicom parses files and applies RescaleSlope/Intercept (or a modality
LUT); highdicom (:func:`highdicom.spatial.get_series_volume_positions`,
:meth:`highdicom.Volume.from_attributes`) sorts slices along the slice normal, checks regular
spacing and perpendicular stacking and builds the LPS affine; nibabel reorients to RAS+ exactly
as :func:`neurofm.io.nifti.load_nifti` does. (:func:`highdicom.get_volume_from_series` does all
of it in one call but spends ~10 ms per slice on IOD lookups, so its building blocks are used.)

Hand-written here: per-file checks so every error names the offending file (the libraries raise
bare ValueErrors), diffusion b-values from vendor tags (no library reads them), and the writer:
neither highdicom (segmentations, SR, secondary capture, legacy multi-frame only) nor
nibabel.nicom (read-only) creates single-frame MR Image Storage series.
"""

from __future__ import annotations

import datetime
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from neurofm.errors import NeuroFMError

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
_TOL = 1e-4  # direction cosines and mm


@dataclass(frozen=True)
class DicomSeries:
    """One image series on disk: its files plus the header fields used to name and group it.

    A diffusion series holding several b-values is split into one DicomSeries per b-value (same
    ``series_uid``, different ``b_value``), because each b-value is its own volume.
    """

    series_uid: str
    files: tuple[Path, ...]
    description: str = ""
    series_number: int = 0
    image_type: tuple[str, ...] = ()
    b_value: float | None = None
    study_uid: str = ""
    patient_id: str = ""
    study_date: str = ""

    @property
    def label(self) -> str:
        """Human-readable name for messages: number, description, b-value, file count."""
        b = f" b={self.b_value:g}" if self.b_value is not None else ""
        return f"series {self.series_number} {self.description!r}{b} ({len(self.files)} files)"


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` has the DICOM 'DICM' marker at byte 128 or a DICOM file extension."""
    if path.name.lower().endswith(_DICOM_SUFFIXES):
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _dcmread(path: Path, *, header_only: bool) -> Dataset:
    """pydicom.dcmread with every failure turned into a NeuroFMError naming the file."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=header_only, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise NeuroFMError(
            path, f"corrupt or unreadable DICOM ({type(exc).__name__}: {exc})"
        ) from exc
    except Exception as exc:  # pydicom raises assorted types on garbage
        raise NeuroFMError(path, f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise NeuroFMError(path, "not a DICOM file (no SOP class or image attributes)")
    return ds


def diffusion_b_value(ds: Dataset) -> float | None:
    """Diffusion b-value from the standard tag or the usual vendor tags; None if not diffusion."""
    if "DiffusionBValue" in ds:  # (0018,9087), standard
        return float(ds.DiffusionBValue)
    for tag in ((0x0019, 0x100C), (0x0043, 0x1039)):  # Siemens B_value, GE slop_int_6 (first)
        if tag in ds:
            raw = ds[tag].value
            text = raw.decode("ascii", "ignore") if isinstance(raw, bytes) else str(raw)
            first = re.split(r"[\\\s,\[\]']+", text.strip(" []"))[0]
            try:
                return float(first) % 1e9  # GE adds 1e9 to flag a derived b-value
            except ValueError:
                continue
    seq_name = re.search(r"b(\d+)t?$", str(ds.get("SequenceName", "")).strip())
    if seq_name and "ep" in str(ds.get("SequenceName", "")):  # Siemens '*ep_b1000t'
        return float(seq_name.group(1))
    return None


def _description(ds: Dataset) -> str:
    return str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or "").strip()


def scan_dicom_files(files: Iterable[Path]) -> tuple[list[DicomSeries], list[str]]:
    """Group DICOM files into image series by SeriesInstanceUID (and b-value) from headers only.

    Returns the series sorted by (study, series number, UID, b-value) and notes on DICOM objects
    that are not images (DICOMDIR, reports, presentation states), which are left out.
    """
    groups: dict[tuple[str, float | None], list[tuple[Path, Dataset]]] = defaultdict(list)
    notes: list[str] = []
    for path in sorted(files):
        ds = _dcmread(path, header_only=True)
        if "Rows" not in ds or "SeriesInstanceUID" not in ds:
            sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "?"))
            notes.append(f"{path}: non-image DICOM object ({sop}) ignored")
            continue
        try:
            b_value = diffusion_b_value(ds)
            int(ds.get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError, OverflowError) as exc:
            raise NeuroFMError(path, f"unreadable DiffusionBValue or SeriesNumber ({exc})") from exc
        groups[(str(ds.SeriesInstanceUID), b_value)].append((path, ds))
    series: list[DicomSeries] = []
    for (uid, b_value), members in groups.items():
        ds = members[0][1]
        series.append(
            DicomSeries(
                series_uid=uid,
                files=tuple(p for p, _ in members),
                description=_description(ds),
                series_number=int(ds.get("SeriesNumber", 0) or 0),
                image_type=tuple(str(v) for v in ds.get("ImageType", []) or []),
                b_value=b_value,
                study_uid=str(ds.get("StudyInstanceUID", "")),
                patient_id=str(ds.get("PatientID", "") or "").strip(),
                study_date=str(ds.get("StudyDate", "") or "").strip(),
            )
        )
    series.sort(key=lambda s: (s.study_uid, s.series_number, s.series_uid, s.b_value or 0.0))
    return series, notes


def _read_image(path: Path) -> Dataset:
    """Read one single-frame image with patient geometry and decodable pixels, or fail naming it."""
    ds = _dcmread(path, header_only=False)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        raise NeuroFMError(
            path,
            f"multi-frame (enhanced) DICOM with {frames} frames is not supported; "
            "convert it to NIfTI first (e.g. dcm2niix)",
        )
    if "PixelData" not in ds:
        raise NeuroFMError(path, "DICOM file has no pixel data")
    missing = [k for k in _GEOMETRY if k not in ds]
    if missing:
        raise NeuroFMError(path, f"DICOM image lacks {', '.join(missing)} (no patient geometry)")
    _check_header(path, ds)
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise NeuroFMError(path, f"colour DICOM ({ds.SamplesPerPixel} samples per pixel)")
    try:
        ds.pixel_array  # decoded once here, cached by pydicom for the stacking below  # noqa: B018
    except Exception as exc:
        raise NeuroFMError(
            path, f"pixel data cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    return ds


def _numbers(
    path: Path, ds: Dataset, key: str, count: int, *, positive: bool = False
) -> list[float]:
    """Header field ``key`` as ``count`` finite numbers, or a NeuroFMError naming file and field."""
    value = getattr(ds, key, None)
    items: list[Any] = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError, OverflowError):
        numbers = []
    if len(numbers) != count or not all(np.isfinite(numbers)):
        raise NeuroFMError(path, f"{key} {value!r} is not {count} finite number(s)")
    if positive and min(numbers) <= 0:
        raise NeuroFMError(path, f"{key} {value!r} must be positive")
    return numbers


def _check_header(path: Path, ds: Dataset) -> None:
    """The fields the volume is built from must be numbers of the right count and sign."""
    _numbers(path, ds, "ImagePositionPatient", 3)
    iop = np.asarray(_numbers(path, ds, "ImageOrientationPatient", 6))
    if np.linalg.norm(np.cross(iop[:3], iop[3:])) < 0.5:  # unit and orthogonal, within reason
        raise NeuroFMError(path, f"ImageOrientationPatient {list(iop)} is not two orthogonal axes")
    _numbers(path, ds, "PixelSpacing", 2, positive=True)
    for key in ("Rows", "Columns"):
        _numbers(path, ds, key, 1, positive=True)
    for key in ("RescaleSlope", "RescaleIntercept", "SamplesPerPixel"):
        if key in ds:
            _numbers(path, ds, key, 1)


def _check_consistent(paths: Sequence[Path], datasets: Sequence[Dataset]) -> None:
    ref, ref_name = datasets[0], paths[0].name
    for path, ds in zip(paths[1:], datasets[1:], strict=True):
        if ds.get("SeriesInstanceUID") != ref.get("SeriesInstanceUID"):
            raise NeuroFMError(path, f"belongs to another series than {ref_name}")
        if (ds.Rows, ds.Columns) != (ref.Rows, ref.Columns):
            raise NeuroFMError(
                path, f"{ds.Rows}x{ds.Columns} pixels where {ref_name} has {ref.Rows}x{ref.Columns}"
            )
        for key in ("ImageOrientationPatient", "PixelSpacing"):
            if not np.allclose(np.asarray(ds[key].value, float), ref[key].value, atol=_TOL):
                raise NeuroFMError(path, f"{key} {list(ds[key].value)} differs from {ref_name}")


def _slice_positions(datasets: Sequence[Dataset]) -> np.ndarray:
    """Position of each slice along the slice normal (mm)."""
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return np.array([np.dot(np.asarray(ds.ImagePositionPatient, float), normal) for ds in datasets])


def _explain_irregular(paths: Sequence[Path], datasets: Sequence[Dataset]) -> NeuroFMError:
    """Say which file breaks the regular slice stack (only called once highdicom refused it)."""
    pos = _slice_positions(datasets)
    order = np.argsort(pos, kind="stable")
    gaps = np.diff(pos[order])
    dup = np.flatnonzero(gaps < _TOL)
    if dup.size:
        a, b = paths[order[dup[0]]], paths[order[dup[0] + 1]]
        return NeuroFMError(
            b,
            f"same slice position as {a.name}: several echoes, b-values or time points in one "
            "series are not supported",
        )
    typical = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - typical) > 0.01 * typical)
    if bad.size:
        return NeuroFMError(
            paths[order[bad[0] + 1]],
            f"non-uniform slice spacing: gap {gaps[bad[0]]:.3g} mm before this slice where "
            f"{typical:.3g} mm is typical (missing slice or mixed stacks?)",
        )
    return NeuroFMError(
        paths[0].parent, "slices are not stacked along their normal (gantry tilt or mixed stacks)"
    )


def read_dicom_series(files: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
    """Read one single-frame DICOM series as float32 ``(X, Y, Z)`` in RAS+ order plus its affine.

    Slices are sorted by position along the slice normal (file order does not matter), pixel values
    go through RescaleSlope/Intercept, and a single slice gets SpacingBetweenSlices, else
    SliceThickness, as its depth. Raises NeuroFMError naming the file for unreadable, corrupt,
    multi-frame, inconsistent or irregularly spaced input.
    """
    paths = sorted(Path(f) for f in files)
    if not paths:
        raise NeuroFMError(None, "empty DICOM series (no files)")
    datasets = [_read_image(p) for p in paths]
    _check_consistent(paths, datasets)
    first = datasets[0]
    if len(datasets) > 1:
        spacing, index = hd.spatial.get_series_volume_positions(datasets)
        if spacing is None or index is None:
            raise _explain_irregular(paths, datasets)
        datasets = [datasets[index.index(i)] for i in range(len(datasets))]
    else:
        spacing = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
    try:  # headers were checked field by field; this catches combinations pydicom rejects
        array = np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets])
        vol = hd.Volume.from_attributes(
            array=array.astype(np.float32),
            image_position=datasets[0].ImagePositionPatient,
            image_orientation=first.ImageOrientationPatient,
            pixel_spacing=first.PixelSpacing,
            spacing_between_slices=spacing,
            coordinate_system="PATIENT",
        )
    except (ValueError, TypeError, ArithmeticError, AttributeError, IndexError) as exc:
        raise NeuroFMError(
            paths[0].parent, f"DICOM series cannot be assembled ({type(exc).__name__}: {exc})"
        ) from exc
    affine_lps = np.asarray(vol.affine, dtype=np.float64)  # (slice, row, column) -> LPS
    img = nib.as_closest_canonical(nib.Nifti1Image(vol.array, _LPS_TO_RAS @ affine_lps))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.isfinite(data).all():
        raise NeuroFMError(paths[0].parent, "DICOM series has NaN/Inf values after rescaling")
    return data, np.asarray(img.affine, dtype=np.float64)


def _to_stored(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Integers that fit int16 are stored as is; anything else as uint16 with slope/intercept."""
    info = np.iinfo(np.int16)
    if np.all(np.mod(array, 1) == 0) and array.min() >= info.min and array.max() <= info.max:
        return array.astype(np.int16), 1.0, 0.0
    lo = float(f"{float(array.min()):.10g}")  # as written to the DS attributes
    hi = float(array.max())
    slope = float(f"{(hi - lo) / 65535.0:.10g}") if hi > lo else 1.0
    stored = np.rint((array - lo) / slope).clip(0, 65535).astype(np.uint16)
    return stored, slope, lo


def write_dicom_series(
    array: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    series_description: str,
    *,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    patient_id: str = "anonymous",
    patient_name: str = "Anonymous",
    study_date: str = "",
    extra: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write a 3D array with a (RAS) affine as a single-frame MR Image Storage series.

    One file per slice along the array's third axis (``IM00001.dcm`` ...), explicit VR little
    endian, UIDs from :func:`pydicom.uid.generate_uid`; pass the same ``study_uid`` and
    ``frame_of_reference_uid`` to several calls to build one study. Integer-valued data that fits
    int16 is stored exactly; other data as uint16 with RescaleSlope/Intercept (error at most half
    a slope). ``extra`` sets further attributes on every slice (e.g. ``DiffusionBValue``).
    """
    data = np.asarray(array, dtype=np.float64)
    if data.ndim != 3 or min(data.shape) == 0:
        raise NeuroFMError(out_dir, f"need a non-empty 3D array, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise NeuroFMError(out_dir, "array has NaN/Inf values")
    lps = _LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    step = np.linalg.norm(lps[:3, :3], axis=0)
    axes = lps[:3, :3] / step
    if not np.allclose(axes.T @ axes, np.eye(3), atol=1e-5):
        raise NeuroFMError(out_dir, "affine has shear; DICOM slices need orthogonal axes")
    stored, slope, intercept = _to_stored(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    normal = np.cross(axes[:, 0], axes[:, 1])
    now = datetime.datetime.now()
    paths: list[Path] = []
    for k in range(data.shape[2]):
        sop_uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop_uid
        ds.PatientName, ds.PatientID = patient_name, patient_id
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.StudyInstanceUID, ds.StudyDate = study_uid, study_date or now.strftime("%Y%m%d")
        ds.StudyTime, ds.StudyID, ds.AccessionNumber = now.strftime("%H%M%S"), "1", ""
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.Manufacturer = "MR", "neurofm"
        ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, series_number
        ds.SeriesDescription = ds.ProtocolName = series_description
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = "RM", "NONE", ""
        ds.MRAcquisitionType, ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "3D", "", "", ""
        ds.InstanceNumber = k + 1
        position = lps[:3, :3] @ [0.0, 0.0, float(k)] + lps[:3, 3]
        ds.ImagePositionPatient = [float(f"{v:.6f}") for v in position]
        ds.ImageOrientationPatient = [float(f"{v:.8f}") for v in axes[:, :2].T.ravel()]
        # PixelSpacing is (between rows, between columns); columns run along array axis 0.
        ds.PixelSpacing = [float(f"{step[1]:.6f}"), float(f"{step[0]:.6f}")]
        ds.SliceThickness = ds.SpacingBetweenSlices = float(f"{step[2]:.6f}")
        ds.SliceLocation = float(f"{np.dot(position, normal):.6f}")
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
        ds.RescaleType = "US"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        pixels = np.ascontiguousarray(stored[:, :, k].T)  # rows follow array axis 1
        ds.set_pixel_data(
            pixels,
            photometric_interpretation="MONOCHROME2",
            bits_stored=16,
            generate_instance_uid=False,
        )
        path = out / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
