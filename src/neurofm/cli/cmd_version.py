"""`neurofm version`."""

from __future__ import annotations

import typer

from neurofm import __version__
from neurofm.cli import app


@app.command()
def version() -> None:
    """Print the neurofm version."""
    typer.echo(__version__)
