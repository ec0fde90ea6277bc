"""`neurofm prepare SRC DST`: preprocess any supported layout into the chunked cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app
from neurofm.cli.options import DaskScheduler, DaskWorkers, FailFast
from neurofm.errors import NeuroFMError


def parse_spacing(text: str) -> tuple[float, float, float] | None:
    """``"4"`` -> 4 mm isotropic, ``"1,1,3"`` -> per axis, ``"native"`` -> keep each input's."""
    if text.strip().lower() == "native":
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise NeuroFMError(
            "--spacing", f"{text!r} is not a number, three numbers or 'native'"
        ) from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) <= 0:
        raise NeuroFMError("--spacing", f"{text!r}: need one or three positive numbers (mm)")
    return (values[0], values[1], values[2])


def parse_clip(text: str) -> tuple[float, float]:
    """``"0.5,99.5"`` -> the per-channel clip as head percentiles (checked by the params)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise NeuroFMError("--clip", f"{text!r}: need two percentiles LO,HI") from None
    return (lo, hi)


@app.command()
def prepare(
    src: Path = typer.Argument(
        ..., help="Benchmark/task root, task or split folder, or any layout."
    ),
    dst: Path = typer.Argument(..., help="Destination of the prepared cache."),
    spacing: str = typer.Option(
        "1,1,1",  # neurofm.data.preprocess.DEFAULT_SPACING (not imported: keeps --help fast)
        help="Target voxel size in mm: one number, three (x,y,z) or 'native'. The demo uses 4.",
    ),
    clip: str = typer.Option(
        "0,100",  # PreprocessParams' default, the default recipe's (not imported: fast --help)
        help="Per-channel intensity clip before the z-score, as percentiles LO,HI of the head's "
        "voxels; the default 0,100 clips nothing, so a lesion brighter than 99.5 % of the head "
        "keeps its contrast (0.5,99.5 was the default before development round 12).",
    ),
    workers: DaskWorkers = 1,
    scheduler: DaskScheduler = None,
    fail_fast: FailFast = False,
    dry_run: bool = typer.Option(
        False, help="Only list what would be done (reads no image, writes nothing)."
    ),
    overwrite: bool = typer.Option(False, help="Redo every case even if unchanged."),
    unpack: bool = typer.Option(
        False,
        help="Also keep each case as memory-mappable .npy (3x the disk; patches read several "
        "times faster, with --loader threads in training).",
    ),
    subset: str = typer.Option("pretrain", help="DST subfolder for layouts without tasks."),
    task: list[str] = typer.Option(
        [], help="Your task file (.toml): its <name>/<split> folders are prepared with targets."
    ),
) -> None:
    """Resample, crop and normalise every case into DST (idempotent, resumable, atomic)."""
    from neurofm.data.prepare import plan_run
    from neurofm.data.prepare import prepare as run_prepare
    from neurofm.data.preprocess import PreprocessParams
    from neurofm.locks import folder_lock
    from neurofm.tasks import get_task

    for t in task:  # a loaded task file is known by its name, like the built-in folders
        get_task(t)
    params = PreprocessParams(spacing=parse_spacing(spacing), clip_percentiles=parse_clip(clip))
    if dry_run:
        plan = Table("subset", "cases", "new", "unchanged", "to re-check")
        for row in plan_run(src, dst, params, subset):
            plan.add_row(
                row.name or ".", str(row.cases), str(row.new), str(row.unchanged), str(row.recheck)
            )
        Console().print(plan)
        return
    with folder_lock(dst, "neurofm prepare"):
        reports = run_prepare(
            src,
            dst,
            params=params,
            workers=workers,
            scheduler=scheduler,
            fail_fast=fail_fast,
            overwrite=overwrite,
            subset=subset,
            unpack=unpack,
        )
    table = Table("subset", "cases", "prepared", "unchanged", "orphans")
    for r in reports:
        table.add_row(
            r.name or ".", str(r.cases), str(r.prepared), str(r.reused), str(len(r.orphans))
        )
    console = Console()
    console.print(table)
    for r in reports:
        if r.orphans:
            console.print(
                f"[yellow]{r.name or '.'}: {len(r.orphans)} prepared case(s) no longer in the "
                f"source (left in place, not in the manifest): {', '.join(r.orphans[:5])}"
            )
