"""The "Explanations" HTML page: the localisation table, CAManim animations and map pictures.

One self-contained page (inline CSS, images beside it) rendered with Jinja2 from the template
below, so it can be linked from the main report or opened on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from neurofm.atomic import write_text_atomic

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Explanations — {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
.ci { color: #777; font-size: 0.85em; } .best { font-weight: bold; }
figure { display: inline-block; margin: 0.5em; } figcaption { font-size: 0.8em; }
code { background: #f4f4f4; padding: 0.1em 0.3em; }
</style></head><body>
<h1>Explanations — {{ title }}</h1>
<p>Every method's map on benchmark cases whose lesion is known (a synthetic stand-in for
real data). <b>ROAD</b>: mean over removal fractions of LeRF − MoRF (higher = more faithful).
<b>Pointing game</b>: share of cases whose map maximum lies in the lesion. <b>Energy in
lesion</b>: share of the map's positive mass inside the lesion. <b>Randomisation
correlation</b>: Spearman correlation with the map of a re-initialised model (lower = the map
depends more on what the model learned). Mean over cases [95% case-bootstrap interval];
bold marks each arm's best method per column.</p>
<p>Command: <code>{{ command }}</code></p>
<table><tr><th>arm</th><th>method</th><th>cases</th>
{% for c in columns %}<th>{{ labels[c] }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td>{{ r.arm }}</td><td>{{ r.method }}</td><td>{{ r.cases }}</td>
{% for c in columns %}<td class="{{ 'best' if r.best[c] else '' }}">{{ '%.3f' % r[c] }}
<span class="ci">[{{ '%.3f' % r[c ~ '_low'] }}, {{ '%.3f' % r[c ~ '_high'] }}]</span></td>
{% endfor %}</tr>{% endfor %}</table>
{% if animations %}<h2>CAManim: every stage, encoder to decoder, with per-layer ROAD</h2>
{% for a in animations %}<figure><img src="{{ a.src }}" alt="{{ a.caption }}" width="900">
<figcaption>{{ a.caption }}</figcaption></figure>{% endfor %}{% endif %}
{% if pictures %}<h2>Maps beside the reference lesion (green outline)</h2>
{% for p in pictures %}<figure><img src="{{ p.src }}" alt="{{ p.caption }}" width="600">
<figcaption>{{ p.caption }}</figcaption></figure>{% endfor %}{% endif %}
</body></html>
"""

LABELS = {  # the table's columns (neurofm.explain.table.COLUMNS) and their headers
    "road": "ROAD ↑",
    "pointing_game": "pointing game ↑",
    "energy_in_lesion": "energy in lesion ↑",
    "randomisation_corr": "randomisation corr. ↓",
}


def mark_best(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the table rows with ``best[column]``: the arm's best method in that column
    (highest, or lowest for the randomisation correlation); ties are all best."""
    out = [dict(r) for r in rows]
    for r in out:
        mine = [o for o in out if o["arm"] == r["arm"]]
        best = {}
        for c in LABELS:
            values = [o[c] for o in mine]
            target = min(values) if c == "randomisation_corr" else max(values)
            best[c] = r[c] == target
        r["best"] = best
    return out


def write_page(
    path: Path,
    title: str,
    command: str,
    rows: Sequence[Mapping[str, Any]],
    animations: Sequence[Mapping[str, str]] = (),
    pictures: Sequence[Mapping[str, str]] = (),
) -> Path:
    """Render the page to ``path`` (image paths relative to its folder)."""
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"explain.html": TEMPLATE}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    html = env.get_template("explain.html").render(
        title=title,
        command=command,
        columns=list(LABELS),
        labels=LABELS,
        rows=mark_best(rows),
        animations=animations,
        pictures=pictures,
    )
    return write_text_atomic(path, html)
