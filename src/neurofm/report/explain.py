"""The report's "Explanations" page: ``neurofm explain-table`` folders as tables, CAManim
animations, map pictures, and the shown cases' maps as niivue heat overlays beside the
reference lesion mask.

The numbers are the ones ``explain-table`` computed (``table.csv``, ``cases.csv``); this module
only reads them, copies the GIFs and pictures into ``explain/<folder>/`` of the report, and
embeds the maps that the folder's ``explain.json`` lists in the page's own case viewer
(:mod:`neurofm.report.viewer`, scripts under ``explain/cases/``). ``neurofm report --explain
DIR`` (repeatable, e.g. one folder per task) is how a report finds them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from neurofm.errors import NeuroFMError
from neurofm.explain.page import LABELS, mark_best
from neurofm.explain.table import COLUMNS, MANIFEST
from neurofm.report.model import Figure, Interval
from neurofm.report.palette import REFERENCE_COLOUR
from neurofm.report.render import ReportPage
from neurofm.report.viewer import ViewerCase, listed_file, write_viewer
from neurofm.tasks import known_tasks

VIEWER_FOLDER = "explain/cases"
CASE_COLUMNS = {  # cases.csv column -> label beside the viewer
    "road": "ROAD",
    "pointing_game": "pointing game",
    "energy_in_lesion": "energy in lesion",
    "randomisation_corr": "rand. corr.",
}


@dataclass(frozen=True)
class ExplainRow:
    """One method of one arm: each column's mean with its case-bootstrap interval."""

    arm: str
    method: str
    cases: int
    constant_maps: int
    cells: tuple[Interval, ...]  # in the order of neurofm.explain.table.COLUMNS
    best: tuple[bool, ...]


@dataclass(frozen=True)
class ExplainSection:
    """One explain-table folder: its table, command, animations, pictures and shown cases."""

    name: str
    task: str
    title: str
    command: str
    rows: list[ExplainRow]
    animations: list[Figure]
    pictures: list[Figure]
    viewer_cases: list[str]


@dataclass(frozen=True)
class ExplainSource:
    """What the page needs from one folder: the section, files to copy, cases to embed."""

    section: ExplainSection
    files: dict[str, Path]  # report-relative path -> source
    cases: list[ViewerCase]
    metrics: dict[str, dict[str, dict[str, float]]]  # viewer id -> "arm method" -> label -> value


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NeuroFMError(
            path.parent, f"not a `neurofm explain-table` output folder (no {MANIFEST})"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable JSON ({type(exc).__name__})") from exc
    missing = [k for k in ("task", "command", "animations", "cases") if k not in raw]
    if not isinstance(raw, dict) or missing:
        raise NeuroFMError(path, f"missing key(s) {missing}")
    return raw


def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"arm": str, "method": str, "case": str})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NeuroFMError(path, f"unreadable CSV ({type(exc).__name__})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise NeuroFMError(path, f"missing column(s) {', '.join(missing)}")
    return df


def table_rows(table: pd.DataFrame) -> list[ExplainRow]:
    """``table.csv`` rows (file order) with each arm's best method per column marked."""
    rows = mark_best(table.to_dict("records"))
    return [
        ExplainRow(
            str(r["arm"]),
            str(r["method"]),
            int(r["cases"]),
            int(r.get("constant_maps", 0)),
            tuple(
                Interval(float(r[c]), float(r[f"{c}_low"]), float(r[f"{c}_high"]), 3)
                for c in COLUMNS
            ),
            tuple(bool(r["best"][c]) for c in COLUMNS),
        )
        for r in rows
    ]


def read_explain(folder: Path) -> ExplainSource:
    """Read and check one explain-table folder; every file it lists must exist."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    raw = _read_json(manifest_path)
    interval_columns = [f"{c}{s}" for c in COLUMNS for s in ("", "_low", "_high")]
    table = _read_csv(folder / "table.csv", ["arm", "method", "cases", *interval_columns])
    per_case = _read_csv(folder / "cases.csv", ["arm", "case", "method", *COLUMNS])
    task = str(raw["task"])
    name = _slug(folder.resolve().name)
    prefix = f"explain/{name}"
    files: dict[str, Path] = {}

    def figure(item: Any) -> Figure:
        if not isinstance(item, dict) or "src" not in item:
            raise NeuroFMError(manifest_path, f"expected {{src, caption}}, got {item!r}")
        files[f"{prefix}/{item['src']}"] = listed_file(folder, item["src"], manifest_path)
        return Figure(f"{prefix}/{item['src']}", str(item.get("caption", "")))

    animations = [figure(a) for a in raw["animations"]]
    cases, pictures = [], []
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for entry in raw["cases"]:
        pictures += [figure(p) for p in entry.get("pictures", [])]
        reference = entry.get("reference")
        case = ViewerCase(
            task=task,
            case=str(entry["case"]),
            site=str(entry.get("split", "")),
            images={
                str(k): listed_file(folder, v, manifest_path) for k, v in entry["images"].items()
            },
            reference=None if reference is None else listed_file(folder, reference, manifest_path),
            maps={str(k): listed_file(folder, v, manifest_path) for k, v in entry["maps"].items()},
        )
        cases.append(case)
        rows = per_case[per_case["case"] == case.case]
        metrics[case.id] = {
            f"{r['arm']} {r['method']}": {label: float(r[c]) for c, label in CASE_COLUMNS.items()}
            for r in rows.to_dict("records")
        }
    title = known_tasks()[task].title if task in known_tasks() else task
    section = ExplainSection(
        name,
        task,
        title,
        str(raw["command"]),
        table_rows(table),
        animations,
        pictures,
        [c.case for c in cases],
    )
    return ExplainSource(section, files, cases, metrics)


def explain_page(folders: Sequence[Path]) -> ReportPage | None:
    """The Explanations page for explain-table ``folders`` (None when there are none)."""
    if not folders:
        return None
    sources = [read_explain(f) for f in folders]
    names = [s.section.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise NeuroFMError("--explain", f"folders with the same name given twice: {twice}")
    cases: dict[str, ViewerCase] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for s in sources:  # a case shown by two folders of one task: the first one's maps
        for c in s.cases:
            cases.setdefault(c.id, c)
            metrics.setdefault(c.id, s.metrics[c.id])

    def write(out: Path) -> Mapping[str, Any]:
        index = write_viewer(
            list(cases.values()), out, {}, REFERENCE_COLOUR, metrics, VIEWER_FOLDER
        )
        # JSON inside <script>: only "</" could end the element early.
        return {"case_index": json.dumps(index).replace("</", "<\\/")}

    return ReportPage(
        "explain.html",
        "Explanations",
        "explain.html",
        {
            "sections": [s.section for s in sources],
            "labels": [LABELS[c] for c in COLUMNS],
            "n_viewer_cases": len(cases),
        },
        files={k: v for s in sources for k, v in s.files.items()},
        write=write,
    )
