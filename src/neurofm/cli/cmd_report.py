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
    task: list[str] = typer.Option(
        [], help="Your task file (.toml) when the results hold a task of your own (repeatable)."
    ),
    diffusion: list[Path] = typer.Option(
        [],
        help="A `neurofm diffusion compare` folder: adds the Diffusion classifier page "
        "(repeatable).",
    ),
    explain: list[Path] = typer.Option(
        [],
        help="A `neurofm explain-table` output folder: adds the Explanations page "
        "(repeatable, e.g. one per task).",
    ),
) -> None:
    """Write a self-contained HTML report (leaderboards, plots, 3D case viewer, and subgroups
    when the results folder has evaluate's strata.csv); print its path."""
    from neurofm.atomic import disk_full_guard
    from neurofm.diffusion.report import diffusion_page
    from neurofm.report import build_report
    from neurofm.report.explain import explain_page
    from neurofm.report.inputs import find_results_dir
    from neurofm.report.strata import strata_page
    from neurofm.tasks import get_task

    for t in task:  # a loaded task file is known by its name in the results table
        get_task(t)
    page = strata_page(find_results_dir(run_or_results))
    pages = [p for p in (page, diffusion_page(diffusion), explain_page(explain)) if p]
    with disk_full_guard(out):  # the report is built beside OUT: name OUT, not the temp folder
        index = build_report(
            run_or_results, out, title=title, overwrite=overwrite, n_boot=n_boot, seed=seed,
            extra_pages=pages,
        )  # fmt: skip
    typer.echo(str(index.resolve()))
