"""`neurofm demo`: the main job on the embedded synthetic benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app
from neurofm.demo import DemoSettings, run_demo


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="folder for data, runs, results and report"),
    preset: str = typer.Option("demo", help="synth preset: tiny | demo | full"),
    seed: int = typer.Option(0),
    pretrain_steps: int = typer.Option(DemoSettings.pretrain_steps),
    finetune_steps: int = typer.Option(DemoSettings.finetune_steps),
    spacing: float = typer.Option(DemoSettings.spacing, help="preprocessing voxel size in mm"),
    workers: int = typer.Option(DemoSettings.workers),
    n_boot: int = typer.Option(DemoSettings.n_boot, help="bootstrap resamples"),
    overwrite: bool = typer.Option(False, help="start afresh instead of reusing finished stages"),
) -> None:
    """synth -> prepare -> pretrain (MAE) -> few-shot finetune -> evaluate OOD -> HTML report."""
    settings = DemoSettings(
        preset=preset, seed=seed, spacing=spacing, pretrain_steps=pretrain_steps,
        finetune_steps=finetune_steps, workers=workers, n_boot=n_boot,
    )  # fmt: skip
    run_demo(out, settings, overwrite=overwrite)
