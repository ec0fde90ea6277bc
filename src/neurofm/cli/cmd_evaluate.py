"""`neurofm evaluate`: per-case metrics and bootstrap summary of one prediction folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app

if TYPE_CHECKING:
    import pandas as pd


@app.command()
def evaluate(
    task: str = typer.Option(
        ..., help="infarct | meningioma | brain_age, or a task file (.toml, see docs/tasks.md)"
    ),
    predictions: Path = typer.Option(..., help="folder of <case>.txt / <case>.nii.gz"),
    references: Path = typer.Option(
        ..., help="split folder with labels.csv (and <case>/label.nii.gz masks); no images needed"
    ),
    out: Path = typer.Option(
        ..., help="folder for metrics.csv, results.csv, summary.json (and strata.csv)"
    ),
    model: str = typer.Option("model", help="model name in the tidy results"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    min_stratum: int = typer.Option(
        10, min=2, help="strata with fewer cases get no interval (reported, with a warning)"
    ),
    overwrite: bool = typer.Option(False, help="replace existing results in OUT"),
) -> None:
    """Score predictions: metrics.csv (one row per case) and summary.json (95% bootstrap CIs).

    Extra labels.csv columns (age, sex, scanner, ...) become strata: strata.csv holds the
    primary metric per stratum, flagged where its interval lies below the overall one.
    """
    from neurofm.atomic import write_text_atomic
    from neurofm.evaluate import evaluate_predictions, evaluate_strata, wide_metrics
    from neurofm.results import summarise, write_results
    from neurofm.tasks import get_task, with_task
    from neurofm.train.runs import refuse_existing_outputs

    files = [out / "metrics.csv", out / "results.csv", out / "summary.json", out / "strata.csv"]
    refuse_existing_outputs(files, overwrite)
    spec = get_task(task)
    tasks = with_task(spec)
    ev = evaluate_predictions(spec, predictions, references, model)
    summary = summarise(ev.rows, n_boot=n_boot, seed=seed, tasks=tasks)
    strata, strata_warnings = evaluate_strata(
        ev.rows, spec, references, n_boot=n_boot, seed=seed, min_cases=min_stratum
    )
    out.mkdir(parents=True, exist_ok=True)
    if not strata.empty:
        write_text_atomic(files[3], strata.to_csv(index=False))
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
        "strata": strata.astype(object).where(strata.notna(), None).to_dict(orient="records"),
        "min_stratum_cases": min_stratum,
    }
    write_text_atomic(files[2], json.dumps(payload, indent=2))
    table = Table(title=f"{spec.name}: {model} ({payload['n_cases']} cases)")
    for col in ("metric", "value", "95% CI"):
        table.add_column(col)
    for r in pooled.itertuples():
        table.add_row(str(r.metric), f"{r.value:.3f}", f"[{r.ci_low:.3f}, {r.ci_high:.3f}]")
    console = Console()
    console.print(table)
    if not strata.empty:
        _print_strata(console, strata)
    for line in strata_warnings:
        typer.echo(f"warning: {line}", err=True)
    if ev.missing:
        typer.echo(f"warning: {len(ev.missing)} case(s) had no prediction, scored as worst case")


def _print_strata(console: Console, strata: pd.DataFrame) -> None:
    """The per-stratum table; flagged strata in red, those without an interval say why."""
    import pandas as pd

    metric = str(strata["metric"].iloc[0])
    table = Table(title=f"{metric} by stratum (95% CI; 'below': wholly below the overall CI)")
    for col in ("column", "stratum", "cases", metric, "95% CI", "status"):
        table.add_column(col)
    for r in strata.itertuples():
        ci = "–" if pd.isna(r.ci_low) else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]"
        value = "–" if pd.isna(r.value) else f"{r.value:.3f}"
        style = "red" if r.status == "below" else None
        table.add_row(
            str(r.column), str(r.stratum), str(r.n_cases), value, ci, str(r.status), style=style
        )
    console.print(table)
