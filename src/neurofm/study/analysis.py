"""From a study's tidy rows to its tables and findings (pure: DataFrames in, DataFrames out).

Rows are ``seed, arm, task, site, case, metric, value``. A task's *in-domain* cases are those
of the sites its training cases came from; *out-of-domain* cases are every other site's, pooled
(the source site's own test split is never in the out-of-domain figure). Each estimate is the
mean over seeds of the task's primary metric, computed per seed on the pooled cases, with a
hierarchical (seed, then case) bootstrap interval (:mod:`neurofm.stats.hierarchical`); all
comparisons are paired on the same draws and Holm-adjusted over the whole family shown.
Effects are oriented so that a positive number favours the first arm, in the metric's units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.metrics import METRICS
from neurofm.stats.hierarchical import (
    HierarchicalDraws,
    hierarchical_ci,
    hierarchical_difference,
    hierarchical_draws,
    holm,
)
from neurofm.tasks import get_task

ROW_COLUMNS = ("seed", "arm", "task", "site", "case", "metric", "value")
"""Columns of a study's tidy per-case table."""
IN_DOMAIN, OUT_OF_DOMAIN = "in-domain", "out-of-domain"


def primary_metric(task: str) -> str:
    return get_task(task).primary_metric


def domain_of(rows: pd.DataFrame, source_sites: dict[str, set[str]]) -> pd.Series:
    """``in-domain`` for rows of a task's training sites, ``out-of-domain`` otherwise."""
    src = [
        site in source_sites.get(task, set())
        for task, site in zip(rows.task, rows.site, strict=True)
    ]
    return pd.Series(np.where(src, IN_DOMAIN, OUT_OF_DOMAIN), index=rows.index)


@dataclass(frozen=True)
class ArmData:
    """Per seed, the metric's input arrays of one arm on one task and domain (cases aligned)."""

    seeds: tuple[int, ...]
    arrays: tuple[tuple[np.ndarray, ...], ...]
    keys: tuple[tuple[str, ...], ...]


def arm_data(rows: pd.DataFrame, arm: str, task: str, domain: str, metric: str) -> ArmData:
    """The inputs of ``metric`` for ``arm`` per seed, cases sorted by (site, case)."""
    spec = METRICS[metric]
    sel = rows[(rows.arm == arm) & (rows.task == task) & (rows.domain == domain)]
    sel = sel[sel.metric.isin(spec.inputs)]
    seeds, arrays, keys = [], [], []
    for seed, part in sel.groupby("seed", sort=True):
        wide = part.pivot_table(
            index=["site", "case"], columns="metric", values="value", aggfunc="first"
        ).sort_index()
        missing = [m for m in spec.inputs if m not in wide.columns]
        if missing or wide[list(spec.inputs)].isna().any().any():
            raise NeuroFMError(
                "study rows", f"{arm}/{task}/seed {seed}: incomplete {metric} inputs"
            )
        seeds.append(int(str(seed)))
        arrays.append(tuple(wide[m].to_numpy(np.float64) for m in spec.inputs))
        keys.append(tuple(f"{s}/{c}" for s, c in wide.index))
    return ArmData(tuple(seeds), tuple(arrays), tuple(keys))


def _draws(data: ArmData, n_boot: int, seed: int) -> HierarchicalDraws:
    return hierarchical_draws([len(k) for k in data.keys], n_boot, seed)


def estimates(rows: pd.DataFrame, arms: Sequence[str], n_boot: int, seed: int) -> pd.DataFrame:
    """Primary metric per task, domain and arm: mean over seeds with its hierarchical 95 % CI."""
    out = []
    for (task, domain), part in rows.groupby(["task", "domain"], sort=False):
        metric = primary_metric(str(task))
        spec = METRICS[metric]
        for arm in arms:
            data = arm_data(part, arm, str(task), str(domain), metric)
            if not data.seeds:
                continue
            est = hierarchical_ci(
                spec.rows, data.arrays, _draws(data, n_boot, seed), degenerate=spec.degenerate
            )
            out.append(
                {
                    "task": task, "domain": domain, "arm": arm, "metric": metric,
                    "value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high,
                    "n_seeds": len(data.seeds), "n_cases": sum(len(k) for k in data.keys),
                    "per_seed": " ".join(f"{v:.3f}" for v in est.per_seed),
                }
            )  # fmt: skip
    return pd.DataFrame(out)


@dataclass(frozen=True)
class Pair:
    """One paired comparison of a family: arm ``a`` against arm ``b`` on one task and domain."""

    task: str
    domain: str
    a: str
    b: str
    family: str
    """Which question it answers: ``ssl`` (a), ``objective`` (b), ``backbone`` (c), ``baseline``."""


COMPARISON_COLUMNS = (
    "family", "task", "domain", "a", "b", "metric", "effect", "ci_low", "ci_high", "p",
    "n_seeds", "per_seed", "seeds_favouring_a",
)  # fmt: skip
"""Columns of :func:`compare`'s table (before ``p_holm``), also when no pair could be compared."""


def compare(rows: pd.DataFrame, pairs: Sequence[Pair], n_boot: int, seed: int) -> pd.DataFrame:
    """Paired hierarchical effects (``a`` better when > 0) with Holm-adjusted p over ``pairs``."""
    out = []
    for pair in pairs:
        metric = primary_metric(pair.task)
        spec = METRICS[metric]
        part = rows[(rows.task == pair.task) & (rows.domain == pair.domain)]
        a = arm_data(part, pair.a, pair.task, pair.domain, metric)
        b = arm_data(part, pair.b, pair.task, pair.domain, metric)
        if not a.seeds or not b.seeds:
            continue
        if a.seeds != b.seeds or a.keys != b.keys:
            raise NeuroFMError(
                "study rows", f"{pair.a} and {pair.b} ({pair.task}) were not scored on the same "
                "seeds and cases",
            )  # fmt: skip
        diff = hierarchical_difference(
            spec.rows, a.arrays, b.arrays, _draws(a, n_boot, seed), degenerate=spec.degenerate
        )
        sign = 1.0 if spec.higher_is_better else -1.0
        lo, hi = sorted((sign * diff.ci_low, sign * diff.ci_high))
        out.append(
            {
                "family": pair.family, "task": pair.task, "domain": pair.domain,
                "a": pair.a, "b": pair.b, "metric": metric, "effect": sign * diff.difference,
                "ci_low": lo, "ci_high": hi, "p": diff.p_value, "n_seeds": len(a.seeds),
                "per_seed": " ".join(f"{sign * v:+.3f}" for v in diff.per_seed),
                "seeds_favouring_a": int(sum(sign * v > 0 for v in diff.per_seed)),
            }
        )  # fmt: skip
    table = pd.DataFrame(out, columns=list(COMPARISON_COLUMNS))
    table["p_holm"] = holm(table["p"].to_numpy()) if not table.empty else []
    return table


def comparison_family(
    tasks: Sequence[str],
    arms: Sequence[str],
    objective_arms: Sequence[str],
    backbones: Sequence[str],
    rows: pd.DataFrame,
    suffix: str = "",
) -> list[Pair]:
    """The comparisons a study reports for one shot count (``suffix``, e.g. ``/n10``).

    Per task, out of domain: pretrained against scratch and every baseline, scratch against the
    hand-feature rule; every objective arm against scratch and the two best objectives against
    each other (finding b); pretrained with each extra backbone against the recipe's (finding
    c). In domain: pretrained against scratch. Holm's adjustment runs over all of them.
    """
    have = set(arms)

    def pair(task: str, a: str, b: str, family: str, domain: str = OUT_OF_DOMAIN) -> Pair:
        return Pair(task, domain, a + suffix, b + suffix, family)

    pairs: list[Pair] = []
    for task in tasks:
        if {"pretrained", "scratch"} <= have:
            pairs.append(pair(task, "pretrained", "scratch", "ssl"))
        for base in ("hand", "prior", "random"):
            if base in have and "pretrained" in have:
                pairs.append(pair(task, "pretrained", base, "baseline"))
        if {"scratch", "hand"} <= have:
            pairs.append(pair(task, "scratch", "hand", "baseline"))
        for obj in objective_arms:
            if "scratch" in have:
                pairs.append(pair(task, obj, "scratch", "objective"))
        ranked = _rank_arms(rows, task, OUT_OF_DOMAIN, [o + suffix for o in objective_arms])
        if len(ranked) >= 2:
            pairs.append(Pair(task, OUT_OF_DOMAIN, ranked[0], ranked[1], "objective"))
        if "pretrained" in have:
            for backbone in backbones:
                pairs.append(pair(task, f"pretrained@{backbone}", "pretrained", "backbone"))
        if {"pretrained", "scratch"} <= have:
            pairs.append(pair(task, "pretrained", "scratch", "ssl", IN_DOMAIN))
    return pairs


def _rank_arms(rows: pd.DataFrame, task: str, domain: str, arms: Sequence[str]) -> list[str]:
    """Arms ordered best first by their mean-over-seeds primary metric."""
    metric = primary_metric(task)
    spec = METRICS[metric]
    scores = {}
    for arm in arms:
        data = arm_data(
            rows[(rows.task == task) & (rows.domain == domain)], arm, task, domain, metric
        )
        if data.seeds:
            per_seed = [float(spec.fn(*arrs)) for arrs in data.arrays]
            scores[arm] = float(np.mean(per_seed)) * (1.0 if spec.higher_is_better else -1.0)
    return sorted(scores, key=lambda a: -scores[a])


def _fmt(row: pd.Series) -> str:
    return (
        f"{row.effect:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}] {row.metric}, "
        f"Holm p = {row.p_holm:.3g}, {row.n_seeds} seed{'s' if row.n_seeds != 1 else ''}"
    )


def _verdict(row: pd.Series, alpha: float = 0.05) -> str:
    if row.p_holm < alpha:
        return "better" if row.effect > 0 else "worse"
    return "not distinguishable"


def findings(comparisons: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """The FOMO25 paper's three findings, one sentence each per task, written from the numbers."""
    out = []
    c = comparisons
    for task in tasks:
        sel = c[(c.task == task) & (c.domain == OUT_OF_DOMAIN)] if not c.empty else c
        ssl = sel[(sel.family == "ssl") & (sel.a == "pretrained") & (sel.b == "scratch")]
        if not ssl.empty:
            r = ssl.iloc[0]
            hand = sel[(sel.a == "pretrained") & (sel.b == "hand")]
            beside = (
                f"; against the one-line rule: {_verdict(hand.iloc[0])} ({_fmt(hand.iloc[0])})"
                if not hand.empty else ""
            )  # fmt: skip
            text = f"pretrained vs scratch out of domain: {_verdict(r)} ({_fmt(r)}){beside}"
        else:
            text = "not run (needs arms pretrained and scratch)"
        out.append({"finding": "a: SSL vs scratch", "task": task, "text": text})
        obj = sel[(sel.family == "objective") & (sel.b != "scratch")]
        if not obj.empty:
            r = obj.iloc[0]
            text = f"best objective {r.a}; against the runner-up {r.b}: {_verdict(r)} ({_fmt(r)})"
        else:
            text = "not run (needs at least two objective arms, e.g. --arms mae,contrastive)"
        out.append({"finding": "b: which objective", "task": task, "text": text})
        big = sel[sel.family == "backbone"]
        if not big.empty:
            r = big.iloc[0]
            text = f"{r.a} vs {r.b}: {_verdict(r)} ({_fmt(r)})"
        else:
            text = "not run (needs a second backbone, e.g. --backbones tiny,small)"
        out.append({"finding": "c: larger backbone", "task": task, "text": text})
    return pd.DataFrame(out)
