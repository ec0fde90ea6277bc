"""The sandboxed runner, driven by small fake packages whose entrypoint is a Python script.

Bad packages (hang, network, writes outside, garbage, altered weights) must each be stopped or
refused with a one-line message, and earlier outputs in the output folder must survive.
"""

from __future__ import annotations

import json
import os
import re
import socket
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import yaml

from neurofm.errors import NeuroFMError
from neurofm.packages.build import seal_package
from neurofm.packages.manifest import dump_manifest, load_manifest, parse_manifest
from neurofm.packages.runner import find_cases, run_package
from neurofm.packages.sandbox import choose_isolation

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
SHAPE = (6, 5, 4)
ISOLATION = choose_isolation()  # honours NEUROFM_SANDBOX
needs_netns = pytest.mark.skipif(ISOLATION == "none", reason="no bwrap/unshare here")
needs_bwrap = pytest.mark.skipif(ISOLATION != "bwrap", reason="file isolation needs bubblewrap")

# Fake packages use only the standard library (a sandboxed run then costs a bare interpreter
# start-up): a NIfTI is the 352-byte header plus float32 voxels, gzipped.
PRELUDE = """
import argparse, array, gzip, pathlib, struct
def read(path):
    raw = gzip.open(path).read()
    off = int(struct.unpack("<f", raw[108:112])[0])
    d = struct.unpack("<8h", raw[40:56])
    return raw[:off], array.array("f", raw[off : off + 4 * d[1] * d[2] * d[3]])
def write_mask(path, header, values):
    h = bytearray(header)
    h[70:74] = struct.pack("<hh", 2, 8)
    h[112:120] = struct.pack("<ff", 1.0, 0.0)
    with gzip.open(path, "wb") as fh:
        fh.write(bytes(h) + bytes(values))
p = argparse.ArgumentParser(); p.add_argument("--input"); p.add_argument("--output")
a, _ = p.parse_known_args()
cases = sorted(pathlib.Path(a.input).iterdir())
out = pathlib.Path(a.output)
"""
# A well-behaved brain-age package: the age is the mean of the t1 image (so it depends on input).
AGE_SCRIPT = (
    PRELUDE
    + """
for case in cases:
    _, t1 = read(case / "t1.nii.gz")
    (out / f"{case.name}.txt").write_text(f"{sum(t1) / len(t1):.6f}\\n")
"""
)
# A meningioma package: mask = flair above its mean, written on the input grid.
MASK_SCRIPT = (
    PRELUDE
    + """
for case in cases:
    header, x = read(case / "flair.nii.gz")
    mean = sum(x) / len(x)
    write_mask(out / f"{case.name}.nii.gz", header, [int(v > mean) for v in x])
"""
)


def write_case(folder: Path, sequences: tuple[str, ...], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for seq in sequences:
        data = rng.uniform(0, 100, SHAPE).astype(np.float32)
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{seq}.nii.gz"))
    return folder


def age_case(folder: Path, seed: int = 0) -> Path:
    return write_case(folder, ("t1", "t2"), seed)


def mening_case(folder: Path, seed: int = 0) -> Path:
    return write_case(folder, ("dwi_b1000", "flair", "swi"), seed)


def make_package(
    root: Path,
    script: str,
    *,
    task: str = "brain_age",
    entry_args: tuple[str, ...] = (),
    timeout_s: float = 20,
    memory_mb: int = 2048,
    extra_files: dict[str, bytes] | None = None,
    make_reference: bool = False,
) -> Path:
    """A sealed package folder: manifest, predict.py, a weights file and a self-test sample."""
    pkg = root / f"pkg-{uuid.uuid4().hex[:6]}"
    pkg.mkdir(parents=True)
    (pkg / "predict.py").write_text(textwrap.dedent(script))
    (pkg / "weights.bin").write_bytes(b"\x00\x01" * 64)
    for rel, data in (extra_files or {}).items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    mask = task == "meningioma"
    (mening_case if mask else age_case)(pkg / "selftest" / "sample1", seed=99)
    ref = pkg / "selftest" / ("reference.nii.gz" if mask else "reference.txt")
    if not make_reference:
        ref.write_text("0\n")
    data: dict[str, Any] = {
        "id": "fake",
        "name": "Fake package",
        "version": "0.1",
        "license": "MIT",
        "task": task,
        "track": "open",
        "authors": ["tests"],
        "base_model": {"name": "scratch"},
        "inputs": {"sequences": ["dwi_b1000", "flair", ["swi", "t2s"]] if mask else ["t1", "t2"]},
        "outputs": {"kind": "mask", "geometry": "same_as_input", "labels": {1: "meningioma"}}
        if mask
        else {"kind": "number", "range": [0, 120]},
        "runtime": {
            "entrypoint": ["python", "predict.py", *entry_args],
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
        },
        "selftest": {"sample": "selftest/sample1", "reference": ref.relative_to(pkg).as_posix()},
    }
    if mask:
        ref.write_bytes(b"")  # placeholder until the reference run
    dump_manifest(parse_manifest(data), pkg)
    seal_package(pkg, make_reference=make_reference)
    return pkg


@pytest.fixture
def split(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "test"
    for i in range(3):
        age_case(d / f"c{i}", seed=i)
    (d / "labels.csv").write_text("case,site,age\nc0,A,40\nc1,A,50\nc2,B,60\n")
    return d


@pytest.fixture
def earlier(tmp_path: Path) -> Callable[[], None]:
    """Put an earlier output in the output folder; the returned check asserts it is untouched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "old_case.txt").write_text("33.3\n")

    def check() -> None:
        assert (out / "old_case.txt").read_text() == "33.3\n"

    return check


def _mean_t1(case: Path) -> float:
    return float(np.asarray(nib.load(str(case / "t1.nii.gz")).dataobj).mean())


def test_run_on_a_split_collects_validated_outputs(tmp_path: Path, split: Path) -> None:
    pkg = make_package(tmp_path, AGE_SCRIPT, make_reference=True)
    ref = float((pkg / "selftest/reference.txt").read_text())
    assert ref == pytest.approx(_mean_t1(pkg / "selftest/sample1"), abs=1e-5)
    out = tmp_path / "out"
    report = run_package(pkg, split, out)
    assert report.ok, report.error
    assert report.isolation == ISOLATION
    assert sorted(p.name for p in out.glob("*.txt")) == ["c0.txt", "c1.txt", "c2.txt"]
    for i in range(3):
        got = float((out / f"c{i}.txt").read_text())
        assert got == pytest.approx(_mean_t1(split / f"c{i}"), abs=1e-5)
    assert 5 < report.peak_rss_mb < 200  # a bare interpreter, measured inside the sandbox
    last = json.loads((out / ".neurofm" / "runs.jsonl").read_text().splitlines()[-1])
    assert last["isolation"] == ISOLATION
    assert last["error"] is None
    assert last["outputs"] == 3
    # A second run refuses to overwrite, before running anything; --overwrite replaces.
    with pytest.raises(NeuroFMError, match="exists; pass --overwrite"):
        run_package(pkg, split, out)
    (out / "c0.txt").write_text("1.0\n")
    assert run_package(pkg, split, out, overwrite=True).ok
    assert float((out / "c0.txt").read_text()) == pytest.approx(_mean_t1(split / "c0"), abs=1e-5)


def test_inputs_case_dataset_and_labels_hidden(tmp_path: Path, split: Path) -> None:
    """A single case, a dataset of splits; the package sees only the sequences it declared."""
    spy = AGE_SCRIPT + textwrap.dedent(
        """
        import json
        seen = sorted(str(p.relative_to(a.input)) for p in pathlib.Path(a.input).rglob("*"))
        print("SEEN", json.dumps(seen))
        """
    )
    pkg = make_package(tmp_path, spy)
    (split / "c0" / "label.nii.gz").write_bytes((split / "c0" / "t1.nii.gz").read_bytes())
    (split / "c0" / "flair.nii.gz").write_bytes((split / "c0" / "t1.nii.gz").read_bytes())
    one = run_package(pkg, split / "c0", tmp_path / "one")
    assert one.ok, one.error
    assert (tmp_path / "one" / "c0.txt").is_file()
    stdout = next((tmp_path / "one" / ".neurofm" / "logs").glob("*.stdout.log")).read_text()
    assert 'SEEN ["c0", "c0/t1.nii.gz", "c0/t2.nii.gz"]' in stdout
    other = tmp_path / "data" / "test_siteB"
    age_case(other / "c0", seed=7)
    (other / "labels.csv").write_text("case,site,age\nc0,B,70\n")
    res = run_package(pkg, tmp_path / "data", tmp_path / "all")
    assert res.ok, res.error
    assert sorted(
        p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.txt")
    ) == [
        "test/c0.txt",
        "test/c1.txt",
        "test/c2.txt",
        "test_siteB/c0.txt",
    ]
    got = float((tmp_path / "all" / "test_siteB" / "c0.txt").read_text())
    assert got == pytest.approx(_mean_t1(other / "c0"), abs=1e-5)


def test_missing_sequence_is_named(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, AGE_SCRIPT)
    case = write_case(tmp_path / "case9", ("t1",), 0)
    with pytest.raises(NeuroFMError, match=r"case9.*missing required sequence.*t2"):
        run_package(pkg, case, tmp_path / "out")


def _lingering(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_hanging_package_is_killed_with_its_group(
    tmp_path: Path, split: Path, earlier: Callable[[], None]
) -> None:
    marker = f"hang-{uuid.uuid4().hex}"
    hang = f"""
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # must be killed, not asked
    sleep = "import os, time; os.setsid(); time.sleep(300)"
    subprocess.Popen([sys.executable, "-c", sleep, "{marker}"])
    subprocess.Popen([sys.executable, "-c", sleep.replace("os.setsid(); ", ""), "{marker}"])
    time.sleep(300)
    """
    pkg = make_package(tmp_path, hang, timeout_s=3)
    t0 = time.monotonic()
    report = run_package(pkg, split / "c0", tmp_path / "out")
    elapsed = time.monotonic() - t0
    assert not report.ok
    assert "timed out after 3 s; its process group was killed" in (report.error or "")
    assert elapsed < 3 + 5
    time.sleep(0.3)
    if ISOLATION != "none":  # a setsid()'d grandchild dies with the PID namespace
        assert _lingering(marker) == []
    else:
        for pid in _lingering(marker):
            os.kill(pid, 9)
    earlier()
    assert not (tmp_path / "out" / "c0.txt").exists()


@needs_netns
def test_network_is_unreachable(tmp_path: Path, split: Path, earlier: Callable[[], None]) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    net = """
    import argparse, socket
    p = argparse.ArgumentParser(); p.add_argument("--port", type=int)
    a, _ = p.parse_known_args()
    for host, port in (("127.0.0.1", a.port), ("1.1.1.1", 53)):
        s = socket.create_connection((host, port), timeout=3)
    """
    pkg = make_package(tmp_path, AGE_SCRIPT)
    (pkg / "predict.py").write_text(textwrap.dedent(net) + AGE_SCRIPT)
    manifest = yaml.safe_load((pkg / "manifest.yaml").read_text())
    manifest["runtime"]["entrypoint"] += ["--port", str(port)]
    dump_manifest(parse_manifest(manifest), pkg)
    seal_package(pkg, make_reference=False)
    report = run_package(pkg, split / "c0", tmp_path / "out")
    assert not report.ok
    assert "exited with code 1" in (report.error or "")
    assert "Connection refused" in (report.error or "") or "unreachable" in (report.error or "")
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing ever connected to the host's localhost
    listener.close()
    earlier()


@needs_bwrap
def test_writes_outside_do_not_land(
    tmp_path: Path, split: Path, earlier: Callable[[], None]
) -> None:
    out = tmp_path / "out"
    escape = Path(f"/tmp/escape-{uuid.uuid4().hex}")
    evil = f"""
    import pathlib
    for target in ["{out}/planted.txt", "{escape}", "{split}/c0/t1.nii.gz",
                   "{tmp_path}/planted.txt"]:
        try:
            pathlib.Path(target).write_text("x")
        except OSError:
            pass
    """
    pkg = make_package(tmp_path, AGE_SCRIPT)
    pkg_file = pkg / "predict.py"
    extra = textwrap.dedent(
        """
        try:
            pathlib.Path(__file__).write_text("pwned")
        except OSError:
            pass
        for case in sorted(pathlib.Path(a.input).iterdir()):
            (pathlib.Path(a.output) / "undeclared.sh").write_text("rm -rf /")
            try:
                (case / "t1.nii.gz").write_bytes(b"corrupted")
            except OSError:
                pass
        """
    )
    pkg_file.write_text(AGE_SCRIPT + textwrap.dedent(evil) + extra)
    seal_package(pkg, make_reference=False)
    before = (split / "c0" / "t1.nii.gz").read_bytes()
    script_before = pkg_file.read_text()
    report = run_package(pkg, split / "c0", out)
    assert report.ok, report.error  # the valid output is still collected
    assert (out / "c0.txt").is_file()
    assert not escape.exists()
    assert not (out / "planted.txt").exists()
    assert not (tmp_path / "planted.txt").exists()
    assert not (out / "undeclared.sh").exists()
    assert (split / "c0" / "t1.nii.gz").read_bytes() == before
    assert pkg_file.read_text() == script_before
    earlier()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('"hello world"', "output is not one number: 'hello world'"),
        ('"nan"', "output nan is not finite"),
        ('"130.5"', "output 130.5 outside the allowed range [0, 120]"),
    ],
)
def test_garbage_output_is_rejected(
    tmp_path: Path, split: Path, earlier: Callable[[], None], body: str, message: str
) -> None:
    garbage = (
        PRELUDE
        + f"""
print("garbage on stdout \\x00\\x01")
for case in cases:
    (out / f"{{case.name}}.txt").write_text({body})
"""
    )
    pkg = make_package(tmp_path, garbage)
    report = run_package(pkg, split, tmp_path / "out")
    assert not report.ok
    assert f"output rejected: case c0: {message}" in (report.error or "")
    assert "(and 2 more case(s))" in (report.error or "")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.txt")) == ["old_case.txt"]
    earlier()


def test_missing_output_and_bad_masks_are_rejected(tmp_path: Path) -> None:
    nothing = """
    print("did nothing")
    """
    pkg = make_package(tmp_path, nothing)
    report = run_package(pkg, age_case(tmp_path / "c0"), tmp_path / "out")
    assert "case c0: expected output file was not written" in (report.error or "")
    wrong_grid = MASK_SCRIPT.replace("[int(v > mean) for v in x]", "[0] * (len(x) - 30)")
    wrong_grid = wrong_grid.replace(
        'h[70:74] = struct.pack("<hh", 2, 8)',
        'h[70:74] = struct.pack("<hh", 2, 8); h[46:48] = struct.pack("<h", 3)',
    )
    pkg = make_package(tmp_path, wrong_grid, task="meningioma")
    report = run_package(pkg, mening_case(tmp_path / "m0"), tmp_path / "out2")
    assert "mask shape (6, 5, 3) differs from the input (6, 5, 4)" in (report.error or "")
    labels = MASK_SCRIPT.replace("int(v > mean)", "3 * int(v > mean)")
    pkg = make_package(tmp_path, labels, task="meningioma")
    report = run_package(pkg, mening_case(tmp_path / "m0"), tmp_path / "out3")
    assert "outside the declared labels" in (report.error or "")


def test_mask_package_runs(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, MASK_SCRIPT, task="meningioma", make_reference=True)
    case = mening_case(tmp_path / "m0", seed=3)
    report = run_package(pkg, case, tmp_path / "out")
    assert report.ok, report.error
    got = nib.load(str(tmp_path / "out" / "m0.nii.gz"))
    flair = np.asarray(nib.load(str(case / "flair.nii.gz")).dataobj)
    np.testing.assert_array_equal(np.asarray(got.dataobj), flair > flair.mean())
    np.testing.assert_allclose(got.affine, AFFINE)


def test_altered_weights_refused_before_running(
    tmp_path: Path, split: Path, earlier: Callable[[], None]
) -> None:
    ran = tmp_path / f"ran-{uuid.uuid4().hex}"
    script = AGE_SCRIPT + f'\npathlib.Path("{ran}").write_text("ran")\n'
    pkg = make_package(tmp_path, script)
    assert run_package(pkg, split / "c0", tmp_path / "first", isolation="none").ok
    assert ran.exists()
    ran.unlink()
    (pkg / "weights.bin").write_bytes(b"\x00\x02" * 64)
    with pytest.raises(
        NeuroFMError, match=r"integrity check failed, refusing to run: weights\.bin: sha256"
    ):
        run_package(pkg, split / "c0", tmp_path / "out", isolation="none")
    (pkg / "weights.bin").write_bytes(b"\x00\x01" * 64)
    (pkg / "sitecustomize.py").write_text("print('injected')")
    with pytest.raises(NeuroFMError, match=r"sitecustomize\.py: not listed in artifacts"):
        run_package(pkg, split / "c0", tmp_path / "out", isolation="none")
    assert not ran.exists()
    earlier()


def test_memory_limit(tmp_path: Path, split: Path) -> None:
    hog = """
    x = bytearray(2_000_000_000)
    """
    pkg = make_package(tmp_path, AGE_SCRIPT, memory_mb=600)
    (pkg / "predict.py").write_text(textwrap.dedent(hog))
    seal_package(pkg, make_reference=False)
    report = run_package(pkg, split / "c0", tmp_path / "out")
    assert "ran out of its memory limit" in (report.error or "")


def test_find_cases_rejects_what_is_not_data(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, AGE_SCRIPT)
    from neurofm.packages.manifest import load_manifest

    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuroFMError, match="no case here"):
        find_cases(load_manifest(pkg), tmp_path / "empty")


def _dicom_study(
    root: Path, series: dict[str, tuple[str, dict[str, Any]]], seed: int, top: float = 1000
) -> None:
    """One study of single-frame MR series on a flipped, anisotropic grid (RAS affine)."""
    from pydicom.uid import generate_uid

    from neurofm.io.dicom import write_dicom_series

    affine = np.array([[-1.0, 0, 0, 20], [0, 1.2, 0, -8], [0, 0, 2.5, 4], [0, 0, 0, 1]])
    rng = np.random.default_rng(seed)
    common = {"study_uid": generate_uid(), "frame_of_reference_uid": generate_uid()}
    for i, (folder, (description, extra)) in enumerate(series.items(), start=1):
        data = np.rint(rng.uniform(0, top, (7, 6, 5)))
        write_dicom_series(
            data, affine, root / folder, description, series_number=i, patient_id="P1",
            extra=extra, **common,
        )  # fmt: skip


def _seg_back_to_ras(seg_path: Path, source_files: list[Path], scratch: Path) -> np.ndarray:
    """Decode the SEG frame by source image, write the frames as a copy of the source series and
    read that back with neurofm's DICOM reader: the mask on the RAS grid, independently."""
    import highdicom as hd
    import pydicom

    from neurofm.io.dicom import read_dicom_series

    seg = hd.seg.segread(seg_path)
    sources = [pydicom.dcmread(f) for f in source_files]
    frames = seg.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in sources], segment_numbers=[1]
    )[..., 0]
    scratch.mkdir()
    for i, (ds, frame) in enumerate(zip(sources, frames, strict=True)):
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        dtype = np.int16 if ds.PixelRepresentation == 1 else np.uint16
        ds.PixelData = frame.astype(dtype).tobytes()
        ds.save_as(scratch / f"{i}.dcm")
    data, _ = read_dicom_series(sorted(scratch.glob("*.dcm")))
    return data


def test_dicom_study_in_seg_and_json_out(tmp_path: Path) -> None:
    import json as _json

    from neurofm.io.dicom import read_dicom_series
    from neurofm.io.nifti import load_nifti

    study = tmp_path / "study"
    _dicom_study(
        study,
        {
            "s1": ("ep2d_diff_trace", {"DiffusionBValue": 1000}),
            "s2": ("AX FLAIR", {}),
            "s3": ("SWI_Images", {}),
        },
        seed=5,
    )
    pkg = make_package(tmp_path, MASK_SCRIPT, task="meningioma")
    out = tmp_path / "out"
    report = run_package(pkg, study, out)
    assert report.ok, report.error
    (nii,) = out.glob("*.nii.gz")
    case = nii.name.removesuffix(".nii.gz")
    assert case.startswith("P1_")
    mask, affine = load_nifti(nii)
    flair, flair_affine = read_dicom_series(sorted((study / "s2").glob("*.dcm")))
    np.testing.assert_array_equal(mask, flair > flair.mean())
    np.testing.assert_allclose(affine, flair_affine, atol=1e-4)
    assert 0 < mask.sum() < mask.size
    info = _json.loads((out / f"{case}.json").read_text())
    assert info["voxels"] == int(mask.sum())
    assert info["package"]["id"] == "fake"
    ref_uid = info["referenced_series_instance_uid"]
    assert info["source_series"]["dwi_b1000"]["series_instance_uid"] == ref_uid
    ref_files = sorted((study / "s1").glob("*.dcm"))
    back = _seg_back_to_ras(out / f"{case}.seg.dcm", ref_files, tmp_path / "rt")
    np.testing.assert_array_equal(back, mask)


def test_dicom_study_number_output_json(tmp_path: Path) -> None:
    import json as _json

    study = tmp_path / "study"
    _dicom_study(study, {"a": ("T1 MPRAGE", {}), "b": ("T2 TSE", {})}, seed=1, top=100)
    pkg = make_package(tmp_path, AGE_SCRIPT)
    out = tmp_path / "out"
    assert run_package(pkg, study, out).ok
    (txt,) = out.glob("*.txt")
    info = _json.loads(txt.with_suffix(".json").read_text())
    assert info["value"] == pytest.approx(float(txt.read_text()))
    assert info["task"] == "brain_age"
    assert set(info["source_series"]) == {"t1", "t2"}


def test_verify_passes_then_prints_a_diff_on_mismatch(tmp_path: Path) -> None:
    from neurofm.packages.verify import verify_package

    pkg = make_package(tmp_path, AGE_SCRIPT, make_reference=True)
    good = verify_package(pkg)
    assert good.ok
    assert good.lines[0] == "ok: 5 file(s) match their sha256"
    assert good.lines[1].startswith("ok: value ")
    ref = float((pkg / "selftest/reference.txt").read_text())
    (pkg / "selftest/reference.txt").write_text(f"{ref + 0.5:.6f}\n")
    seal_package(pkg, make_reference=False)  # a reference that the code does not reproduce
    bad = verify_package(pkg)
    assert not bad.ok
    assert bad.lines[1] == (
        f"MISMATCH: value {ref:.6g} vs reference {ref + 0.5:.6g} (|diff| 0.5, allowed 0.001)"
    )
    masks = make_package(tmp_path, MASK_SCRIPT, task="meningioma", make_reference=True)
    assert verify_package(masks).ok
    shifted = MASK_SCRIPT.replace("int(v > mean)", "int(v > 0.8 * mean)")
    (masks / "predict.py").write_text(shifted)
    seal_package(masks, make_reference=False)
    diff = verify_package(masks)
    assert not diff.ok
    assert re.match(
        r"MISMATCH: label 1 \(meningioma\) Dice 0\.\d{4} \(min 0\.99; \d+ voxels vs reference \d+",
        diff.lines[1],
    )
    (masks / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(NeuroFMError, match="weights.bin: sha256"):
        verify_package(masks)


def test_cli_one_line_errors_and_exit_codes(
    tmp_path: Path, split: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from neurofm.cli import main

    def call(*args: str | Path) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    schema = tmp_path / "schema.json"
    assert call("package", "schema", "--out", schema)[0] == 0
    assert json.loads(schema.read_text())["title"] == "neurofm model package manifest"
    pkg = make_package(tmp_path, AGE_SCRIPT, make_reference=True)
    code, out, _ = call("package", "verify", pkg)
    assert code == 0 and "verified" in out
    # then a hanging entry point under a 1 s limit (set only now: a loaded machine can take
    # more than a second to start the working script and make its reference)
    manifest = load_manifest(pkg)
    runtime = manifest.runtime.model_copy(update={"timeout_s": 1})
    dump_manifest(manifest.model_copy(update={"runtime": runtime}), pkg)
    hang = PRELUDE + "import time\ntime.sleep(60)\n"
    (pkg / "predict.py").write_text(hang)
    seal_package(pkg, make_reference=False)
    code, _, err = call("package", "run", pkg, "--input", split / "c0", "--output", tmp_path / "o")
    assert code == 2
    assert err.count("\n") == 1  # one line
    assert "package fake timed out after 1 s; its process group was killed" in err
    code, out, _ = call("package", "verify", pkg)
    assert code == 1
    assert "FAILED: self-test did not produce a valid output" in out
