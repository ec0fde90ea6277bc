"""`neurofm explain` and `neurofm explain-table`: attribution maps of a finetuned run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import track

from neurofm.cli import app, err_console
from neurofm.errors import NeuroFMError


def _warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _number(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise NeuroFMError(option, f"not a number: {text!r}") from exc


@app.command()
def explain(
    model: Path = typer.Option(..., help="finetuned run folder"),
    input: Path = typer.Option(..., "--input", help="a case folder or a split folder"),
    method: str = typer.Option(
        "gradcam",
        help="comma-separated: gradcam, gradcam++, xgradcam, hirescam, layercam, "
        "scorecam, smoothgrad, integrated_gradients",
    ),
    layer: str = typer.Option(
        "", help="CAM layer(s), comma-separated, or 'all' (CAManim); default: the last stage"
    ),
    out: Path = typer.Option(..., help="new (or empty) output folder"),
    road: bool = typer.Option(True, help="score every map with 3D ROAD"),
    metacam: str = typer.Option(
        "", help="MetaCAM of the methods' maps: top-k percentages to search, e.g. 1,5,10,25"
    ),
    samples: int = typer.Option(8, help="SmoothGrad samples / Integrated Gradients steps"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Maps of each METHOD for every case under INPUT, in the input's geometry, plus PNGs."""
    from neurofm.explain.run import explain_inputs
    from neurofm.predict import load_predictor

    predictor = load_predictor(model, device)
    done = explain_inputs(
        predictor,
        input,
        out,
        _split(method),
        _split(layer) or None,
        with_road=road,
        metacam_ks=[_number("--metacam", v) for v in _split(metacam)],
        samples=samples,
        warn=_warn,
        progress=lambda cases: track(cases, description="explaining"),
    )
    typer.echo(f"maps written to {done}")
