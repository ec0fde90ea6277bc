"""Pretrained models against training from scratch: paired differences per site.

The baseline is the model called ``scratch`` (or the only model with "scratch" in its name).
Each other model's primary metric minus the baseline's is computed per site and pooled with
:func:`neurofm.stats.paired.paired_comparison` on the shared case bootstrap of
:func:`neurofm.results.case_table`; nothing is computed here beyond calling them.
"""

from __future__ import annotations

import pandas as pd

from neurofm.metrics.registry import METRICS
from neurofm.results import ALL_SITES, case_table
from neurofm.stats.bootstrap import bootstrap_indices
from neurofm.stats.paired import paired_comparison
from neurofm.tasks import get_task

DIFFERENCE_COLUMNS = ("model", "site", "value", "ci_low", "ci_high", "p")


def find_baseline(models: list[str]) -> str | None:
    """The from-scratch model that pretrained models are compared with, if there is one."""
    if "scratch" in models:
        return "scratch"
    named = [m for m in models if "scratch" in m.lower()]
    return named[0] if len(named) == 1 else None


def baseline_differences(
    df: pd.DataFrame, task: str, baseline: str, n_boot: int, seed: int
) -> pd.DataFrame:
    """Every model minus ``baseline`` on the task's primary metric, pooled (site ``all``) and per
    site: columns :data:`DIFFERENCE_COLUMNS`, ``p`` one-sided (Wilcoxon, or bootstrap for
    set-level metrics) for "the model is better"."""
    spec = METRICS[get_task(task).primary_metric]
    sites = sorted(df.loc[df["task"] == task, "site"].unique())
    rows = []
    for site in [ALL_SITES, *sites]:
        table = case_table(df, task, site)
        if baseline not in table.models:
            continue
        indices = bootstrap_indices(table.n_cases, n_boot, seed)
        b = table.models.index(baseline)
        for a, model in enumerate(table.models):
            if a == b:
                continue
            case_values = None
            if spec.case_fn is not None:
                case_values = (
                    spec.case_fn(*table.columns(spec, a)),
                    spec.case_fn(*table.columns(spec, b)),
                )
            cmp = paired_comparison(
                spec.fn,
                table.columns(spec, a),
                table.columns(spec, b),
                indices,
                higher_is_better=spec.higher_is_better,
                case_values=case_values,
                degenerate=spec.degenerate,
            )
            p = cmp.p_wilcoxon if cmp.p_wilcoxon is not None else cmp.p_bootstrap
            rows.append((model, site, cmp.difference, cmp.ci_low, cmp.ci_high, p))
    return pd.DataFrame(rows, columns=list(DIFFERENCE_COLUMNS))
