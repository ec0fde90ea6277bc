"""`neurofm prepare`: layouts in, mirrored cache out; idempotent, resumable, atomic, strict."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurofm.cli import main
from neurofm.data.cache import PreparedDataset
from neurofm.data.prepare import prepare
from neurofm.data.preprocess import PreprocessParams, restore_geometry
from neurofm.study.recipe import load_recipe

AFFINE = np.diag([-2.0, 2.0, 2.5, 1.0])  # LAS on disk: prepare must restore it exactly
SHAPE = (24, 26, 20)


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return path


def _head(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    return ((g**2).sum(0) < 0.6) * rng.gamma(8.0, 12.0, shape)


def _lesion(shape=SHAPE) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[8:14, 10:15, 7:12] = 1
    return m


def _case(folder: Path, seqs: list[str], rng, mask: bool = False, shape=SHAPE) -> None:
    for s in seqs:
        _save(folder / f"{s}.nii.gz", _head(rng, shape))
    if mask:
        _save(folder / "label.nii.gz", _lesion(shape))


def make_root(root: Path, rng: np.random.Generator) -> Path:
    """A tiny benchmark root: pretrain sessions, meningioma train (masks), brain_age train."""
    _case(root / "pretrain/s1/ses1", ["t1", "flair"], rng)
    _case(root / "pretrain/s2/ses1", ["t2"], rng)
    men = root / "meningioma/train"
    for c in ("m1", "m2"):
        _case(men / c, ["dwi_b1000", "flair", "swi"], rng, mask=True)
    (men / "labels.csv").write_text("case,site\nm1,A\nm2,B\n")
    age = root / "brain_age/train"
    _case(age / "b1", ["t1", "t2"], rng)
    (age / "labels.csv").write_text("case,site,age\nb1,A,63.5\n")
    return root


def _snapshot(dst: Path) -> dict[str, bytes]:
    return {str(p.relative_to(dst)): p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}


P = PreprocessParams(spacing=(3.0, 3.0, 3.0), margin_mm=3.0)


def test_mirrors_task_root_with_targets_and_exact_geometry(tmp_path: Path, rng) -> None:
    src = make_root(tmp_path / "src", rng)
    reports = prepare(src, tmp_path / "dst", params=P, show_progress=False)
    assert [(r.name, r.cases, r.prepared) for r in reports] == [
        ("pretrain", 2, 2),
        ("brain_age/train", 1, 1),
        ("meningioma/train", 2, 2),
    ]
    pre = PreparedDataset(tmp_path / "dst/pretrain")
    assert [(c.case_id, c.channels) for c in pre.cases] == [
        ("s1_ses1", ("t1", "flair")),
        ("s2_ses1", ("t2",)),
    ]
    age = PreparedDataset(tmp_path / "dst/brain_age/train")
    assert age.task == "brain_age" and age.cases[0].age == 63.5 and age.cases[0].site == "A"
    men = PreparedDataset(tmp_path / "dst/meningioma/train")
    c = men.case("m2")
    assert c.site == "B" and c.has_mask and c.channels == ("dwi_b1000", "flair", "swi")
    assert c.spacing == pytest.approx((3.0, 3.0, 3.0)) and len(c.fg_points) > 0
    assert all(men.read_mask("m2")[p] == 1 for p in c.fg_points)
    manifest = json.loads((tmp_path / "dst/meningioma/train/manifest.json").read_text())
    assert manifest["params"]["spacing"] == [3.0, 3.0, 3.0]
    assert len(manifest["cases"][0]["fingerprint"]) == 64
    # the prepared mask maps back onto the LAS source file: same shape, affine, voxels
    restored, aff = restore_geometry(men.read_mask("m2"), c.geometry, order=0)
    src_img = nib.load(src / "meningioma/train/m2/label.nii.gz")
    assert np.array_equal(aff, src_img.affine) and restored.shape == src_img.shape
    ref = np.asarray(src_img.dataobj) > 0
    dice = 2 * (ref & (restored > 0)).sum() / (ref.sum() + (restored > 0).sum())
    assert dice > 0.75  # 6-voxel lesion at 2 mm through a 3 mm grid


def test_idempotent_and_redoes_only_changed_cases(tmp_path: Path, rng) -> None:
    src = make_root(tmp_path / "src", rng)
    dst = tmp_path / "dst"
    prepare(src, dst, params=P, show_progress=False)
    before = _snapshot(dst)
    reports = prepare(src, dst, params=P, show_progress=False)
    assert sum(r.prepared for r in reports) == 0
    assert _snapshot(dst) == before
    # touching a file without changing it re-hashes but redoes nothing
    os.utime(src / "pretrain/s2/ses1/t2.nii.gz", ns=(1, 1))
    assert sum(r.prepared for r in prepare(src, dst, params=P, show_progress=False)) == 0
    # new content and a new label each redo exactly their case
    _save(src / "pretrain/s2/ses1/t2.nii.gz", _head(rng))
    (src / "brain_age/train/labels.csv").write_text("case,site,age\nb1,A,70\n")
    reports = prepare(src, dst, params=P, show_progress=False)
    assert {r.name: r.prepared for r in reports} == {
        "pretrain": 1,
        "brain_age/train": 1,
        "meningioma/train": 0,
    }
    assert PreparedDataset(dst / "brain_age/train").cases[0].age == 70.0
    after = _snapshot(dst)
    assert after["pretrain/s1_ses1/image.b2nd"] == before["pretrain/s1_ses1/image.b2nd"]
    assert after["pretrain/s2_ses1/image.b2nd"] != before["pretrain/s2_ses1/image.b2nd"]
    # other parameters change every fingerprint
    other = PreprocessParams(spacing=(4.0, 4.0, 4.0))
    assert sum(r.prepared for r in prepare(src, dst, params=other, show_progress=False)) == 5


def _bad_cases():
    def corrupt(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "flair", "swi"], rng, mask=True)
        raw = (d / "flair.nii.gz").read_bytes()
        (d / "flair.nii.gz").write_bytes(raw[: len(raw) // 2])
        return "flair.nii.gz: corrupt or truncated"

    def garbage(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "flair", "swi"], rng, mask=True)
        (d / "swi.nii.gz").write_bytes(gzip.compress(b"definitely not nifti" * 30))
        return "swi.nii.gz: "

    def four_d(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        _save(d / "flair.nii.gz", np.ones((*SHAPE, 2)))
        return "flair.nii.gz: 4D image"

    def two_d(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        _save(d / "flair.nii.gz", np.ones(SHAPE[:2]))
        return "flair.nii.gz: unreadable NIfTI (OrientationError"

    def nan(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "flair", "swi"], rng, mask=True)
        x = _head(rng)
        x[3, 3, 3] = np.inf
        _save(d / "swi.nii.gz", x)
        return "swi.nii.gz: 1 NaN/Inf voxels"

    def zero_dim(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        _save(d / "flair.nii.gz", np.ones((4, 0, 4)))
        return "flair.nii.gz: zero-size"

    def shape_mismatch(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        _save(d / "flair.nii.gz", _head(rng, (24, 26, 21)))
        return "flair.nii.gz: shape"

    def affine_mismatch(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        _save(d / "flair.nii.gz", _head(rng), np.diag([2.0, 2.0, 3.0, 1.0]))
        return "flair.nii.gz: affine differs"

    def mask_mismatch(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "flair", "swi"], rng)
        _save(d / "label.nii.gz", _lesion((24, 26, 18)))
        return "label.nii.gz: mask shape"

    def missing_seq(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "swi"], rng, mask=True)
        return "missing required sequence(s) ['flair']"

    def unknown_name(d: Path, rng) -> str:
        _case(d, ["dwi_b1000", "flair", "swi"], rng, mask=True)
        _save(d / "perfusion.nii.gz", _head(rng))
        return "perfusion.nii.gz: unknown sequence name"

    return [corrupt, garbage, four_d, two_d, nan, zero_dim, shape_mismatch, affine_mismatch,
            mask_mismatch, missing_seq, unknown_name]  # fmt: skip


@pytest.mark.parametrize("make_bad", _bad_cases(), ids=lambda f: f.__name__)
def test_bad_case_fails_in_one_line_and_loses_nothing(
    tmp_path: Path, rng, capsys, make_bad
) -> None:
    src = make_root(tmp_path / "src", rng)
    dst = tmp_path / "dst"
    prepare(src, dst, params=PreprocessParams(spacing=(3.0, 3.0, 3.0)), show_progress=False)
    before = _snapshot(dst)
    expected = make_bad(src / "meningioma/train/m3", rng)
    with (src / "meningioma/train/labels.csv").open("a") as fh:
        fh.write("m3,C\n")
    with pytest.raises(SystemExit) as info:
        main(["prepare", str(src), str(dst), "--spacing", "3"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err, err
    assert _snapshot(dst) == before


def test_unreadable_dicom_is_named(tmp_path: Path, rng) -> None:
    from neurofm.io.dicom import write_dicom_series

    src = tmp_path / "dicom"
    write_dicom_series(_head(rng), np.diag([2.0, 2.0, 2.5, 1.0]), src / "p1", "T1 MPRAGE")
    files = sorted((src / "p1").iterdir())
    raw = files[3].read_bytes()
    files[3].write_bytes(raw[: len(raw) - 500])  # pixel data cut short
    with pytest.raises(Exception, match=files[3].name) as info:
        prepare(src, tmp_path / "dst", params=P, show_progress=False)
    assert type(info.value).__name__ == "NeuroFMError"
    assert not list((tmp_path / "dst").rglob("meta.json"))


def test_discovered_layout_and_parallel_workers(tmp_path: Path, rng) -> None:
    src = tmp_path / "bids"
    for sub in ("sub-01", "sub-02", "sub-03"):
        _save(src / sub / "ses-1/anat" / f"{sub}_ses-1_T1w.nii.gz", _head(rng))
        _save(src / sub / "ses-1/anat" / f"{sub}_ses-1_FLAIR.nii.gz", _head(rng))
    reports = prepare(src, tmp_path / "dst", params=P, workers=2, show_progress=False)
    assert [(r.name, r.cases, r.prepared) for r in reports] == [("pretrain", 3, 3)]
    ds = PreparedDataset(tmp_path / "dst/pretrain")
    assert [c.case_id for c in ds.cases] == ["sub-01_ses-1", "sub-02_ses-1", "sub-03_ses-1"]
    assert ds.read("sub-02_ses-1", ["flair"]).shape[0] == 1
    # parallel and serial runs give identical caches
    prepare(src, tmp_path / "serial", params=P, subset="pretrain", show_progress=False)
    a, b = _snapshot(tmp_path / "dst"), _snapshot(tmp_path / "serial")
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a if k.endswith(".b2nd"))


def _published(case: Path) -> bool:
    """A finished case folder (a ``.tmp-`` folder holds meta.json before it is published)."""
    return ".tmp-" not in case.name and (case / "meta.json").is_file()


def test_kill9_midway_then_resume(tmp_path: Path, rng) -> None:
    src = tmp_path / "src"
    n = 6
    for i in range(n):
        _case(src / f"s{i:02d}" / "ses1", ["t1", "t2", "flair"], rng, shape=(48, 48, 40))
    dst = tmp_path / "dst"
    params = PreprocessParams(spacing=(2.0, 2.0, 2.0))
    code = (
        "import sys; from neurofm.data.prepare import prepare; "
        "from neurofm.data.preprocess import PreprocessParams; "
        "prepare(sys.argv[1], sys.argv[2], params=PreprocessParams(spacing=(2.0, 2.0, 2.0)))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(src), str(dst)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sub = dst / "pretrain"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if sub.is_dir() and any(_published(p) for p in sub.iterdir()):
            break
        time.sleep(0.005)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [p for p in sub.iterdir() if _published(p)]
    assert 1 <= len(done) < n  # killed midway
    assert not (sub / "manifest.json").exists()
    for p in sub.iterdir():  # every case folder is complete; only .tmp- folders may be partial
        assert ".tmp-" in p.name or {"image.b2nd", "meta.json"} <= {f.name for f in p.iterdir()}
    reports = prepare(src, dst, params=params, show_progress=False)
    assert reports[0].cases == n and reports[0].reused == len(done)
    assert sorted(p.name for p in sub.iterdir()) == sorted(
        [f"s{i:02d}_ses1" for i in range(n)] + ["manifest.json"]
    )
    assert len(PreparedDataset(sub)) == n


def test_unpack_keeps_a_plain_copy_until_the_case_is_redone(tmp_path: Path, rng) -> None:
    src = make_root(tmp_path / "src", rng)
    dst = tmp_path / "dst"
    main(["prepare", str(src), str(dst), "--spacing", "2", "--unpack"])
    cases = sorted(dst.glob("*/*/meta.json")) + sorted(dst.glob("pretrain/*/meta.json"))
    assert cases
    for meta in cases:
        d = meta.parent
        assert (d / "image.npy").is_file()
        packed = PreparedDataset(d.parent, unpacked=False).read(d.name)
        assert np.array_equal(np.load(d / "image.npy"), packed)
        assert (d / "mask.b2nd").is_file() == (d / "mask.npy").is_file()
    copy = dst / "pretrain/s2_ses1/image.npy"
    stamp = copy.stat().st_mtime_ns
    main(["prepare", str(src), str(dst), "--spacing", "2", "--unpack"])  # nothing to do
    assert copy.stat().st_mtime_ns == stamp
    _save(src / "pretrain/s2/ses1/t2.nii.gz", _head(rng))
    main(["prepare", str(src), str(dst), "--spacing", "2"])  # redone without --unpack
    assert not copy.exists() and (dst / "pretrain/s1_ses1/image.npy").is_file()


def test_clip_option_reaches_the_manifest_and_a_bad_one_writes_nothing(
    tmp_path: Path, rng, capsys
) -> None:
    src = make_root(tmp_path / "src", rng)
    with pytest.raises(SystemExit) as info:
        main(["prepare", str(src), str(tmp_path / "bad"), "--spacing", "3", "--clip", "99,1"])
    assert info.value.code == 2 and not (tmp_path / "bad").exists()
    assert "--clip: need percentiles 0 <= LO < HI <= 100" in capsys.readouterr().err
    main(["prepare", str(src), str(tmp_path / "dst"), "--spacing", "3", "--clip", "0.5,99.5"])
    manifest = json.loads((tmp_path / "dst/brain_age/train/manifest.json").read_text())
    assert manifest["params"]["clip_percentiles"] == [0.5, 99.5]
    # the default is the default recipe's: nothing is clipped, the bounds are the head's extremes
    main(["prepare", str(src), str(tmp_path / "default"), "--spacing", "3"])
    manifest = json.loads((tmp_path / "default/brain_age/train/manifest.json").read_text())
    clip = tuple(manifest["params"]["clip_percentiles"])
    assert clip == load_recipe().clip_percentiles == PreprocessParams().clip_percentiles == (0, 100)
    clipped = PreparedDataset(tmp_path / "dst/brain_age/train").case("b1").norms
    full = PreparedDataset(tmp_path / "default/brain_age/train").case("b1").norms
    assert all(f.lo < c.lo and f.hi > c.hi for f, c in zip(full, clipped, strict=True))
