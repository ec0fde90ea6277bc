"""`neurofm bench train`: training throughput, data-wait share and compute efficiency, to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from neurofm.cli.cmd_bench import bench_app
from neurofm.cli.options import Threads


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
    threads: Threads = 0,
    presets: str = typer.Option("tiny,small", help="U-Net presets for the GFLOP/s part ('' skips)"),
    variants: str = typer.Option(
        "default,channels_last,bf16,compile", help="step variants tried against the default"
    ),
    compute_patch: int = typer.Option(32, help="cubic patch of the GFLOP/s part"),
    compute_batch: int = typer.Option(2, help="batch of the GFLOP/s part"),
    compute_steps: int = typer.Option(5, help="timed rounds of the GFLOP/s part (best counts)"),
    matmul_size: int = typer.Option(2048, help="n of the n x n float32 matmul peak"),
) -> None:
    """Patches/s of pretraining, its data-wait fraction, and achieved GFLOP/s of training steps
    beside a float32 matmul peak measured in the same run."""
    from neurofm.throughput.compute import ComputeSettings, run_compute_bench
    from neurofm.throughput.train import TrainBenchSettings, run_train_bench, write_result

    settings = TrainBenchSettings(
        objective=objective, batch_size=batch_size, patch_size=patch, workers=workers,
        steps=steps, threads=threads,
    )  # fmt: skip
    names = tuple(p for p in presets.split(",") if p)
    compute = None
    if names:
        compute = ComputeSettings(
            presets=names,
            variants=tuple(v for v in variants.split(",") if v),
            batch_size=compute_batch,
            patch=compute_patch,
            steps=compute_steps,
            matmul_size=matmul_size,
        )
    result = run_train_bench(settings, data=data, work=work)
    if compute is not None:
        result["compute"] = run_compute_bench(compute)
    write_result(result, out)
    typer.echo(json.dumps({k: result[k] for k in ("patches_per_s", "data_wait_fraction")}))
    if compute is not None:
        for name, r in result["compute"]["presets"].items():
            typer.echo(f"{name}: matmul peak {r['matmul_peak_gflops']:.1f} GFLOP/s")
            for variant, v in r["variants"].items():
                shown = v.get("error") or (
                    f"{v['gflops']:.2f} GFLOP/s ({v['fraction_of_matmul_peak']:.1%} of peak)"
                    + (f", kept: {v['kept']}" if "kept" in v else "")
                )
                typer.echo(f"{name} {variant}: {shown}")
    typer.echo(f"written to {out}")
