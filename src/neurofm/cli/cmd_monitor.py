"""`neurofm monitor fit|score|errors|shift|icc|probe`: out-of-domain flags, black-box error
detection, their evaluation, and frozen-embedding probes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from neurofm.cli import app
from neurofm.cli.options import Device, OverwriteOut, Seed
from neurofm.train.runs import refuse_existing_outputs

EncoderRun = Annotated[Path, typer.Option(help="finetuned run whose encoder embeds the cases")]
RandomInit = Annotated[bool, typer.Option(help="also a random-init encoder (first model's)")]

monitor_app = typer.Typer(
    help="Watch a model in deployment with a foundation model's embeddings.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("fit")
def fit(
    model: EncoderRun,
    reference: Path = typer.Option(..., help="split (or case) folder of in-domain cases"),
    out: Path = typer.Option(..., help="monitor folder to write"),
    false_alarm: float = typer.Option(0.05, help="false-alarm rate on in-domain cases"),
    calibration_fraction: float = typer.Option(0.3, help="reference share held out"),
    k: int = typer.Option(5, min=1, help="neighbours of the kNN score"),
    method: str = typer.Option("knn", help="method whose flag is the case flag"),
    seed: Seed = 0,
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """Embed reference cases, fit kNN / Mahalanobis / GMM density, calibrate thresholds."""
    from neurofm.errors import NeuroFMError
    from neurofm.monitor.cases import input_cases
    from neurofm.monitor.density import METHODS
    from neurofm.monitor.embed import load_embedder
    from neurofm.monitor.monitor import MonitorSettings, fit_monitor

    refuse_existing_outputs([out], overwrite)
    if method not in METHODS:
        raise NeuroFMError(None, f"--method {method!r}: one of {', '.join(METHODS)}")
    if not 0.0 < false_alarm < 1.0:
        raise NeuroFMError(None, f"--false-alarm {false_alarm}: must be in (0, 1)")
    cases = input_cases(reference)
    embedder = load_embedder(model, device)
    emb = embedder.embed_cases(cases, label="embed reference")
    settings = MonitorSettings(false_alarm, calibration_fraction, k, method, seed)
    mon = fit_monitor([c.name for c in cases], emb, str(model), embedder.weights, settings)
    mon.save(out)
    shown = ", ".join(f"{m} {t:.3g}" for m, t in mon.thresholds.items())
    typer.echo(
        f"monitor of {len(mon.fit_ids)} reference cases, thresholds calibrated on "
        f"{len(mon.calib_ids)} held out at false-alarm {false_alarm:g}: {shown}"
    )
    if any(t == float("inf") for t in mon.thresholds.values()):
        need = math.ceil(1.0 / false_alarm - 1.0)
        typer.echo(
            f"warning: {len(mon.calib_ids)} held-out cases cannot calibrate a false-alarm rate "
            f"of {false_alarm:g} (need {need}); nothing will be flagged"
        )
    typer.echo(f"written to {out}")


@monitor_app.command("score")
def score(
    monitor: Path = typer.Argument(..., help="monitor folder from `neurofm monitor fit`"),
    input: Path = typer.Option(..., "--input", help="case folder or split folder to score"),
    out: Path = typer.Option(..., help="CSV to write (one row per case)"),
    model: Path | None = typer.Option(None, help="run to embed with (default: the monitor's)"),
    neighbours: int = typer.Option(3, min=1, help="nearest reference cases listed per case"),
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """Score cases against a monitor: scores, flags and nearest reference cases per case."""
    from neurofm.atomic import write_text_atomic
    from neurofm.monitor.cases import input_cases
    from neurofm.monitor.embed import load_embedder, weights_sha256
    from neurofm.monitor.monitor import load_monitor

    refuse_existing_outputs([out], overwrite)
    mon = load_monitor(monitor)
    run = Path(mon.model) if model is None else model
    mon.check_weights(weights_sha256(run), run)
    cases = input_cases(input)
    emb = load_embedder(run, device).embed_cases(cases, label="embed")
    table = mon.score([c.name for c in cases], emb, neighbours)
    write_text_atomic(out, table.to_csv(index=False))
    typer.echo(f"{int(table['flag'].sum())} of {len(table)} cases flagged; written to {out}")


@monitor_app.command("errors")
def errors(
    model: EncoderRun,
    val: Path = typer.Option(..., help="labelled validation split"),
    val_predictions: Path = typer.Option(..., help="black box's <case>.txt on the validation"),
    test: Path = typer.Option(..., help="labelled test split (kept apart)"),
    test_predictions: Path = typer.Option(..., help="black box's <case>.txt on the test"),
    out: Path = typer.Option(..., help="folder for errors.json, before_after.csv, cases.csv"),
    task: str = typer.Option("infarct", help="classification task of the labels"),
    max_fpr: float = typer.Option(0.2, help="largest false-positive rate allowed"),
    bb_threshold: float = typer.Option(0.5, help="the black box's own threshold"),
    k: int = typer.Option(5, min=1, help="neighbours per case"),
    seed: Seed = 0,
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """Raise a black box's sensitivity at a bounded false-positive rate from where it errs."""
    from neurofm.errors import NeuroFMError
    from neurofm.monitor.blackbox_run import run_error_detection

    refuse_existing_outputs([out], overwrite)
    if not 0.0 < max_fpr < 1.0:
        raise NeuroFMError(None, f"--max-fpr {max_fpr}: must be in (0, 1)")
    table = run_error_detection(
        model, task, (val, val_predictions), (test, test_predictions), out,
        max_fpr=max_fpr, bb_threshold=bb_threshold, k=k, seed=seed, device=device,
    )  # fmt: skip
    for r in table.itertuples():
        typer.echo(
            f"{r.rule:28s} sensitivity {r.sensitivity:.2f} ({r.sens_low:.2f}-{r.sens_high:.2f})"
            f"  specificity {r.specificity:.2f} ({r.spec_low:.2f}-{r.spec_high:.2f})"
        )
    typer.echo(f"written to {out}")


@monitor_app.command("shift")
def shift(
    model: list[Path] = typer.Option(..., help="finetuned runs whose encoders are compared"),
    reference: Path = typer.Option(..., help="in-domain reference split (e.g. source train)"),
    clean: Path = typer.Option(..., help="clean in-domain test split (corrupted copies made)"),
    site: list[Path] = typer.Option([], help="other sites' test splits (repeat the option)"),
    out: Path = typer.Option(..., help="folder for shift.csv and shift_auroc.csv"),
    corruptions: str = typer.Option("all", help="comma-separated corruption names, or all"),
    random_init: RandomInit = True,
    max_cases: int = typer.Option(30, min=2, help="test cases per split at most"),
    seed: Seed = 0,
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """Shift-detection AUROC per corruption and site, density method and encoder."""
    from neurofm.monitor.evaluation import corruption_names, load_encoders, run_shift_evaluation
    from neurofm.monitor.monitor import MonitorSettings

    refuse_existing_outputs([out], overwrite)
    names = corruption_names(corruptions)
    encoders = load_encoders(model, random_init, device)
    table = run_shift_evaluation(
        encoders, reference, clean, site, out, corruptions=names, max_cases=max_cases,
        settings=MonitorSettings(seed=seed),
    )  # fmt: skip
    wide = table.pivot_table(index="shift", columns=["method", "encoder"], values="auroc")
    typer.echo(wide.round(2).to_string())
    typer.echo(f"written to {out}")


@monitor_app.command("icc")
def icc(
    model: list[Path] = typer.Option(..., help="brain-age runs whose encoders are compared"),
    out: Path = typer.Option(..., help="folder for the rendered heads and icc.csv"),
    subjects: int = typer.Option(12, min=2, help="travelling heads"),
    preset: str = typer.Option("demo", help="benchmark preset whose sites scan the heads"),
    seed: int = typer.Option(0, help="benchmark seed (the same sites as that benchmark)"),
    random_init: RandomInit = True,
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """ICC(2,1) of embedding dimensions for the same synthetic heads scanned at every site."""
    from neurofm.monitor.evaluation import load_encoders, run_icc

    refuse_existing_outputs([out], overwrite)
    encoders = load_encoders(model, random_init, device)
    table = run_icc(encoders, out, subjects=subjects, preset=preset, seed=seed)
    typer.echo(table.round(3).to_string(index=False))
    typer.echo(f"written to {out}")


@monitor_app.command("probe")
def probe(
    model: Path = typer.Option(..., help="finetuned run whose frozen encoder embeds the cases"),
    data: Path = typer.Option(..., help="labelled split (labels.csv with label or age)"),
    task: str = typer.Option(..., help="task of the labels: infarct | brain_age"),
    out: Path = typer.Option(..., help="folder for probe.json and oof.csv"),
    outer: int = typer.Option(10, min=2, help="outer folds (scoring)"),
    inner: int = typer.Option(5, min=2, help="inner folds (probe and feature selection)"),
    forest: bool = typer.Option(True, help="also try random-forest probes (slower)"),
    seed: Seed = 0,
    device: Device = "cpu",
    overwrite: OverwriteOut = False,
) -> None:
    """Nested cross-validation of classical probes on frozen embeddings."""
    import numpy as np

    from neurofm.monitor.probe_run import run_probe

    refuse_existing_outputs([out], overwrite)
    res = run_probe(model, data, task, out, outer=outer, inner=inner, forest=forest,
                    seed=seed, device=device)  # fmt: skip
    sd = float(np.std(res.fold_scores, ddof=1))
    typer.echo(f"{res.metric} {res.mean:.3f} (sd {sd:.3f} over {outer} outer folds)")
    typer.echo(f"written to {out}")


@monitor_app.command("report")
def report(
    monitor: Path = typer.Argument(..., help="monitor folder"),
    scores: Path = typer.Option(..., help="CSV written by `neurofm monitor score`"),
    out: Path = typer.Option(..., help="HTML page to write"),
    errors: Path | None = typer.Option(None, help="folder of `neurofm monitor errors`"),
    shift: Path | None = typer.Option(None, help="folder of `neurofm monitor shift`"),
    overwrite: OverwriteOut = False,
) -> None:
    """A self-contained HTML page: score distributions, flagged cases, before/after, AUROC."""
    from neurofm.atomic import write_text_atomic
    from neurofm.monitor.monitor import load_monitor
    from neurofm.monitor.report import render_monitor_page

    refuse_existing_outputs([out], overwrite)
    page = render_monitor_page(load_monitor(monitor), scores, errors, shift)
    write_text_atomic(out, page)
    typer.echo(f"written to {out}")
