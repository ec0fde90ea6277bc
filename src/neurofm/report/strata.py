"""The report's "Subgroups" page: ``strata.csv`` (written by ``neurofm evaluate``) as tables.

The numbers are the ones ``evaluate`` computed (:mod:`neurofm.stats.strata`); the page only
groups them by task, model and column and says what each status means, so a flagged or
too-small stratum is as visible in the report as in the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import METRICS
from neurofm.report.render import ReportPage
from neurofm.stats.strata import ALL, STRATA_COLUMNS

STRATA_CSV = "strata.csv"


@dataclass(frozen=True)
class StratumRow:
    stratum: str
    n_cases: int
    value: float
    ci_low: float
    ci_high: float
    status: str


@dataclass(frozen=True)
class StrataTable:
    """One labels.csv column of one model on one task, with the overall row first."""

    task: str
    model: str
    column: str
    metric: str
    higher_is_better: bool
    overall: StratumRow
    rows: list[StratumRow]


def read_strata(path: Path) -> pd.DataFrame:
    """Read and check ``strata.csv``."""
    try:
        df = pd.read_csv(path, dtype={"stratum": str, "column": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise NeuroFMError(path, f"unreadable CSV ({type(exc).__name__})") from exc
    missing = [c for c in STRATA_COLUMNS if c not in df.columns]
    if missing:
        raise NeuroFMError(path, f"missing column(s) {', '.join(missing)}")
    unknown = sorted(set(df["metric"]) - set(METRICS))
    if unknown:
        raise NeuroFMError(path, f"unknown metric(s) {unknown}")
    return df


def _row(r: pd.Series) -> StratumRow:
    return StratumRow(
        str(r["stratum"]), int(r["n_cases"]), float(r["value"]), float(r["ci_low"]),
        float(r["ci_high"]), str(r["status"]),
    )  # fmt: skip


def strata_tables(df: pd.DataFrame) -> list[StrataTable]:
    """Tables per (task, model, column), each with its model's overall row."""
    tables = []
    for (task, model), group in df.groupby(["task", "model"], sort=True):
        overall_rows = group[group["column"] == ALL]
        if overall_rows.empty:
            continue
        overall = _row(overall_rows.iloc[0])
        metric = str(overall_rows.iloc[0]["metric"])
        for column in [c for c in dict.fromkeys(group["column"]) if c != ALL]:
            rows = [_row(r) for _, r in group[group["column"] == column].iterrows()]
            better = METRICS[metric].higher_is_better
            table = StrataTable(str(task), str(model), str(column), metric, better, overall, rows)
            tables.append(table)
    return tables


def strata_page(results_dir: Path) -> ReportPage | None:
    """The Subgroups page when the results folder has ``strata.csv``, else None."""
    path = Path(results_dir) / STRATA_CSV
    if not path.is_file():
        return None
    tables = strata_tables(read_strata(path))
    return ReportPage("strata.html", "Subgroups", "strata.html", {"tables": tables})
