"""Ctrl-C and SIGTERM during long commands: exit 130/143 with one line, the folder's lock released,
finished work kept, the unfinished step removed, and the same command continues."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from neurofm.data.cache import PreparedDataset
from neurofm.data.prepare import prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.locks import lock_path
from neurofm.train.checkpoint import load_train_state

N_CASES = 30  # enough that a loaded machine cannot finish them all before the signal lands


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(1)
    src = tmp_path_factory.mktemp("src")
    shape = (64, 64, 48)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    for i in range(N_CASES):
        folder = src / f"s{i:02d}" / "ses1"
        folder.mkdir(parents=True)
        for seq in ("t1", "t2", "flair"):
            head = ((grid**2).sum(0) < 0.6) * rng.gamma(8.0, 12.0, shape)
            img = nib.Nifti1Image(head.astype(np.float32), np.diag([2.0, 2.0, 2.5, 1.0]))
            nib.save(img, str(folder / f"{seq}.nii.gz"))
    return src


def _start(*args: object) -> subprocess.Popen[str]:
    """The CLI in its own process group, as a shell would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "neurofm.cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a shell starts a foreground command with Ctrl-C at its default even if the shell itself
        # ignores it; an earlier in-process test may have left SIGINT ignored in this process,
        # and Python keeps ignoring a signal it inherits as ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    assert ready(), "timed out before the command got going"


def _last_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "━" not in ln]  # drop progress bars
    assert len(lines) == 1, err
    return lines[0]


def _leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.parametrize(
    ("sig", "code", "workers"),
    [(signal.SIGTERM, 143, 1), (signal.SIGINT, 130, 2)],
    ids=["sigterm", "ctrl-c-with-workers"],
)
def test_prepare_interrupted_then_same_command_continues(
    source: Path, tmp_path: Path, sig: signal.Signals, code: int, workers: int
) -> None:
    dst = tmp_path / "dst"
    sub = dst / "pretrain"
    args = ("prepare", source, dst, "--spacing", "2", "--workers", workers)
    proc = _start(*args)
    _wait_for(proc, lambda: sub.is_dir() and any(sub.glob("*/meta.json")))
    # Ctrl-C reaches the whole process group (workers too), like a terminal's; SIGTERM the parent
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    assert _last_line(proc) == (
        f"error: interrupted ({name}); finished work is kept, the unfinished step was removed"
    )
    done = sorted(p.parent.name for p in sub.glob("*/meta.json"))
    assert 1 <= len(done) < N_CASES, done
    assert _leftovers(dst) == [] and not (sub / "manifest.json").exists()
    assert not lock_path(dst).exists()
    reports = prepare(
        source, dst, params=PreprocessParams(spacing=(2.0, 2.0, 2.0)), show_progress=False
    )
    assert reports[0].reused == len(done) and reports[0].cases == N_CASES
    assert len(PreparedDataset(sub)) == N_CASES


@pytest.mark.slow
def test_pretrain_sigterm_keeps_last_checkpoint(source: Path, tmp_path: Path) -> None:
    prepared = tmp_path / "prepared"
    prepare(source, prepared, params=PreprocessParams(spacing=(4.0, 4.0, 4.0)), show_progress=False)
    out = tmp_path / "run"
    fast = ("--batch-size", "2", "--workers", "0", "--threads", "1", "--patch", "32")
    proc = _start("pretrain", prepared, "--out", out, "--steps", "100000", *fast)
    _wait_for(proc, lambda: (out / "checkpoints" / "last").is_dir(), timeout=180)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert _last_line(proc).startswith("error: interrupted (SIGTERM)")
    assert not lock_path(out).exists() and _leftovers(out) == []
    state = load_train_state(out / "checkpoints" / "last")
    assert state is not None and state["step"] >= 50  # resumable from the last checkpoint


def _under_cli_sigterm_handler(body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh Python with the CLI's SIGTERM handler installed."""
    script = "from neurofm.cli import _raise_on_sigterm\n_raise_on_sigterm()\n" + body
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )


def test_pool_workers_forked_from_the_cli_die_quietly_when_their_pool_ends() -> None:
    """Forked pool workers (synth, prepare) must not raise on the CLI's SIGTERM: a pool
    terminates its workers with SIGTERM, which used to print a Terminated traceback per worker."""
    done = _under_cli_sigterm_handler(
        "import multiprocessing\n"
        "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
        "    print(sum(pool.map(abs, range(10))))\n"
    )
    assert done.returncode == 0 and done.stdout.strip() == "45"
    assert "Terminated" not in done.stderr and "Traceback" not in done.stderr


def test_a_forked_child_starts_with_sigterms_default_action_and_the_parent_keeps_its_handler() -> (
    None
):
    """A Python-level handler in a pool worker runs only when the worker next executes bytecode;
    one blocked in C never did, and the pool's join hung (2 of 30 runs under load). A child
    forked from the CLI's process therefore starts with SIGTERM's default action."""
    done = _under_cli_sigterm_handler(
        "import os, signal\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status), signal.getsignal(signal.SIGTERM).__name__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "_sigterm_handler"]
