"""`neurofm demo`: the main job on the embedded synthetic benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import typer

from neurofm.cli import app
from neurofm.cli.options import Seed


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="folder for data, runs, results and report"),
    preset: str = typer.Option("demo", help="synth preset: tiny | demo | full"),
    seed: Seed = 0,
    quality: bool = typer.Option(
        False,
        "--quality",
        help="the quality preset: recipe fomo25-demo-3mm (3 mm, same field of view; about 3x "
        "the CPU time, under 60 minutes on 2 cores)",
    ),
    objective: str | None = typer.Option(
        None,
        help="pretraining for pooled heads (brain age; infarct with --infarct-head linear|mlp): "
        "mae | contrastive | hybrid | modality (default: the recipe's, mae)",
    ),
    decoder_objective: str | None = typer.Option(
        None,
        help="pretraining for models with a decoder (meningioma, MIL infarct): mae | hybrid | "
        "modality (default: the recipe's, mae)",
    ),
    infarct_head: str | None = typer.Option(None, help="mil (the recipe's) | linear | mlp"),
    pretrain_steps: int | None = typer.Option(None, help="default: the recipe's (300)"),
    finetune_steps: int | None = typer.Option(None, help="default: the recipe's (600)"),
    segmentation_steps: int | None = typer.Option(
        None, help="meningioma finetuning steps (default: the recipe's, 1200)"
    ),
    spacing: float | None = typer.Option(
        None,
        help="preprocessing voxel size in mm (the recipe's, 4); input and patch sizes follow, "
        "keeping the field of view",
    ),
    workers: int | None = typer.Option(None, help="loader/prepare workers (2)"),
    n_boot: int | None = typer.Option(None, help="bootstrap resamples (the recipe's, 5000)"),
    overwrite: bool = typer.Option(False, help="start afresh instead of reusing finished stages"),
) -> None:
    """synth -> prepare -> pretrain -> few-shot finetune -> evaluate OOD -> HTML report.

    Settings come from the default study recipe (fomo25-demo-round12), or with --quality from
    fomo25-demo-3mm; the options override single values."""
    from neurofm.demo import DemoSettings, run_demo
    from neurofm.errors import NeuroFMError
    from neurofm.locks import folder_lock
    from neurofm.models.config import HeadKind
    from neurofm.pretrain.objectives import get_objective

    if infarct_head is not None and infarct_head not in get_args(HeadKind):
        raise NeuroFMError(None, f"unknown infarct head {infarct_head!r} (use mil, linear or mlp)")
    for name in (objective, decoder_objective):
        if name is not None:
            get_objective(name)  # unknown names: one-line error before anything runs
    given: dict[str, Any] = {
        "objective": objective, "decoder_objective": decoder_objective,
        "infarct_head": infarct_head,
        "pretrain_steps": pretrain_steps, "finetune_steps": finetune_steps,
        "segmentation_steps": segmentation_steps, "spacing": spacing,
        "workers": workers, "n_boot": n_boot,
    }  # fmt: skip
    settings = DemoSettings(
        preset=preset,
        seed=seed,
        quality=quality,
        **{k: v for k, v in given.items() if v is not None},
    )
    with folder_lock(out, "neurofm demo"):
        run_demo(out, settings, overwrite=overwrite)
