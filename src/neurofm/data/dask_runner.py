"""Per-case work on ``dask.distributed``: a local cluster, or an existing one by address.

``prepare`` and batch ``predict`` hand each case to :func:`run_cases`; Dask does the scheduling,
moves work off a worker that died (it re-runs that worker's cases elsewhere, up to
``distributed.scheduler.allowed-failures`` times) and scales from one workstation to a cluster
without changes here. What stays ours: every case is one task whose outcome is a result or a
:class:`CaseFailure` naming the case, so one bad case never stops the others unless the caller
asks for ``fail_fast``; a full disk always stops the run.

The local cluster is private to the run: worker processes with one thread each (the cases are
CPU-bound numpy/torch work), no dashboard, listening on loopback only. Workers ignore Ctrl-C so
the parent alone decides what to cancel.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from neurofm.atomic import DiskFull
from neurofm.errors import NeuroFMError

CONNECT_TIMEOUT_S = 5
"""How long to wait for a ``--scheduler`` address to answer before giving up."""


@dataclass(frozen=True)
class CaseFailure:
    """One case that did not finish: its id and the one-line reason (``where: problem``)."""

    case: str
    where: str | None
    problem: str
    fatal: bool = False  # a full disk: every other case would fail the same way

    def line(self) -> str:
        return f"{self.where}: {self.problem}" if self.where else self.problem


@dataclass(frozen=True)
class _Failed:
    """A NeuroFMError crossing the process boundary (it does not pickle: two-argument init)."""

    where: str | None
    problem: str
    fatal: bool


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _IgnoreSigint(WorkerPlugin):
    """Worker plugin: Ctrl-C in a terminal reaches the workers too; only the parent acts on it.

    Never in the parent itself (an in-process worker): its Ctrl-C must keep working, and child
    processes it starts later would inherit an ignored SIGINT."""

    def __init__(self) -> None:
        self.parent_pid = os.getpid()

    def setup(self, worker: Any) -> None:
        if os.getpid() == self.parent_pid:
            return
        with suppress(ValueError):  # not the worker's main thread: signals are not ours to set
            _ignore_sigint()


@contextmanager
def dask_client(workers: int, scheduler: str | None = None) -> Iterator[Any]:
    """A client on ``scheduler`` or, without one, on a private local cluster of ``workers``.

    An address that does not answer within :data:`CONNECT_TIMEOUT_S` is a NeuroFMError.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NeuroFMError(
                "--scheduler",
                f"no Dask scheduler answers at {scheduler!r} within {CONNECT_TIMEOUT_S} s "
                f"({reason[:160]})",
            ) from None
        with client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=max(1, workers),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # the scheduler's health/metrics HTTP server still starts: on a free port, so a
            # second local cluster (two prepares at once) does not warn about port 8787
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(_IgnoreSigint(), name="neurofm-ignore-sigint")
        yield client


def call_case(fn: Callable[..., Any], *args: Any) -> Any:
    """Worker entry: run ``fn``; a NeuroFMError comes back as a picklable :class:`_Failed`."""
    try:
        return fn(*args)
    except NeuroFMError as exc:
        return _Failed(exc.where, exc.problem, isinstance(exc, DiskFull))


def run_cases(
    client: Any,
    fn: Callable[..., Any],
    cases: Sequence[tuple[str, tuple[Any, ...]]],
    *,
    fail_fast: bool = False,
    on_done: Callable[[str, Any], None] | None = None,
    label: str = "case",
) -> tuple[dict[str, Any], list[CaseFailure]]:
    """Run ``fn(*args)`` for every ``(case_id, args)`` on the cluster.

    Returns the results by case id and the failures in the order they happened. With
    ``fail_fast`` (and always after a full disk) the first failure cancels the cases not yet
    finished. Ctrl-C cancels everything not finished and re-raises.
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    run = uuid.uuid4().hex[:8]
    futures = {
        client.submit(call_case, fn, *args, key=f"neurofm-{label}-{case_id}-{run}"): case_id
        for case_id, args in cases
    }
    results: dict[str, Any] = {}
    failures: list[CaseFailure] = []
    try:
        for fut in as_completed(list(futures)):
            case_id = futures[fut]
            if fut.cancelled():
                continue
            try:
                out = fut.result()
            except KilledWorker:
                out = _Failed(None, "its Dask worker died while working on it (retried)", False)
            except Exception as exc:  # a bug or an unexpected OS error in this case only
                out = _Failed(None, f"{type(exc).__name__}: {exc}", False)
            if isinstance(out, _Failed):
                failures.append(CaseFailure(case_id, out.where, out.problem, out.fatal))
                if fail_fast or out.fatal:
                    _cancel_and_settle(client, futures, run)
                    break
                continue
            results[case_id] = out
            if on_done is not None:
                on_done(case_id, out)
    except BaseException:
        with suppress(Exception):  # a lost scheduler must not hide why the run stopped
            _cancel_and_settle(client, futures, run)
        raise
    return results, failures


_SETTLED = frozenset({"memory", "error", "released", "forgotten"})


def _cancel_and_settle(
    client: Any, futures: dict[Any, str], run: str, timeout: float = 600
) -> None:
    """Cancel this run's unfinished cases and wait until no worker still executes one.

    Dask cannot stop a task that has started: a cancelled case keeps running on its worker and
    writes its output when it ends. On a cluster that outlives the command (``--scheduler``)
    that write could land after the caller has cleaned up, so the caller waits for it here
    (bounded by ``timeout`` seconds).
    """
    client.cancel([f for f in futures if not f.done()])
    suffix = f"-{run}"

    def busy(dask_worker: Any) -> int:  # held results and released tasks do not count
        tasks = dask_worker.state.tasks.items()
        return sum(1 for k, ts in tasks if str(k).endswith(suffix) and ts.state not in _SETTLED)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(client.run(busy).values()):
        time.sleep(0.05)


def failures_error(where: str | Path, failures: Sequence[CaseFailure], total: int) -> NeuroFMError:
    """One line for the failed cases: the only one as it is, several counted and named."""
    if len(failures) == 1 and failures[0].where:
        f = failures[0]
        return NeuroFMError(f.where or where, f"{f.problem} (case {f.case})")
    shown = "; ".join(f"{f.case}: {f.line()}" for f in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return NeuroFMError(where, f"{len(failures)} of {total} case(s) failed: {shown}{more}")
