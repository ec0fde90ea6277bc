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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from neurofm.errors import NeuroFMError


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Replace ``path`` with ``text`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; outputs are shared files
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


class DiskFull(NeuroFMError):
    """A write failed because the disk (or the user's quota) is full; ``where`` names the folder."""

    def __init__(
        self, where: str | Path, hint: str = "free space and run the same command again"
    ) -> None:
        super().__init__(where, f"disk full (no space left on device); {hint}")


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_FULL_TEXT = ("No space left on device", "Disk quota exceeded")
LOW_SPACE_BYTES = 16 << 20  # below this, an unexplained write failure is taken for a full disk


def free_bytes(path: str | Path) -> int:
    """Bytes an unprivileged user may still write on the filesystem holding ``path``."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_disk_full(exc: BaseException, where: str | Path | None = None) -> bool:
    """Whether ``exc`` is a full disk: ENOSPC/EDQUOT, its message, or a write-layer error
    without errno (blosc2 and torch raise bare RuntimeErrors) while ``where`` is nearly full.

    Call it before the failed write's partial files are deleted: they are what fills the disk.
    """
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if any(t in str(exc) for t in _FULL_TEXT):
        return True
    if where is None or not isinstance(exc, RuntimeError):
        return False
    try:
        return free_bytes(where) < LOW_SPACE_BYTES
    except OSError:
        return False


@contextmanager
def disk_full_guard(
    where: str | Path, hint: str = "free space and run the same command again"
) -> Iterator[None]:
    """Re-raise a full-disk failure inside the block as one :class:`DiskFull` naming ``where``."""
    try:
        yield
    except NeuroFMError:
        raise
    except Exception as exc:
        if is_disk_full(exc, where):
            raise DiskFull(where, hint) from exc
        raise


@contextmanager
def remove_on_failure(paths: Iterable[str | Path]) -> Iterator[None]:
    """Delete those of ``paths`` the block created if it fails or is interrupted.

    For commands that add files to a folder they share with earlier output (``predict``): a
    failed run leaves the folder as it found it, so the same command can simply run again.
    """
    new = [Path(p) for p in paths if not os.path.lexists(p)]
    try:
        yield
    except BaseException:
        for p in new:
            p.unlink(missing_ok=True)
        raise
