"""`neurofm models`: the U-Net presets with their size and cost per patch."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from neurofm.cli import app
from neurofm.errors import NeuroFMError


def _millions(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e6:,.2f}"


def _giga(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1e9:,.2f}"


@app.command()
def models(
    patch: int = typer.Option(64, help="Cubic patch side in voxels for the FLOP count."),
) -> None:
    """List model presets: parameters and forward GFLOPs per 1-channel patch (U-Net, encoder)."""
    from neurofm.models import MODEL_PRESETS, preset_stats

    if patch < 1:
        raise NeuroFMError("--patch", f"must be a positive number of voxels, got {patch}")
    stats = [preset_stats(name, patch) for name in MODEL_PRESETS]
    table = Table(title=f"U-Net presets: size, forward GFLOPs per 1x{patch}^3 patch")
    for column in ("preset", "features", "blocks"):
        table.add_column(column, no_wrap=True)
    for column in ("multiple", "params M", "enc params M", "GFLOPs", "enc GFLOPs"):
        table.add_column(column, justify="right", no_wrap=True)
    for s in stats:
        table.add_row(
            s.name,
            ",".join(map(str, s.features)),
            ",".join(map(str, s.blocks)),
            str(s.divisor),
            _millions(s.params_unet),
            _millions(s.params_encoder),
            _giga(s.flops_unet),
            _giga(s.flops_encoder),
        )
    console = Console(width=max(Console().width, 110))  # pipes default to 80 columns
    console.print(table)
    if any(s.flops_unet is None for s in stats):
        console.print("n/a: the patch must be a multiple of the preset's 'multiple', >= 2x it.")
