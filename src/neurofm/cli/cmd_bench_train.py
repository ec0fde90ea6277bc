"""`neurofm bench train`: training throughput and data-wait share, written to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from neurofm.cli.cmd_bench import bench_app


@bench_app.command("train")
def train_bench(
    out: Path = typer.Option(Path("bench_out/train.json"), help="result JSON"),
    data: Path | None = typer.Option(None, help="prepared data (default: tiny benchmark)"),
    work: Path | None = typer.Option(None, help="keep the benchmark data and runs here"),
    objective: str = typer.Option("mae"),
    batch_size: int = typer.Option(8),
    patch: int = typer.Option(32),
    workers: int = typer.Option(2),
    steps: int = typer.Option(30, help="timed steps (after 5 warm-up steps)"),
    threads: int = typer.Option(0, help="torch CPU threads (0: default)"),
) -> None:
    """Measure patches/s of pretraining and the fraction of step time waiting for data."""
    from neurofm.throughput.train import TrainBenchSettings, run_train_bench, write_result

    settings = TrainBenchSettings(
        objective=objective, batch_size=batch_size, patch_size=patch, workers=workers,
        steps=steps, threads=threads,
    )  # fmt: skip
    result = run_train_bench(settings, data=data, work=work)
    write_result(result, out)
    typer.echo(json.dumps({k: result[k] for k in ("patches_per_s", "data_wait_fraction")}))
    typer.echo(f"written to {out}")
