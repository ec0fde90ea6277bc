"""`neurofm explain` and `neurofm explain-table`: attribution maps of a finetuned run."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import track

from neurofm.cli import app, err_console
from neurofm.cli.options import Device
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
    device: Device = "auto",
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


@app.command("explain-table")
def explain_table(
    model: list[str] = typer.Option(..., help="ARM=RUN, repeatable (e.g. pretrained=runs/a)"),
    data: Path = typer.Option(..., help="a task folder of the benchmark, e.g. raw/infarct"),
    splits: str = typer.Option("test_sitea,test_siteb", help="comma-separated split names"),
    cases: int = typer.Option(16, help="lesion cases per split"),
    method: str = typer.Option(
        "gradcam,gradcam++,xgradcam,hirescam,layercam,smoothgrad,integrated_gradients",
        help="comma-separated methods",
    ),
    animate: int = typer.Option(
        2, help="cases shown as CAManim and pictures (first arm) and as maps (every arm)"
    ),
    samples: int = typer.Option(8, help="SmoothGrad samples / Integrated Gradients steps"),
    out: Path = typer.Option(..., help="new (or empty) output folder"),
    device: Device = "auto",
) -> None:
    """Localisation and sanity table (ROAD, pointing game, energy in lesion, randomisation
    correlation, case-bootstrap CIs) on cases whose lesion is known, plus an HTML page and the
    shown cases' maps for `neurofm report --explain OUT`."""
    import shlex
    import sys

    from neurofm.explain.table import lesion_cases, markdown, write_table
    from neurofm.predict import load_predictor

    arms = {}
    for spec in model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise NeuroFMError("--model", f"expected ARM=RUN, got {spec!r}")
        arms[name] = load_predictor(Path(path), device)
    tasks = {p.task.name for p in arms.values()}
    if len(tasks) != 1:
        raise NeuroFMError("--model", f"arms are for different tasks {sorted(tasks)}")
    chosen = lesion_cases([data / s for s in _split(splits)], tasks.pop(), cases)
    rows = write_table(
        arms,
        chosen,
        _split(method),
        out,
        command="neurofm " + shlex.join(sys.argv[1:]),
        animate=animate,
        samples=samples,
        warn=_warn,
        progress=lambda jobs: track(jobs, description="scoring maps"),
    )
    typer.echo(markdown(rows))
    typer.echo(f"table and page written to {out}")
