"""Results of a package run on a DICOM study, written back as DICOM a PACS can take.

A mask becomes a DICOM Segmentation (highdicom) that references the source series it was computed
on: the NIfTI mask (RAS+) is turned into a highdicom Volume and re-arranged onto the source
series' own slice/row/column geometry with ``Volume.match_geometry`` (permutes and flips only,
never resampling), so each frame corresponds pixel for pixel to one source image. Every output
(number or mask) also gets a small JSON file with the value and the study/series it came from.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from neurofm import __version__
from neurofm.errors import NeuroFMError
from neurofm.io.dicom import DicomSeries
from neurofm.packages.manifest import Manifest


def _source_datasets(series: DicomSeries) -> list[pydicom.Dataset]:
    try:
        return [pydicom.dcmread(p) for p in series.files]
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise NeuroFMError(
            series.files[0].parent, f"cannot re-read the source series ({exc})"
        ) from exc


def write_segmentation(
    mask: np.ndarray,
    affine: np.ndarray,
    series: DicomSeries,
    out_path: Path,
    manifest: Manifest,
) -> Path:
    """Write a RAS+ label mask on the grid of ``series`` as a DICOM SEG referencing it."""
    datasets = _source_datasets(series)
    source = hd.get_volume_from_series(datasets)
    frame_uid = str(datasets[0].FrameOfReferenceUID)
    image = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), np.asarray(affine, dtype=np.float64))
    volume = hd.Volume.from_nibabel(image, frame_of_reference_uid=frame_uid)
    try:
        volume = volume.match_geometry(source)
    except RuntimeError as exc:
        raise NeuroFMError(
            out_path, f"mask grid does not match the source {series.label} ({exc})"
        ) from exc
    algorithm = hd.AlgorithmIdentificationSequence(
        name=manifest.id, family=codes.DCM.ArtificialIntelligence, version=manifest.version
    )
    labels = sorted(manifest.outputs.labels.items())
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=i,
            segment_label=name[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for i, (_, name) in enumerate(labels, start=1)
    ]
    stacked = np.stack([volume.array == value for value, _ in labels], axis=-1).astype(np.uint8)
    seg_volume = hd.Volume(
        stacked,
        volume.affine,
        coordinate_system="PATIENT",
        frame_of_reference_uid=frame_uid,
        channels={"SegmentNumber": list(range(1, len(labels) + 1))},
    )
    with warnings.catch_warnings():
        # The SEG copies the patient's name from the source; a one-part name such as
        # "Anonymous" (anonymised data) is valid DICOM, highdicom's warning about it is noise.
        warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
        seg = _segmentation(datasets, seg_volume, descriptions, manifest)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(out_path)
    return out_path


def _segmentation(
    datasets: list[pydicom.Dataset],
    volume: hd.Volume,
    descriptions: list[hd.seg.SegmentDescription],
    manifest: Manifest,
) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=volume,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="neurofm",
        manufacturer_model_name=f"{manifest.id} {manifest.version}"[:64],
        software_versions=f"neurofm {__version__}",
        device_serial_number="0",
        series_description=f"{manifest.name} segmentation"[:64],
        omit_empty_frames=False,
    )


def result_json(
    manifest: Manifest,
    case_id: str,
    value: float | None,
    sources: Mapping[str, DicomSeries],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The small JSON written beside each DICOM-study result: value, package, source series."""
    first = next(iter(sources.values()), None)
    doc: dict[str, Any] = {
        "case": case_id,
        "task": manifest.task,
        "kind": manifest.outputs.kind,
        "value": value,
        "units": manifest.outputs.units,
        "package": {"id": manifest.id, "name": manifest.name, "version": manifest.version},
        "study_instance_uid": first.study_uid if first else None,
        "patient_id": first.patient_id if first else None,
        "source_series": {
            name: {"series_instance_uid": s.series_uid, "description": s.description}
            for name, s in sources.items()
        },
    }
    doc.update(extra or {})
    return json.dumps(doc, indent=2) + "\n"
