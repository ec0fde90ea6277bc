"""`neurofm bench plan` and `neurofm bench monitor`: timing JSON for planning and monitoring."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from neurofm.cli.cmd_bench import bench_app


@bench_app.command("plan")
def bench_plan_cmd(
    out: Path = typer.Option(Path("benchmarks/plan.json"), help="result JSON"),
    n_boot: int = typer.Option(1000, min=10, help="bootstrap resamples"),
    rounds: int = typer.Option(5, min=1),
) -> None:
    """Seconds for a power-law fit plus its bootstrap (target: under 10 s)."""
    from neurofm.atomic import write_json_atomic
    from neurofm.plan.bench import bench_plan

    result = bench_plan(n_boot=n_boot, rounds=rounds)
    write_json_atomic(out, result)
    typer.echo(json.dumps(result, indent=1))
    typer.echo(f"written to {out}")


@bench_app.command("monitor")
def bench_monitor_cmd(
    out: Path = typer.Option(Path("benchmarks/monitor.json"), help="result JSON"),
    dim: int = typer.Option(64, min=2, help="embedding dimension"),
    reference: int = typer.Option(200, min=10, help="reference cases"),
    cases: int = typer.Option(2000, min=1, help="cases scored per round"),
) -> None:
    """Cases/s of monitor scoring once embeddings exist (target: at least 5)."""
    from neurofm.atomic import write_json_atomic
    from neurofm.monitor.bench import bench_monitor

    result = bench_monitor(dim=dim, n_reference=reference, n_cases=cases)
    write_json_atomic(out, result)
    typer.echo(json.dumps(result, indent=1))
    typer.echo(f"written to {out}")
