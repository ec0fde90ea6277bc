"""manifest.yaml validation, its JSON Schema, and sha256 integrity of a package folder."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from neurofm.errors import NeuroFMError
from neurofm.packages.hashing import check_integrity, hash_artifacts, sha256_file
from neurofm.packages.manifest import (
    Manifest,
    check_paths_inside,
    dump_manifest,
    load_manifest,
    manifest_json_schema,
    parse_manifest,
)

GOOD: dict[str, Any] = {
    "id": "tiny-men",
    "name": "Tiny meningioma",
    "version": "1.0.0",
    "license": "Apache-2.0",
    "task": "meningioma",
    "track": "open",
    "authors": ["A. Author"],
    "description": "test",
    "base_model": {"name": "mae-small", "sha256": "a" * 64},
    "inputs": {"sequences": ["dwi_b1000", "flair", ["swi", "t2s"]], "spacing": [1, 1, 1]},
    "outputs": {"kind": "mask", "geometry": "same_as_input", "labels": {1: "meningioma"}},
    "runtime": {"entrypoint": ["python", "predict.py"], "timeout_s": 60, "memory_mb": 4096},
    "artifacts": [{"path": "weights/model.safetensors", "sha256": "b" * 64}],
    "selftest": {"sample": "selftest/case", "reference": "selftest/ref.nii.gz"},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_good_manifest_round_trips(tmp_path: Path) -> None:
    m = parse_manifest(GOOD)
    assert m.inputs.required == ("dwi_b1000", "flair")
    assert m.inputs.one_of == (("swi", "t2s"),)
    assert m.selftest.tolerances.dice_min == 0.99
    assert m.selftest.tolerances.abs_max == 1e-3
    assert m.output_suffix == ".nii.gz"
    dump_manifest(m, tmp_path)
    assert load_manifest(tmp_path) == m
    assert "sequences:\n  - dwi_b1000" in (tmp_path / "manifest.yaml").read_text()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("runtime.timeout_s", 0, "runtime.timeout_s: Input should be greater than 0"),
        ("runtime.memory_mb", -1, "runtime.memory_mb: Input should be greater than 0"),
        ("runtime.network", "host", "runtime.network: Input should be 'none'"),
        ("task", "tumour", "task: unknown task 'tumour' (known: infarct, meningioma, brain_age)"),
        ("outputs", {"kind": "number"}, "task meningioma outputs a mask, not a number"),
        ("artifacts.0.path", "/etc/passwd", "artifacts[0].path: '/etc/passwd' is absolute"),
        ("artifacts.0.path", "../x", "artifacts[0].path: '../x' contains '..'"),
        ("artifacts.0.sha256", "xyz", "artifacts[0].sha256: String should match pattern"),
        ("selftest.reference", "a/../../ref", "selftest.reference: 'a/../../ref' contains '..'"),
        ("runtime.entrypoint", ["/bin/sh", "x"], "runtime.entrypoint: Value error, '/bin/sh'"),
        ("runtime.entrypoint", ["python", "../up.py"], "would reach outside the package"),
        ("inputs.sequences", ["t1", "dwi"], "unknown sequence 'dwi'"),
        ("inputs.sequences", ["t1", ["t1", "t2"]], "sequence 't1' listed twice"),
        ("outputs.labels", {}, "a mask output needs labels"),
        ("id", "Has Spaces", "id: String should match pattern"),
        ("selftest.tolerances", {"dice_min": 1.5}, "selftest.tolerances.dice_min: Input should be"),
    ],
)
def test_bad_fields_name_their_path(path: str, value: Any, message: str) -> None:
    with pytest.raises(NeuroFMError) as err:
        parse_manifest(_with(path, value), "pkg/manifest.yaml")
    assert str(err.value).startswith("pkg/manifest.yaml: ")
    assert message.replace("Value error, ", "") in str(err.value)


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    data = copy.deepcopy(GOOD)
    data["runtime"]["timout_s"] = 5  # a typo must not silently drop a limit
    del data["license"]
    with pytest.raises(NeuroFMError, match=r"license: Field required.*runtime\.timout_s: Extra"):
        parse_manifest(data)
    (tmp_path / "manifest.yaml").write_text("id: [unclosed\n")
    with pytest.raises(NeuroFMError, match="manifest.yaml: invalid YAML"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.yaml").write_text("- a list\n")
    with pytest.raises(NeuroFMError, match="expected a mapping"):
        load_manifest(tmp_path)
    with pytest.raises(NeuroFMError, match="no manifest.yaml: not a model package"):
        load_manifest(tmp_path / "nowhere")


def test_json_schema_matches_the_model(tmp_path: Path) -> None:
    schema = manifest_json_schema()
    assert schema["title"] == "neurofm model package manifest"
    assert set(schema["required"]) >= {"id", "task", "runtime", "selftest", "base_model"}
    runtime = schema["$defs"]["Runtime"]["properties"]
    assert runtime["timeout_s"]["exclusiveMinimum"] == 0
    json.dumps(schema)  # serialisable
    assert Manifest.model_validate(GOOD).id == "tiny-men"


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    for rel, data in {
        "weights/model.safetensors": b"weights",
        "predict.py": b"print(1)",
        "selftest/case/flair.nii.gz": b"f",
        "selftest/ref.nii.gz": b"r",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    data = _with("artifacts", [a.model_dump() for a in hash_artifacts(pkg)])
    dump_manifest(parse_manifest(data), pkg)
    return pkg


def test_integrity_detects_changed_missing_and_unlisted_files(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    m = load_manifest(pkg)
    assert [a.path for a in m.artifacts] == [
        "predict.py",
        "selftest/case/flair.nii.gz",
        "selftest/ref.nii.gz",
        "weights/model.safetensors",
    ]
    import hashlib

    assert sha256_file(pkg / "predict.py") == hashlib.sha256(b"print(1)").hexdigest()
    assert check_integrity(pkg, m) == 4
    (pkg / "weights/model.safetensors").write_bytes(b"weightz")
    (pkg / "extra.py").write_text("evil")
    with pytest.raises(NeuroFMError) as err:
        check_integrity(pkg, m)
    msg = str(err.value)
    assert "integrity check failed, refusing to run" in msg
    assert "weights/model.safetensors: sha256" in msg
    assert "extra.py: not listed in artifacts" in msg
    (pkg / "extra.py").unlink()
    (pkg / "predict.py").unlink()
    with pytest.raises(NeuroFMError, match=r"artifacts\[0\]\.path: 'predict.py' does not exist"):
        check_integrity(pkg, m)


def test_links_leaving_the_package_are_refused(tmp_path: Path) -> None:
    pkg = _package(tmp_path)
    m = load_manifest(pkg)
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (pkg / "selftest/ref.nii.gz").unlink()
    os.symlink(secret, pkg / "selftest/ref.nii.gz")
    with pytest.raises(NeuroFMError, match=r"'selftest/ref.nii.gz' leaves the package"):
        check_paths_inside(pkg, m)
    (pkg / "selftest/ref.nii.gz").unlink()
    (pkg / "selftest/ref.nii.gz").write_bytes(b"r")
    os.symlink(tmp_path, pkg / "up")
    with pytest.raises(NeuroFMError, match="up: link pointing outside the package"):
        check_integrity(pkg, m)


def test_yaml_written_is_plain(tmp_path: Path) -> None:
    dump_manifest(parse_manifest(GOOD), tmp_path)
    data = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert data["runtime"]["entrypoint"] == ["python", "predict.py"]
    assert data["outputs"]["labels"] == {1: "meningioma"}
