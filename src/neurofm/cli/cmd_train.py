"""`neurofm pretrain` and `neurofm finetune` (also under `torchrun --nproc_per_node N`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from neurofm.cli import app
from neurofm.cli.options import Device, Loader, OverwriteRun, Resume, Threads
from neurofm.train.settings import FinetuneSettings, PretrainSettings

if TYPE_CHECKING:
    from neurofm.train.distributed import DistInfo

# defaults are the settings' own (class attributes: reading them imports no torch)
P, F = PretrainSettings, FinetuneSettings


def _input_mix(pairs: list[str] | None) -> dict[str, float] | None:
    """``["dwi_b1000=1", "adc=-1"]`` as ``{"dwi_b1000": 1.0, "adc": -1.0}`` (None: not given)."""
    if not pairs:
        return None
    mix: dict[str, float] = {}
    for pair in pairs:
        name, sep, weight = pair.partition("=")
        try:
            if not sep or not name or name in mix:
                raise ValueError
            mix[name] = float(weight)
        except ValueError:
            raise typer.BadParameter(
                f"{pair!r} is not CHANNEL=NUMBER (each channel once)", param_hint="--input-mix"
            ) from None
    return mix


@contextmanager
def _run(
    out: Path, device: str, threads: int, *, overwrite: bool, resume: bool
) -> Iterator[DistInfo]:
    """Join the process group, let rank 0 claim the run folder, and leave the group at the end."""
    import torch

    from neurofm.atomic import disk_full_guard
    from neurofm.locks import folder_lock
    from neurofm.train.distributed import barrier, init_distributed, shutdown_distributed
    from neurofm.train.runs import prepare_run_dir

    if threads > 0:
        torch.set_num_threads(threads)
    dist = init_distributed(device)
    try:
        with ExitStack() as held:
            held.enter_context(disk_full_guard(out, "free space and run again with --resume"))
            if dist.is_main:  # one writer per run folder: rank 0 holds it for the whole run
                held.enter_context(folder_lock(out))
                prepare_run_dir(out, overwrite=overwrite, resume=resume)
            barrier(dist)
            yield dist
            # every rank reaches here before any tears its sockets down: a gloo rank that sees
            # its peer close while it still finishes its own work can abort (SIGABRT) at exit
            barrier(dist)
    finally:
        shutdown_distributed()


@app.command("pretrain")
def pretrain_cmd(
    data: Path = typer.Argument(..., help="prepared data root (with pretrain/) or subset"),
    objective: str = typer.Option(P.objective, help="mae | contrastive | hybrid | modality"),
    out: Path = typer.Option(..., help="run folder"),
    preset: str = typer.Option(P.preset, help="backbone preset (see `neurofm models`)"),
    steps: int = typer.Option(P.steps, help="optimiser steps"),
    batch_size: int = typer.Option(P.batch_size, help="patches per step and rank"),
    patch: int = typer.Option(P.patch_size, help="patch side in voxels"),
    lr: float = typer.Option(P.lr, help="peak learning rate (AdamW, cosine)"),
    workers: int = typer.Option(P.workers, help="loader workers per rank"),
    loader: Loader = P.loader,
    probe_every: int = typer.Option(
        P.probe_every, help="online brain-age probe every N steps (0: off)"
    ),
    seed: int = typer.Option(P.seed),
    device: Device = "auto",
    threads: Threads = 0,
    resume: Resume = False,
    overwrite: OverwriteRun = False,
) -> None:
    """Self-supervised pretraining on unlabeled sessions."""
    from neurofm.train.pretraining import pretrain

    options: dict[str, Any] = {
        "objective": objective, "preset": preset, "patch_size": patch, "batch_size": batch_size,
        "steps": steps, "lr": lr, "workers": workers, "loader": loader, "seed": seed,
        "probe_every": probe_every,
    }  # fmt: skip
    settings = PretrainSettings(**options)  # checks every value before OUT is touched
    with _run(out, device, threads, overwrite=overwrite, resume=resume) as dist:
        res = pretrain(data, out, settings, dist, resume=resume)
        if dist.is_main:
            typer.echo(
                f"pretrained {res.steps} steps in {res.seconds:.0f}s "
                f"(data wait {100 * res.data_wait_fraction:.1f}%) -> {out}"
            )


@app.command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="prepared data root (with <task>/train) or split"),
    task: str = typer.Option(..., help="infarct | meningioma | brain_age, or a task file"),
    init: str = typer.Option(F.init, help="pretraining run folder, or 'scratch'"),
    mode: str = typer.Option(F.mode, help="full | probe | adapter"),
    shots: int | None = typer.Option(F.shots, help="use only N labelled training cases"),
    out: Path = typer.Option(..., help="run folder"),
    preset: str = typer.Option(F.preset, help="backbone preset when --init scratch"),
    head: str = typer.Option(
        F.head,
        help="linear | mlp (classification/regression) | mil | diffusion (classification; "
        "diffusion: docs/diffusion.md)",
    ),
    pool: str = typer.Option(F.pool, help="avg | max | avgmax: how the bottleneck is pooled"),
    mil_head_only: bool = typer.Option(
        F.mil_head_only, help="mil head: rank only voxels inside the head, never air"
    ),
    largest_component: bool = typer.Option(
        F.largest_component, help="segmentation: keep only the largest predicted component"
    ),
    fusion: str = typer.Option(
        F.fusion,
        help="early: sequences as channels of one encoder pass | late: one shared-encoder pass "
        "per sequence, embeddings concatenated (classification/regression)",
    ),
    steps: int = typer.Option(F.steps, help="optimiser steps"),
    batch_size: int = typer.Option(F.batch_size, help="samples per step and rank"),
    input_size: int = typer.Option(
        F.input_size, help="whole-volume side (classification/regression)"
    ),
    patch: int = typer.Option(F.patch_size, help="patch side (segmentation)"),
    lr: float = typer.Option(F.lr, help="peak learning rate (AdamW, warm-up then --schedule)"),
    schedule: str = typer.Option(
        F.schedule, help="decay after the warm-up: cosine | poly (nnU-Net's (1 - t)^0.9)"
    ),
    encoder_lr_scale: float = typer.Option(
        F.encoder_lr_scale,
        help="encoder/decoder learning rate = lr x this (smaller for a pretrained one)",
    ),
    augment: str = typer.Option(
        F.augment,
        help="none | geometric (flips, affine) | full (also thick slices, bias field, gamma, "
        "noise) | strong (those twice as often)",
    ),
    eval_every: int = typer.Option(F.eval_every, help="validate every N steps"),
    patience: int = typer.Option(F.patience, help="stop after N validations without improvement"),
    input_mix: list[str] | None = typer.Option(
        None,
        help="CHANNEL=WEIGHT, repeatable: the pretrained first conv starts on this weighted sum "
        "of the task's channels (e.g. dwi_b1000=1 adc=-1), every other channel at zero",
    ),
    select: str = typer.Option(
        F.select,
        help="weights kept: best (lowest validation loss, early stopping) | last (final step, "
        "no early stopping; validation only logged)",
    ),
    workers: int = typer.Option(F.workers, help="loader workers per rank"),
    loader: Loader = F.loader,
    seed: int = typer.Option(F.seed),
    device: Device = "auto",
    threads: Threads = 0,
    resume: Resume = False,
    overwrite: OverwriteRun = False,
) -> None:
    """Few-shot adaptation to one task from a pretraining run or from scratch."""
    if head == "diffusion":  # a generative classifier: a recipe and a trainer of its own
        from neurofm.cli.cmd_diffusion import finetune_head_diffusion

        finetune_head_diffusion(ctx)
        return
    from neurofm.tasks import get_task
    from neurofm.train.finetuning import finetune

    options: dict[str, Any] = {
        "task": task, "init": init, "mode": mode, "shots": shots, "preset": preset, "head": head,
        "pool": pool, "mil_head_only": mil_head_only, "largest_component": largest_component,
        "fusion": fusion, "steps": steps,
        "batch_size": batch_size, "input_size": input_size, "patch_size": patch, "lr": lr,
        "encoder_lr_scale": encoder_lr_scale, "workers": workers, "loader": loader, "seed": seed,
        "eval_every": eval_every, "patience": patience, "augment": augment,
        "schedule": schedule, "select": select, "input_mix": _input_mix(input_mix),
    }  # fmt: skip
    settings = FinetuneSettings(**options)  # checks every value before OUT is touched
    with _run(out, device, threads, overwrite=overwrite, resume=resume) as dist:
        res = finetune(data, out, settings, dist, resume=resume)
        if dist.is_main:
            typer.echo(
                f"finetuned {get_task(task).name} for {res.steps} steps in {res.seconds:.0f}s, "
                f"best {res.best} at step {res.best_step} -> {out}"
            )
