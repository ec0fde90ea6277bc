"""One writer per output folder: refusal names the holder, dead holders are taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.locks import folder_lock, lock_path

HOLD = (
    "import sys, time\n"
    "from neurofm.locks import folder_lock\n"
    "with folder_lock(sys.argv[1], 'neurofm test-holder'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


def _holder(folder: Path) -> subprocess.Popen[str]:
    """Another process holding ``folder``; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_lock_file_records_owner_and_is_removed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with folder_lock(out, "neurofm x") as me:
        doc = json.loads(lock_path(out).read_text())
        assert doc["pid"] == os.getpid() == me.pid
        assert doc["host"] == socket.gethostname() and doc["command"] == "neurofm x"
        with folder_lock(tmp_path / "run"):  # re-entrant within one process
            pass
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    assert not out.exists()  # the lock sits beside the folder, it creates nothing inside


def test_released_on_exception(tmp_path: Path) -> None:
    with pytest.raises(ValueError), folder_lock(tmp_path / "run"):
        raise ValueError("boom")
    assert not lock_path(tmp_path / "run").exists()
    with folder_lock(tmp_path / "run"):
        pass


def test_second_process_refused_with_pid_host_and_time(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        with pytest.raises(NeuroFMError) as info, folder_lock(out):
            pass
        msg = str(info.value)
        assert msg.startswith(f"{out}: in use by pid {proc.pid} on {socket.gethostname()} since ")
        assert "neurofm test-holder" in msg and "\n" not in msg
        # the same path spelt differently is the same folder
        with pytest.raises(NeuroFMError), folder_lock(tmp_path / "." / "run"):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_killed_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _holder(out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stale = json.loads(lock_path(out).read_text())
    assert stale["pid"] == proc.pid  # the killed run left its lock file behind
    with folder_lock(out) as me:
        assert json.loads(lock_path(out).read_text())["pid"] == me.pid == os.getpid()


def test_other_host_record_is_not_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    other = {"pid": 1, "host": "elsewhere", "since": "2026-01-01 00:00:00 UTC", "command": "x"}
    lock_path(out).write_text(json.dumps(other))
    refused = pytest.raises(NeuroFMError, match="in use by pid 1 on elsewhere since 2026-01-01")
    with refused, folder_lock(out):
        pass
    assert json.loads(lock_path(out).read_text()) == other  # left for its owner


def test_cli_prepare_on_locked_folder_exits_2_at_once(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    proc = _holder(dst)
    try:
        t0 = time.perf_counter()
        with pytest.raises(SystemExit) as info:
            main(["prepare", str(src), str(dst)])
        assert time.perf_counter() - t0 < 5
    finally:
        proc.kill()
        proc.wait()
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"in use by pid {proc.pid}" in err, err
    assert not dst.exists()  # nothing written by the refused run
