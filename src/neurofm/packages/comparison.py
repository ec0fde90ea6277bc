"""Several packages, one dataset, identical commands: the leaderboard of docs/packages.md.

Each package is run with :func:`~neurofm.packages.runner.run_package` (integrity check, sandbox,
validation) on the same split(s), its wall time, CPU time and peak memory are recorded, the
predictions are scored with :func:`neurofm.evaluate.evaluate_predictions`, and the tidy
``results.csv`` feeds the leaderboard (:mod:`neurofm.ranking`) and the HTML report
(:mod:`neurofm.report`). A package that is refused or fails never stops the others: it is listed
in ``runtime.csv`` with its error and left out of the scores. Layout of ``out``::

    predictions/<model>/[<split>/]<case>.txt|.nii.gz
    results/results.csv  results/runtime.csv  results/run.json
    leaderboard/leaderboard.csv ...           report/index.html
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from neurofm.atomic import write_text_atomic
from neurofm.errors import NeuroFMError
from neurofm.io.splits import LABELS_CSV, list_splits
from neurofm.packages.archive import open_package
from neurofm.packages.manifest import load_manifest
from neurofm.packages.runner import run_package
from neurofm.results import write_results

SYNTH_MARKER = "benchmark.json"
RUNTIME_COLUMNS = (
    "model",
    "package",
    "version",
    "status",
    "error",
    "n_cases",
    "wall_s",
    "s_per_case",
    "cpu_s",
    "peak_rss_mb",
    "isolation",
)


@dataclass
class PackageOutcome:
    """One package's row of the runtime table."""

    model: str
    package: str
    version: str = ""
    status: str = "ok"  # ok | failed | refused
    error: str = ""
    n_cases: int = 0
    wall_s: float = 0.0
    s_per_case: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    isolation: str = ""


@dataclass
class ComparisonResult:
    """What a package comparison wrote, and the per-package outcomes."""

    task: str
    outcomes: list[PackageOutcome]
    results_csv: Path | None
    runtime_csv: Path
    leaderboard_files: list[Path] = field(default_factory=list)
    report: Path | None = None


def comparison_splits(data: Path, task: str) -> list[tuple[str, Path]]:
    """``[(name, split_dir)]``: the split itself, or a task folder's test splits."""
    data = Path(data)
    if (data / LABELS_CSV).is_file():
        return [("", data)]
    task_dir = data / task if (data / task).is_dir() else data
    tests = [s for s in list_splits(task_dir) if s.startswith("test")]
    if not tests:
        raise NeuroFMError(task_dir, "no test split (test, test_<site>) to benchmark on")
    return [(s, task_dir / s) for s in tests]


def _identify(packages: list[Path]) -> tuple[str, list[tuple[Path, str, str, str | None]]]:
    """Read every manifest first: ``(task, [(package, model name, version, refusal)])``.

    All readable packages must share one task; an unreadable manifest is a refusal of that
    package only.
    """
    rows: list[tuple[Path, str, str, str | None]] = []
    tasks: dict[str, list[str]] = {}
    used: set[str] = set()
    for pkg in packages:
        try:
            with open_package(pkg) as pkg_dir:
                m = load_manifest(pkg_dir)
        except NeuroFMError as exc:
            rows.append((pkg, Path(pkg).name, "", str(exc)))
            continue
        name, n = m.id, 2
        while name in used:
            name, n = f"{m.id}-{n}", n + 1
        used.add(name)
        tasks.setdefault(m.task, []).append(name)
        rows.append((pkg, name, m.version, None))
    if len(tasks) > 1:
        shown = "; ".join(f"{t}: {', '.join(ms)}" for t, ms in tasks.items())
        raise NeuroFMError(None, f"packages are for different tasks ({shown}); benchmark one task")
    if not tasks:
        raise NeuroFMError(None, "no package could be read: " + "; ".join(r[3] or "" for r in rows))
    return next(iter(tasks)), rows


def compare_packages(
    packages: list[Path],
    data: Path,
    out: Path,
    *,
    device: str = "auto",
    isolation: str = "auto",
    threads: int = 1,
    overwrite: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    report: bool = True,
    on_package: Callable[[str, int, int], None] | None = None,
) -> ComparisonResult:
    """Run, score and rank ``packages`` on ``data``; see the module docstring for the layout."""
    from neurofm.evaluate import evaluate_predictions

    out = Path(out)
    task, idents = _identify([Path(p) for p in packages])
    splits = comparison_splits(Path(data), task)
    outcomes: list[PackageOutcome] = []
    frames: list[pd.DataFrame] = []
    for i, (pkg, model, version, refusal) in enumerate(idents):
        if on_package is not None:
            on_package(model, i, len(idents))
        row = PackageOutcome(model, str(pkg), version)
        outcomes.append(row)
        if refusal is not None:
            row.status, row.error = "refused", refusal
            continue
        rows: list[pd.DataFrame] = []
        for split, split_dir in splits:
            pred_dir = out / "predictions" / model / split
            try:
                rep = run_package(
                    pkg,
                    split_dir,
                    pred_dir,
                    overwrite=overwrite,
                    device=device,
                    isolation=isolation,
                    threads=threads,
                )
            except NeuroFMError as exc:
                row.status, row.error = "refused", str(exc)
                break
            row.n_cases += rep.n_cases
            row.wall_s += rep.wall_s
            row.cpu_s += rep.cpu_s
            row.peak_rss_mb = max(row.peak_rss_mb, rep.peak_rss_mb)
            row.isolation = rep.isolation
            if rep.error:
                row.status, row.error = "failed", rep.error
                break
            rows.append(evaluate_predictions(task, pred_dir, split_dir, model=model).rows)
        row.s_per_case = row.wall_s / row.n_cases if row.n_cases else 0.0
        if row.status == "ok":
            frames.extend(rows)
    results_dir = out / "results"
    table = pd.DataFrame([asdict(o) for o in outcomes], columns=list(RUNTIME_COLUMNS))
    runtime_csv = write_text_atomic(results_dir / "runtime.csv", table.to_csv(index=False))
    result = ComparisonResult(task, outcomes, None, runtime_csv)
    run_info = {
        "benchmark": "packages",
        "data": str(Path(data)),
        "synthetic": _synthetic(Path(data)),
        "task": task,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "packages": {
            o.model: {
                "status": o.status,
                "s_per_case": round(o.s_per_case, 3),
                "peak_rss_mb": round(o.peak_rss_mb, 1),
                "isolation": o.isolation,
            }
            for o in outcomes
        },
    }
    write_text_atomic(results_dir / "run.json", json.dumps(run_info, indent=2) + "\n")
    if not frames:
        return result
    scores = pd.concat(frames, ignore_index=True)
    result.results_csv = write_results(scores, results_dir / "results.csv")
    if report:
        from neurofm.ranking.leaderboard import build_leaderboard, write_leaderboard
        from neurofm.report.build import build_report

        lb = build_leaderboard(scores, n_boot=n_boot, seed=seed)
        result.leaderboard_files = write_leaderboard(lb, out / "leaderboard")
        result.report = build_report(
            results_dir, out / "report", overwrite=True, n_boot=n_boot, seed=seed
        )
    return result


def _synthetic(data: Path) -> bool:
    """Whether ``data`` lies in a benchmark written by ``neurofm synth`` (its benchmark.json)."""
    return any((p / SYNTH_MARKER).is_file() for p in [data, *list(data.resolve().parents)[:3]])
