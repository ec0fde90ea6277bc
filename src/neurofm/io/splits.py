"""The labelled task layout of docs/architecture.md, read and validated in one place.

::

    <root>/<task>/<split>/<case>/<sequence>.nii.gz   split: train | val | test | test_<site>
    <root>/<task>/<split>/<case>/label.nii.gz        mask tasks (meningioma) only
    <root>/<task>/<split>/labels.csv                 case,site[,<target column>]

Where each task's target lives (a labels.csv column or a mask file) is on its
:class:`~neurofm.tasks.TaskSpec`.

Every problem is a one-line NeuroFMError naming the file (and CSV line) at fault, because users
arrange these folders by hand and need to know exactly what to fix.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

from neurofm.errors import NeuroFMError
from neurofm.io.layouts import read_sequence_folder
from neurofm.tasks import TaskLike, TaskSpec, get_task

LABELS_CSV = "labels.csv"
_SPLIT = re.compile(r"^(train|val|test)(_[A-Za-z0-9][A-Za-z0-9.-]*)?$")


@dataclass
class Case:
    """One labelled (or, at prediction time, unlabelled) case of a task split."""

    case_id: str
    site: str
    split_dir: Path
    sequences: dict[str, Path]
    label: float | None = None
    age: float | None = None
    mask: Path | None = None

    @property
    def folder(self) -> Path:
        return self.split_dir / self.case_id


def list_splits(task_dir: str | Path) -> list[str]:
    """Split folders of a task: train, val, test, then test_<site> ... in name order."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise NeuroFMError(task_dir, "task folder does not exist")
    names = [d.name for d in task_dir.iterdir() if d.is_dir() and _SPLIT.match(d.name)]
    order = {"train": 0, "val": 1, "test": 2}
    names.sort(key=lambda n: (order[n.split("_", 1)[0]], "_" in n, n))
    if not names:
        raise NeuroFMError(task_dir, "no split folders (train, val, test, test_<site>)")
    return names


def read_case_dir(case_dir: str | Path, task: TaskLike) -> Case:
    """One case folder without labels.csv (prediction input): its sequences and optional mask.

    Sequence file names are normalised (unknown names are an error naming the file), and the case
    must hold what ``get_task(task).select`` needs (error names the folder and the sequence).
    """
    case_dir = Path(case_dir)
    spec = get_task(task)
    if not case_dir.is_dir():
        raise NeuroFMError(case_dir, "case folder does not exist")
    sequences, _ = read_sequence_folder(case_dir, strict=True)
    spec.select(set(sequences), where=str(case_dir))
    mask = case_dir / spec.mask_name if spec.mask_name else None
    return Case(
        case_id=case_dir.name,
        site="",
        split_dir=case_dir.parent,
        sequences=sequences,
        mask=mask if mask is not None and mask.is_file() else None,
    )


def _number(csv_path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise NeuroFMError(csv_path, f"line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise NeuroFMError(csv_path, f"line {line}: {column} {text!r} is not finite")
    return value


def _read_labels(
    csv_path: Path, spec: TaskSpec, require_targets: bool
) -> dict[str, tuple[str, float | None]]:
    """labels.csv -> {case: (site, target value or None)}, validated row by row."""
    target = spec.target_column
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NeuroFMError(csv_path, f"unreadable CSV ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise NeuroFMError(csv_path, "empty file (expected a header row)")
    header = [h.strip() for h in rows[0]]
    needed = ["case", "site"] + ([target] if target and require_targets else [])
    missing = [c for c in needed if c not in header]
    if missing:
        raise NeuroFMError(
            csv_path,
            f"missing column(s) {', '.join(missing)} (header: {','.join(header)}; "
            f"expected {','.join(needed)})",
        )
    col = {name: header.index(name) for name in header}
    out: dict[str, tuple[str, float | None]] = {}
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise NeuroFMError(
                csv_path, f"line {line}: {len(row)} fields, header has {len(header)}"
            )
        case, site = row[col["case"]].strip(), row[col["site"]].strip()
        if not case:
            raise NeuroFMError(csv_path, f"line {line}: empty case id")
        if case in out:
            raise NeuroFMError(
                csv_path, f"line {line}: duplicate case {case!r} (first on line {first_line[case]})"
            )
        value: float | None = None
        text = row[col[target]].strip() if target and target in col else ""
        if text or (target and require_targets):
            assert target is not None
            value = _number(csv_path, line, target, text)
            if spec.kind == "classification" and value not in (0.0, 1.0):
                raise NeuroFMError(csv_path, f"line {line}: {target} {text!r} must be 0 or 1")
            lo, hi = spec.value_range or (-math.inf, math.inf)
            if not lo <= value <= hi:
                raise NeuroFMError(
                    csv_path,
                    f"line {line}: {target} {text!r} outside the task's range [{lo:g}, {hi:g}]",
                )
        out[case], first_line[case] = (site, value), line
    return out


def read_split(split_dir: str | Path, task: TaskLike, require_targets: bool = True) -> list[Case]:
    """All cases of one split folder, sorted by case id, with sites and targets from labels.csv.

    With ``require_targets`` (training) labels.csv must exist with its task's target column,
    and mask-task cases need their mask file. Without it (prediction input) labels.csv
    is optional and targets are read only where present. Every case folder needs a CSV row and
    every CSV row a case folder.
    """
    split_dir = Path(split_dir)
    spec = get_task(task)
    if not split_dir.is_dir():
        raise NeuroFMError(split_dir, "split folder does not exist")
    csv_path = split_dir / LABELS_CSV
    if csv_path.is_file():
        labels: dict[str, tuple[str, float | None]] | None = _read_labels(
            csv_path, spec, require_targets
        )
    elif require_targets:
        raise NeuroFMError(csv_path, f"file does not exist (needed for task {spec.name} targets)")
    else:
        labels = None
    folders = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if labels is not None:
        names = {d.name for d in folders}
        orphans = [c for c in labels if c not in names]
        if orphans:
            raise NeuroFMError(
                csv_path,
                f"case {orphans[0]!r} has no folder in {split_dir}"
                + (f" (and {len(orphans) - 1} more)" if len(orphans) > 1 else ""),
            )
    if not folders:
        raise NeuroFMError(split_dir, "no case folders")
    cases: list[Case] = []
    for folder in folders:
        case = read_case_dir(folder, spec)
        if labels is not None:
            if folder.name not in labels:
                raise NeuroFMError(folder, f"case folder has no row in {csv_path}")
            case.site, value = labels[folder.name]
            _set_target(case, spec, value)
        if spec.mask_name and require_targets and case.mask is None:
            raise NeuroFMError(
                folder / spec.mask_name, f"file does not exist ({spec.name} target mask)"
            )
        cases.append(case)
    return cases


def _set_target(case: Case, spec: TaskSpec, value: float | None) -> None:
    if spec.kind == "classification":
        case.label = value
    elif spec.kind == "regression":
        case.age = value


def read_references(split_dir: str | Path, task: TaskLike) -> list[Case]:
    """The reference standard of a split, sorted by case id: labels.csv, plus
    ``<case>/<mask>`` for mask tasks — and nothing else.

    What evaluation needs: a FOMO25-style reference folder holds labels without the input
    images, so case folders and sequences are not required (``sequences`` is empty).
    """
    split_dir = Path(split_dir)
    spec = get_task(task)
    if not split_dir.is_dir():
        raise NeuroFMError(split_dir, "split folder does not exist")
    csv_path = split_dir / LABELS_CSV
    if not csv_path.is_file():
        raise NeuroFMError(csv_path, f"file does not exist (needed for task {spec.name} targets)")
    cases = []
    for case_id, (site, value) in sorted(_read_labels(csv_path, spec, True).items()):
        case = Case(case_id=case_id, site=site, split_dir=split_dir, sequences={})
        _set_target(case, spec, value)
        if spec.mask_name:
            case.mask = split_dir / case_id / spec.mask_name
            if not case.mask.is_file():
                raise NeuroFMError(case.mask, f"file does not exist ({spec.name} target mask)")
        cases.append(case)
    if not cases:
        raise NeuroFMError(csv_path, "no cases")
    return cases
