"""`neurofm predict`: a finetuned run on one case folder or a whole split."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import track

from neurofm.cli import app
from neurofm.errors import NeuroFMError


@app.command()
def predict(
    task: str = typer.Option(
        ..., help="infarct | meningioma | brain_age, or a task file the model was made for"
    ),
    model: Path = typer.Option(..., help="finetuned run folder, or a package (folder/archive)"),
    input: Path = typer.Option(..., "--input", help="a case folder or a split folder"),
    output: Path = typer.Option(..., help="folder for <case>.txt / <case>.nii.gz"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    overwrite: bool = typer.Option(False, help="replace existing predictions"),
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
        with remove_on_failure(outputs):  # a failed or interrupted run adds nothing
            for case in track(cases, description=f"predicting {predictor.task.name}"):
                predict_case_dir(predictor, case, output)
    typer.echo(f"{len(cases)} prediction(s) written to {output}")


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
