"""Write a plan: ``plan.json`` (fit, n@target and its interval), ``curve.csv``, ``curve.png``
and ``index.html`` (the report page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurofm.atomic import publish_dir, sibling_tmp_dir, write_json_atomic, write_text_atomic
from neurofm.plan.curve import power_law
from neurofm.plan.estimate import MAX_EXTRAPOLATION, PlanResult
from neurofm.plan.inputs import CurveData
from neurofm.plan.report import render_plan_page


def curve_plot(curve: CurveData, result: PlanResult, out: Path) -> Path:
    """Runs, the fitted curve extended to n@target, the target line and the n interval."""
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(curve.shots, curve.scores, s=18, color="#0072B2", alpha=0.6, label="runs")
    ax.plot(result.sizes, result.means, "o", color="#0072B2", markersize=7, label="mean")
    right = max(result.sizes) * 4
    if result.n_ci is not None and result.n_ci[1] is not None:
        right = max(right, result.n_ci[1] * 1.3)
    x = np.geomspace(min(result.sizes), right, 200)
    f = result.fit
    ax.plot(x, power_law(x, f["c"], f["a"], f["b"]), color="#D55E00", label="power-law fit")
    ax.axhline(result.target, color="#555555", linestyle="--", linewidth=1, label="target")
    if result.n_needed is not None and result.n_ci is not None and result.n_ci[1] is not None:
        ax.axvspan(result.n_ci[0], result.n_ci[1], color="#D55E00", alpha=0.12, label="95% CI")
        ax.axvline(result.n_needed, color="#D55E00", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training cases (log scale)")
    ax.set_ylabel(curve.metric)
    if result.status == "ok" and result.n_needed is not None:
        title = f"n for {curve.metric} {result.target:g}: {result.n_needed:.0f}"
    else:
        title = f"{curve.metric} {result.target:g}: cannot extrapolate"
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower right", frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="white")
    return out


def write_plan(curve: CurveData, result: PlanResult, out: Path, task: str) -> Path:
    """Build the plan folder beside ``out`` and publish it atomically."""
    tmp = sibling_tmp_dir(out)
    runs = pd.DataFrame({"run": curve.runs, "shots": curve.shots, "score": curve.scores})
    write_text_atomic(tmp / "curve.csv", runs.to_csv(index=False))
    payload = {"task": task, "metric": curve.metric, **result.to_json()}
    write_json_atomic(tmp / "plan.json", payload)
    curve_plot(curve, result, tmp / "curve.png")
    page = render_plan_page(payload, tmp / "curve.png", MAX_EXTRAPOLATION)
    write_text_atomic(tmp / "index.html", page)
    return publish_dir(tmp, out)
