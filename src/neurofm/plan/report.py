"""A self-contained HTML page for a plan: the curve, the fit, n@target with its interval.

The page is one file (the plot inlined as a data URI) rendered by Jinja2 with autoescaping, so
it can be mailed or attached to a report as is.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>neurofm plan: {{ task }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
table { border-collapse: collapse; } td, th { padding: .25rem .8rem; text-align: left; }
tr:nth-child(even) { background: #f4f4f4; } .warn { color: #a33; } .note { color: #666; }
</style></head><body>
<h1>How many labelled cases? {{ task }}, {{ metric }} {{ "%g"|format(target) }}</h1>
{% if status == "ok" %}
<p><strong>{{ "%.0f"|format(n_needed) }} cases</strong>
(95% bootstrap interval {{ "%.0f"|format(n_ci[0]) }}&ndash;{{ "%.0f"|format(n_ci[1]) }}).</p>
{% else %}
<p class="warn"><strong>Cannot extrapolate</strong>: the points do not fix the number.</p>
<ul>{% for r in reasons %}<li>{{ r }}</li>{% endfor %}</ul>
{% endif %}
<img src="data:image/png;base64,{{ png }}" alt="learning curve and fit" width="100%">
<h2>Fit</h2>
<table>
<tr><th>model</th><td>{{ metric }} = c &minus; a &middot; n<sup>&minus;b</sup></td></tr>
<tr><th>c (asymptote)</th><td>{{ "%.4g"|format(fit.c) }}
 (95% CI {{ "%.4g"|format(asymptote_ci[0]) }}&ndash;{{ "%.4g"|format(asymptote_ci[1]) }})</td></tr>
<tr><th>a</th><td>{{ "%.4g"|format(fit.a) }}</td></tr>
<tr><th>b</th><td>{{ "%.3g"|format(fit.b) }}</td></tr>
<tr><th>RMS residual</th><td>{{ "%.3g"|format(fit.rmse) }}</td></tr>
<tr><th>early slope</th><td>{{ "%+.4g"|format(early_slope) }} per doubling of cases
 (smallest three sizes)</td></tr>
<tr><th>bootstrap</th><td>{{ n_boot }} resamples of the repeats within each size;
 {{ "%.0f"|format(100 * boot_unreachable) }}% never reach the target</td></tr>
</table>
<h2>Points</h2>
<table><tr><th>cases</th><th>mean {{ metric }}</th></tr>
{% for n, m in points %}<tr><td>{{ "%g"|format(n) }}</td><td>{{ "%.4g"|format(m) }}</td></tr>
{% endfor %}</table>
<p class="note">Power-law extrapolation assumes the curve keeps its shape beyond the largest
size measured; numbers more than {{ "%g"|format(max_extrapolation) }}&times; beyond it are not
reported.</p>
</body></html>
"""


def render_plan_page(plan: dict[str, Any], png: Path, max_extrapolation: float) -> str:
    """The page for ``plan`` (the contents of ``plan.json``) and its curve image."""
    template = Environment(autoescape=True).from_string(PAGE)
    return template.render(
        **plan,
        png=base64.b64encode(Path(png).read_bytes()).decode("ascii"),
        points=list(zip(plan["sizes"], plan["means"], strict=True)),
        max_extrapolation=max_extrapolation,
    )
