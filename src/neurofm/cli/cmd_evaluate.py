"""`neurofm evaluate`: per-case metrics and bootstrap summary of one prediction folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app


@app.command()
def evaluate(
    task: str = typer.Option(
        ..., help="infarct | meningioma | brain_age, or a task file (.toml, see docs/tasks.md)"
    ),
    predictions: Path = typer.Option(..., help="folder of <case>.txt / <case>.nii.gz"),
    references: Path = typer.Option(
        ..., help="split folder with labels.csv (and <case>/label.nii.gz masks); no images needed"
    ),
    out: Path = typer.Option(..., help="folder for metrics.csv, results.csv, summary.json"),
    model: str = typer.Option("model", help="model name in the tidy results"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    overwrite: bool = typer.Option(False, help="replace existing results in OUT"),
) -> None:
    """Score predictions: metrics.csv (one row per case) and summary.json (95% bootstrap CIs)."""
    from neurofm.atomic import write_text_atomic
    from neurofm.evaluate import evaluate_predictions, wide_metrics
    from neurofm.results import summarise, write_results
    from neurofm.tasks import get_task, with_task
    from neurofm.train.runs import refuse_existing_outputs

    files = [out / "metrics.csv", out / "results.csv", out / "summary.json"]
    refuse_existing_outputs(files, overwrite)
    spec = get_task(task)
    tasks = with_task(spec)
    ev = evaluate_predictions(spec, predictions, references, model)
    summary = summarise(ev.rows, n_boot=n_boot, seed=seed, tasks=tasks)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(files[0], wide_metrics(ev.rows).to_csv(index=False))
    write_results(ev.rows, files[1], tasks)
    pooled = summary[summary["site"] == "all"]
    payload = {
        "task": spec.name,
        "model": model,
        "n_cases": int(ev.rows["case"].nunique()),
        "missing": ev.missing,
        "missing_policy": "scored as worst case (see neurofm.evaluate)",
        "n_boot": n_boot,
        "seed": seed,
        "metrics": {
            r.metric: {"value": r.value, "ci_low": r.ci_low, "ci_high": r.ci_high}
            for r in pooled.itertuples()
        },
        "by_site": summary.to_dict(orient="records"),
    }
    write_text_atomic(files[2], json.dumps(payload, indent=2))
    table = Table(title=f"{spec.name}: {model} ({payload['n_cases']} cases)")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for r in pooled.itertuples():
        table.add_row(str(r.metric), f"{r.value:.3f}", f"[{r.ci_low:.3f}, {r.ci_high:.3f}]")
    Console().print(table)
    if ev.missing:
        typer.echo(f"warning: {len(ev.missing)} case(s) had no prediction, scored as worst case")
