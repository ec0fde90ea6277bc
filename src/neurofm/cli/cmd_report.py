"""`neurofm report RUN_OR_RESULTS --out DIR`: the static HTML report of a run's results."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app


@app.command()
def report(
    run_or_results: Path = typer.Argument(
        ..., help="A results folder (with results.csv) or a run folder holding results/."
    ),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder to write the report to."),
    title: str | None = typer.Option(None, help="Page title (default: describes the data)."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty --out folder."),
    n_boot: int = typer.Option(1000, min=100, help="Bootstrap resamples for CIs and ranks."),
    seed: int = typer.Option(0, help="Seed of the bootstrap resamples."),
) -> None:
    """Write a self-contained HTML report (leaderboards, plots, 3D case viewer); print its path."""
    from neurofm.report import build_report

    index = build_report(
        run_or_results, out, title=title, overwrite=overwrite, n_boot=n_boot, seed=seed
    )
    typer.echo(str(index.resolve()))
