"""Build the static HTML report: ``index.html`` (summary, leaderboards, plots) and ``viewer.html``.

The folder is self-contained and works offline from file:// (no CDN, no server): styles, scripts,
figures (PNG) and the niivue bundle are files beside the pages; volumes for the viewer are
embedded in ``cases/*.js`` (see :mod:`neurofm.report.viewer`). Pages are filled from the
``string.Template`` files in ``report/assets`` with HTML built here, every value escaped.

The folder is written under a temporary name next to ``out`` and renamed into place, so a
half-written report never appears under ``out``.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from neurofm import __version__
from neurofm.atomic import publish_dir, sibling_tmp_dir
from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS
from neurofm.ranking import Leaderboard, TaskBoard, build_leaderboard
from neurofm.report import plots
from neurofm.report.baseline import baseline_differences, find_baseline
from neurofm.report.glossary import metric_info
from neurofm.report.inputs import ReportInputs, find_results_dir, load_inputs
from neurofm.report.palette import REFERENCE_COLOUR, model_colours
from neurofm.report.viewer import write_viewer
from neurofm.results import ALL_SITES, summarise
from neurofm.tasks import TASKS, get_task

_ASSETS = ("report.css", "viewer.js")
_TASK_TITLES = {name: spec.title for name, spec in TASKS.items()}
_SITE_LABEL = {ALL_SITES: "all sites"}
_METHODS = {
    "aggregate": ("rank_aggregate", "aggregate, then rank"),
    "case": ("rank_case", "rank, then aggregate"),
    "test": ("rank_test", "test-based"),
}
"""Ranking methods: key in the Kendall-tau names -> (column of TaskBoard.table, label)."""


def build_report(
    results_dir: Path,
    out: Path,
    *,
    title: str | None = None,
    overwrite: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> Path:
    """Write the report for a RUN or results folder into ``out``; returns ``out/index.html``.

    Refuses a non-empty ``out`` unless ``overwrite``, and never replaces a folder that holds the
    results being reported.
    """
    results_dir = find_results_dir(Path(results_dir))
    out = Path(out)
    _check_out(out, results_dir, overwrite)
    inputs = load_inputs(results_dir)
    tmp = sibling_tmp_dir(out)
    try:
        _write(inputs, tmp, title, n_boot, seed)
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


def _write(inputs: ReportInputs, out: Path, title: str | None, n_boot: int, seed: int) -> None:
    df = inputs.results
    colours = model_colours(_all_models(inputs))
    synthetic = " — synthetic benchmark" if inputs.synthetic else ""
    page_title = title or f"neurofm model comparison{synthetic}"
    (out / "assets").mkdir(parents=True)
    for name in _ASSETS:
        (out / "assets" / name).write_text(_asset(name), encoding="utf-8")
    n_tasks = df["task"].nunique()
    # Progress on stderr: stdout carries only the printed path of index.html.
    with Progress(console=Console(stderr=True), transient=True) as progress:
        job = progress.add_task("report: statistics", total=2 * n_tasks + 2)
        summary = summarise(df, n_boot=n_boot, seed=seed)
        progress.advance(job)
        board = build_leaderboard(df, n_boot, seed, progress=lambda _: progress.advance(job))
        progress.update(job, description="report: plots")
        sections = [_intro(inputs, list(board.tasks), colours, n_boot)]
        if len(board.tasks) > 1:
            sections.append(_overall(board, colours))
        baseline = find_baseline(sorted(df["model"].unique()))
        for task, tb in board.tasks.items():
            diffs = None
            if baseline is not None and baseline in tb.table.index and len(tb.table) > 1:
                diffs = baseline_differences(df, task, baseline, n_boot, seed)
            sections.append(
                _task_section(tb, summary, inputs.learning_curves, diffs, baseline, colours, out)
            )
            progress.advance(job)
        sections.append(_extra_curves(inputs.learning_curves, list(board.tasks), colours, out))
        progress.update(job, description="report: case viewer")
        if inputs.viewer_cases:
            _viewer_page(inputs, out, page_title, colours)
        progress.advance(job)
    sections.append(_viewer_note(inputs))
    _page(
        out / "index.html",
        page_title,
        "\n".join(s for s in sections if s),
        "",
        bool(inputs.viewer_cases),
    )


def _all_models(inputs: ReportInputs) -> list[str]:
    """Every model named anywhere in the inputs, so each keeps one colour on every page."""
    models = set(inputs.results["model"])
    if inputs.learning_curves is not None:
        models |= set(inputs.learning_curves["model"])
    for case in inputs.viewer_cases:
        models |= set(case.predictions)
    return sorted(models)


def _viewer_page(inputs: ReportInputs, out: Path, title: str, colours: dict[str, str]) -> None:
    """``viewer.html`` plus the case scripts and niivue it loads."""
    index = write_viewer(
        inputs.viewer_cases, out, colours, REFERENCE_COLOUR, _case_metrics(inputs.results, inputs)
    )
    # JSON inside <script>: only "</" could end the element early.
    case_index = json.dumps(index).replace("</", "<\\/")
    body = Template(_asset("viewer_body.html")).substitute(case_index=case_index)
    scripts = (
        '<script src="assets/niivue.umd.js"></script>\n<script src="assets/viewer.js"></script>'
    )
    _page(out / "viewer.html", f"{title} — case viewer", body, scripts, True)


def _asset(name: str) -> str:
    return (resources.files("neurofm.report") / "assets" / name).read_text(encoding="utf-8")


def _page(path: Path, title: str, body: str, scripts: str, has_viewer: bool) -> None:
    nav = ['<a href="index.html">Summary</a>']
    if has_viewer:
        nav.append('<a href="viewer.html">Case viewer</a>')
    text = Template(_asset("page.html")).substitute(
        title=html.escape(title),
        version=__version__,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        nav="".join(nav),
        body=body,
        scripts=scripts,
    )
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# HTML pieces


def _esc(value: object) -> str:
    return html.escape(str(value))


def _num(value: float, metric: str = "") -> str:
    """Scores on a 0–1 scale get three decimals, distances and years two."""
    if pd.isna(value):
        return "–"
    return f"{value:.{metric_info(metric).decimals}f}"


def _ci(metric: str, value: float, low: float, high: float) -> str:
    return (
        f"{_num(value, metric)} <span class='note'>[{_num(low, metric)}, {_num(high, metric)}]"
        "</span>"
    )


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric_from: int = 1, ident: str = ""
) -> str:
    """A table whose cells are already-escaped HTML; columns from ``numeric_from`` align right."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f"<td class='num'>{c}</td>" if i >= numeric_from else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    id_attr = f" id='{ident}'" if ident else ""
    return f"<table{id_attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _swatch(model: str, colours: dict[str, str]) -> str:
    return f"<span class='swatch' style='background:{colours[model]}'></span>{_esc(model)}"


def _better(metric: str) -> str:
    spec = METRICS.get(metric)
    if spec is None:
        return ""
    if spec.best_at_zero:
        return "closer to 0"
    return "higher" if spec.higher_is_better else "lower"


def _intro(inputs: ReportInputs, tasks: list[str], colours: dict[str, str], n_boot: int) -> str:
    df = inputs.results
    models = sorted(df["model"].unique())
    parts = ["<section id='about'><h2>What this report shows</h2>"]
    if inputs.synthetic:
        parts.append(
            "<p class='synthetic'><strong>Synthetic data.</strong> These numbers come from "
            "neurofm's embedded synthetic benchmark, built from the MNI152 brain templates with "
            "simulated lesions, ageing and scanner differences. It is a stand-in for real patient "
            "data: use it to check that the workflow runs, not to judge clinical performance."
            "</p>"
        )
    else:
        parts.append(f"<p class='lead'>Results read from <code>{_esc(inputs.folder)}</code>.</p>")
    parts.append(
        f"<p class='lead'>{len(models)} model(s) — "
        + ", ".join(_swatch(m, colours) for m in models)
        + f" — are compared on {len(tasks)} task(s). Every model was scored on the same test "
        "cases, which come from hospitals (sites) other than the one the models were adapted "
        "on, so the numbers show how well each model carries over to new scanners. Each "
        f"number has a 95% confidence interval from resampling the test cases {n_boot} times "
        "(bootstrap): if two intervals overlap a lot, the difference may be chance.</p>"
    )
    rows = []
    for task in tasks:
        t = df[df["task"] == task]
        per_site = t.groupby("site")["case"].nunique()
        sites = ", ".join(f"{_esc(s)}: {n}" for s, n in per_site.items())
        spec = get_task(task)
        rows.append(
            (
                _esc(_TASK_TITLES.get(task, task)),
                _esc(metric_info(spec.primary_metric).label),
                str(int(per_site.sum())),
                sites,
                str(t["model"].nunique()),
            )
        )
    parts.append("<h3>Test data</h3>")
    parts.append(
        _table(
            ["task", "primary metric", "test cases", "cases per site", "models"],
            rows,
            numeric_from=2,
        )
    )
    if inputs.run:
        items = "".join(
            f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in _flatten(inputs.run).items()
        )
        parts.append(f"<h3>Run settings</h3><dl class='settings'>{items}</dl>")
    parts.append(_glossary(tasks))
    parts.append(_ranking_explained())
    parts.append("</section>")
    return "\n".join(parts)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested run info as ``a.b: value`` lines; long values are shortened."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            flat[name] = text if len(text) <= 300 else text[:297] + "…"
    return flat


def _glossary(tasks: list[str]) -> str:
    rows = []
    for task in tasks:
        for metric in get_task(task).metrics:
            info = metric_info(metric)
            rows.append(
                (
                    _esc(info.label),
                    _esc(_TASK_TITLES.get(task, task)),
                    _esc(info.meaning),
                    _esc(info.unit),
                    _esc(_better(metric)),
                )
            )
    return "<h3>What the metrics mean</h3>" + _table(
        ["metric", "task", "meaning", "unit", "better"], rows, numeric_from=99, ident="glossary"
    )


def _ranking_explained() -> str:
    return (
        "<h3>How models are ranked</h3><ul class='note'>"
        "<li><strong>aggregate, then rank</strong>: the primary metric over all test cases, "
        "best first.</li>"
        "<li><strong>rank, then aggregate</strong>: models are ranked on every case, then by "
        "their average rank; one bad case weighs less.</li>"
        "<li><strong>test-based</strong>: a model earns a win for each other model it beats "
        "significantly (one-sided paired test, 5% level); ranked by wins.</li>"
        "<li><strong>P(rank 1)</strong>: how often the model comes first when the test cases "
        "are resampled; below about 95% the winner is not clear-cut.</li>"
        "<li><strong>Kendall's τ</strong> compares two rankings: 1 means identical order, "
        "0 unrelated.</li>"
        "<li><strong>overall rank</strong>: the mean of the per-task ranks (aggregate, then "
        "rank), ranked again; a model missing a task is placed last there.</li></ul>"
    )


def _overall(board: Leaderboard, colours: dict[str, str]) -> str:
    final = board.final
    boards = list(board.tasks.values())
    rows = [
        (
            _swatch(str(model), colours),
            *(str(int(r[b.task])) for b in boards),
            f"{r['mean_rank']:.2f}",
            f"<strong>{int(r['rank'])}</strong>",
        )
        for model, r in final.iterrows()
    ]
    headers = [
        "model",
        *(_esc(_TASK_TITLES.get(b.task, b.task)) for b in boards),
        "mean rank",
        "overall rank",
    ]
    return (
        "<section id='overall'><h2>Overall ranking across tasks</h2>"
        + _table(headers, rows, ident="overall-ranking")
        + "</section>"
    )


def _task_section(
    board: TaskBoard,
    summary: pd.DataFrame,
    curves: pd.DataFrame | None,
    differences: pd.DataFrame | None,
    baseline: str | None,
    colours: dict[str, str],
    out: Path,
) -> str:
    task = board.task
    s = summary[summary["task"] == task]
    pooled = s[s["site"] == ALL_SITES].set_index(["model", "metric"])
    metrics = [m for m in get_task(task).metrics if m in set(s["metric"])]
    others = [m for m in metrics if m != board.metric]
    rows = []
    for model, r in board.table.iterrows():
        p = pooled.loc[(model, board.metric)]
        missing = int(p["n_missing"])
        name = _swatch(str(model), colours) + (
            f" <span class='note'>({missing} case(s) missing, scored worst)</span>"
            if missing
            else ""
        )
        rows.append(
            (
                name,
                _ci(board.metric, p["value"], p["ci_low"], p["ci_high"]),
                *(str(int(r[column])) for column, _ in _METHODS.values()),
                f"{r['p_rank1']:.0%}",
                *(_ci(m, *pooled.loc[(model, m), ["value", "ci_low", "ci_high"]]) for m in others),
            )
        )
    info = metric_info(board.metric)
    headers = [
        "model",
        f"{_esc(info.axis_label)}, 95% CI ({_better(board.metric)} is better)",
        *(f"rank: {_esc(label)}" for _, label in _METHODS.values()),
        "P(rank 1)",
        *(f"{_esc(metric_info(m).axis_label)}, 95% CI" for m in others),
    ]
    tau = ", ".join(
        f"{_esc(_METHODS[a][1])} vs {_esc(_METHODS[b][1])}: {t:.2f}"
        for (a, b), t in ((k.split("_vs_"), v) for k, v in board.kendall.items())
    )
    n_cases = int(pooled["n_cases"].iloc[0])
    parts = [
        f"<section id='task-{_esc(task)}' class='task'><h2>{_esc(_TASK_TITLES.get(task, task))}"
        "</h2>",
        f"<p class='note'>{n_cases} test cases; models sorted by the primary metric. "
        f"Agreement between ranking methods (Kendall's τ): {tau}.</p>",
        _table(headers, rows, ident=f"leaderboard-{_esc(task)}"),
    ]
    for path, caption in _task_figures(board, s, curves, differences, baseline, colours, out):
        parts.append(
            f"<figure><img src='{_esc(path)}' alt='{_esc(caption)}'>"
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _task_figures(
    board: TaskBoard,
    summary: pd.DataFrame,
    curves: pd.DataFrame | None,
    differences: pd.DataFrame | None,
    baseline: str | None,
    colours: dict[str, str],
    out: Path,
) -> list[tuple[str, str]]:
    task, primary = board.task, board.metric
    label = metric_info(primary).label
    title = _TASK_TITLES.get(task, task)
    figs: list[tuple[str, str]] = []
    sites = summary[summary["metric"] == primary].copy()
    sites["site"] = sites["site"].map(lambda s: _SITE_LABEL.get(s, s))
    order = ["all sites", *sorted(x for x in sites["site"].unique() if x != "all sites")]
    sites = sites.set_index("site").loc[order].reset_index()
    rel = f"figures/{task}-sites.png"
    plots.forest_plot(
        sites,
        metric=primary,
        higher_is_better=board.higher_is_better,
        colours=colours,
        title=f"{title}: {label} per test site",
        out=out / rel,
    )
    figs.append(
        (
            rel,
            f"{label} of each model, pooled over all test sites and per site; dots are the "
            "value on all cases, bars the 95% bootstrap confidence interval.",
        )
    )
    rel = f"figures/{task}-rank-stability.png"
    plots.rank_stability_plot(
        board.stability,
        colours=colours,
        title=f"{title}: how stable is the ranking?",
        out=out / rel,
    )
    figs.append(
        (
            rel,
            f"Share of bootstrap resamples of the test cases in which each model takes each "
            f"rank (by {label}); a model that is first in nearly all resamples is a clear winner.",
        )
    )
    if differences is not None and baseline is not None:
        diff = differences.copy()
        diff["site"] = diff["site"].map(lambda s: _SITE_LABEL.get(s, s))
        rel = f"figures/{task}-vs-{re.sub(r'[^A-Za-z0-9_-]+', '_', baseline)}.png"
        plots.paired_difference_plot(
            diff,
            metric=primary,
            higher_is_better=board.higher_is_better,
            colours=colours,
            baseline=baseline,
            title=f"{title}: gain over training from scratch",
            out=out / rel,
        )
        figs.append(
            (
                rel,
                f"Difference in {label} between each model and '{baseline}' (no "
                "pretraining), on the same cases, per site; a bar that does not cross 0 is a "
                "difference unlikely to be chance.",
            )
        )
    if curves is not None:
        figs += _curve_figures(curves[curves["task"] == task], task, colours, out)
    return figs


def _curve_figures(
    curves: pd.DataFrame, task: str, colours: dict[str, str], out: Path
) -> list[tuple[str, str]]:
    figs = []
    for metric in sorted(curves["metric"].unique()):
        part = curves[curves["metric"] == metric]
        label = metric_info(metric).label
        rel = f"figures/{task}-learning-curve-{metric}.png"
        plots.learning_curve_plot(
            part,
            metric=metric,
            higher_is_better=METRICS[metric].higher_is_better,
            colours=colours,
            title=f"{_TASK_TITLES.get(task, task)}: {label} vs labelled training cases",
            out=out / rel,
        )
        figs.append(
            (
                rel,
                f"Learning curve: {label} on the test cases when each model is adapted with more "
                "labelled cases (shaded: 95% confidence interval). Where the curves flatten, "
                "more labels help little.",
            )
        )
    return figs


def _extra_curves(
    curves: pd.DataFrame | None, tasks: list[str], colours: dict[str, str], out: Path
) -> str:
    """Learning curves of tasks that have no results table of their own."""
    if curves is None:
        return ""
    rest = sorted(set(curves["task"]) - set(tasks))
    figs = [f for t in rest for f in _curve_figures(curves[curves["task"] == t], t, colours, out)]
    if not figs:
        return ""
    body = "".join(
        f"<figure><img src='{_esc(p)}' alt='{_esc(c)}'><figcaption>{_esc(c)}</figcaption></figure>"
        for p, c in figs
    )
    return f"<section id='learning-curves'><h2>Learning curves</h2>{body}</section>"


def _viewer_note(inputs: ReportInputs) -> str:
    if not inputs.viewer_cases:
        return (
            "<section id='viewer-link'><h2>Case viewer</h2><p class='note'>No cases were listed "
            "for the 3D viewer (add a viewer.json to the results folder).</p></section>"
        )
    n = len(inputs.viewer_cases)
    return (
        "<section id='viewer-link'><h2>Case viewer</h2><p class='lead'>"
        f"<a href='viewer.html'>Open the 3D case viewer</a> to look at {n} case(s) with the "
        "reference and each model's predicted mask over the MRI sequences.</p></section>"
    )


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
