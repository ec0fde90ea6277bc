"""The study's report page: its tables as data, rendered by a Jinja2 template, plus one plot
per task of every arm's per-seed out-of-domain score (so seed spread is visible, not only CIs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from neurofm.atomic import write_text_atomic
from neurofm.study.analysis import IN_DOMAIN, OUT_OF_DOMAIN
from neurofm.study.grid import BASELINE_ARMS
from neurofm.study.recipe import Recipe


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("neurofm.study", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )


def plot_seeds(est: pd.DataFrame, task: str, path: Path) -> None:
    """Per arm: each seed's out-of-domain score (dots) and the mean with its CI (bar)."""
    sel = est[(est.task == task) & (est.domain == OUT_OF_DOMAIN)].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(sel) + 1.2))
    for i, r in sel.iterrows():
        seeds = [float(v) for v in str(r.per_seed).split()]
        ax.plot(seeds, [i] * len(seeds), "o", color="#4a7bb7", alpha=0.6, ms=4)
        ax.errorbar(r.value, i, xerr=[[r.value - r.ci_low], [r.ci_high - r.value]], fmt="|",
                    color="black", capsize=4, ms=14)  # fmt: skip
    ax.set_yticks(range(len(sel)), list(sel.arm))
    ax.invert_yaxis()
    ax.set_xlabel(f"{sel.metric.iloc[0] if len(sel) else ''} out of domain (dots: seeds)")
    ax.set_title(task)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def write_page(
    out: Path,
    est: pd.DataFrame,
    comp: pd.DataFrame,
    found: pd.DataFrame,
    recipe: Recipe,
    labels: Sequence[str],
    seeds: Sequence[int],
    synthetic: bool = True,
) -> Path:
    """Write ``out/index.html`` and its plots; returns the page."""
    from neurofm.study.study import GAIN, headline

    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for task in dict.fromkeys(est.task):
        name = f"seeds_{task}.png"
        plot_seeds(est, str(task), out / name)
        plots.append({"file": name, "alt": f"{task}: per-seed out-of-domain scores by arm"})
    rows = [
        {"task": r["task"], "arm": r["arm"], "metric": r["metric"], "in_domain": r[IN_DOMAIN],
         "out_of_domain": r[OUT_OF_DOMAIN], "gain": r[GAIN]}
        for r in headline(est, comp, labels).to_dict("records")
    ]  # fmt: skip
    html = (
        _env()
        .get_template("study.html")
        .render(
            recipe=recipe,
            seeds=", ".join(map(str, seeds)),
            n_seeds=len(seeds),
            findings=found.to_dict("records"),
            headline=rows,
            comparisons=comp.to_dict("records"),
            plots=plots,
            baselines=BASELINE_ARMS,
            synthetic=synthetic,
        )
    )
    page = out / "index.html"
    write_text_atomic(page, html)
    return page
