"""Malformed input files never crash: every generated variant of labels.csv, manifest.yaml, a run's
config.json, a task file, a study recipe and DICOM headers is either accepted or refused with one
NeuroFMError line that names the file (property-based, hypothesis)."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofm.errors import NeuroFMError
from test_package_manifest import GOOD as GOOD_MANIFEST

CHECK = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
TOML_LITERALS = st.one_of(
    st.sampled_from(
        [
            '""',
            '"x"',
            "0",
            "-1",
            "1e400",
            "nan",
            "inf",
            "true",
            "[]",
            '[1, "a"]',
            "[[1]]",
            "{}",
            "{a = 1}",
            '"brain_age"',
            '["t1", "t1"]',
            "[0.0]",
            "[2.0, 1.0]",
            '"regression"',
        ]
    ),
    st.text(max_size=8).map(json.dumps),  # a TOML basic string (JSON escapes are TOML's)
    st.text(max_size=8),  # often not TOML at all
)


def refused_in_one_line(call: Callable[[], Any], path: Path, *, or_folder: bool = False) -> None:
    """``call`` succeeds or raises one NeuroFMError line naming ``path`` (or, for a DICOM series,
    its folder or the file of the series that disagrees with it); anything else fails the test."""
    try:
        call()
    except NeuroFMError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        assert str(path) in msg or (or_folder and msg.startswith(str(path.parent))), msg


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one to three fields deleted, replaced by any value, or added."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node = doc
        for key in parents:
            node = node[key]
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete":
            del node[last]
        elif op == "replace":
            node[last] = draw(VALUES)
        elif isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=6))] = draw(VALUES)
    return doc


@st.composite
def mutated_lines(draw: st.DrawFn, text: str) -> str:
    """A ``key = value`` file with values swapped for other literals, lines dropped or added."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["value", "drop", "insert"]))
        if op == "value" and "=" in lines[i]:
            lines[i] = f"{lines[i].split('=', 1)[0].strip()} = {draw(TOML_LITERALS)}"
        elif op == "drop":
            del lines[i]
        else:
            key = draw(st.sampled_from(["name", "kind", "extra", "range", "column", "primary"]))
            lines.insert(i, f"{key} = {draw(TOML_LITERALS)}")
        if not lines:
            break
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ labels.csv


def _split(root: Path, rng: np.random.Generator) -> Path:
    from neurofm.io.nifti import save_nifti

    for case in ("c1", "c2"):
        for seq in ("t1", "t2", "dwi_b1000", "flair", "adc", "swi"):  # brain age and infarct
            save_nifti(
                rng.random((6, 6, 5), dtype=np.float32), np.eye(4), root / case / f"{seq}.nii.gz"
            )
    return root


CSV_CELLS = st.one_of(
    st.sampled_from(["c1", "c2", "c3", "", " ", "A", "63.5", "-4", "nan", "inf", "1e999", "0x1"]),
    st.text(max_size=6),
)
CSV_HEADERS = st.lists(
    st.sampled_from(["case", "site", "age", "label", "sex", "", "Case"]), min_size=0, max_size=4
)


@st.composite
def labels_csv(draw: st.DrawFn) -> str:
    header = draw(CSV_HEADERS)
    rows = draw(st.lists(st.lists(CSV_CELLS, max_size=5), max_size=4))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    text = "\n".join(sep.join(r) for r in [header, *rows])
    if draw(st.booleans()):
        text = "\ufeff" + text  # a BOM, as spreadsheets write it
    if draw(st.booleans()):
        text = text.replace('"', "") + '\n"unterminated'
    return text


@CHECK
@given(text=labels_csv(), raw=st.binary(max_size=40), use_raw=st.booleans())
def test_labels_csv(tmp_path: Path, text: str, raw: bytes, use_raw: bool) -> None:
    from neurofm.io.splits import read_split

    split = tmp_path / "split"
    if not split.exists():
        _split(split, np.random.default_rng(0))
    path = split / "labels.csv"
    path.write_bytes(raw) if use_raw else path.write_text(text, encoding="utf-8")
    for task in ("brain_age", "infarct"):
        for targets in (True, False):
            refused_in_one_line(partial(read_split, split, task, require_targets=targets), path)


# --------------------------------------------------------------------------- manifest.yaml


@CHECK
@given(doc=mutated(GOOD_MANIFEST), garbage=st.text(max_size=30), use_garbage=st.booleans())
def test_manifest_yaml(
    tmp_path: Path, doc: dict[str, Any], garbage: str, use_garbage: bool
) -> None:
    from neurofm.packages.manifest import MANIFEST_NAME, load_manifest

    path = tmp_path / MANIFEST_NAME
    path.write_text(garbage if use_garbage else yaml.safe_dump(doc, allow_unicode=True))
    refused_in_one_line(lambda: load_manifest(tmp_path), path)


# ----------------------------------------------------------------------------- config.json


def _finetune_config() -> dict[str, Any]:
    from neurofm.data.preprocess import PreprocessParams
    from neurofm.models.config import TaskModelConfig
    from neurofm.runconfig import FinetuneRunConfig

    cfg = FinetuneRunConfig(
        task="infarct",
        model=TaskModelConfig(),
        input_sequences=["dwi_b1000", "flair", "adc", "swi|t2s"],
        preprocess=PreprocessParams(spacing=(4.0, 4.0, 4.0)),
        input_size=(32, 32, 32),
        patch_size=(32, 32, 32),
    )
    return json.loads(json.dumps(cfg.to_dict()))


@CHECK
@given(data=st.data())
def test_run_config_json(tmp_path: Path, data: st.DataObject) -> None:
    from neurofm.runfiles import CONFIG, load_finetune_config, load_run_config

    doc = data.draw(mutated(_finetune_config()))
    path = tmp_path / CONFIG
    text = json.dumps(doc) if data.draw(st.booleans()) else data.draw(st.text(max_size=20))
    path.write_text(text)
    refused_in_one_line(lambda: load_run_config(tmp_path), path)
    refused_in_one_line(lambda: load_finetune_config(tmp_path), path)


# --------------------------------------------------------------- task files and study recipe


def _builtin_text(package: str, name: str) -> str:
    from importlib import resources

    return (resources.files(package) / name).read_text()


@CHECK
@given(data=st.data(), name=st.sampled_from(["infarct", "meningioma", "brain_age"]))
def test_task_file(tmp_path: Path, data: st.DataObject, name: str) -> None:
    from neurofm.tasks import load_task_file

    text = data.draw(mutated_lines(_builtin_text("neurofm.task_files", f"{name}.toml")))
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    refused_in_one_line(lambda: load_task_file(path), path)


@CHECK
@given(data=st.data())
def test_study_recipe(tmp_path: Path, data: st.DataObject) -> None:
    from neurofm.study.recipe import DEFAULT_RECIPE, load_recipe

    base = _builtin_text("neurofm.study", f"recipes/{DEFAULT_RECIPE}.toml")
    path = tmp_path / "recipe.toml"
    path.write_text(data.draw(mutated_lines(base)))
    refused_in_one_line(lambda: load_recipe(path), path)


# ------------------------------------------------------------------------------ DICOM headers

DICOM_FIELDS = [
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "RescaleSlope",
    "RescaleIntercept", "SeriesDescription", "SeriesInstanceUID", "SamplesPerPixel",
    "PhotometricInterpretation", "DiffusionBValue", "InstanceNumber",
]  # fmt: skip
DICOM_VALUES = st.one_of(
    st.none(),
    st.sampled_from(
        ["", "abc", "1\\2", "0\\0\\0\\0\\0\\0", "nan", "-1", "1e9", "1\\0\\0\\0\\1\\0"]
    ),
    st.integers(-(2**15), 2**16),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=7),
)


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from neurofm.io.dicom import write_dicom_series

    out = tmp_path_factory.mktemp("dicom") / "series"
    rng = np.random.default_rng(0)
    write_dicom_series(rng.gamma(4.0, 20.0, (8, 8, 4)), np.diag([2.0, 2.0, 3.0, 1.0]), out, "T1")
    return out


DICOM_EDITS = st.lists(
    st.tuples(st.sampled_from(DICOM_FIELDS), DICOM_VALUES), min_size=1, max_size=3
)


@CHECK
@given(edits=DICOM_EDITS, which=st.integers(0, 3))
def test_dicom_headers(
    tmp_path: Path, dicom_series: Path, edits: list[tuple[str, Any]], which: int
) -> None:
    import pydicom

    from neurofm.io.dicom import read_dicom_series, scan_dicom_files

    series = tmp_path / "series"
    shutil.rmtree(series, ignore_errors=True)
    shutil.copytree(dicom_series, series)
    files = sorted(series.iterdir())
    target = files[which]
    ds = pydicom.dcmread(target)
    for keyword, value in edits:
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
            continue
        try:
            setattr(ds, keyword, value)
            ds.save_as(target)
        except Exception:  # pydicom refuses to write this value: nothing to read back
            ds = pydicom.dcmread(target)
    refused_in_one_line(lambda: read_dicom_series(files), target, or_folder=True)
    refused_in_one_line(lambda: scan_dicom_files(files), target)
