"""FOMO25 export and the organisers' sanity check, repeated without Apptainer.

Packages of tiny untrained models (as in test_package_build) are exported per task and must pass
``check-fomo25``; hand-broken copies (entry point elsewhere, no /input, unpinned requirements, a
predict.py writing the wrong type) must fail with a one-line reason naming the check.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import neurofm.packages.build
from neurofm.cli import app, main
from neurofm.errors import NeuroFMError
from neurofm.packages.build import build_package
from neurofm.packages.check_fomo25 import (
    ORGANISER_TASKS,
    CheckResult,
    apptainer_exec_argv,
    check_folder,
    check_image,
    check_output_type,
    check_pinned,
    commands,
    first_failure,
    organiser_args,
    parse_definition,
    stage_subject,
)
from neurofm.packages.export_fomo25 import build_image, build_wheel, export_fomo25, pin_closure
from neurofm.packages.manifest import Manifest, parse_manifest
from neurofm.predict import load_predictor, predict_case_dir
from test_package_build import tiny_run

torch.set_num_threads(1)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])
SEQUENCES = {
    "infarct": ("adc", "dwi_b1000", "flair", "swi"),
    "meningioma": ("dwi_b1000", "flair", "t2s"),
    "brain_age": ("t1", "t2"),
}
CHECKS = [
    "definition", "entry point", "input/output folders", "executable", "%test",
    "pinned dependencies", "neurofm wheel", "model files", "flags", "self-test case",
    "output type", "self-test reference", "failing case",
]  # fmt: skip


def task_case(folder: Path, task: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    head = np.zeros((20, 22, 18), np.float32)
    head[3:-3, 3:-3, 3:-3] = 1
    for seq in SEQUENCES[task]:
        data = head * rng.uniform(40, 100, head.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{seq}.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def export_task(root: Path, task: str, wheel: Path) -> Path:
    run = tiny_run(root / "run", task)
    sample = task_case(root / "sample" / "case7", task, seed=7)
    pkg = root / "pkg"
    build_package(run, pkg, sample=sample, pkg_id=f"tiny-{task.replace('_', '-')}")
    return export_fomo25(pkg, root / "fomo", wheel=wheel)


def reference_in_process(pkg_dir: Path, manifest: Manifest, **_: object) -> Path:
    """The self-test reference computed here instead of in a sandboxed interpreter (fast)."""
    predictor = load_predictor(pkg_dir / "model", "cpu")
    out = predict_case_dir(predictor, pkg_dir / manifest.selftest.sample, pkg_dir / ".ref")
    ref = pkg_dir / manifest.selftest.reference
    shutil.move(out, ref)
    (pkg_dir / ".ref").rmdir()
    return ref


@pytest.fixture(scope="module")
def age_export(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A brain-age export for the checks that run no model (its reference made in-process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(neurofm.packages.build, "produce_reference", reference_in_process)
        return export_task(tmp_path_factory.mktemp("age"), "brain_age", wheel)


def broken_copy(export: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broken"
    shutil.copytree(export, dst)
    return dst


def test_export_folder(age_export: Path) -> None:
    assert {p.name for p in age_export.iterdir()} == {
        "predict.py", "Apptainer.def", "README.md", "manifest.yaml", "model", "selftest",
        "wheels", "requirements.txt",
    }  # fmt: skip
    assert (age_export / "predict.py").stat().st_mode & 0o111


@pytest.mark.slow  # a package build (sandboxed self-test) and a model run per task
@pytest.mark.parametrize("task", ["brain_age", "infarct", "meningioma"])
def test_each_task_export_passes_the_check(tmp_path: Path, wheel: Path, task: str) -> None:
    export = export_task(tmp_path, task, wheel)
    result = CliRunner().invoke(app, ["package", "check-fomo25", str(export), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"passes the FOMO25 checks: {export}"
    assert [ln.split(":")[0] for ln in lines[:-1]] == [f"ok   {name}" for name in CHECKS]
    by_name = {ln.split(":")[0][5:]: ln.split(": ", 1)[1] for ln in lines[:-1]}
    flags = " ".join(f"--{s}" for s in ORGANISER_TASKS[task][1])
    assert by_name["flags"] == f"accepts {flags} --output"
    first = ORGANISER_TASKS[task][1][0]
    assert by_name["failing case"] == (
        f"a missing input (--{first} .../missing_{first}.nii.gz) exits 2, writes nothing"
    )
    kind = by_name["output type"]
    reference = (
        export / "selftest" / ("reference.nii.gz" if task == "meningioma" else "reference.txt")
    )
    if task == "meningioma":  # the mask read back is the package's reference, voxel for voxel
        n_set = int(np.asarray(nib.load(str(reference)).dataobj).sum())
        assert kind == f"binary NIfTI mask on the input grid (20, 22, 18), {n_set} voxels set"
    else:
        value = float(reference.read_text())
        what, hi = ("probability", 1) if task == "infarct" else ("number", 120)
        assert kind == f"sub_1.txt holds the {what} {value:.6g} in [0, {hi}]"


def test_definition_follows_the_organisers_guide(age_export: Path) -> None:
    defn = parse_definition((age_export / "Apptainer.def").read_text())
    assert defn.header == {"bootstrap": "docker", "from": "python:3.11-slim"}
    assert ["predict.py", "/app/predict.py"] in [ln.split() for ln in defn.lines("files")]
    assert ["mkdir", "-p", "/input", "/output"] in commands(defn.lines("post"))
    assert ["chmod", "+x", "/app/predict.py"] in commands(defn.lines("post"))
    assert 'exec python /app/predict.py "$@"' in defn.lines("runscript")
    pins = (age_export / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in pins  # the local '+cpu' label is dropped: PyPI's GPU/CPU build
    assert any(p.startswith("monai==") for p in pins)
    assert not any(p.startswith(("neurofm", "pytest", "ruff")) for p in pins)


def test_readme_states_the_organisers_commands(age_export: Path) -> None:
    readme = (age_export / "README.md").read_text()
    assert (
        "apptainer exec --nv --bind SUBJECT:/input:ro --bind OUTPUT:/output tiny-brain-age.sif "
        "python /app/predict.py --t1 /input/ses_1/t1.nii.gz --t2 /input/ses_1/t2.nii.gz "
        "--output /output/sub_1.txt"
    ) in readme
    assert "apptainer exec tiny-brain-age.sif test -f /app/predict.py" in readme
    for row in ("| task1 (infarct) |", "| task2 (meningioma) |", "| task3 (brain_age) |"):
        assert row in readme
    assert "--output /output/sub_1.nii.gz" in readme  # the mask task's row
    assert "$" not in readme.replace("$@", "")  # every template field was filled


def test_entry_point_elsewhere_fails_with_one_line(
    age_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = broken_copy(age_export, tmp_path)
    path = broken / "Apptainer.def"
    path.write_text(path.read_text().replace("predict.py /app/predict.py", "predict.py /opt/p.py"))
    results = check_folder(broken, device="cpu")
    failed = first_failure(results)
    assert failed is not None and failed.name == "entry point"
    assert failed.reason == (
        "%files puts nothing at /app/predict.py (it goes to /opt/p.py); "
        "the organisers call exactly python /app/predict.py"
    )
    assert "self-test case" not in [r.name for r in results]  # nothing ran

    with pytest.raises(SystemExit) as exit_info:
        main(["package", "check-fomo25", str(broken)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {broken}: entry point: {failed.reason}"]


def test_no_input_folder_fails(age_export: Path, tmp_path: Path) -> None:
    broken = broken_copy(age_export, tmp_path)
    path = broken / "Apptainer.def"
    path.write_text(path.read_text().replace("mkdir -p /input /output", "mkdir -p /output"))
    failed = first_failure(check_folder(broken))
    assert failed == CheckResult(
        "input/output folders", False, "%post does not create /input (mkdir -p /input /output)"
    )


def test_unpinned_requirement_fails(age_export: Path, tmp_path: Path) -> None:
    broken = broken_copy(age_export, tmp_path)
    req = broken / "requirements.txt"
    req.write_text(req.read_text().replace("torch==2.13.0", "torch>=2.4"))
    defn = parse_definition((broken / "Apptainer.def").read_text())
    result = check_pinned(defn, broken)
    assert not result.ok
    assert result.reason == "requirements.txt: 'torch>=2.4' is not pinned (name==version)"


WRONG_TYPE = """#!/usr/bin/env python3
import argparse, pathlib
p = argparse.ArgumentParser()
for s in ("flair", "dwi_b1000", "adc", "swi", "t2s", "t1", "t2", "output"):
    p.add_argument("--" + s)
a = p.parse_args()
pathlib.Path(a.output).write_text("forty-two\\n")
"""


def test_predict_writing_the_wrong_type_fails(age_export: Path, tmp_path: Path) -> None:
    broken = broken_copy(age_export, tmp_path)
    (broken / "predict.py").write_text(WRONG_TYPE)
    results = {r.name: r for r in check_folder(broken, device="cpu")}
    assert results["self-test case"].ok  # it ran and wrote sub_1.txt ...
    assert not results["output type"].ok  # ... but not a number
    assert results["output type"].reason == "output is not one number: 'forty-two'"
    # It also exits 0 and writes an output when an input file is missing.
    assert results["failing case"].reason.endswith("still exits 0")


def test_pin_closure_follows_markers_extras_and_drops_local_labels() -> None:
    dists = {
        "a": ("A", "1.0", ["b>=1", "c; extra == 'test'", "d[x]", "w; sys_platform == 'nt'"]),
        "b": ("b", "2.13.0+cpu", []),
        "d": ("D", "3", ["e; extra == 'x'", "f; extra == 'y'"]),
        "e": ("e", "4.1", ["b"]),
    }
    pins = pin_closure(["a"], lambda name: dists.get(name.lower()))
    assert pins == {"a": "1.0", "b": "2.13.0", "d": "3", "e": "4.1"}
    with pytest.raises(NeuroFMError, match="c \\(needed by neurofm\\) is not installed"):
        pin_closure(["c"], lambda name: dists.get(name.lower()))


def test_organiser_call_and_apptainer_command() -> None:
    found = ["flair", "swi", "adc", "dwi_b1000"]
    args = organiser_args("infarct", found, "/input", "/output/s.txt")
    assert args == [
        "--adc", "/input/ses_1/adc.nii.gz", "--dwi_b1000", "/input/ses_1/dwi_b1000.nii.gz",
        "--flair", "/input/ses_1/flair.nii.gz", "--swi", "/input/ses_1/swi.nii.gz",
        "--output", "/output/s.txt",
    ]  # fmt: skip
    argv = apptainer_exec_argv(
        "apptainer", Path("m.sif"), ["python", "/app/predict.py"],
        {Path("/d/sub_1"): "/input:ro", Path("/o"): "/output"}, gpu=True,
    )  # fmt: skip
    assert argv == [
        "apptainer", "exec", "--nv", "--bind", "/d/sub_1:/input:ro", "--bind", "/o:/output",
        "m.sif", "python", "/app/predict.py",
    ]  # fmt: skip


def test_definition_parser_joins_continuations_and_splits_commands() -> None:
    defn = parse_definition(
        "Bootstrap: docker\nFrom: x\n%post\n  # note\n  mkdir -p /a \\\n    /b && chmod 755 /c\n"
    )
    assert commands(defn.lines("post")) == [["mkdir", "-p", "/a", "/b"], ["chmod", "755", "/c"]]


def test_export_build_without_apptainer_says_so(
    tmp_path: Path, wheel: Path, age_export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda n, *a, **k: None if n == "apptainer" else which(n))
    pkg = tmp_path / "pkg"
    shutil.copytree(age_export.parent / "pkg", pkg)
    out = tmp_path / "fomo"
    result = CliRunner().invoke(
        app, ["package", "export", str(pkg), "--fomo25", "--out", str(out), "--wheel", str(wheel),
              "--build"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "apptainer is not on PATH: no image built" in result.output
    assert not list(out.glob("*.sif"))


# Stands in for apptainer where it is not installed: an "image" names a folder tree built from
# the definition's %files (plus the folders %post makes); exec maps --bind mounts and the image
# root onto host paths. It exercises the in-image commands, not Apptainer itself.
FAKE_APPTAINER = """#!{python}
import json, pathlib, shutil, subprocess, sys
args = sys.argv[1:]
if args[0] == "build":
    image, definition = [pathlib.Path(a) for a in args[1:] if a != "--fakeroot"]
    root = image.with_suffix(".root")
    section = None
    for line in definition.read_text().splitlines():
        line = line.strip()
        if line.startswith("%"):
            section = line[1:]
        elif section == "files" and line and not line.startswith("#"):
            src, dest = line.split()
            target = root / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if pathlib.Path(src).is_dir() else shutil.copy2)(src, target)
        elif section == "post" and line.startswith("mkdir"):
            for d in line.split()[1:]:
                if d.startswith("/"):
                    (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    image.write_text(json.dumps({{"root": str(root)}}))
    sys.exit(0)
if args[0] == "test":
    sys.exit(0)
args, binds = args[1:], {{}}
while args[0].startswith("--"):
    if args[0] == "--bind":
        host, mount = args[1].split(":")[:2]
        binds[mount] = host
        args = args[1:]
    args = args[1:]
root = json.loads(pathlib.Path(args[0]).read_text())["root"]
def place(a):
    for mount, host in binds.items():
        if a == mount or a.startswith(mount + "/"):
            return host + a[len(mount):]
    return root + a if a.startswith("/") else a
cmd = [place(a) for a in args[1:]]
cmd[0] = sys.executable if cmd[0] == "python" else cmd[0]
sys.exit(subprocess.run(cmd).returncode)
"""
# A predict.py without a model: it returns the package's reference and fails on a missing input.
STUB_PREDICT = """#!/usr/bin/env python3
import argparse, pathlib, shutil, sys
p = argparse.ArgumentParser()
for s in ("flair", "dwi_b1000", "adc", "swi", "t2s", "t1", "t2", "output"):
    p.add_argument("--" + s)
a = vars(p.parse_args())
if any(v and not pathlib.Path(v).is_file() for k, v in a.items() if k != "output"):
    sys.exit(3)
shutil.copyfile(pathlib.Path(__file__).parent / "selftest" / "reference.txt", a["output"])
"""


def test_checks_inside_a_built_image(age_export: Path, tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "apptainer"
    fake.parent.mkdir()
    fake.write_text(FAKE_APPTAINER.format(python=sys.executable))
    fake.chmod(0o755)
    folder = broken_copy(age_export, tmp_path)
    (folder / "predict.py").write_text(STUB_PREDICT)
    image = build_image(folder, str(fake))
    assert image == folder / "tiny-brain-age.sif"
    results = check_image(folder, image, apptainer=str(fake))
    assert first_failure(results) is None, [r.line() for r in results]
    names = [r.name for r in results]
    assert names[:8] == CHECKS[:8] and names[8:10] == ["apptainer test", "image paths"]
    assert names[10:] == CHECKS[8:]
    by_name = {r.name: r.reason for r in results}
    assert by_name["apptainer test"] == "apptainer test tiny-brain-age.sif exits 0"
    assert by_name["image paths"] == "has /app, /input, /output, /app/predict.py"
    assert by_name["failing case"] == (
        "a missing input (--t1 .../missing_t1.nii.gz) exits 3, writes nothing"
    )
    # An image without /output fails the organisers' path check.
    shutil.rmtree(folder / "tiny-brain-age.root" / "output")
    failed = first_failure(check_image(folder, image, apptainer=str(fake)))
    assert failed == CheckResult("image paths", False, "missing /output")


def mask_manifest() -> Manifest:
    return parse_manifest(
        {
            "id": "m", "name": "m", "version": "1", "license": "MIT", "task": "meningioma",
            "track": "open", "authors": ["a"], "base_model": {"name": "scratch"},
            "inputs": {"sequences": ["dwi_b1000", "flair", ["swi", "t2s"]]},
            "outputs": {"kind": "mask", "geometry": "same_as_input", "labels": {1: "tumour"}},
            "runtime": {"entrypoint": ["python", "p.py"], "timeout_s": 9, "memory_mb": 99},
            "selftest": {"sample": "s/c", "reference": "s/r.nii.gz"},
        }
    )  # fmt: skip


def test_mask_output_of_the_wrong_type_fails(write_nifti: Callable[..., Path]) -> None:
    manifest = mask_manifest()
    flair = write_nifti("in/flair.nii.gz", np.ones((6, 5, 4)))
    mask = np.zeros((6, 5, 4))
    mask[1:3, 1:3, 1:3] = 1
    good = check_output_type(manifest, write_nifti("good.nii.gz", mask), flair)
    assert good.ok and good.reason == "binary NIfTI mask on the input grid (6, 5, 4), 8 voxels set"
    labelled = check_output_type(manifest, write_nifti("two.nii.gz", mask * 2), flair)
    assert not labelled.ok
    assert labelled.reason == "mask has values 2 outside the declared labels [0, 1]"
    small = check_output_type(manifest, write_nifti("small.nii.gz", mask[:5]), flair)
    assert small.reason == "mask shape (5, 5, 4) differs from the input (6, 5, 4)"
    text = flair.parent / "sub_1.txt"
    text.write_text("0.5\n")
    wrong = check_output_type(manifest, text, flair)
    assert wrong.reason == "sub_1.txt: a mask must be written as .nii.gz"


def test_stage_subject_lays_out_an_organiser_session(
    write_nifti: Callable[..., Path], tmp_path: Path, rng: np.random.Generator
) -> None:
    t1 = rng.uniform(0, 1, (4, 5, 6))
    write_nifti("sample/t1.nii", t1)  # uncompressed: staged as the .nii.gz the organisers glob
    write_nifti("sample/t2.nii.gz", t1 * 2)
    write_nifti("sample/flair.nii.gz", t1)  # not a brain-age sequence: left out
    session = tmp_path / "sub_1" / "ses_1"
    session.mkdir(parents=True)
    assert stage_subject(tmp_path / "sample", "brain_age", session) == ["t1", "t2"]
    assert sorted(p.name for p in session.iterdir()) == ["t1.nii.gz", "t2.nii.gz"]
    np.testing.assert_allclose(nib.load(str(session / "t1.nii.gz")).get_fdata(), t1, rtol=1e-6)
