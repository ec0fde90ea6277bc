"""`neurofm leaderboard RESULTS... [--task NAME_OR_FILE]... [--out DIR] [--n-boot N] [--seed S]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from neurofm.cli import app

if TYPE_CHECKING:
    from neurofm.ranking.leaderboard import Leaderboard


def _tables(lb: Leaderboard) -> list[Table]:
    tables = []
    for task, board in lb.tasks.items():
        arrow = "↑" if board.higher_is_better else "↓"
        t = Table(title=f"{task}: {board.metric} {arrow}, {board.n_cases} cases, 95% CI")
        for col in ("model", board.metric, "missing", "agg", "case", "test", "P(rank 1)"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for model, r in board.table.iterrows():
            t.add_row(
                str(model),
                f"{r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                str(int(r["n_missing"])),
                str(int(r["rank_aggregate"])),
                str(int(r["rank_case"])),
                f"{int(r['rank_test'])} ({int(r['wins'])} wins)",
                f"{r['p_rank1']:.2f}",
            )
        taus = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in board.kendall.items())
        t.caption = f"Kendall's tau: {taus}"
        tables.append(t)
    final = Table(title="final ranking (mean of per-task aggregate ranks)")
    for col in ("rank", "model", *lb.tasks, "mean rank"):
        final.add_column(col, justify="left" if col == "model" else "right")
    for model, r in lb.final.iterrows():
        ranks = [str(int(r[t])) for t in lb.tasks]
        final.add_row(str(int(r["rank"])), str(model), *ranks, f"{r['mean_rank']:.2f}")
    tables.append(final)
    return tables


@app.command()
def leaderboard(
    results: list[Path] = typer.Argument(
        ...,
        help="Tidy results CSVs (model,task,site,case,metric,value) or folders with results.csv",
    ),
    out: Path = typer.Option(Path("leaderboard"), "--out", help="Folder for the output files"),
    n_boot: int = typer.Option(1000, "--n-boot", min=1, help="Bootstrap resamples"),
    seed: int = typer.Option(0, "--seed", help="Seed of the shared bootstrap resamples"),
    task: list[str] = typer.Option(
        [], "--task", help="Rank only this task: a built-in name or a task file (repeatable)"
    ),
) -> None:
    """Rank models per task by several challenge methods, with bootstrap CIs and stability."""
    from neurofm.errors import NeuroFMError
    from neurofm.ranking.leaderboard import build_leaderboard, write_leaderboard
    from neurofm.results import read_results
    from neurofm.tasks import TASKS, get_task, with_task

    specs = [get_task(t) for t in task]
    registry = dict(TASKS)
    for spec in specs:
        registry |= with_task(spec)
    df = read_results(results, registry)
    if specs:
        chosen = {s.name for s in specs}
        missing = sorted(chosen - set(df["task"]))
        if missing:
            raise NeuroFMError(results[0], f"no rows for task(s) {', '.join(missing)}")
        registry = {name: spec for name, spec in registry.items() if name in chosen}
        df = df[df["task"].isin(chosen)]
    console = Console()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("ranking", total=df["task"].nunique())

        def step(task: str) -> None:
            progress.update(bar, description=f"ranked {task}", advance=1)

        lb = build_leaderboard(df, n_boot=n_boot, seed=seed, progress=step, tasks=registry)
    for table in _tables(lb):
        console.print(table)
    for path in write_leaderboard(lb, out):
        console.print(f"wrote {path}")
