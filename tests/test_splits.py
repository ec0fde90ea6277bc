"""The task split layout: labels.csv validation, sequence checks, split listing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from neurofm.errors import NeuroFMError
from neurofm.io.splits import list_splits, read_case_dir, read_split

WriteNifti = Callable[..., Path]
INFARCT = ["DWI.nii.gz", "FLAIR.nii.gz", "ADC.nii.gz", "T2star.nii.gz"]
SEQS = {"infarct": INFARCT, "meningioma": ["dwi_b1000.nii.gz", "flair.nii.gz", "swi.nii.gz"]}
SEQS["brain_age"] = ["t1.nii.gz", "T2w.nii.gz"]
CSV = {
    "infarct": "case,site,label\nc1,A,1\nc2,A,0\n",
    "meningioma": "case,site\nc1,A\nc2,B\n",
    "brain_age": "case,site,age\nc1,A,41.5\nc2,B,80\n",
}


@pytest.fixture
def split_of(write_nifti: WriteNifti, tmp_path: Path) -> Callable[..., Path]:
    def make(task: str, csv: str | None = None, cases: tuple[str, ...] = ("c1", "c2")) -> Path:
        for case in cases:
            for name in SEQS[task]:
                write_nifti(f"{task}/train/{case}/{name}", np.ones((3, 3, 2)))
            if task == "meningioma":
                write_nifti(f"{task}/train/{case}/label.nii.gz", np.zeros((3, 3, 2)))
        split = tmp_path / task / "train"
        (split / "labels.csv").write_text(CSV[task] if csv is None else csv)
        return split

    return make


def test_infarct_split(split_of: Callable[..., Path]) -> None:
    split = split_of("infarct", "\ufeffcase, site ,label,notes\nc2,B,0,x\nc1,A,1,y\n\n")
    (split / "c1" / "c1.json").write_text("{}")
    cases = read_split(split, "infarct")
    assert [(c.case_id, c.site, c.label, c.age, c.mask) for c in cases] == [
        ("c1", "A", 1.0, None, None),
        ("c2", "B", 0.0, None, None),
    ]
    assert sorted(cases[0].sequences) == ["adc", "dwi_b1000", "flair", "t2s"]
    assert cases[0].sequences["t2s"] == split / "c1" / "T2star.nii.gz"
    assert cases[0].folder == split / "c1"


def test_brain_age_and_meningioma_splits(split_of: Callable[..., Path]) -> None:
    ages = read_split(split_of("brain_age"), "brain_age")
    assert [(c.age, c.label, sorted(c.sequences)) for c in ages] == [
        (41.5, None, ["t1", "t2"]),
        (80.0, None, ["t1", "t2"]),
    ]
    men = read_split(split_of("meningioma"), "meningioma")
    assert [(c.site, c.mask) for c in men] == [
        ("A", men[0].split_dir / "c1" / "label.nii.gz"),
        ("B", men[0].split_dir / "c2" / "label.nii.gz"),
    ]
    assert "label" not in men[0].sequences


@pytest.mark.parametrize(
    ("task", "csv", "message"),
    [
        ("infarct", "case,label\nc1,1\nc2,0\n", r"labels.csv: missing column\(s\) site"),
        ("brain_age", "case,site\nc1,A\nc2,A\n", r"labels.csv: missing column\(s\) age"),
        (
            "infarct",
            "case,site,label\nc1,A,1\nc1,A,0\n",
            r"line 3: duplicate case 'c1' \(first on line 2\)",
        ),
        ("infarct", "case,site,label\nc1,A,2\nc2,A,0\n", r"line 2: label '2' must be 0 or 1"),
        ("infarct", "case,site,label\nc1,A,\nc2,A,0\n", r"line 2: label '' is not a number"),
        ("brain_age", "case,site,age\nc1,A,old\nc2,A,3\n", r"line 2: age 'old' is not a number"),
        ("brain_age", "case,site,age\nc1,A,nan\nc2,A,3\n", r"line 2: age 'nan' is not finite"),
        (
            "brain_age",
            "case,site,age\nc1,A,-1\nc2,A,3\n",
            r"line 2: age '-1' outside the task's range \[0, 120\]",
        ),
        (
            "infarct",
            "case,site,label\nc1,A,1\nc2,A,0\nc9,A,1\n",
            r"labels.csv: case 'c9' has no folder",
        ),
        ("infarct", "case,site,label\nc1,A,1\n", r"c2: case folder has no row in .*labels.csv"),
        ("infarct", "", r"labels.csv: empty file"),
    ],
)
def test_labels_csv_failures(
    split_of: Callable[..., Path], task: str, csv: str, message: str
) -> None:
    split = split_of(task, csv)
    with pytest.raises(NeuroFMError, match=message) as info:
        read_split(split, task)
    assert "\n" not in str(info.value)


def test_missing_files(split_of: Callable[..., Path]) -> None:
    split = split_of("infarct")
    (split / "labels.csv").unlink()
    with pytest.raises(NeuroFMError, match=r"train/labels.csv: file does not exist"):
        read_split(split, "infarct")
    split = split_of("meningioma")
    (split / "c2" / "label.nii.gz").unlink()
    with pytest.raises(NeuroFMError, match=r"c2/label.nii.gz: file does not exist"):
        read_split(split, "meningioma")
    assert read_split(split, "meningioma", require_targets=False)[1].mask is None


def test_missing_sequences_name_the_case(split_of: Callable[..., Path]) -> None:
    split = split_of("infarct")
    (split / "c2" / "ADC.nii.gz").unlink()
    with pytest.raises(NeuroFMError, match=r"train/c2: missing required sequence\(s\) \['adc'\]"):
        read_split(split, "infarct")
    (split / "c2" / "ADC.nii.gz").write_bytes((split / "c1" / "ADC.nii.gz").read_bytes())
    (split / "c1" / "T2star.nii.gz").unlink()
    with pytest.raises(NeuroFMError, match=r"train/c1: task infarct needs one of \['swi', 't2s'\]"):
        read_split(split, "infarct")


def test_unknown_sequence_file_is_named(
    split_of: Callable[..., Path], write_nifti: WriteNifti
) -> None:
    split = split_of("brain_age")
    write_nifti("brain_age/train/c1/pd.nii.gz", np.ones((3, 3, 2)))
    with pytest.raises(NeuroFMError, match=r"c1/pd.nii.gz: unknown sequence name 'pd'"):
        read_split(split, "brain_age")


def test_prediction_input_without_targets(split_of: Callable[..., Path]) -> None:
    split = split_of("brain_age", "case,site\nc1,A\nc2,B\n")
    cases = read_split(split, "brain_age", require_targets=False)
    assert [(c.site, c.age) for c in cases] == [("A", None), ("B", None)]
    (split / "labels.csv").unlink()
    cases = read_split(split, "brain_age", require_targets=False)
    assert [(c.case_id, c.site) for c in cases] == [("c1", ""), ("c2", "")]
    case = read_case_dir(split / "c2", "brain_age")
    assert (case.case_id, case.split_dir, sorted(case.sequences)) == ("c2", split, ["t1", "t2"])
    with pytest.raises(NeuroFMError, match="unknown task 'bogus'"):
        read_case_dir(split / "c2", "bogus")


def test_list_splits(tmp_path: Path) -> None:
    for name in ("test_siteB", "train", "test", "notes", "test_siteA", "val", ".cache"):
        (tmp_path / "infarct" / name).mkdir(parents=True)
    assert list_splits(tmp_path / "infarct") == ["train", "val", "test", "test_siteA", "test_siteB"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuroFMError, match="empty: no split folders"):
        list_splits(tmp_path / "empty")
