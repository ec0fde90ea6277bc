"""The report's "Diffusion classifier" page: `neurofm diffusion compare` folders as tables.

The numbers are the ones ``compare`` computed and wrote (``summary.json``: AUROC, Brier score
and ECE with case-bootstrap intervals; ``curve.csv``: AUROC against ``K x T``; ``curve.png``);
the page only lays them out beside each other, one section per comparison folder, so the
report shows exactly what the comparison measured. Reading checks every file first, so a
folder that is not a comparison is a one-line error before the report is built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.report.model import Figure, Interval
from neurofm.report.render import ReportPage

SUMMARY, CURVE_CSV, CURVE_PNG = "summary.json", "curve.csv", "curve.png"
METRICS = ("auroc", "brier", "ece")
MODELS = ("diffusion", "baseline")
CURVE_COLUMNS = ("k", "t", "evaluations", "auroc_vote", "low_vote", "high_vote", "auroc_gap",
                 "low_gap", "high_gap", "mean_vote_entropy")  # fmt: skip
DECIMALS = 3


@dataclass(frozen=True)
class ModelRow:
    """One model of a comparison: its metrics (in :data:`METRICS` order) and its speed."""

    model: str
    metrics: tuple[Interval, ...]
    seconds_per_case: float


@dataclass(frozen=True)
class BudgetRow:
    """One sub-budget ``K x T`` of the curve: AUROC of the vote share and of the error gap."""

    k: int
    t: int
    evaluations: int
    vote: Interval
    gap: Interval
    vote_entropy: float
    default: bool


@dataclass(frozen=True)
class Comparison:
    """One ``neurofm diffusion compare`` folder, ready to lay out."""

    name: str
    splits: list[str]
    n_cases: int
    k: int
    t: int
    diffusion_run: str
    baseline_run: str
    rows: list[ModelRow]
    curve: list[BudgetRow]
    figure: Figure


def _summary(folder: Path) -> dict:
    path = folder / SUMMARY
    if not path.is_file():
        raise NeuroFMError(path, "missing: not a `neurofm diffusion compare` folder")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable JSON ({type(exc).__name__})") from exc
    keys = ("diffusion_run", "baseline_run", "splits", "cases", "k", "t", "seconds_per_case",
            "metrics")  # fmt: skip
    missing = [k for k in keys if k not in summary] if isinstance(summary, dict) else list(keys)
    if missing:
        raise NeuroFMError(path, f"missing key(s) {', '.join(missing)}")
    return summary


def _model_rows(summary: dict, path: Path) -> list[ModelRow]:
    found = {(m.get("model"), m.get("metric")): m for m in summary["metrics"]}
    rows = []
    for model in MODELS:
        wanted = [(model, metric) for metric in METRICS]
        if absent := [f"{m}/{x}" for m, x in wanted if (m, x) not in found]:
            raise NeuroFMError(path, f"no metric row(s) {', '.join(absent)}")
        intervals = tuple(
            Interval(float(r["value"]), float(r["low"]), float(r["high"]), DECIMALS)
            for r in (found[w] for w in wanted)
        )
        label = f"baseline: {Path(summary['baseline_run']).name}"
        if model == "diffusion":
            label = f"diffusion classifier (K {summary['k']} × T {summary['t']})"
        rows.append(ModelRow(label, intervals, float(summary["seconds_per_case"][model])))
    return rows


def _curve(path: Path, k: int, t: int) -> list[BudgetRow]:
    try:
        df = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise NeuroFMError(path, f"unreadable CSV ({type(exc).__name__})") from exc
    if missing := [c for c in CURVE_COLUMNS if c not in df.columns]:
        raise NeuroFMError(path, f"missing column(s) {', '.join(missing)}")
    df = df.sort_values(["evaluations", "k"])
    return [
        BudgetRow(
            int(r["k"]), int(r["t"]), int(r["evaluations"]),
            Interval(float(r["auroc_vote"]), float(r["low_vote"]), float(r["high_vote"]), DECIMALS),
            Interval(float(r["auroc_gap"]), float(r["low_gap"]), float(r["high_gap"]), DECIMALS),
            float(r["mean_vote_entropy"]), (int(r["k"]), int(r["t"])) == (k, t),
        )
        for _, r in df.iterrows()
    ]  # fmt: skip


def read_comparison(folder: Path, figure: str) -> Comparison:
    """A comparison folder as data; ``figure`` is where its curve goes in the report folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeuroFMError(folder, "not a folder (expected `neurofm diffusion compare` output)")
    summary = _summary(folder)
    for name in (CURVE_CSV, CURVE_PNG):
        if not (folder / name).is_file():
            raise NeuroFMError(folder / name, "missing: not a `neurofm diffusion compare` folder")
    k, t = int(summary["k"]), int(summary["t"])
    splits = [Path(s).name for s in summary["splits"]]
    return Comparison(
        name=folder.name, splits=splits, n_cases=int(summary["cases"]), k=k, t=t,
        diffusion_run=str(summary["diffusion_run"]), baseline_run=str(summary["baseline_run"]),
        rows=_model_rows(summary, folder / SUMMARY), curve=_curve(folder / CURVE_CSV, k, t),
        figure=Figure(figure, f"AUROC against denoising evaluations per class (K × T) on "
                      f"{', '.join(splits)}, 95% case-bootstrap intervals; dashed: the baseline"),
    )  # fmt: skip


def diffusion_page(folders: Sequence[Path]) -> ReportPage | None:
    """The "Diffusion classifier" page for these comparison folders (None for none)."""
    if not folders:
        return None
    comparisons = [read_comparison(f, f"figures/diffusion-{i}.png") for i, f in enumerate(folders)]
    files = {c.figure.path: Path(f) / CURVE_PNG for c, f in zip(comparisons, folders, strict=True)}
    return ReportPage(
        "diffusion.html", "Diffusion classifier", "diffusion.html",
        {"comparisons": comparisons, "metrics": ("AUROC", "Brier score", "ECE")}, files=files,
    )  # fmt: skip
