"""`neurofm pretrain` and `neurofm finetune` (also under `torchrun --nproc_per_node N`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import typer

from neurofm.cli import app
from neurofm.errors import NeuroFMError
from neurofm.tasks import get_task

if TYPE_CHECKING:
    from neurofm.train.distributed import DistInfo

OBJECTIVE_NAMES = ("mae", "contrastive", "hybrid", "modality")


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
    finally:
        shutdown_distributed()


@app.command("pretrain")
def pretrain_cmd(
    data: Path = typer.Argument(..., help="prepared data root (with pretrain/) or subset"),
    objective: str = typer.Option("mae", help="mae | contrastive | hybrid | modality"),
    out: Path = typer.Option(..., help="run folder"),
    preset: str = typer.Option("tiny", help="backbone preset (see `neurofm models`)"),
    steps: int = typer.Option(300, help="optimiser steps"),
    batch_size: int = typer.Option(8, help="patches per step and rank"),
    patch: int = typer.Option(32, help="patch side in voxels"),
    lr: float = typer.Option(2e-3, help="peak learning rate (AdamW, cosine)"),
    workers: int = typer.Option(2, help="loader workers per rank"),
    probe_every: int = typer.Option(0, help="online brain-age probe every N steps (0: off)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    threads: int = typer.Option(0, help="torch CPU threads (0: default)"),
    resume: bool = typer.Option(False, help="continue from OUT/checkpoints/last"),
    overwrite: bool = typer.Option(False, help="replace an existing run in OUT"),
) -> None:
    """Self-supervised pretraining on unlabeled sessions."""
    from neurofm.train.pretraining import PretrainSettings, pretrain

    if objective not in OBJECTIVE_NAMES:
        known = ", ".join(OBJECTIVE_NAMES)
        raise NeuroFMError(None, f"unknown objective {objective!r} (known: {known})")
    with _run(out, device, threads, overwrite=overwrite, resume=resume) as dist:
        settings = PretrainSettings(
            objective=objective, preset=preset, patch_size=patch, batch_size=batch_size,
            steps=steps, lr=lr, workers=workers, seed=seed, probe_every=probe_every,
        )  # fmt: skip
        res = pretrain(data, out, settings, dist, resume=resume)
        if dist.is_main:
            typer.echo(
                f"pretrained {res.steps} steps in {res.seconds:.0f}s "
                f"(data wait {100 * res.data_wait_fraction:.1f}%) -> {out}"
            )


@app.command("finetune")
def finetune_cmd(
    data: Path = typer.Argument(..., help="prepared data root (with <task>/train) or split"),
    task: str = typer.Option(..., help="infarct | meningioma | brain_age"),
    init: str = typer.Option("scratch", help="pretraining run folder, or 'scratch'"),
    mode: str = typer.Option("full", help="full | probe | adapter"),
    shots: int | None = typer.Option(None, help="use only N labelled training cases"),
    out: Path = typer.Option(..., help="run folder"),
    preset: str = typer.Option("tiny", help="backbone preset when --init scratch"),
    head: str = typer.Option(
        "linear", help="linear | mlp (classification/regression) | mil (classification)"
    ),
    pool: str = typer.Option("avg", help="avg | max | avgmax: how the bottleneck is pooled"),
    steps: int = typer.Option(150),
    batch_size: int = typer.Option(4),
    input_size: int = typer.Option(48, help="whole-volume side (classification/regression)"),
    patch: int = typer.Option(32, help="patch side (segmentation)"),
    lr: float = typer.Option(1e-3),
    encoder_lr_scale: float = typer.Option(
        1.0, help="encoder/decoder learning rate = lr x this (e.g. 0.1 for a pretrained one)"
    ),
    eval_every: int = typer.Option(15, help="validate every N steps"),
    patience: int = typer.Option(4, help="stop after N validations without improvement"),
    workers: int = typer.Option(2),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    threads: int = typer.Option(0, help="torch CPU threads (0: default)"),
    resume: bool = typer.Option(False),
    overwrite: bool = typer.Option(False),
) -> None:
    """Few-shot adaptation to one task from a pretraining run or from scratch."""
    from neurofm.models.config import HeadKind, PoolKind
    from neurofm.train.finetuning import FinetuneSettings, finetune

    get_task(task)
    if mode not in ("full", "probe", "adapter"):
        raise NeuroFMError(None, f"unknown mode {mode!r} (use full, probe or adapter)")
    if head not in get_args(HeadKind):
        raise NeuroFMError(None, f"unknown head {head!r} (use one of {get_args(HeadKind)})")
    if pool not in get_args(PoolKind):
        raise NeuroFMError(None, f"unknown pool {pool!r} (use one of {get_args(PoolKind)})")
    with _run(out, device, threads, overwrite=overwrite, resume=resume) as dist:
        settings = FinetuneSettings(
            task=task, init=init, mode=mode, shots=shots, preset=preset, head=head,  # type: ignore[arg-type]
            steps=steps, batch_size=batch_size, input_size=input_size, patch_size=patch, lr=lr,
            encoder_lr_scale=encoder_lr_scale, workers=workers, seed=seed, eval_every=eval_every,
            patience=patience, pool=pool,  # type: ignore[arg-type]
        )  # fmt: skip
        res = finetune(data, out, settings, dist, resume=resume)
        if dist.is_main:
            typer.echo(
                f"finetuned {task} for {res.steps} steps in {res.seconds:.0f}s, best "
                f"{res.best} at step {res.best_step} -> {out}"
            )
