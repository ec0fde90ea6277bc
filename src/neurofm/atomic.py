"""Atomic writes: readers (and crashes) see the old file or folder or the new one, never half.

Every small text/JSON output of neurofm (manifests, configs, results tables, reports' data) goes
through here: a temporary file in the same folder, flushed and fsynced, then ``os.replace``.
Whole folders (a prepared case, a checkpoint, a report, a package, a generated benchmark) are
built beside their destination and published with :func:`publish_dir`. Python has no binding for
Linux's atomic swap of two paths (``renameat2(RENAME_EXCHANGE)``), so it is called through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Replace ``path`` with ``obj`` as indented JSON (non-JSON values written with ``str``)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sibling_tmp_dir(dst: str | Path) -> Path:
    """A fresh empty ``.<name>.tmp-<pid>-…`` folder beside ``dst`` (same filesystem: renamable)."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; published folders are shared
    return tmp


def publish_dir(tmp: str | Path, dst: str | Path) -> Path:
    """Put the finished folder ``tmp`` at ``dst``, replacing whatever is there, atomically.

    Readers and crashes see the old ``dst`` or the new one, never neither and never a mix: on
    Linux the two are swapped in one ``renameat2(RENAME_EXCHANGE)`` and the old one is deleted
    afterwards. Where the filesystem cannot swap, the old folder is renamed aside first; a crash
    in that instant leaves it as ``.<name>.old-<pid>``, which :func:`recover_dir` (called by the
    next publish) puts back. ``tmp`` must be on the same filesystem (see :func:`sibling_tmp_dir`).
    """
    tmp, dst = Path(tmp), Path(dst)
    recover_dir(dst)
    if not os.path.lexists(dst):
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)
        return dst
    trash = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if _exchange(tmp, dst):
        os.replace(tmp, trash)  # tmp now holds the old folder
    else:
        os.replace(dst, trash)
        try:
            os.replace(tmp, dst)
        except BaseException:
            os.replace(trash, dst)
            raise
    _fsync_dir(dst.parent)
    _remove(trash)
    return dst


def recover_dir(dst: str | Path) -> Path | None:
    """Undo what a crashed :func:`publish_dir` left beside ``dst``; returns a restored folder.

    A missing ``dst`` with an old copy aside means a crash between the two renames of the
    fallback: the old copy goes back. Other old copies are deleted. Unfinished ``tmp`` folders
    belong to their writers (which clean them, or their own next run does).
    """
    dst = Path(dst)
    if not dst.parent.is_dir():
        return None
    olds = sorted(
        dst.parent.glob(f".{glob.escape(dst.name)}.old-*"), key=lambda p: p.lstat().st_mtime
    )
    restored = None
    if olds and not os.path.lexists(dst):
        restored = olds.pop()
        os.replace(restored, dst)
    for p in olds:
        _remove(p)
    return restored


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
