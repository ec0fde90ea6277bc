"""`neurofm baseline` (prior / hand-feature predictions) and `neurofm random-init`."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app
from neurofm.cli.options import OverwritePredictions, OverwriteRun


@app.command()
def baseline(
    name: str = typer.Argument(..., help="prior | hand (random features: neurofm random-init)"),
    task: str = typer.Option(..., help="infarct | meningioma | brain_age"),
    train: Path = typer.Option(..., help="labelled training split (with labels.csv)"),
    input: Path = typer.Option(..., "--input", help="a split folder or one case folder"),
    output: Path = typer.Option(..., help="folder for <case>.txt / <case>.nii.gz"),
    overwrite: OverwritePredictions = False,
) -> None:
    """Fit a baseline on TRAIN and predict INPUT in the format of `neurofm predict`."""
    from neurofm.baselines import fit_baseline

    fitted = fit_baseline(name, task, train)
    written = fitted.predict_split(input, output, overwrite=overwrite, progress=True)
    params = ", ".join(f"{k}={v:.4g}" for k, v in fitted.params.items()) or "no parameters"
    typer.echo(
        f"{name} baseline for {task} fitted on {len(fitted.train_cases)} case(s) ({params}); "
        f"{len(written)} prediction(s) written to {output}"
    )


@app.command("random-init")
def random_init(
    data: Path = typer.Argument(..., help="prepared data the arms finetune on (neurofm prepare)"),
    task: str = typer.Option(..., help="infarct | meningioma | brain_age"),
    out: Path = typer.Option(..., help="folder for the random 'pretraining' run"),
    preset: str = typer.Option("tiny", help="backbone preset of the scratch arm"),
    head: str = typer.Option("linear", help="head of the scratch arm (linear | mlp | mil)"),
    pool: str = typer.Option("avg", help="pooling of the scratch arm (avg | max | avgmax)"),
    seed: int = typer.Option(0, help="seed of the scratch arm"),
    overwrite: OverwriteRun = False,
) -> None:
    """Random-features baseline: save the scratch arm's random init as a pretraining run.

    Then `neurofm finetune DATA --task T --init OUT --mode probe` (with the scratch arm's other
    options) trains the same probe on that frozen random encoder.
    """
    from neurofm.baselines.random_features import write_random_init
    from neurofm.train.settings import FinetuneSettings

    settings = FinetuneSettings(task=task, preset=preset, head=head, pool=pool, seed=seed)  # type: ignore[arg-type]
    folder = write_random_init(out, settings, data, overwrite=overwrite)
    typer.echo(
        f"random init of the {preset} {task} model (seed {seed}) -> {folder}; next: neurofm "
        f"finetune {data} --task {task} --init {folder} --mode probe --head {head} --pool {pool} "
        f"--seed {seed}"
    )
