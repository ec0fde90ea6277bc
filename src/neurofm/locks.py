"""One writer per output folder: a lock file beside the folder, naming its owner.

Two runs writing the same folder mix their outputs (or, for a run that publishes a whole folder,
one silently replaces the other's). Every command that writes a folder holds
:func:`folder_lock` for its whole run; a second run refuses at once with
``<folder>: in use by pid N on HOST since T``.

How: ``.<name>.lock`` next to the folder (beside it, not inside, so a command that replaces the
whole folder keeps its lock), locked with ``flock`` and holding a JSON line with pid, host, start
time and command. The kernel drops a ``flock`` when its process dies, so a lock left by a killed
run (``kill -9``, power loss) is taken over by the next run without asking, even if its pid has
been reused. A lock recorded by another host, on a filesystem whose ``flock`` may not reach across
hosts, cannot be checked and is refused with the path to remove.
Hand-written: ``filelock`` and friends lock but do not say who holds the lock, and the message
is the point here.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from neurofm.errors import NeuroFMError

_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth


@dataclass(frozen=True)
class LockOwner:
    """Who holds a folder: enough for the refusal message and the stale check."""

    pid: int
    host: str
    since: str
    command: str

    @classmethod
    def current(cls, command: str) -> LockOwner:
        """This process, now."""
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(os.getpid(), socket.gethostname(), now, command)

    def describe(self) -> str:
        """``in use by pid N on HOST since T (command)``."""
        what = f" ({self.command})" if self.command else ""
        return f"in use by pid {self.pid} on {self.host} since {self.since}{what}"


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: ``.<name>.lock`` in its parent."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def _read_owner(fd: int) -> LockOwner | None:
    """The owner recorded in an open lock file, or None if it is empty or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        doc = json.loads(raw)
        return LockOwner(int(doc["pid"]), str(doc["host"]), str(doc["since"]), str(doc["command"]))
    except (ValueError, KeyError, TypeError):
        return None


def _is_stale(owner: LockOwner | None) -> bool:
    """A recorded owner we may take over, given that its flock is free.

    On this host a free flock proves the owner is gone (killed runs keep their file but lose the
    flock; a reused pid does not matter). Another host's flock may not reach us, so its record
    is trusted.
    """
    return owner is None or owner.host == socket.gethostname()


def _open_locked(path: Path, folder: Path) -> int:
    """Open ``path`` and take its flock; refuse with the owner's description if it is held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise NeuroFMError(
                folder, owner.describe() if owner else "in use by another neurofm run"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder released (unlinked) it between our open and flock: retry
            return fd
        os.close(fd)


@contextmanager
def folder_lock(folder: str | Path, command: str | None = None) -> Iterator[LockOwner]:
    """Hold ``folder`` for this process while the block runs (re-entrant within a process).

    Raises NeuroFMError ``<folder>: in use by pid N on HOST since T`` when another live run
    holds it; takes over a lock whose owner died. The lock file is removed on exit, including
    on exceptions, Ctrl-C and SIGTERM (the CLI turns SIGTERM into an exception).
    """
    folder = Path(folder)
    path = lock_path(folder)
    command = command or " ".join(["neurofm", *sys.argv[1:2]])
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield LockOwner.current(command)
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path, folder)
    try:
        owner = _read_owner(fd)
        if not _is_stale(owner):
            assert owner is not None
            raise NeuroFMError(folder, f"{owner.describe()}; remove {path} if that run is gone")
        me = LockOwner.current(command)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(asdict(me)) + "\n").encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = 1
    try:
        yield me
    finally:
        del _HELD[path]
        path.unlink(missing_ok=True)  # before unlocking: a waiter that opened it retries
        os.close(fd)
