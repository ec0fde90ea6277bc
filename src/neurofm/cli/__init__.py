"""The thin command line: each sub-module registers its commands on :data:`app`.

Bad input anywhere below raises :class:`~neurofm.errors.NeuroFMError`; :func:`main` turns it into
one line on stderr and exit code 2, so scripts can tell bad input from crashes.
"""

from __future__ import annotations

import sys

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
    """Entry point: run the app, mapping NeuroFMError to a one-line message and exit code 2."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except NeuroFMError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        # usage errors: click's ClickException, which newer typer vendors (no click to import),
        # so recognise it by its interface
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            sys.exit(code)
        raise
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
