"""A full disk, for real (a small tmpfs): one line naming the folder, exit 2, nothing half-written,
and the same command completes once space is freed. Where tmpfs cannot be mounted (not root),
the real tests skip and the injected ones still check the write layer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurofm.atomic import DiskFull, disk_full_guard, is_disk_full
from neurofm.cli import main
from neurofm.data.cache import PreparedDataset
from neurofm.errors import NeuroFMError
from neurofm.locks import lock_path


def _case(folder: Path, seqs: list[str], rng: np.random.Generator, shape: tuple[int, ...]) -> None:
    """A head-like random volume per sequence (a ball of gamma noise), as NIfTI."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    for s in seqs:
        head = ((grid**2).sum(0) < 0.6) * rng.gamma(8.0, 12.0, shape)
        nib.save(nib.Nifti1Image(head.astype(np.float32), affine), str(folder / f"{s}.nii.gz"))


FAST = ["--steps", "3", "--batch-size", "2", "--workers", "0", "--threads", "1"]


class SmallDisk:
    """A tmpfs of a given size; :meth:`grow` frees space the way a user would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected tests cover the layer")
    try:
        yield SmallDisk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six pretraining sessions; prepared at 2 mm they take about 2.6 MB (0.42 MB each)."""
    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("src")
    for i in range(6):
        _case(src / f"s{i:02d}" / "ses1", ["t1", "t2", "flair"], rng, shape=(48, 48, 40))
    return src


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip()


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def test_prepare_on_full_disk_then_same_command_completes(
    source: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = small_disk.path / "prepared"
    code, err = _cli(capsys, "prepare", source, dst, "--spacing", "2")
    assert code == 2
    expected = f"error: {dst / 'pretrain'}: disk full (no space left on device); free space and "
    assert err == expected + "run the same command again", err
    sub = dst / "pretrain"
    done = [p for p in sub.iterdir() if (p / "meta.json").is_file()]
    assert 0 < len(done) < 6  # some cases fitted, not all
    assert _leftovers(dst) == [] and not (sub / "manifest.json").exists()
    assert not lock_path(dst).exists()
    small_disk.grow("16m")
    code, err = _cli(capsys, "prepare", source, dst, "--spacing", "2")
    assert code == 0, err
    assert len(PreparedDataset(sub)) == 6 and _leftovers(dst) == []


@pytest.mark.slow  # two pretraining runs (15 s idle, 90 s on the loaded shared machine)
def test_checkpoint_on_full_disk_then_resume_completes(
    source: Path, tmp_path: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(1)
    prepared = tmp_path / "prepared"
    assert _cli(capsys, "prepare", source, prepared, "--spacing", "4")[0] == 0
    out = small_disk.path / "run"  # 1 MB: the config fits, the 1.3 MB of weights do not
    code, err = _cli(capsys, "pretrain", prepared, "--out", out, *FAST)
    assert code == 2
    assert err.startswith(f"error: {out}") and "disk full (no space left on device)" in err, err
    assert err.endswith("free space and run again with --resume") and "\n" not in err
    assert _leftovers(out) == [] and not lock_path(out).exists()
    small_disk.grow("32m")
    code, err = _cli(capsys, "pretrain", prepared, "--out", out, *FAST, "--resume")
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and _leftovers(out) == []


def test_blosc2_runtime_error_on_a_full_disk_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """blosc2 reports a full disk as a bare RuntimeError; judged by the free space left."""
    monkeypatch.setattr("neurofm.atomic.free_bytes", lambda path: 4096)
    with pytest.raises(DiskFull, match=f"^{tmp_path}: disk full"), disk_full_guard(tmp_path):
        raise RuntimeError("Error while setting the slice")
    monkeypatch.setattr("neurofm.atomic.free_bytes", lambda path: 10**12)
    with pytest.raises(RuntimeError, match="slice"), disk_full_guard(tmp_path):
        raise RuntimeError("Error while setting the slice")  # plenty of space: not a full disk


def test_disk_full_recognised_by_errno_and_message() -> None:
    assert is_disk_full(OSError(28, os.strerror(28)))
    assert is_disk_full(OSError(122, os.strerror(122)))  # EDQUOT: over quota
    assert is_disk_full(Exception("I/O error: No space left on device (os error 28)"))
    assert not is_disk_full(OSError(13, os.strerror(13)))
    assert not is_disk_full(RuntimeError("shape mismatch"))  # no folder to check: not guessed


def test_cli_maps_unguarded_enospc_to_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, os.strerror(28), str(tmp_path / "somewhere" / "file.txt"))

    monkeypatch.setattr("neurofm.cli.cmd_prepare.parse_spacing", full)
    code, err = _cli(capsys, "prepare", tmp_path, tmp_path / "dst")
    assert code == 2
    expected = f"error: {tmp_path / 'somewhere'}: disk full (no space left on device); free "
    assert err == expected + "space and run again", err


@pytest.mark.slow  # the tiny benchmark, a finetune and two predicts
def test_predict_on_full_disk_adds_nothing_then_same_command_completes(
    tiny_prepared: Path,
    tiny_benchmark: Path,
    tmp_path: Path,
    small_disk: SmallDisk,
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch.set_num_threads(1)
    run = tmp_path / "run"
    args = ["--task", "infarct", "--out", run, *FAST, "--input-size", "32"]
    assert _cli(capsys, "finetune", tiny_prepared, *args)[0] == 0
    split = tiny_benchmark / "infarct" / "test"
    cases = sorted(p.name for p in split.iterdir() if p.is_dir())
    assert len(cases) > 3
    out = small_disk.path / "preds"
    st = os.statvfs(small_disk.path)
    filler = small_disk.path / "filler"  # leaves room for the lock file and two predictions
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 3 * st.f_frsize))
    predict = ["predict", "--task", "infarct", "--model", run, "--input", split, "--output", out]
    code, err = _cli(capsys, *predict)
    assert code == 2
    expected = f"error: {out}: disk full (no space left on device); free space and run the same "
    assert err == expected + "command again", err
    assert sorted(p.name for p in out.iterdir()) == []  # this run's predictions were rolled back
    assert not lock_path(out).exists()
    filler.unlink()
    code, err = _cli(capsys, *predict)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.txt" for c in cases]


@pytest.mark.slow  # two report builds: about a minute on a loaded 2-core machine
def test_report_on_full_disk_leaves_nothing_then_same_command_completes(
    tmp_path: Path, small_disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_report import write_results_folder

    run = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("brain_age",))
    out = small_disk.path / "report"
    st = os.statvfs(small_disk.path)
    filler = small_disk.path / "filler"  # 16 kB left: the report's first files fit, not all
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 4 * st.f_frsize))
    args = ["report", run / "results", "--out", out, "--n-boot", "100"]
    code, err = _cli(capsys, *args)
    assert code == 2
    expected = f"error: {out}: disk full (no space left on device); free space and run the same "
    assert err == expected + "command again", err
    assert sorted(p.name for p in small_disk.path.iterdir()) == ["filler"]  # no half report
    filler.unlink()
    small_disk.grow("64m")  # a whole report needs more than the 1 MB tmpfs
    code, err = _cli(capsys, *args)
    assert code == 0, err
    assert (out / "index.html").is_file()


def test_disk_full_survives_a_worker_process(tmp_path: Path) -> None:
    """prepare's workers send errors back pickled; the one line must arrive intact."""
    import pickle

    back = pickle.loads(pickle.dumps(DiskFull(tmp_path)))
    assert isinstance(back, NeuroFMError) and str(back) == str(DiskFull(tmp_path))
