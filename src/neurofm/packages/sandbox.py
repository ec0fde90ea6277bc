"""Run an untrusted command in a sandbox: process group, time and memory limits, no network.

Isolation uses a real tool where one works, probed once per process (``NEUROFM_SANDBOX`` =
``bwrap`` | ``unshare`` | ``none`` forces a choice):

* ``bwrap`` (Debian's bubblewrap, preferred): new network namespace (no interface but loopback, so
  no connection leaves the sandbox and host services on localhost are unreachable), new PID, IPC
  and UTS namespaces, and a new root that holds only read-only system folders (/usr, /etc, the
  Python installation, neurofm's source), the package and input files read-only, a private /tmp,
  and exactly one writable folder, the work folder. Other files on the host (including the
  references of a benchmark) are simply not there.
* ``unshare`` (``unshare -rn``, util-linux): new user and network namespace, so still no network,
  but the whole file system is visible and, for root, writable; the runner still collects only
  the declared outputs from the private output folder.
* ``none``: no isolation at all. A warning is logged and recorded in the run log; the limits below
  still apply.

In every mode the command runs in its own session/process group (killed as a whole on timeout),
with a wall-clock timeout, an address-space limit (``RLIMIT_AS``; skipped when ``memory_mb`` is
None, e.g. for CUDA, which reserves huge virtual ranges), a scrubbed environment (PATH, HOME = the
work folder, LANG, PYTHONPATH to neurofm, thread counts) and the work folder as its cwd. Peak
memory and CPU time are what ``wait4`` reports for the process tree (read inside the sandbox by
:mod:`neurofm.packages.launcher`, since a PID namespace hides them from the runner).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from neurofm.errors import NeuroFMError

Isolation = Literal["bwrap", "unshare", "none"]
ISOLATIONS: tuple[Isolation, ...] = ("bwrap", "unshare", "none")
log = logging.getLogger(__name__)

_KILL_GRACE_S = 2.0
_POLL_S = 0.02
_RUSAGE_FILE = ".neurofm-rusage.json"
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def _probe(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def available_isolation() -> Isolation:
    """The strongest isolation that actually works here, probed with the very command line a
    package would get (running ``true``), so a kernel that refuses one namespace is caught."""
    true = [shutil.which("true") or "/usr/bin/true"]
    with tempfile.TemporaryDirectory(prefix="neurofm-probe-") as tmp:
        if _probe(_bwrap_argv(SandboxSpec(true, Path(tmp)), true)):
            return "bwrap"
    if _probe(_unshare_argv(true)):
        return "unshare"
    return "none"


def choose_isolation(requested: str = "auto") -> Isolation:
    """Resolve ``auto`` (or the ``NEUROFM_SANDBOX`` variable) to a mode that works here."""
    want = os.environ.get("NEUROFM_SANDBOX", "auto") if requested == "auto" else requested
    if want == "auto":
        got = available_isolation()
        if got != "bwrap":
            log.warning(
                "sandbox: bubblewrap unavailable, using %s (%s)",
                got,
                "no network, but files are not isolated"
                if got == "unshare"
                else "NO isolation: the package can use the network and write anywhere",
            )
        return got
    if want not in ISOLATIONS:
        raise NeuroFMError(
            "NEUROFM_SANDBOX", f"unknown isolation {want!r} ({', '.join(ISOLATIONS)})"
        )
    if want != "none" and ISOLATIONS.index(available_isolation()) > ISOLATIONS.index(want):
        raise NeuroFMError(None, f"sandbox isolation {want!r} requested but it does not work here")
    return want


@dataclass(frozen=True)
class SandboxSpec:
    """What to run and what it may see: one writable work folder, some read-only paths."""

    argv: list[str]
    workdir: Path
    read_only: list[Path] = field(default_factory=list)
    timeout_s: float = 600.0
    memory_mb: int | None = 8192
    env: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    log_dir: Path | None = None


@dataclass
class SandboxResult:
    """How the sandboxed process ended, its cost, and where its stdout/stderr went."""

    returncode: int
    timed_out: bool
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    isolation: Isolation
    stdout_path: Path
    stderr_path: Path
    timeout_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def stderr_tail(self, n_lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-n_lines:])

    def failure(self) -> str | None:
        """One line saying why the run failed, or None if it succeeded."""
        if self.timed_out:
            return f"timed out after {self.timeout_s:g} s; its process group was killed"
        if self.returncode == 0:
            return None
        last = next(
            (ln.strip() for ln in reversed(self.stderr_tail(50).splitlines()) if ln.strip()), ""
        )
        if "MemoryError" in last or "Cannot allocate memory" in last:
            return f"ran out of its memory limit ({last})"
        signum = -self.returncode if self.returncode < 0 else self.returncode - 128
        if self.returncode < 0 or 128 < self.returncode < 128 + 65:
            try:
                sig = signal.Signals(signum).name
            except ValueError:
                sig = str(signum)
            return f"killed by signal {sig}" + (f": {last}" if last else "")
        return f"exited with code {self.returncode}" + (f": {last}" if last else "")


def _python_paths() -> list[Path]:
    """Folders the interpreter and neurofm live in, which the sandbox must see read-only."""
    import neurofm

    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent}
    paths.add(Path(neurofm.__file__).resolve().parent.parent)
    paths.update(Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return _outermost(Path(os.path.realpath(p)) for p in paths if Path(p).is_dir())


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths inside another of the paths: binding the outer one already shows them."""
    uniq = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in uniq:
        if not any(k == p or k in p.parents for k in kept):
            kept.append(p)
    return kept


def neurofm_pythonpath() -> str:
    """The folder holding the ``neurofm`` package, so the sandboxed interpreter imports it."""
    import neurofm

    return str(Path(neurofm.__file__).resolve().parent.parent)


def _bwrap_argv(spec: SandboxSpec, command: list[str]) -> list[str]:
    work = os.path.realpath(spec.workdir)
    argv = [
        "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            argv += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            argv += ["--ro-bind", d, d]
    argv += ["--ro-bind", "/etc", "/etc", "--ro-bind-try", "/sys", "/sys"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # GPUs stay usable inside
        argv += ["--dev-bind", str(dev), str(dev)]
    binds = [*_python_paths(), *(Path(os.path.realpath(p)) for p in spec.read_only)]
    seen: set[str] = set()
    for p in binds:
        s = str(p)
        if s not in seen and p.exists():
            seen.add(s)
            argv += ["--ro-bind", s, s]
    argv += ["--bind", work, work, "--chdir", work, "--"]
    return argv + command


def _unshare_argv(command: list[str]) -> list[str]:
    return ["unshare", "-rn", "--fork", "--pid", "--kill-child", "--mount-proc", "--", *command]


def _environment(spec: SandboxSpec, isolation: Isolation) -> dict[str, str]:
    """A scrubbed environment: nothing of the caller's leaks in but what neurofm needs."""
    work = os.path.realpath(spec.workdir)
    threads = str(max(1, spec.threads))
    env = {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "HOME": work,
        "TMPDIR": work,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONPATH": neurofm_pythonpath(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLCONFIGDIR": os.path.join(work, ".matplotlib"),
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
        "NEUROFM_SANDBOX_ISOLATION": isolation,
    }
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    env.update(spec.env)
    return env


def _limit_memory(memory_mb: int | None) -> None:
    """Runs in the child between fork and exec: cap the address space, no core dumps."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb is not None:
        limit = int(memory_mb) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process remains in the group.

    Zombies are skipped: bwrap's namespace init is re-parented to the container's PID 1, which may
    never reap it, and a zombie holds nothing.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
    return False


def _kill_group(pgid: int) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, 1.0)):
        if not _group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(_POLL_S * 5)


def run_sandboxed(spec: SandboxSpec, isolation: str = "auto") -> SandboxResult:
    """Run ``spec.argv`` under the chosen isolation; never raises for the command's own failure."""
    mode = choose_isolation(isolation)
    report = Path(os.path.realpath(spec.workdir)) / _RUSAGE_FILE
    report.unlink(missing_ok=True)
    launched = [sys.executable, "-m", "neurofm.packages.launcher", str(report), "--", *spec.argv]
    if mode == "bwrap":
        argv = _bwrap_argv(spec, launched)
    elif mode == "unshare":
        argv = _unshare_argv(launched)
    else:
        argv = launched
    log_dir = spec.log_dir or spec.workdir
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.log", log_dir / "stderr.log"
    t0 = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=spec.workdir,
            env=_environment(spec, mode),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            preexec_fn=functools.partial(_limit_memory, spec.memory_mb),
        )
        timed_out = False
        deadline = t0 + spec.timeout_s
        status, usage = 0, None
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    _kill_group(proc.pid)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(_POLL_S)
        except BaseException:
            _kill_group(proc.pid)
            raise
        finally:
            _kill_group(proc.pid)  # stragglers that outlived the leader
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # The launcher's figures are the package's own: the runner's wait4 would also count the
    # pages the forked child inherited from this (possibly large) process.
    peak = usage.ru_maxrss / 1024.0 if usage is not None else 0.0
    cpu = usage.ru_utime + usage.ru_stime if usage is not None else 0.0
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        measured = json.loads(report.read_text())
        peak, cpu = float(measured["peak_rss_mb"]), float(measured["cpu_s"])
    return SandboxResult(
        returncode=proc.returncode,
        timed_out=timed_out,
        wall_s=wall,
        peak_rss_mb=peak,
        cpu_s=cpu,
        isolation=mode,
        stdout_path=out_path,
        stderr_path=err_path,
        timeout_s=spec.timeout_s,
    )
