"""`neurofm bench latency`: inference seconds per case, demo models vs a FOMO25-sized U-Net."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli.cmd_bench import bench_app
from neurofm.cli.options import Threads


@bench_app.command("latency")
def latency_bench(
    out: Path = typer.Option(Path("bench_out/latency.json"), help="result JSON"),
    task: list[str] = typer.Option([], help="tasks to time (default: every task)"),
    spacing: float = typer.Option(4.0, help="case grid in mm (the demo recipe's is 4)"),
    input_size: int = typer.Option(48, help="classification/regression input (finetuning's)"),
    patch: int = typer.Option(32, help="sliding-window roi of segmentation (finetuning's)"),
    repeats: int = typer.Option(3, help="timed runs per model (after one warm-up run)"),
    threads: Threads = 0,
) -> None:
    """Seconds per case of each task's demo-size model and of a FOMO25-baseline-sized U-Net on
    the same case and inferer settings."""
    from neurofm.throughput.latency import LatencySettings, run_latency_bench
    from neurofm.throughput.train import write_result

    s = LatencySettings(
        spacing=spacing, input_size=input_size, patch_size=patch, repeats=repeats, threads=threads
    )
    result = run_latency_bench(s, task or None)
    write_result(result, out)
    table = Table("task", "model", "parameters", "GFLOP/case", "s/case (best)")
    for name, r in result["tasks"].items():
        for model, m in r["models"].items():
            table.add_row(
                name,
                model,
                f"{m['parameters']:,}",
                f"{m['forward_flops_per_case'] / 1e9:.2f}",
                f"{m['seconds_best']:.3f}",
            )
    console = Console()
    console.print(table)
    console.print(f"written to {out}")
