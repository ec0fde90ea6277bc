"""Discovering sessions in real layouts written as real files: FOMO60K, BIDS, plain, DICOM."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from neurofm.errors import NeuroFMError
from neurofm.io.dicom import DicomSeries, write_dicom_series
from neurofm.io.layouts import detect_layout, discover, load_session
from neurofm.io.naming import sequence_from_series

SHAPE = (4, 5, 3)
WriteNifti = Callable[..., Path]
PLAIN_FILES = (
    "T1w.nii.gz",
    "FLAIR.nii",
    "DWI.nii.gz",
    "ADC.nii.gz",
    "T2star.nii.gz",
    "label.nii.gz",
)


def _vol(value: float) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.float32) + np.arange(SHAPE[2], dtype=np.float32)


def _tree(write_nifti: WriteNifti, names: list[str]) -> None:
    for i, name in enumerate(names):
        write_nifti(name, _vol(i))


def test_fomo60k_tree(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(
        write_nifti,
        [
            "fomo/sub_2/ses_1/t1.nii.gz",
            "fomo/sub_2/ses_1/t1_2.nii.gz",  # a repeat: noted, primary used
            "fomo/sub_1/ses_2/flair.nii.gz",
            "fomo/sub_1/ses_1/dwi_b1000.nii.gz",
            "fomo/sub_1/ses_1/adc.nii.gz",
            "fomo/sub_1/ses_1/swi.nii.gz",
            "fomo/sub_1/ses_1/mask.nii.gz",  # not a sequence
        ],
    )
    (tmp_path / "fomo/participants.tsv").write_text("participant_id\tage\nsub_1\t40\n")
    (tmp_path / "fomo/sub_1/ses_1/adc.json").write_text("{}")
    root = tmp_path / "fomo"
    assert detect_layout(root) == "fomo60k"
    sessions = discover(root)
    assert [s.uid for s in sessions] == ["sub_1_ses_1", "sub_1_ses_2", "sub_2_ses_1"]
    assert sessions[0].sequences == {
        "adc": root / "sub_1/ses_1/adc.nii.gz",
        "dwi_b1000": root / "sub_1/ses_1/dwi_b1000.nii.gz",
        "swi": root / "sub_1/ses_1/swi.nii.gz",
    }
    assert sessions[2].sequences == {"t1": root / "sub_2/ses_1/t1.nii.gz"}
    assert "repeat 2 of t1" in sessions[2].skipped[0]
    assert {s.layout for s in sessions} == {"fomo60k"}
    vol = load_session(sessions[0], ["ADC", "dwi_b1000"])
    assert vol.channels == ["adc", "dwi_b1000"]
    assert vol.data.shape == (2, *SHAPE)
    np.testing.assert_array_equal(vol.data[0], _vol(4))  # adc was the 5th file written


def test_fomo60k_with_dataset_level(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(
        write_nifti, ["f/PT001_OASIS1/sub_1/ses_1/t1.nii.gz", "f/PT005_IXI/sub_1/ses_1/t2.nii.gz"]
    )
    sessions = discover(tmp_path / "f")
    assert [s.uid for s in sessions] == ["PT001_OASIS1_sub_1_ses_1", "PT005_IXI_sub_1_ses_1"]


def test_unknown_sequence_is_an_error_unless_not_strict(
    write_nifti: WriteNifti, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _tree(write_nifti, ["d/s1/ses_1/t1.nii.gz", "d/s1/ses_1/pd.nii.gz", "d/s2/ses_1/pd.nii.gz"])
    with pytest.raises(NeuroFMError, match=r"pd\.nii\.gz: unknown sequence name 'pd'"):
        discover(tmp_path / "d")
    with caplog.at_level(logging.WARNING, logger="neurofm.io.layouts"):
        sessions = discover(tmp_path / "d", strict=False)
    assert [s.uid for s in sessions] == ["s1_ses_1"]  # s2 had nothing usable
    assert "pd.nii.gz: unknown sequence name" in sessions[0].skipped[0]
    assert "pd.nii.gz" in caplog.text and "s2_ses_1 has no usable sequence" in caplog.text


def test_two_files_for_one_sequence_is_an_error(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(write_nifti, ["p/t1.nii.gz", "p/T1w.nii.gz"])
    with pytest.raises(NeuroFMError, match="is also sequence t1"):
        discover(tmp_path / "p")


def test_plain_folder_with_aliases(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(write_nifti, [f"case7/{name}" for name in (*PLAIN_FILES, "brain_mask.nii.gz")])
    (tmp_path / "case7/labels.csv").write_text("case,site\n")
    sessions = discover(tmp_path / "case7")
    assert len(sessions) == 1
    ses = sessions[0]
    assert (ses.uid, ses.layout, ses.folder) == ("case7", "plain", tmp_path / "case7")
    assert sorted(ses.sequences) == ["adc", "dwi_b1000", "flair", "t1", "t2s"]
    assert ses.sequences["flair"].name == "FLAIR.nii"


def test_plain_folder_of_cases(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(write_nifti, ["c/b/t1.nii.gz", "c/b/t2.nii.gz", "c/a/case_a_flair.nii.gz"])
    sessions = discover(tmp_path / "c")
    assert [(s.uid, sorted(s.sequences)) for s in sessions] == [
        ("a", ["flair"]),
        ("b", ["t1", "t2"]),
    ]


def test_bids_with_and_without_sessions(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(
        write_nifti,
        [
            "bids/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
            "bids/sub-01/ses-1/anat/sub-01_ses-1_run-2_T1w.nii.gz",  # second run: noted
            "bids/sub-01/ses-1/anat/sub-01_ses-1_ce-gd_T1w.nii.gz",  # contrast: noted
            "bids/sub-01/ses-1/anat/sub-01_ses-1_acq-highres_FLAIR.nii.gz",
            "bids/sub-01/ses-1/anat/sub-01_ses-1_T2starw.nii.gz",
            "bids/sub-01/ses-1/anat/sub-01_ses-1_PDw.nii.gz",  # not a neurofm sequence
            "bids/sub-01/ses-1/dwi/sub-01_ses-1_acq-b1000_dwi.nii.gz",
            "bids/sub-01/ses-1/dwi/sub-01_ses-1_acq-ADC_dwi.nii.gz",
            "bids/sub-01/ses-2/anat/sub-01_ses-2_T2w.nii",
            "bids/sub-02/anat/sub-02_T1w.nii.gz",
            "bids/sub-02/anat/sub-02_swi.nii.gz",
            "bids/sub-02/dwi/sub-02_dwi.nii.gz",
            "bids/derivatives/x/sub-01/anat/sub-01_T1w.nii.gz",  # not raw data
        ],
    )
    (tmp_path / "bids/dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9"}')
    (tmp_path / "bids/sub-01/ses-1/anat/sub-01_ses-1_T1w.json").write_text("{}")
    (tmp_path / "bids/sub-02/dwi/sub-02_dwi.bval").write_text("1000\n")
    root = tmp_path / "bids"
    assert detect_layout(root) == "bids"
    sessions = discover(root)
    assert [s.uid for s in sessions] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    s1 = sessions[0]
    anat = root / "sub-01/ses-1/anat"
    assert s1.sequences == {
        "adc": root / "sub-01/ses-1/dwi/sub-01_ses-1_acq-ADC_dwi.nii.gz",
        "dwi_b1000": root / "sub-01/ses-1/dwi/sub-01_ses-1_acq-b1000_dwi.nii.gz",
        "flair": anat / "sub-01_ses-1_acq-highres_FLAIR.nii.gz",
        "t1": anat / "sub-01_ses-1_T1w.nii.gz",
        "t2s": anat / "sub-01_ses-1_T2starw.nii.gz",
    }
    notes = "\n".join(s1.skipped)
    assert "run-2_T1w.nii.gz: another t1" in notes
    assert "ce-gd_T1w.nii.gz: contrast-enhanced" in notes
    assert "PDw.nii.gz: BIDS suffix 'PDw'" in notes
    assert sorted(sessions[1].sequences) == ["t2"]
    assert sessions[2].session == ""
    assert sorted(sessions[2].sequences) == ["dwi_b1000", "swi", "t1"]
    assert sessions[2].folder == root / "sub-02"


def test_layout_override_and_detection_errors(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(write_nifti, ["f/s/ses/t1.nii.gz"])
    with pytest.raises(NeuroFMError, match="not a plain layout"):
        discover(tmp_path / "f", layout="plain")
    with pytest.raises(NeuroFMError, match="unknown layout 'nnunet'"):
        discover(tmp_path / "f", layout="nnunet")
    _tree(write_nifti, ["m/t1.nii.gz", "m/s/ses/t2.nii.gz"])
    with pytest.raises(NeuroFMError, match="mixed folder depths"):
        discover(tmp_path / "m")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("x")
    with pytest.raises(NeuroFMError, match="empty: no NIfTI or DICOM images found"):
        discover(tmp_path / "empty")


def test_missing_sequence_names_the_session_folder(write_nifti: WriteNifti, tmp_path: Path) -> None:
    _tree(write_nifti, ["p/s1/ses_1/t1.nii.gz"])
    ses = discover(tmp_path / "p")[0]
    with pytest.raises(NeuroFMError, match=r"ses_1: session s1_ses_1 has no flair \(has: t1\)"):
        load_session(ses, ["t1", "flair"])


def _dicom_study(root: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two patients' studies written as real DICOM, with series neurofm must skip."""
    affine = np.diag([1.0, 1.2, 3.0, 1.0])
    arrays = {k: np.rint(rng.random(SHAPE) * 500) for k in ("flair", "b0", "b1000", "adc")}
    study = {
        "study_uid": "1.2.826.0.1.3680043.10.20",
        "frame_of_reference_uid": "1.2.826.0.1.3680043.10.21",
    }
    pat = {"patient_id": "P 001", "study_date": "20240102", **study}
    write_dicom_series(arrays["flair"], affine, root / "p1/s/3", "AX FLAIR", series_number=3, **pat)
    write_dicom_series(
        arrays["flair"], affine, root / "p1/s/1", "localizer", series_number=1, **pat
    )
    write_dicom_series(
        arrays["flair"], affine, root / "p1/s/9", "Mag_Images", series_number=9, **pat
    )
    uid = "1.2.826.0.1.3680043.10.22"
    for key, b in (("b0", 0), ("b1000", 1000)):
        write_dicom_series(
            arrays[key], affine, root / f"p1/s/5_{key}", "ep2d_diff_3scan_trace_p2_TRACEW",
            series_number=5, series_uid=uid, extra={"DiffusionBValue": b}, **pat,
        )  # fmt: skip
    write_dicom_series(
        arrays["adc"],
        affine,
        root / "p1/s/6",
        "ep2d_diff_3scan_trace_p2_ADC",
        series_number=6,
        **pat,
    )
    write_dicom_series(arrays["flair"], np.eye(4), root / "p2/IMG", "T2W_TSE", patient_id="P2")
    (root / "p1/DICOMDIR.txt").write_text("index")
    return arrays


def test_dicom_tree(
    tmp_path: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    arrays = _dicom_study(tmp_path / "dcm", rng)
    assert detect_layout(tmp_path / "dcm") == "dicom"
    with caplog.at_level(logging.WARNING, logger="neurofm.io.layouts"):
        sessions = discover(tmp_path / "dcm")
    assert [s.uid for s in sessions] == ["P-001_20240102", sessions[1].uid]
    assert sessions[1].subject == "P2"
    s1 = sessions[0]
    assert s1.layout == "dicom" and s1.folder == tmp_path / "dcm/p1/s"
    assert sorted(s1.sequences) == ["adc", "dwi_b1000", "flair"]
    dwi = s1.sequences["dwi_b1000"]
    assert isinstance(dwi, DicomSeries) and dwi.b_value == 1000.0 and len(dwi.files) == SHAPE[2]
    notes = "\n".join(s1.skipped)
    assert "'localizer'" in notes and "'Mag_Images'" in notes and "unknown sequence name" in notes
    assert "b=0 images of a diffusion series" in notes
    assert "'Mag_Images'" in caplog.text  # never silently
    vol = load_session(s1, ["dwi_b1000", "adc", "flair"])
    assert vol.channels == ["dwi_b1000", "adc", "flair"]
    # axial LPS-free affine diag(1, 1.2, 3): DICOM stores it as x, y flipped; back in RAS it matches
    np.testing.assert_allclose(vol.affine, np.diag([1.0, 1.2, 3.0, 1.0]), atol=1e-5)
    np.testing.assert_array_equal(vol.data[0], arrays["b1000"])
    np.testing.assert_array_equal(vol.data[1], arrays["adc"])
    assert sorted(sessions[1].sequences) == ["t2"]
    mixed = dataclasses.replace(
        s1, sequences={"flair": s1.sequences["flair"], "t2": sessions[1].sequences["t2"]}
    )
    with pytest.raises(NeuroFMError, match=r"p1/s: t2 series 1 'T2W_TSE'.*: affine differs"):
        load_session(mixed)


def test_corrupt_dicom_in_tree_is_named(tmp_path: Path, rng: np.random.Generator) -> None:
    write_dicom_series(rng.random(SHAPE), np.eye(4), tmp_path / "d/s", "FLAIR")
    (tmp_path / "d/s/broken.dcm").write_bytes(b"\x00" * 10)
    with pytest.raises(NeuroFMError, match="broken.dcm"):
        discover(tmp_path / "d")


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("t1_mprage_sag_p2_iso", "t1"),
        ("T1 FLAIR", "t1"),
        ("t2_tirm_tra_dark-fluid", "flair"),
        ("AX T2 FSE", "t2"),
        ("Ax DWI 1000b", "dwi_b1000"),
        ("Apparent Diffusion Coefficient (mm2/s)", "adc"),
        ("SWI_Images", "swi"),
        ("AX T2* GRE", "t2s"),
        ("t2_fl2d_tra_hemo", "t2s"),
        ("AAHead_Scout_64ch-head-coil", None),
        ("T1 +C", None),
        ("Pha_Images", None),
        ("ep2d_diff_mddw_30", None),
    ],
)
def test_series_description_rules(description: str, expected: str | None) -> None:
    assert sequence_from_series(description)[0] == expected
