"""`neurofm synth OUT --preset tiny|demo|full --seed N [--overwrite]`."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from neurofm.cli import app


@app.command()
def synth(
    out: Path = typer.Argument(
        ..., help="Folder to create (refused if it exists and is not empty)."
    ),
    preset: str = typer.Option("demo", help="Benchmark size: tiny | demo | full."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives identical images."),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty OUT."),
    workers: int = typer.Option(0, help="Processes to render with (0: automatic)."),
) -> None:
    """Build the embedded synthetic benchmark (a stand-in for real MRI, from MNI152)."""
    from neurofm.synth import build_benchmark

    start = time.perf_counter()
    path = build_benchmark(out, preset, seed, overwrite, workers=workers or None)
    typer.echo(
        f"wrote synthetic benchmark ({preset}, seed {seed}) to {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )
