"""`neurofm bench explain`: seconds for one Grad-CAM and one 3D ROAD score, written to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from neurofm.cli.cmd_bench import bench_app
from neurofm.cli.options import Device


@bench_app.command("explain")
def explain_bench(
    model: Path = typer.Option(..., help="finetuned run folder (e.g. a 4 mm demo run)"),
    case: Path = typer.Option(..., help="one case folder"),
    out: Path = typer.Option(Path("benchmarks/explain.json"), help="result JSON"),
    repeats: int = typer.Option(5, min=1, help="timed repeats (median) after one warm-up"),
    device: Device = "cpu",
) -> None:
    """Time one Grad-CAM, all gradient CAMs at every stage, and a 5-fraction ROAD score."""
    from neurofm.atomic import write_text_atomic
    from neurofm.explain.bench import run_explain_bench
    from neurofm.predict import load_predictor

    result = {
        "model": str(model),
        **run_explain_bench(load_predictor(model, device), case, repeats),
    }
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result["seconds"]))
    typer.echo(f"written to {out}")
