"""`neurofm study`: arms x seeds with baselines, frozen recipe, seed-level uncertainty."""

from __future__ import annotations

from pathlib import Path

import typer

from neurofm.cli import app
from neurofm.cli.options import Device


@app.command()
def study(
    out: Path = typer.Option(..., help="study folder (one recipe and one phase per folder)"),
    recipe: str = typer.Option(
        "fomo25-demo-round12",  # neurofm.study.recipe.DEFAULT_RECIPE (not imported: fast --help)
        help="recipe TOML file, or a built-in name (fomo25-demo-round12, fomo25-demo-round3, "
        "fomo25-demo-3mm, fomo25-demo, fomo25-demo-novel)",
    ),
    confirm: bool = typer.Option(
        False, help="run the recipe's confirmation seeds (refused if the recipe changed since)"
    ),
    seeds: str | None = typer.Option(
        None, help="comma-separated seeds (default: the recipe's development or confirmation)"
    ),
    arms: str = typer.Option(
        "scratch,pretrained,mae,contrastive,prior,hand,random",
        help="scratch, pretrained, mae, contrastive, hybrid, modality; baselines prior, hand, "
        "random",
    ),
    backbones: str | None = typer.Option(None, help="backbone presets (default: the recipe's)"),
    shots: str = typer.Option("all", help="training cases per task, e.g. 5,10,all"),
    tasks: str = typer.Option(
        "infarct,meningioma,brain_age", help="task names or task files (docs/tasks.md)"
    ),
    data: Path | None = typer.Option(
        None, help="your labelled data in the task layout (default: synthetic benchmark per seed)"
    ),
    workers: int = typer.Option(2, help="loader and prepare workers"),
    device: Device = "cpu",
) -> None:
    """Does pretraining help out of domain, and by how much? Arms x seeds, with baselines."""
    from rich.console import Console

    from neurofm.errors import NeuroFMError
    from neurofm.locks import folder_lock
    from neurofm.study.grid import make_grid, parse_list
    from neurofm.study.recipe import load_recipe
    from neurofm.study.study import run_study
    from neurofm.tasks import get_task

    task_list = [get_task(t).name for t in parse_list(tasks, "tasks")]  # task files register
    rec = load_recipe(recipe)
    grid = make_grid(
        parse_list(arms, "arms"),
        parse_list(backbones, "backbones") if backbones else [rec.backbone],
        parse_list(shots, "shots"),
        task_list,
        rec,
    )
    seed_list = None
    if seeds is not None:
        try:
            seed_list = [int(s) for s in parse_list(seeds, "seeds")]
        except ValueError:
            raise NeuroFMError(None, f"--seeds: expected integers, got {seeds!r}") from None
    if data is not None and not data.is_dir():
        raise NeuroFMError(data, "data folder does not exist")
    console = Console()
    with folder_lock(out, "neurofm study"):
        result = run_study(
            out, rec, grid, seed_list, confirm=confirm, data=data, workers=workers,
            device=device, console=console,
        )  # fmt: skip
    console.print((result.out / "summary.md").read_text())
    console.print(f"report: {result.out / 'report' / 'index.html'}")
