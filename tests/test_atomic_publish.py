"""publish_dir: a crash at any step leaves the old folder or the new one, never none or a mix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neurofm.atomic import publish_dir, recover_dir, sibling_tmp_dir, write_text_atomic

OLD = {"a.txt": "old a", "sub/b.txt": "old b"}
NEW = {"a.txt": "new a", "c.txt": "new c", "sub/d.txt": "new d"}

# Runs publish_dir in a child that dies (os._exit, no cleanup, like kill -9) at step CRASH_AT;
# the steps are every rename, swap, fsync and delete publish_dir makes.
CHILD = """
import os, sys
from pathlib import Path
import neurofm.atomic as atomic

crash_at, exchange = int(sys.argv[3]), sys.argv[4] == "1"
count = 0
def step(fn):
    def wrapped(*a, **k):
        global count
        count += 1
        if count == crash_at:
            os._exit(9)
        return fn(*a, **k)
    return wrapped
os.replace = step(os.replace)
atomic._exchange = step(atomic._exchange if exchange else (lambda a, b: False))
atomic._remove = step(atomic._remove)
atomic._fsync_dir = step(atomic._fsync_dir)
atomic.publish_dir(Path(sys.argv[1]), Path(sys.argv[2]))
print(count)
"""


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def _read(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_crash_at_every_step_leaves_old_or_new(tmp_path: Path, exchange: bool) -> None:
    seen = set()
    for crash_at in range(1, 20):
        case = tmp_path / f"crash{crash_at}"
        dst = _tree(case / "out", OLD)
        tmp = _tree(sibling_tmp_dir(dst), NEW)
        args = [str(tmp), str(dst), str(crash_at), "1" if exchange else "0"]
        proc = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True)
        crashed = proc.returncode == 9
        assert crashed or proc.returncode == 0, proc.stderr.decode()
        if exchange:  # the swap is one step: even before any recovery there is a whole folder
            assert _read(dst) in (OLD, NEW), (crash_at, sorted(os.listdir(case)))
        recover_dir(dst)
        state = _read(dst)
        assert state in (OLD, NEW), (crash_at, sorted(os.listdir(case)))
        seen.add("new" if state == NEW else "old")
        if not crashed:
            assert state == NEW and sorted(os.listdir(case)) == ["out"]  # no leftovers
            break
        publish_dir(_tree(sibling_tmp_dir(dst), NEW), dst)  # the next run completes the job
        assert _read(dst) == NEW
        assert not [p for p in os.listdir(case) if ".old-" in p]
    else:
        pytest.fail("publish_dir never completed")
    assert seen == {"old", "new"}  # crashes happened both before and after the switch


def test_publish_onto_nothing_file_and_symlink(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    publish_dir(_tree(sibling_tmp_dir(dst), OLD), dst)
    assert _read(dst) == OLD
    (tmp_path / "file").write_text("x")
    publish_dir(_tree(sibling_tmp_dir(tmp_path / "file"), NEW), tmp_path / "file")
    assert _read(tmp_path / "file") == NEW
    target = _tree(tmp_path / "target", OLD)
    (tmp_path / "link").symlink_to(target)
    publish_dir(_tree(sibling_tmp_dir(tmp_path / "link"), NEW), tmp_path / "link")
    assert not (tmp_path / "link").is_symlink() and _read(tmp_path / "link") == NEW
    assert _read(target) == OLD  # replacing a link never deletes what it pointed to
    assert sorted(os.listdir(tmp_path)) == ["file", "link", "out", "target"]


def test_sibling_tmp_dir_is_shareable_and_beside(tmp_path: Path) -> None:
    tmp = sibling_tmp_dir(tmp_path / "deep/out")
    assert tmp.parent == tmp_path / "deep" and tmp.name.startswith(".out.tmp-")
    mask = os.umask(0)
    os.umask(mask)
    assert tmp.stat().st_mode & 0o777 == 0o777 & ~mask


def test_atomic_text_files_follow_the_umask_not_mkstemps_private_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "report" / "index.html", "<html></html>")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
