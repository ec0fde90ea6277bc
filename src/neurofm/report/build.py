"""Build the static HTML report: ``index.html`` (summary, leaderboards, plots) and ``viewer.html``.

The folder is self-contained and works offline from file:// (no CDN, no server): styles, scripts,
figures (PNG) and the niivue bundle are files beside the pages; volumes for the viewer are
embedded in ``cases/*.js`` (see :mod:`neurofm.report.viewer`). The statistics become a
:class:`~neurofm.report.model.ReportModel` first; the Jinja2 templates only lay it out
(:mod:`neurofm.report.render`, which also says how to add a page).

The folder is written under a temporary name next to ``out`` and renamed into place, so a
half-written report never appears under ``out``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from neurofm.atomic import publish_dir, sibling_tmp_dir
from neurofm.errors import NeuroFMError
from neurofm.ranking import build_leaderboard
from neurofm.report import figures, model
from neurofm.report.baseline import baseline_differences, find_baseline
from neurofm.report.inputs import ReportInputs, find_results_dir, load_inputs
from neurofm.report.palette import REFERENCE_COLOUR, model_colours
from neurofm.report.render import PageLink, ReportPage, render_page
from neurofm.report.viewer import write_viewer
from neurofm.results import summarise
from neurofm.tasks import known_tasks

_ASSETS = ("report.css", "viewer.js")


def build_report(
    results_dir: Path,
    out: Path,
    *,
    title: str | None = None,
    overwrite: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    extra_pages: Sequence[ReportPage] = (),
) -> Path:
    """Write the report for a RUN or results folder into ``out``; returns ``out/index.html``.

    Refuses a non-empty ``out`` unless ``overwrite``, and never replaces a folder that holds the
    results being reported. ``extra_pages`` are rendered beside the index and linked from every
    page's navigation (see :mod:`neurofm.report.render`).
    """
    results_dir = find_results_dir(Path(results_dir))
    out = Path(out)
    _check_out(out, results_dir, overwrite)
    inputs = load_inputs(results_dir)
    tmp = sibling_tmp_dir(out)
    try:
        _write(inputs, tmp, title, n_boot, seed, list(extra_pages))
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _check_out(out: Path, results_dir: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NeuroFMError(out, "exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise NeuroFMError(out, "folder is not empty (use --overwrite to replace it)")
        resolved = out.resolve()
        if resolved == results_dir.resolve() or resolved in results_dir.resolve().parents:
            raise NeuroFMError(out, "holds the results being reported; refusing to replace it")


def _write(
    inputs: ReportInputs,
    out: Path,
    title: str | None,
    n_boot: int,
    seed: int,
    extra_pages: list[ReportPage],
) -> None:
    synthetic = " — synthetic benchmark" if inputs.synthetic else ""
    page_title = title or f"neurofm model comparison{synthetic}"
    (out / "assets").mkdir(parents=True)
    for name in _ASSETS:
        (out / "assets" / name).write_text(_asset(name), encoding="utf-8")
    nav = [PageLink("index.html", "Summary")]
    if inputs.viewer_cases:
        nav.append(PageLink("viewer.html", "Case viewer"))
    nav += [PageLink(p.filename, p.label) for p in extra_pages]
    n_tasks = inputs.results["task"].nunique()
    # Progress on stderr: stdout carries only the printed path of index.html.
    with Progress(console=Console(stderr=True), transient=True) as progress:
        job = progress.add_task("report: statistics", total=2 * n_tasks + 2)
        report = report_model(
            inputs, out, page_title, n_boot, seed, advance=lambda: progress.advance(job)
        )
        progress.update(job, description="report: case viewer")
        if inputs.viewer_cases:
            _viewer_page(inputs, out, f"{page_title} — case viewer", report.colours, nav)
        progress.advance(job)
    render_page("index.html", out / "index.html", title=page_title, nav=nav, report=report)
    for page in extra_pages:
        context = {**page.context, **(page.write(out) if page.write is not None else {})}
        render_page(
            page.template, out / page.filename, title=f"{page_title} — {page.label}", nav=nav,
            templates=page.templates, **context,
        )  # fmt: skip
        for name, source in page.files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / name)


def report_model(
    inputs: ReportInputs,
    out: Path,
    title: str,
    n_boot: int,
    seed: int,
    advance: Callable[[], None] = lambda: None,
) -> model.ReportModel:
    """The index page as data; its figures are drawn into ``out/figures`` on the way."""
    df = inputs.results
    colours = model_colours(_all_models(inputs))
    summary = summarise(df, n_boot=n_boot, seed=seed, tasks=known_tasks())
    advance()
    board = build_leaderboard(df, n_boot, seed, progress=lambda _: advance(), tasks=known_tasks())
    tasks = list(board.tasks)
    baseline = find_baseline(sorted(df["model"].unique()))
    sections = []
    for task, tb in board.tasks.items():
        diffs = None
        if baseline is not None and baseline in tb.table.index and len(tb.table) > 1:
            diffs = baseline_differences(df, task, baseline, n_boot, seed)
        section = model.task_section(tb, summary)
        section.figures = figures.task_figures(
            tb, summary, inputs.learning_curves, diffs, baseline, colours, out
        )
        sections.append(section)
        advance()
    return model.ReportModel(
        title=title,
        colours=colours,
        overview=model.overview(
            df,
            tasks,
            synthetic=inputs.synthetic,
            folder=str(inputs.folder),
            run=inputs.run,
            n_boot=n_boot,
        ),
        overall=model.overall_ranking(board) if len(tasks) > 1 else None,
        tasks=sections,
        extra_curves=figures.extra_curves(inputs.learning_curves, tasks, colours, out),
        n_viewer_cases=len(inputs.viewer_cases),
    )


def _all_models(inputs: ReportInputs) -> list[str]:
    """Every model named anywhere in the inputs, so each keeps one colour on every page."""
    models = set(inputs.results["model"])
    if inputs.learning_curves is not None:
        models |= set(inputs.learning_curves["model"])
    for case in inputs.viewer_cases:
        models |= set(case.predictions)
    return sorted(models)


def _viewer_page(
    inputs: ReportInputs, out: Path, title: str, colours: dict[str, str], nav: list[PageLink]
) -> None:
    """``viewer.html`` plus the case scripts and niivue it loads."""
    index = write_viewer(
        inputs.viewer_cases, out, colours, REFERENCE_COLOUR, _case_metrics(inputs.results, inputs)
    )
    # JSON inside <script>: only "</" could end the element early.
    case_index = json.dumps(index).replace("</", "<\\/")
    render_page("viewer.html", out / "viewer.html", title=title, nav=nav, case_index=case_index)


def _asset(name: str) -> str:
    return (resources.files("neurofm.report") / "assets" / name).read_text(encoding="utf-8")


def _case_metrics(df: pd.DataFrame, inputs: ReportInputs) -> dict[str, dict[str, dict[str, float]]]:
    """Per viewer case: model -> tidy per-case rows, shown next to the volumes."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for case in inputs.viewer_cases:
        rows = df[(df["task"] == case.task) & (df["case"] == case.case)]
        if case.site:
            rows = rows[rows["site"] == case.site]
        result[case.id] = {
            str(model): {str(m): float(v) for m, v in zip(g["metric"], g["value"], strict=True)}
            for model, g in rows.groupby("model")
        }
    return result
