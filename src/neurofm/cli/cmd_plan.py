"""`neurofm plan`: labelled cases needed for a target score, from a power-law learning curve."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app
from neurofm.cli.options import Device, OverwriteOut


@app.command()
def plan(
    results: list[Path] | None = typer.Option(
        None,
        help="curve CSVs (shots,score[,repeat]) or tidy results CSVs with models named "
        "shots<N>-r<R> (repeat the option for several files)",
    ),
    task: str = typer.Option(..., help="infarct | meningioma | brain_age"),
    target: float = typer.Option(..., help="score to reach, in the metric's units"),
    out: Path = typer.Option(..., help="folder for plan.json, curve.csv, curve.png"),
    metric: str | None = typer.Option(None, help="metric (default: the task's primary one)"),
    site: str = typer.Option("all", help="site of tidy results to score ('all': pooled)"),
    n_boot: int = typer.Option(1000, min=50, help="bootstrap resamples"),
    seed: int = typer.Option(0, help="bootstrap seed"),
    overwrite: OverwriteOut = False,
    data: Path | None = typer.Option(None, help="prepared data: launch the curve's runs first"),
    eval_split: Path | None = typer.Option(None, help="raw labelled split the runs are scored on"),
    shots: str = typer.Option("5,10,20", help="shot counts of the launched runs"),
    repeats: int = typer.Option(3, min=1, help="runs per shot count (seeds 1..R)"),
    init: str = typer.Option("scratch", help="pretraining run or scratch, for launched runs"),
    mode: str = typer.Option("full", help="full | probe | adapter, for launched runs"),
    steps: int = typer.Option(150, min=1, help="finetuning steps of launched runs"),
    runs: Path | None = typer.Option(None, help="folder of launched runs (default OUT-runs)"),
    device: Device = "cpu",
) -> None:
    """Fit score = c - a*n^(-b) to finetuning runs at several shot counts and report n@target.

    A target beyond the curve's asymptote is an error (exit 2, nothing written); a target the
    points do not pin down is written as "cannot extrapolate" with the reasons.
    """
    from neurofm.errors import NeuroFMError
    from neurofm.plan.curve import group_points
    from neurofm.plan.estimate import plan_target
    from neurofm.plan.inputs import read_curve
    from neurofm.plan.output import write_plan
    from neurofm.train.runs import refuse_existing_outputs

    refuse_existing_outputs([out], overwrite)
    results = list(results or [])
    if data is not None:
        runs_dir = runs or out.with_name(out.name + "-runs")
        launched = _launch(data, eval_split, task, shots, repeats, init, mode, steps, runs_dir,
                           device)  # fmt: skip
        results = [*results, launched]
    if not results:
        raise NeuroFMError(None, "give --results files, or --data and --eval-split to launch runs")
    curve = read_curve(results, task, metric, site)
    points = group_points(curve.shots, curve.scores, str(results[0]))
    result = plan_target(
        points, target, higher_is_better=curve.higher_is_better, n_boot=n_boot, seed=seed
    )
    if result.unreachable:
        c_lo, c_hi = result.asymptote_ci
        raise NeuroFMError(
            results[0],
            f"target {curve.metric} {target:g} is beyond what the curve reaches (asymptote "
            f"{result.fit['c']:.4g}, 95% CI {c_lo:.4g}..{c_hi:.4g})",
        )
    write_plan(curve, result, out, task)
    f = result.fit
    typer.echo(
        f"{curve.metric} = {f['c']:.4g} {'-' if f['a'] >= 0 else '+'} {abs(f['a']):.4g} "
        f"* n^-{f['b']:.3g}  "
        f"(asymptote 95% CI {result.asymptote_ci[0]:.4g}..{result.asymptote_ci[1]:.4g}; "
        f"early slope {result.early_slope:+.4g} per doubling)"
    )
    if result.status == "ok" and result.n_needed is not None and result.n_ci is not None:
        typer.echo(
            f"n for {curve.metric} {target:g}: {result.n_needed:.0f} "
            f"(95% CI {result.n_ci[0]:.0f}..{result.n_ci[1]:.0f})"
        )
    else:
        typer.echo(f"n for {curve.metric} {target:g}: cannot extrapolate")
        for reason in result.reasons:
            typer.echo(f"  - {reason}")
    typer.echo(f"written to {out}")


def _launch(
    data: Path, eval_split: Path | None, task: str, shots: str, repeats: int, init: str,
    mode: str, steps: int, runs: Path, device: str,
) -> Path:  # fmt: skip
    """Run the learning curve's finetuning runs; returns their tidy results CSV."""
    from neurofm.errors import NeuroFMError
    from neurofm.plan.launch import launch_curve
    from neurofm.train.finetuning import FinetuneSettings

    if eval_split is None:
        raise NeuroFMError(None, "--data needs --eval-split (the raw split the runs are scored on)")
    try:
        counts = sorted({int(v) for v in shots.split(",") if v.strip()})
    except ValueError:
        raise NeuroFMError(None, f"--shots {shots!r}: comma-separated integers") from None
    base = FinetuneSettings(task=task, init=init, mode=mode, steps=steps)  # type: ignore[arg-type]
    return launch_curve(data, eval_split, runs, base, counts, repeats, device)
