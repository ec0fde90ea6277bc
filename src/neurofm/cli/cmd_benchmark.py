"""`neurofm benchmark PKG... --data SPLIT_DIR --out DIR`: packages side by side, ranked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app
from neurofm.cli.options import Device, Isolation


@app.command()
def benchmark(
    packages: list[Path] = typer.Argument(..., help="package folders or archives"),
    data: Path = typer.Option(..., "--data", help="a labelled split, or a task folder of splits"),
    out: Path = typer.Option(..., "--out", help="folder for predictions, results, report"),
    device: Device = "auto",
    isolation: Isolation = "auto",
    threads: int = typer.Option(1, min=1, help="CPU threads each package may use"),
    overwrite: bool = typer.Option(False, help="replace earlier predictions in OUT"),
    n_boot: int = typer.Option(1000, "--n-boot", min=1, help="bootstrap resamples"),
    seed: int = typer.Option(0, help="seed of the shared bootstrap resamples"),
    report: bool = typer.Option(True, "--report/--no-report", help="write leaderboard + report"),
) -> None:
    """Run several packages with identical commands on the same cases; score and rank them."""
    from neurofm.packages.comparison import compare_packages

    console = Console()
    with console.status("benchmark") as status:

        def step(model: str, i: int, n: int) -> None:
            status.update(f"package {i + 1}/{n}: {model}")

        result = compare_packages(
            packages,
            data,
            out,
            device=device,
            isolation=isolation,
            threads=threads,
            overwrite=overwrite,
            n_boot=n_boot,
            seed=seed,
            report=report,
            on_package=step,
        )
    t = Table(title=f"{result.task}: {len(result.outcomes)} package(s)")
    for col in ("model", "version", "status", "cases", "s/case", "CPU s", "peak MiB", "sandbox"):
        left = col in ("model", "status", "sandbox")
        t.add_column(col, justify="left" if left else "right", no_wrap=col == "model")
    for o in result.outcomes:
        status_text = "[green]ok[/]" if o.status == "ok" else f"[bold red]{o.status}[/]"
        t.add_row(
            o.model,
            o.version,
            status_text,
            str(o.n_cases),
            f"{o.s_per_case:.2f}",
            f"{o.cpu_s:.1f}",
            f"{o.peak_rss_mb:.0f}",
            o.isolation,
        )
    console.print(t)
    for o in result.outcomes:
        if o.error:
            console.print(f"[bold red]{o.model}[/]: {o.error}", highlight=False)
    console.print(f"runtime table: {result.runtime_csv}")
    if result.results_csv is not None:
        console.print(f"results: {result.results_csv}")
    for path in result.leaderboard_files:
        console.print(f"leaderboard: {path}")
    if result.report is not None:
        console.print(f"report: {result.report}")
    if result.results_csv is None:
        console.print("[bold red]no package produced predictions[/]")
        raise typer.Exit(1)
