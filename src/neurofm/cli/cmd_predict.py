"""`neurofm predict`: a finetuned run on one case folder or a whole split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import track

from neurofm.cli import app
from neurofm.cli.options import DaskScheduler, DaskWorkers, Device, FailFast, OverwritePredictions
from neurofm.errors import NeuroFMError


@app.command()
def predict(
    task: str = typer.Option(
        ..., help="infarct | meningioma | brain_age, or a task file the model was made for"
    ),
    model: Path = typer.Option(..., help="finetuned run folder, or a package (folder/archive)"),
    input: Path = typer.Option(..., "--input", help="a case folder or a split folder"),
    output: Path = typer.Option(..., help="folder for <case>.txt / <case>.nii.gz"),
    device: Device = "auto",
    overwrite: OverwritePredictions = False,
    workers: DaskWorkers = 1,
    scheduler: DaskScheduler = None,
    fail_fast: FailFast = False,
) -> None:
    """Predict every case under INPUT into OUTPUT as <case>.txt or <case>.nii.gz."""
    from neurofm.atomic import disk_full_guard, remove_on_failure
    from neurofm.locks import folder_lock
    from neurofm.predict import load_predictor, predict_case_dir
    from neurofm.task_text import check_task
    from neurofm.train.runs import case_dirs, refuse_existing_outputs

    if (model / "manifest.yaml").exists() or model.is_file():
        with folder_lock(output, "neurofm predict"), disk_full_guard(output):
            _predict_with_package(task, model, input, output, device, overwrite)
        return
    predictor = load_predictor(model, device)
    check_task(task, predictor.task, model)
    cases = case_dirs(input)
    outputs = [output / f"{c.name}{predictor.task.prediction_suffix}" for c in cases]
    with folder_lock(output, "neurofm predict"), disk_full_guard(output):
        refuse_existing_outputs(outputs, overwrite)
        if scheduler is not None or workers > 1:
            _predict_on_dask(
                model, device, input, cases, output, outputs, workers, scheduler, fail_fast
            )
        else:
            with remove_on_failure(outputs):  # a failed or interrupted run adds nothing
                for case in track(cases, description=f"predicting {predictor.task.name}"):
                    predict_case_dir(predictor, case, output)
    typer.echo(f"{len(cases)} prediction(s) written to {output}")


def _predict_on_dask(
    model: Path,
    device: str,
    input: Path,
    cases: list[Path],
    output: Path,
    outputs: list[Path],
    workers: int,
    scheduler: str | None,
    fail_fast: bool,
) -> None:
    """Cases as Dask tasks: without ``fail_fast`` a bad case is named after the others are
    written (they stay); with it, or on Ctrl-C, the run adds nothing, like the serial path."""
    from rich.progress import Progress

    from neurofm.atomic import remove_on_failure
    from neurofm.data.dask_runner import dask_client, failures_error
    from neurofm.predict_batch import predict_cases

    with remove_on_failure(outputs), Progress(transient=True) as progress:
        bar = progress.add_task("predicting", total=len(cases))
        with dask_client(workers, scheduler) as client:
            _, failures = predict_cases(
                client,
                model,
                device,
                cases,
                output,
                fail_fast=fail_fast,
                on_done=lambda _case, _out: progress.advance(bar),
            )
        if failures and (fail_fast or any(f.fatal for f in failures)):
            raise failures_error(input, failures, len(cases))
    if failures:
        raise failures_error(input, failures, len(cases))


def _predict_with_package(
    task: str, package: Path, input: Path, output: Path, device: str, overwrite: bool
) -> None:
    """A package runs in its sandbox (hashes checked first, outputs validated)."""
    from neurofm.packages.archive import open_package
    from neurofm.packages.manifest import load_manifest
    from neurofm.packages.runner import run_package
    from neurofm.task_text import check_task
    from neurofm.tasks import get_task

    with open_package(package) as folder:
        declared = get_task(load_manifest(folder).task)  # a carried task.toml is read first
    check_task(task, declared, package)
    report = run_package(package, input, output, overwrite=overwrite, device=device)
    if report.error:
        raise NeuroFMError(package, report.error)
    typer.echo(
        f"{len(report.outputs)} prediction(s) written to {output} (sandbox {report.isolation})"
    )
