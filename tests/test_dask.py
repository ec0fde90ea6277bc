"""prepare/predict on dask.distributed: same bytes as the serial path, dead workers, bad cases,
an unreachable scheduler, and the planning dry run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from neurofm.cli import main
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError

P = PreprocessParams(spacing=(2.0, 2.0, 2.0))
N_CASES = 8


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


def _cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """Exit code and stderr; stdout is left in ``_LAST_OUT[0]``."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    _LAST_OUT[:] = [captured.out]
    return code, captured.err.strip()


_LAST_OUT: list[str] = [""]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain layout of N_CASES subjects, two small random sequences each."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("dask") / "src"
    for i in range(N_CASES):
        for seq in ("t1", "flair"):
            path = src / f"s{i:02d}" / f"{seq}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = rng.normal(100, 20, (20, 22, 18)).astype(np.float32)
            nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return src


@pytest.fixture(scope="module")
def serial(source: Path) -> Path:
    from neurofm.data.prepare import prepare

    dst = source.parent / "serial"
    prepare(source, dst, params=P, workers=1, show_progress=False)
    return dst


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two single-threaded worker processes; a case whose worker dies twice is given up."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as lc,
    ):
        yield lc.scheduler_address


class ExitOnCase(WorkerPlugin):
    """Kills the worker process (os._exit) when it starts the case; once, or every time."""

    def __init__(self, case: str, marker: Path | None) -> None:
        self.case, self.marker = case, marker

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        if finish != "executing" or f"-{self.case}-" not in str(key):
            return
        if self.marker is not None:
            if self.marker.exists():
                return
            self.marker.touch()
        os._exit(1)


@pytest.mark.slow  # a Dask cluster: 40-120 s on the shared 2-core machine
def test_prepare_on_local_cluster_is_byte_identical_and_idempotent(
    source: Path, serial: Path, tmp_path: Path
) -> None:
    from neurofm.data.prepare import prepare

    dst = tmp_path / "dask"
    reports = prepare(source, dst, params=P, workers=2, show_progress=False)
    assert [(r.cases, r.prepared) for r in reports] == [(N_CASES, N_CASES)]
    assert _files(dst) == _files(serial)
    again = prepare(source, dst, params=P, workers=2, show_progress=False)  # nothing to do
    assert [(r.prepared, r.reused) for r in again] == [(0, N_CASES)]


@pytest.mark.slow  # a Dask cluster: 40-120 s on the shared 2-core machine
def test_killed_worker_case_is_retried_and_complete(
    source: Path, serial: Path, tmp_path: Path, cluster: str
) -> None:
    from neurofm.data.prepare import prepare

    with Client(cluster) as client:
        client.register_plugin(ExitOnCase("s03", tmp_path / "died-once"), name="exit-once")
        try:
            dst = tmp_path / "dask"
            prepare(source, dst, params=P, scheduler=cluster, show_progress=False)
        finally:
            client.unregister_worker_plugin("exit-once")
    assert (tmp_path / "died-once").exists()  # the worker did die on that case
    assert _files(dst) == _files(serial) and _leftovers(dst) == []


@pytest.mark.slow  # a Dask cluster: 40-120 s on the shared 2-core machine
def test_case_whose_worker_always_dies_is_named(source: Path, tmp_path: Path, cluster: str) -> None:
    from neurofm.data.prepare import prepare

    dst = tmp_path / "dask"
    with Client(cluster) as client:
        client.register_plugin(ExitOnCase("s05", None), name="exit-always")
        try:
            with pytest.raises(NeuroFMError, match=r"case\(s\) failed: .*worker died") as info:
                prepare(source, dst, params=P, scheduler=cluster, show_progress=False)
        finally:
            client.unregister_worker_plugin("exit-always")
    done = sorted(p.parent.name for p in (dst / "pretrain").glob("*/meta.json"))
    # a case queued on the same dying worker may be given up too; every missing one is named
    missing = [f"s{i:02d}" for i in range(N_CASES) if f"s{i:02d}" not in done]
    assert "s05" in missing and len(missing) <= 3, (missing, str(info.value))
    assert all(f"{m}: " in str(info.value) for m in missing), str(info.value)
    assert not (dst / "pretrain" / "manifest.json").exists() and _leftovers(dst) == []


@pytest.mark.slow  # a Dask cluster: 40-120 s on the shared 2-core machine
def test_bad_case_default_finishes_others_fail_fast_stops(
    source: Path, tmp_path: Path, cluster: str
) -> None:
    import shutil

    from neurofm.data.prepare import prepare

    src = tmp_path / "src"
    shutil.copytree(source, src)
    bad = src / "s00" / "t1.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: the first case fails at once
    dst = tmp_path / "keep-going"
    with pytest.raises(NeuroFMError) as info:
        prepare(src, dst, params=P, scheduler=cluster, show_progress=False)
    assert str(bad) in str(info.value) and "s00" in str(info.value)
    assert len(list((dst / "pretrain").glob("*/meta.json"))) == N_CASES - 1
    assert not (dst / "pretrain" / "manifest.json").exists()
    fast = tmp_path / "fail-fast"  # how many cases it stops is timing: see the run_cases test
    with pytest.raises(NeuroFMError, match="s00"):
        prepare(src, fast, params=P, scheduler=cluster, fail_fast=True, show_progress=False)
    assert not (fast / "pretrain" / "manifest.json").exists() and _leftovers(fast) == []


def test_unreachable_scheduler_is_one_line_exit_2(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code, err = _cli(
        capsys, "prepare", source, tmp_path / "dst", "--scheduler", f"tcp://127.0.0.1:{port}"
    )
    assert time.monotonic() - start < 30  # 5 s connect timeout, plus a loaded machine
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(
        f"error: --scheduler: no Dask scheduler answers at 'tcp://127.0.0.1:{port}'"
    )
    assert not (tmp_path / "dst" / "pretrain").exists()


def _fomo_listing(root: Path, sessions: int) -> int:
    """Empty files in the FOMO60K layout (<dataset>/<subject>/<session>/<seq>.nii.gz)."""
    n = 0
    for i in range(sessions):
        folder = root / f"PT{i % 7:03d}_site" / f"sub_{i:05d}" / "ses_1"
        folder.mkdir(parents=True)
        for seq in ("t1", "t2", "flair", "dwi"):
            (folder / f"{seq}.nii.gz").touch()
            n += 1
    return n


def test_dry_run_over_a_listing_reads_no_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import nibabel as nib

    from neurofm.data import prepare as prep

    src = tmp_path / "fomo"
    assert _fomo_listing(src, 500) == 2000
    opened: list[object] = []
    monkeypatch.setattr(nib, "load", lambda *a, **k: opened.append(a))
    monkeypatch.setattr(prep, "_sha256", lambda p: opened.append(p))
    monkeypatch.setattr(prep, "load_session", lambda *a, **k: opened.append(a))
    code, err = _cli(capsys, "prepare", src, tmp_path / "dst", "--dry-run")
    out = _LAST_OUT[0]
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if "pretrain" in ln]
    assert len(rows) == 1, out
    assert [c.strip() for c in rows[0].split("│")[2:6]] == ["500", "500", "0", "0"]
    assert opened == [] and not (tmp_path / "dst").exists()


def test_dry_run_counts_unchanged_and_touched(source: Path, serial: Path) -> None:
    from neurofm.data.prepare import plan_run

    rows = plan_run(source, serial, P)
    assert [(r.cases, r.new, r.unchanged, r.recheck) for r in rows] == [(N_CASES, 0, N_CASES, 0)]
    f = source / "s02" / "t1.nii.gz"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        rows = plan_run(source, serial, P)
        assert [(r.unchanged, r.recheck) for r in rows] == [(N_CASES - 1, 1)]
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.slow  # a Dask cluster: 40-120 s on the shared 2-core machine
def test_fail_fast_starts_nothing_after_the_failure_and_waits_for_started_cases(
    cluster: str, tmp_path: Path
) -> None:
    """Seven cases of 3 s and one that fails at once, in an order Dask chooses. No case may
    start after the failure has had time to reach the client (2.5 s; without fail-fast the
    queue goes on), and Dask cannot stop a started case: each one that started has written its
    file before run_cases returns (the caller cleans up after it). CI once saw every tiny
    prepare case finish before the failure arrived, so this is tested with cases that take time."""
    from distributed import Client

    from neurofm.data.dask_runner import run_cases

    def case(name: str, folder: str) -> str:
        (Path(folder) / f"{name}.start").write_text(repr(time.time()))
        if name == "bad":
            raise NeuroFMError(name, "unreadable")
        time.sleep(3.0)
        out = Path(folder) / f"{name}.txt"
        out.write_text(name)
        return str(out)

    good = [f"g{i}" for i in range(7)]
    jobs = [(n, (n, str(tmp_path))) for n in ("bad", *good)]
    with Client(cluster) as client:
        _, failures = run_cases(client, case, jobs, fail_fast=True)  # results: whatever beat it
        started = {p.stem: float(p.read_text()) for p in tmp_path.glob("g*.start")}
        unwritten = [n for n in started if not (tmp_path / f"{n}.txt").exists()]
        time.sleep(3.5)  # a case queued behind the failure would have started by now
        late = {p.stem for p in tmp_path.glob("g*.start")} - set(started)
    assert [f.case for f in failures] == ["bad"]
    assert unwritten == [] and late == set()
    failed_at = float((tmp_path / "bad.start").read_text())
    assert all(t < failed_at + 2.5 for t in started.values()), (failed_at, started)


@pytest.mark.slow  # the tiny benchmark, a finetune and two predicts
def test_predict_on_cluster_is_byte_identical(
    tiny_prepared: Path,
    tiny_benchmark: Path,
    tmp_path: Path,
    cluster: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    import torch

    torch.set_num_threads(1)
    run = tmp_path / "run"
    fast = ["--steps", "3", "--batch-size", "2", "--workers", "0", "--threads", "1"]
    for task in ("infarct", "meningioma"):  # a number per case, and a mask per case
        args = ["--task", task, "--out", run / task, *fast, "--input-size", "32"]
        assert _cli(capsys, "finetune", tiny_prepared, *args)[0] == 0
        split = tiny_benchmark / task / "test"
        common = ["predict", "--task", task, "--model", run / task, "--input", split]
        assert _cli(capsys, *common, "--output", tmp_path / task / "serial")[0] == 0
        code, err = _cli(
            capsys, *common, "--output", tmp_path / task / "dask", "--scheduler", cluster
        )
        assert code == 0, err
        a, b = _files(tmp_path / task / "serial"), _files(tmp_path / task / "dask")
        assert len(a) == len([p for p in split.iterdir() if p.is_dir()]) > 0
        assert a == b
    # one corrupt case: named, the others written; with --fail-fast the run adds nothing
    split = tmp_path / "corrupt"
    shutil.copytree(tiny_benchmark / "infarct" / "test", split)
    cases = sorted(p for p in split.iterdir() if p.is_dir())
    image = sorted(cases[1].glob("*.nii.gz"))[0]
    image.write_bytes(image.read_bytes()[:100])
    common = ["predict", "--task", "infarct", "--model", run / "infarct", "--input", split]
    code, err = _cli(capsys, *common, "--output", tmp_path / "keep", "--scheduler", cluster)
    assert code == 2 and len(err.splitlines()) == 1 and cases[1].name in err, err
    written = sorted(p.name for p in (tmp_path / "keep").iterdir() if not p.name.startswith("."))
    assert written == sorted(f"{c.name}.txt" for c in cases if c != cases[1])
    fast = tmp_path / "fast"
    code, err = _cli(capsys, *common, "--output", fast, "--scheduler", cluster, "--fail-fast")
    assert code == 2 and cases[1].name in err, err
    assert not fast.exists() or [p for p in fast.iterdir() if not p.name.startswith(".")] == []


def test_two_local_clusters_at_once_do_not_warn_about_the_dashboard_port() -> None:
    import socket
    import warnings

    from neurofm.data.dask_runner import dask_client

    with socket.socket() as busy:  # stands for another local cluster holding the default port
        try:
            busy.bind(("127.0.0.1", 8787))
            busy.listen()
        except OSError:
            pass  # already held by something else: the same situation
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(1) as client:
                assert client.submit(sum, [1, 2]).result() == 3
    assert not [w for w in caught if "already in use" in str(w.message)]
