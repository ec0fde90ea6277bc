"""`neurofm synth OUT --preset tiny|demo|full --seed N --shift matched|novel [--overwrite]`."""

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
    seed: int = typer.Option(
        0, help="Random seed: draws the cases and the target sites; same seed, same images."
    ),
    shift: str = typer.Option(
        "matched",
        help="Target sites drawn from the pretraining sites' ranges (matched) or outside them "
        "in at least two named properties (novel).",
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing non-empty OUT."),
    workers: int = typer.Option(0, help="Processes to render with (0: automatic)."),
) -> None:
    """Build the embedded synthetic benchmark (a stand-in for real MRI, from MNI152)."""
    from neurofm.synth import build_benchmark

    start = time.perf_counter()
    path = build_benchmark(out, preset, seed, overwrite, workers=workers or None, shift=shift)
    typer.echo(
        f"wrote synthetic benchmark ({preset}, seed {seed}, {shift} shift) to {path} "
        f"in {time.perf_counter() - start:.1f} s"
    )
