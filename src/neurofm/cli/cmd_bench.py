"""`neurofm bench ...`: side-by-side benchmarks that write JSON.

This module owns the ``bench`` group; other modules add their subcommands with
``from neurofm.cli.cmd_bench import bench_app``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app

bench_app = typer.Typer(
    name="bench",
    help="Benchmarks against MONAI/TorchIO baselines (JSON out).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("loader")
def loader(
    data: Path | None = typer.Option(
        None, help="NIfTI data in any layout prepare reads (default: build a synthetic set)."
    ),
    out: Path = typer.Option(Path("bench_loader.json"), help="Where to write the JSON result."),
    patch: int = typer.Option(64, min=4, help="Cubic patch size in voxels."),
    workers: int = typer.Option(
        2, min=0, help="Loader workers per pipeline (processes; threads for neurofm)."
    ),
    batches: int = typer.Option(20, min=1, help="Timed batches per pipeline."),
    batch_size: int = typer.Option(4, min=1, help="Patches per batch."),
    samples_per_volume: int = typer.Option(
        4, min=1, help="Patches per volume load for MONAI and TorchIO."
    ),
    augment: bool = typer.Option(False, help="Also augment (each library's own transforms)."),
    preset: str = typer.Option(
        "full", help="Synthetic data: tiny | demo | full, or clinical (197x233x189, 4 sequences)."
    ),
    cases: int = typer.Option(4, min=1, help="Synthetic cases to build."),
    work: Path | None = typer.Option(
        None, help="Keep synthetic data and the prepared cache here for reuse."
    ),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Patches/s of neurofm's loader vs MONAI (plain and PersistentDataset) and a TorchIO Queue on
    the same data, beside the memory-copy limit for the patch."""
    from neurofm.throughput.loader import LoaderBenchSettings, run_loader_bench

    settings = LoaderBenchSettings(
        patch=patch,
        workers=workers,
        batches=batches,
        batch_size=batch_size,
        samples_per_volume=samples_per_volume,
        augment=augment,
        seed=seed,
    )
    report = run_loader_bench(settings, data=data, work=work, preset=preset, cases=cases, out=out)
    table = Table("pipeline", "patches/s", "start-up + warm-up (s)")
    for name, r in report["results"].items():
        table.add_row(name, f"{r['patches_per_s']:.1f}", f"{r['startup_and_warmup_s']:.1f}")
    console = Console()
    limit = report["copy_limit"]["patches_per_s"]
    table.add_row("copy limit", f"{limit:.1f}", "")
    console.print(table)
    console.print(json.dumps(report["ratios"], indent=1))
    console.print(f"written to {out}")
