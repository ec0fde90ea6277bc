"""`neurofm finetune --head diffusion` (or `finetune-diffusion`, with the diffusion's own options)
and `neurofm diffusion explain|compare`: the diffusion classifier.

Training writes a standard finetuned run (``head: diffusion`` in config.json), so `neurofm
predict`, `evaluate`, `leaderboard` and packages use it like any infarct model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from neurofm.cli import app
from neurofm.cli.options import Device, OverwriteRun, Resume, Threads
from neurofm.diffusion.settings import DiffusionSettings, settings_from_finetune
from neurofm.errors import NeuroFMError

if TYPE_CHECKING:
    from neurofm.diffusion.classify import ClassifierSettings
    from neurofm.diffusion.predictor import DiffusionPredictor

D = DiffusionSettings
diffusion_app = typer.Typer(
    name="diffusion", help="Explain or compare a diffusion classifier.", no_args_is_help=True
)
app.add_typer(diffusion_app, name="diffusion")


# options of the training commands that say how a run is executed, not what is trained
_EXECUTION = ("data", "out", "device", "threads", "resume", "overwrite")


@app.command("finetune-diffusion")
def finetune_diffusion_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="prepared data root (with <task>/train) or split"),
    task: str = typer.Option(D.task, help="a classification task (infarct)"),
    init: str = typer.Option(D.init, help="pretraining run folder, or 'scratch'"),
    out: Path = typer.Option(..., help="run folder"),
    preset: str = typer.Option(D.preset, help="backbone preset when --init scratch"),
    input_size: int = typer.Option(D.input_size, help="whole-volume side in voxels"),
    schedule: str = typer.Option(D.schedule, help="noise schedule: linear | cosine"),
    diffusion_steps: int = typer.Option(D.diffusion_steps, help="noise levels of the schedule"),
    k: int = typer.Option(D.k, "--k", help="noise draws per case (classification rule)"),
    t: int = typer.Option(D.t, "--t", help="timesteps per noise draw (classification rule)"),
    t_max: float = typer.Option(D.t_max, help="timesteps span [0, t_max x steps)"),
    class_dropout: float = typer.Option(D.class_dropout, help="share of null-class labels"),
    steps: int = typer.Option(D.steps, help="optimiser steps"),
    batch_size: int = typer.Option(D.batch_size, help="volumes per step"),
    lr: float = typer.Option(D.lr, help="peak learning rate (AdamW, cosine)"),
    workers: int = typer.Option(D.workers, help="loader workers"),
    seed: int = typer.Option(D.seed),
    device: Device = "auto",
    threads: Threads = 0,
    resume: Resume = False,
    overwrite: OverwriteRun = False,
) -> None:
    """Train a class-conditional 3D diffusion model that classifies by denoising error
    (`neurofm finetune --head diffusion` with the diffusion's own options as well)."""
    # every option but the execution ones is the recipe (same names); checked before OUT is touched
    settings = DiffusionSettings(**{n: v for n, v in ctx.params.items() if n not in _EXECUTION})
    train_diffusion(data, out, settings, device, threads, overwrite=overwrite, resume=resume)


def finetune_head_diffusion(ctx: typer.Context) -> None:
    """`neurofm finetune --head diffusion`: the recipe options the user gave there (defaults
    are finetuning's, not the diffusion recipe's, so only given ones count), then the same
    training as `finetune-diffusion`."""
    p = ctx.params

    def given(name: str) -> bool:  # by name: typer bundles a click whose enum is not click's
        return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"

    recipe = {name: value for name, value in p.items() if name not in _EXECUTION and given(name)}
    settings = settings_from_finetune(recipe)
    train_diffusion(p["data"], p["out"], settings, p["device"], p["threads"],
                    overwrite=p["overwrite"], resume=p["resume"])  # fmt: skip


def train_diffusion(
    data: Path,
    out: Path,
    settings: DiffusionSettings,
    device: str,
    threads: int,
    *,
    overwrite: bool,
    resume: bool,
) -> None:
    """Claim OUT and train: the one path behind both training commands."""
    from neurofm.cli.cmd_train import _run
    from neurofm.diffusion.training import finetune_diffusion

    if settings.init != "scratch":
        from neurofm.runfiles import load_pretrain_config

        load_pretrain_config(Path(settings.init))  # refuse a non-pretraining run before OUT
    with _run(out, device, threads, overwrite=overwrite, resume=resume) as dist:
        res = finetune_diffusion(data, out, settings, dist, resume=resume)
        if dist.is_main:
            typer.echo(f"trained the diffusion classifier for {res.steps} steps in "
                       f"{res.seconds:.0f}s (last loss {res.last.get('loss', float('nan')):.4f})"
                       f" -> {out}")  # fmt: skip


def _load(model: Path, device: str) -> DiffusionPredictor:
    from neurofm.diffusion.predictor import DiffusionPredictor
    from neurofm.predict import load_predictor

    predictor = load_predictor(model, device)
    if not isinstance(predictor, DiffusionPredictor):
        raise NeuroFMError(model, "not a diffusion classifier run (config.json head != diffusion)")
    return predictor


def _rule(predictor: DiffusionPredictor, k: int | None, t: int | None) -> ClassifierSettings:
    from dataclasses import replace

    return replace(predictor.rule, k=k or predictor.rule.k, t=t or predictor.rule.t)


@diffusion_app.command("explain")
def explain_cmd(
    model: Path = typer.Option(..., help="diffusion classifier run"),
    input: Path = typer.Option(..., "--input", help="a case folder or a split folder"),
    output: Path = typer.Option(..., help="folder for <case>_error_diff.nii.gz + CSV"),
    k: int | None = typer.Option(None, "--k", help="noise draws (default: the run's)"),
    t: int | None = typer.Option(None, "--t", help="timesteps (default: the run's)"),
    device: Device = "auto",
    overwrite: bool = typer.Option(False, help="replace existing maps"),
) -> None:
    """Error-difference maps (no infarct minus infarct) in each input's geometry, scored by
    pointing game and energy in lesion where the benchmark has a lesion mask."""
    from neurofm.diffusion.explain import MAP_SUFFIX, explain_cases, localisation_summary
    from neurofm.train.runs import case_dirs, refuse_existing_outputs

    predictor = _load(model, device)
    rule = _rule(predictor, k, t)
    cases = case_dirs(input)
    outs = [output / f"{c.name}{MAP_SUFFIX}" for c in cases] + [output / "localisation.csv"]
    refuse_existing_outputs(outs, overwrite)
    table = explain_cases(predictor, cases, output, rule)
    typer.echo(json.dumps(localisation_summary(table)))
    typer.echo(f"{len(table)} map(s) written to {output}")


@diffusion_app.command("compare")
def compare_cmd(
    model: Path = typer.Option(..., help="diffusion classifier run"),
    baseline: Path = typer.Option(..., help="discriminative run of the same task"),
    input: list[Path] = typer.Option(..., "--input", help="labelled split folder(s)"),
    out: Path = typer.Option(..., help="folder for the table, curve and per-case CSV"),
    k: int = typer.Option(8, "--k", help="largest number of noise draws"),
    t: int = typer.Option(8, "--t", help="largest number of timesteps"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples"),
    device: Device = "auto",
    overwrite: bool = typer.Option(False, help="replace an earlier comparison in OUT"),
) -> None:
    """AUROC, Brier, ECE (95% CIs on shared resamples), AUROC vs K x T, seconds per case."""
    from neurofm.diffusion.compare import OUTPUTS, predict_both, write_comparison
    from neurofm.predict import load_predictor
    from neurofm.train.runs import refuse_existing_outputs

    refuse_existing_outputs([out / n for n in OUTPUTS], overwrite)
    diffusion = _load(model, device)
    base = load_predictor(baseline, device)
    if base.task.name != diffusion.task.name:
        raise NeuroFMError(baseline, f"baseline is for {base.task.name}, not {diffusion.task.name}")
    rule = _rule(diffusion, k, t)
    got = predict_both(diffusion, base, input, rule)
    metrics = write_comparison(out, got, rule, model, baseline, input, n_boot)
    typer.echo(metrics.to_string(index=False))
    typer.echo(f"written to {out} (add it to the report: neurofm report RUN --diffusion {out})")
