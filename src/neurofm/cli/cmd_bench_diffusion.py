"""`neurofm bench diffusion`: training time and inference seconds per case, written to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from neurofm.cli.cmd_bench import bench_app
from neurofm.diffusion.settings import DiffusionSettings

D = DiffusionSettings


@bench_app.command("diffusion")
def diffusion_bench(
    input: Path = typer.Option(..., "--input", help="a split folder of raw cases to predict"),
    model: Path | None = typer.Option(None, help="time this diffusion run (else train one)"),
    data: Path | None = typer.Option(None, help="prepared data root, to train a run"),
    work: Path | None = typer.Option(None, help="empty folder for the trained run"),
    out: Path = typer.Option(Path("benchmarks/diffusion.json"), help="result JSON"),
    init: str = typer.Option(D.init, help="pretraining run folder, or 'scratch'"),
    steps: int = typer.Option(D.steps, help="training steps"),
    batch_size: int = typer.Option(D.batch_size),
    k: int = typer.Option(D.k, "--k", help="noise draws (the run's default rule)"),
    t: int = typer.Option(D.t, "--t", help="timesteps (the run's default rule)"),
    cases: int = typer.Option(8, help="cases timed at prediction"),
    workers: int = typer.Option(1),
    threads: int = typer.Option(1, help="torch CPU threads"),
) -> None:
    """Time a diffusion classifier (given, or trained here) at its default K x T."""
    import torch

    from neurofm.atomic import write_json_atomic
    from neurofm.diffusion.bench import run_diffusion_bench, train_run
    from neurofm.errors import NeuroFMError

    torch.set_num_threads(threads)
    if model is None:
        if data is None or work is None:
            raise NeuroFMError(None, "give --model RUN, or --data and --work to train one")
        settings = DiffusionSettings(
            init=init, steps=steps, batch_size=batch_size, k=k, t=t, workers=workers
        )
        model = train_run(data, work, settings)
    result = run_diffusion_bench(model, input, cases)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    keys = ("train_seconds", "predict_seconds_per_case", "k", "t")
    typer.echo(json.dumps({key: result[key] for key in keys}))
    typer.echo(f"written to {out}")
