"""`neurofm plan`: labelled cases needed for a target score, from a power-law learning curve."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app


@app.command()
def plan(
    results: list[Path] = typer.Option(
        ...,
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
    overwrite: bool = typer.Option(False, help="replace an existing OUT folder"),
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

    if out.exists() and not overwrite:
        raise NeuroFMError(out, "output folder already exists; use --overwrite")
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
        f"{curve.metric} = {f['c']:.4g} - {f['a']:.4g} * n^-{f['b']:.3g}  "
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
