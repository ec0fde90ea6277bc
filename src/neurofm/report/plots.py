"""The report's figures, drawn with matplotlib's object API (Agg canvas, no pyplot state).

Each function takes tidy tables already computed by :mod:`neurofm.results` /
:mod:`neurofm.ranking` and only draws them; nothing here computes a statistic. Colours come from
:mod:`neurofm.report.palette` (Okabe-Ito, colour-blind safe) so a model looks the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurofm.report.glossary import metric_info

DPI = 110


def _direction(higher_is_better: bool) -> str:
    return "higher is better" if higher_is_better else "lower is better"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, facecolor="white")
    return out


def _finish(ax: Axes, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)


def _legend(ax: Axes, title: str | None = None) -> None:
    """Legend outside the axes on the right, so it never hides data."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _site_rows_figure(table: pd.DataFrame) -> Figure:
    """A figure tall enough for one row per site with a dodged dot per model."""
    n_sites, n_models = table["site"].nunique(), table["model"].nunique()
    return _figure(7.5, 1.0 + 0.55 * n_sites * max(1.0, n_models / 2.5))


def _dots_per_site(
    ax: Axes,
    table: pd.DataFrame,
    colours: dict[str, str],
    marker: str,
    label: Callable[[str], str],
) -> None:
    """One row per site (in the order given), one dodged dot with its CI whisker per model.

    ``table``: columns ``model, site, value, ci_low, ci_high``; ``label(model)`` is its legend
    entry. A missing CI bound draws no whisker on that side.
    """
    sites = list(dict.fromkeys(table["site"]))
    models = sorted(table["model"].unique())
    step = 0.7 / len(models)
    for j, model in enumerate(models):
        rows = table[table["model"] == model].set_index("site").reindex(sites)
        x = rows["value"].to_numpy(float)
        lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        below = np.where(np.isfinite(lo), x - lo, 0.0)
        above = np.where(np.isfinite(hi), hi - x, 0.0)
        ax.errorbar(
            x,
            np.arange(len(sites)) - 0.35 + step * (j + 0.5),
            xerr=np.vstack([below, above]).clip(0),
            fmt=marker,
            color=colours[model],
            elinewidth=2,
            capsize=3,
            markersize=6,
            label=label(model),
        )
    ax.set_yticks(np.arange(len(sites)), sites)
    ax.set_ylim(len(sites) - 0.5, -0.6)
    ax.set_ylabel("test site")


def forest_plot(
    summary: pd.DataFrame,
    *,
    metric: str,
    higher_is_better: bool,
    colours: dict[str, str],
    title: str,
    out: Path,
) -> Path:
    """Dot-and-whisker plot: one row per site, one dot (with 95% CI) per model.

    ``summary`` has columns ``model, site, value, ci_low, ci_high`` for a single task and metric;
    sites are drawn in the order given.
    """
    fig = _site_rows_figure(summary)
    ax = fig.add_subplot()
    _dots_per_site(ax, summary, colours, "o", str)
    arrow = "→" if higher_is_better else "←"
    label = metric_info(metric).axis_label
    ax.set_xlabel(f"{label}: value and 95% CI ({arrow} {_direction(higher_is_better)})")
    _finish(ax, title)
    _legend(ax, "model")
    return _save(fig, out)


def rank_stability_plot(
    stability: pd.DataFrame, *, colours: dict[str, str], title: str, out: Path
) -> Path:
    """Stacked bars of P(rank = k) per model over bootstrap resamples.

    ``stability``: index model, columns ranks 1..K, values the share of resamples
    (:func:`neurofm.ranking.rank_stability`). Rank 1 is darkest; models are ordered by how
    often they rank first.
    """
    table = stability.sort_index(axis=1)
    table = table.loc[table.iloc[:, 0].sort_values(ascending=False, kind="mergesort").index]
    ranks = [int(r) for r in table.columns]
    shades = _rank_shades(len(ranks))
    fig = _figure(7.5, 1.2 + 0.5 * len(table))
    ax = fig.add_subplot()
    left = np.zeros(len(table))
    for k, rank in enumerate(ranks):
        width = table[rank].to_numpy(float)
        bars = ax.barh(
            np.arange(len(table)),
            width,
            left=left,
            color=shades[k],
            edgecolor="white",
            label=f"rank {rank}",
        )
        labels = [f"{w:.0%}" if w >= 0.08 else "" for w in width]
        ax.bar_label(
            bars,
            labels=labels,
            label_type="center",
            fontsize=9,
            color="white" if k < len(ranks) / 2 else "black",
        )
        left += width
    ax.set_yticks(np.arange(len(table)), list(table.index))
    for tick in ax.get_yticklabels():
        tick.set_color(colours.get(tick.get_text(), "black"))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of bootstrap resamples (%)")
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    _finish(ax, title)
    _legend(ax, "rank")
    return _save(fig, out)


def _rank_shades(n: int) -> list[tuple[float, float, float, float]]:
    """Dark-to-light shades of one colour-blind-safe sequential map (cividis)."""
    from matplotlib import colormaps

    cmap = colormaps["cividis"]
    return [cmap(v) for v in np.linspace(0.05, 0.9, n)] if n > 1 else [cmap(0.05)]


def paired_difference_plot(
    differences: pd.DataFrame,
    *,
    metric: str,
    higher_is_better: bool,
    colours: dict[str, str],
    baseline: str,
    title: str,
    out: Path,
) -> Path:
    """Per-site paired difference ``model - baseline`` with 95% CI and a line at zero.

    ``differences``: columns ``model, site, value, ci_low, ci_high``. The side of zero where the
    model beats the baseline is shaded, so the reader need not remember the metric's direction.
    """
    fig = _site_rows_figure(differences)
    ax = fig.add_subplot()
    _dots_per_site(ax, differences, colours, "D", lambda model: f"{model} − {baseline}")
    span = np.nanmax(np.abs(differences[["value", "ci_low", "ci_high"]].to_numpy(float)))
    span = 1.15 * (span if np.isfinite(span) and span > 0 else 1.0)
    ax.set_xlim(-span, span)
    better = (0, span) if higher_is_better else (-span, 0)
    ax.axvspan(*better, color="#009E73", alpha=0.08, zorder=0)
    ax.text(
        sum(better) / 2,
        -0.45,
        f"better than {baseline}",
        ha="center",
        va="bottom",
        fontsize=9,
        color="#00704f",
    )
    ax.axvline(0, color="#555555", linewidth=1)
    info = metric_info(metric)
    unit = f" ({info.unit})" if info.unit and info.unit != "0–1" else ""
    ax.set_xlabel(f"difference in {info.label}{unit}, paired on the same cases, 95% CI")
    _finish(ax, title)
    _legend(ax)
    return _save(fig, out)


def learning_curve_plot(
    curves: pd.DataFrame,
    *,
    metric: str,
    higher_is_better: bool,
    colours: dict[str, str],
    title: str,
    out: Path,
) -> Path:
    """Metric against the number of labelled training cases (log x) per model, with CI bands.

    ``curves``: columns ``model, shots, value, ci_low, ci_high`` for one task and metric.
    """
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for model in sorted(curves["model"].unique()):
        rows = curves[curves["model"] == model].sort_values("shots")
        x = rows["shots"].to_numpy(float)
        ax.plot(x, rows["value"], "o-", color=colours[model], label=model, linewidth=2)
        lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(x[ok], lo[ok], hi[ok], color=colours[model], alpha=0.18, linewidth=0)
    shots = sorted(curves["shots"].unique())
    ax.set_xscale("log")
    ax.set_xticks(shots, [str(int(s)) for s in shots])
    ax.minorticks_off()
    ax.set_xlabel("labelled training cases (shots, log scale)")
    info = metric_info(metric)
    ax.set_ylabel(f"{info.axis_label}, {_direction(higher_is_better)}")
    _finish(ax, title)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    _legend(ax, "model")
    return _save(fig, out)
