"""A self-contained HTML page for a monitor: score distributions, flagged cases, and (when
given) the black-box before/after table and the shift-detection AUROC table.

One file, plots inlined as data URIs, rendered by Jinja2 with autoescaping.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neurofm.errors import NeuroFMError
from neurofm.monitor.density import METHODS
from neurofm.monitor.monitor import Monitor

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>neurofm monitor</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; margin-bottom: 1rem; }
td, th { padding: .25rem .7rem; text-align: left; } tr:nth-child(even) { background: #f4f4f4; }
.flag { color: #a33; font-weight: bold; } .note { color: #666; }
</style></head><body>
<h1>Monitor of {{ model }}</h1>
<p>{{ n_fit }} reference cases fit the density; thresholds were calibrated on {{ n_calib }}
held-out reference cases for a false-alarm rate of {{ "%g"|format(false_alarm) }}.
The case flag uses <strong>{{ method }}</strong>.</p>
<table><tr><th>method</th><th>threshold</th><th>cases flagged</th></tr>
{% for m, t, f in thresholds %}<tr><td>{{ m }}</td><td>{{ "%.4g"|format(t) }}</td>
<td>{{ f }} / {{ n_scored }}</td></tr>{% endfor %}</table>
<img src="data:image/png;base64,{{ png }}" alt="score distributions" width="100%">
<h2>Flagged cases ({{ flagged|length }} of {{ n_scored }})</h2>
{% if flagged %}<table><tr><th>case</th><th>score</th><th>nearest reference cases</th></tr>
{% for r in flagged %}<tr><td class="flag">{{ r.case }}</td><td>{{ "%.3g"|format(r.score) }}</td>
<td>{{ r.nearest }}</td></tr>{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
{% if errors %}<h2>Black-box error detection (test set)</h2>
<p class="note">False-positive rate bounded at {{ "%g"|format(max_fpr) }} on validation.</p>
{{ errors|safe }}{% endif %}
{% if shift %}<h2>Shift detection (AUROC, clean in-domain test cases vs shifted)</h2>
{{ shift|safe }}{% endif %}
</body></html>
"""


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def score_plot(mon: Monitor, scores: pd.DataFrame) -> str:
    """Held-out reference scores vs scored cases per method, threshold dashed (base64 PNG)."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    for i, m in enumerate(METHODS):
        ax = fig.add_subplot(1, len(METHODS), i + 1)
        ref = mon.density.score(mon.calib_embeddings, m)
        new = scores[f"{m}_score"].to_numpy(float)
        finite = np.r_[ref, new]
        bins = np.linspace(finite.min(), finite.max(), 25).tolist()
        ax.hist(ref, bins=bins, alpha=0.6, color="#0072B2", label="held-out reference")
        ax.hist(new, bins=bins, alpha=0.6, color="#D55E00", label="scored cases")
        if np.isfinite(mon.thresholds[m]):
            ax.axvline(mon.thresholds[m], color="#222", linestyle="--", label="threshold")
        ax.set_title(m, loc="left", fontsize=11, fontweight="bold")
        ax.spines[["top", "right"]].set_visible(False)
        if i == 0:
            ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise NeuroFMError(path, "file does not exist")
    return pd.read_csv(path)


def render_monitor_page(
    mon: Monitor, scores_csv: Path, errors_dir: Path | None, shift_dir: Path | None
) -> str:
    """The page for a monitor, the CSV of ``monitor score``, and optional evaluation folders."""
    scores = _read_csv(scores_csv)
    missing = [c for c in ("case", "score", "flag", "nearest") if c not in scores.columns]
    if missing:
        raise NeuroFMError(scores_csv, f"not a monitor score CSV (no {missing[0]} column)")
    ctx: dict[str, Any] = {
        "model": mon.model, "n_fit": len(mon.fit_ids), "n_calib": len(mon.calib_ids),
        "false_alarm": mon.settings.false_alarm, "method": mon.settings.method,
        "n_scored": len(scores),
        "thresholds": [(m, mon.thresholds[m], int(scores[f"{m}_flag"].sum())) for m in METHODS],
        "flagged": list(scores[scores["flag"]].sort_values("score", ascending=False)
                        .itertuples()),
        "png": score_plot(mon, scores), "errors": "", "shift": "", "max_fpr": 0.0,
    }  # fmt: skip
    if errors_dir is not None:
        table = _read_csv(errors_dir / "before_after.csv")
        ctx["errors"] = table.round(3).to_html(index=False, border=0)
        ctx["max_fpr"] = float(pd.read_json(errors_dir / "errors.json", typ="series")["max_fpr"])
    if shift_dir is not None:
        table = _read_csv(shift_dir / "shift.csv")
        wide = table.pivot_table(index=["kind", "shift"], columns=["method", "encoder"],
                                 values="auroc")  # fmt: skip
        ctx["shift"] = wide.round(2).to_html(border=0)
    return Environment(autoescape=True).from_string(PAGE).render(**ctx)
