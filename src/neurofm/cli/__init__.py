"""The thin command line: each sub-module registers its commands on :data:`app`.

Bad input anywhere below raises :class:`~neurofm.errors.NeuroFMError`; :func:`main` turns it into
one line on stderr and exit code 2, so scripts can tell bad input from crashes. Full disks,
Ctrl-C and SIGTERM are one line too (docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from neurofm.errors import NeuroFMError

app = typer.Typer(
    name="neurofm",
    help="Foundation models of brain MRI: synth, prepare, pretrain, finetune, evaluate, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    """Import command modules for their side effect of adding commands to ``app``."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{mod.name}")


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected fault ends in one line on stderr and a documented exit code.

    Bad input and full disks exit 2, Ctrl-C 130, SIGTERM 143 (docs/reliability.md). SIGTERM is
    turned into an exception so that locks are released and temporary folders removed on the
    way out, exactly as for Ctrl-C.
    """
    from neurofm.atomic import is_disk_full

    previous = _raise_on_sigterm()
    try:
        rc = app(args=argv, standalone_mode=False)
    except NeuroFMError as exc:
        _fail(str(exc), 2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        _interrupted()
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        # usage errors: click's ClickException, which newer typer vendors (no click to import),
        # so recognise it by its interface
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        if is_disk_full(exc):  # a full disk the write layer did not name: name what we can
            filename = getattr(exc, "filename", None)
            where = f"{Path(filename).parent}: " if filename else ""
            _fail(f"{where}disk full (no space left on device); free space and run again", 2)
        raise
    finally:
        if previous is not None:  # in-process callers (tests, notebooks) get theirs back
            signal.signal(signal.SIGTERM, previous)
    if rc == 130:  # typer turns KeyboardInterrupt (and so Terminated) into exit code 130
        _interrupted()
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)


def _interrupted() -> NoReturn:
    name, code = ("SIGTERM", 143) if Terminated.received else ("Ctrl-C", 130)
    _fail(f"interrupted ({name}); finished work is kept, the unfinished step was removed", code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so every ``finally`` and cleanup handler runs."""

    received = False  # typer reports both as exit code 130; this tells them apart


def _default_sigterm_in_child() -> None:
    """A forked child (a multiprocessing pool's worker) starts with SIGTERM's default action, so
    its pool's terminate kills it at once wherever it is blocked; a Python-level handler would
    run only when the child next executes bytecode, and a child that never does hangs the
    pool's join (seen: 2 of 30 runs of a fork pool under load)."""
    if signal.getsignal(signal.SIGTERM) is _sigterm_handler:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sigterm_handler(signum: int, frame: object) -> None:
    Terminated.received = True
    raise Terminated()


os.register_at_fork(after_in_child=_default_sigterm_in_child)


def _raise_on_sigterm() -> Any:
    """Install the SIGTERM handler (main thread only); returns the one it replaced.

    Forked children do not keep it (:func:`_default_sigterm_in_child`): when a pool terminates
    its workers they die as SIGTERM's default would, instead of printing a traceback each.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _sigterm_handler)


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)
