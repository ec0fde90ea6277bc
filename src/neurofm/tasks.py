"""Tasks as data: one TOML task file per task, loaded into one frozen :class:`TaskSpec`.

Everything the rest of the code needs to know about a task — its title, which sequences it reads
(channel slots), where its target is (a ``labels.csv`` column or a mask file), what a prediction
is and which values it may take, which metrics score it and which of them ranks, and what a
missing prediction is scored as — is read from here and restated nowhere else. The three FOMO25
tasks are built-in task files shipped in ``neurofm/task_files/``; a user's own task file goes
through the same loader (:func:`load_task_file`), so ``get_task`` accepts a name or a path.
The format is described in ``docs/tasks.md``.

The loader validates by hand (a few lines per field) rather than through a pydantic model: the
checks that depend on the kind — which target key, which metrics, which default range — sit
beside the field they check, and every message names the file and the field as the file spells
it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
from numpy.typing import ArrayLike

from neurofm.errors import NeuroFMError
from neurofm.metrics.registry import (
    KIND_CASE_ROWS,
    KIND_REFERENCE_ROW,
    METRICS,
    MetricSpec,
    TaskKind,
)
from neurofm.sequences import CANONICAL

__all__ = [
    "TASKS",
    "TaskKind",
    "TaskLike",
    "TaskRegistry",
    "TaskSpec",
    "get_task",
    "known_tasks",
    "load_task_file",
    "parse_task",
    "use_task",
    "with_task",
]

OutputKind = Literal["probability", "mask", "number"]
_OUTPUT_KIND: dict[str, OutputKind] = {
    "classification": "probability",
    "segmentation": "mask",
    "regression": "number",
}
_SLOT_SEP = "|"


@dataclass(frozen=True)
class TaskSpec:
    """Contract of one task.

    ``required`` sequences must all be present; from each group in ``one_of`` the first present
    sequence is used, so every model sees the same number of channels. ``metrics`` lists the
    summary metrics reported, primary (the ranking metric) first. ``target`` is the labels.csv
    column of a number target or the file name of a mask target. ``value_range`` bounds a
    number prediction (None for masks).
    """

    name: str
    kind: TaskKind
    required: tuple[str, ...]
    one_of: tuple[tuple[str, ...], ...] = ()
    metrics: tuple[str, ...] = ()
    title: str = ""
    target: str = ""
    value_range: tuple[float, float] | None = None
    units: str = ""
    source: str = ""
    """The task file this spec was read from (empty for specs built in code)."""

    @property
    def n_channels(self) -> int:
        return len(self.required) + len(self.one_of)

    @property
    def channel_slots(self) -> tuple[str, ...]:
        """One name per input channel: required sequences, then ``a|b`` per one-of group."""
        return (*self.required, *(_SLOT_SEP.join(g) for g in self.one_of))

    @property
    def sequences(self) -> tuple[str, ...]:
        """Every sequence the task can read (required and all one-of members)."""
        return (*self.required, *(s for g in self.one_of for s in g))

    @property
    def primary_metric(self) -> str:
        """The metric a leaderboard ranks on (the first listed)."""
        if not self.metrics:
            raise NeuroFMError(self.source or self.name, "task lists no metrics")
        return self.metrics[0]

    @property
    def higher_is_better(self) -> bool:
        """Direction of the primary metric, from the metric registry."""
        return METRICS[self.primary_metric].higher_is_better

    @property
    def metric_specs(self) -> list[MetricSpec]:
        """Summary metrics of the task, primary first."""
        return [METRICS[m] for m in self.metrics]

    @property
    def output_kind(self) -> OutputKind:
        """What a model writes per case: a probability, a mask or a number."""
        return _OUTPUT_KIND[self.kind]

    @property
    def prediction_suffix(self) -> str:
        """File name suffix of one case's prediction (``<case>.txt`` or ``<case>.nii.gz``)."""
        return ".nii.gz" if self.kind == "segmentation" else ".txt"

    @property
    def target_column(self) -> str | None:
        """The labels.csv column holding a number target (None for a mask target)."""
        return None if self.kind == "segmentation" else self.target

    @property
    def mask_name(self) -> str | None:
        """File name of the reference mask in each case folder (None for number targets)."""
        return self.target if self.kind == "segmentation" else None

    @property
    def case_rows(self) -> tuple[str, ...]:
        """Per-case rows of the tidy results table for this task."""
        return KIND_CASE_ROWS[self.kind]

    @property
    def reference_row(self) -> str | None:
        """Tidy row holding the reference value (None for masks, scored per case)."""
        return KIND_REFERENCE_ROW.get(self.kind)

    def worst_prediction(self, reference: ArrayLike) -> np.ndarray:
        """The prediction a missing number output is scored as: the end of ``value_range``
        farther from the reference (``1 - label`` for a probability).

        No allowed prediction is farther from the reference, so a missing one never scores
        better than a present one. Masks have no value range; see
        :func:`neurofm.metrics.segmentation.missing_mask_metrics`.
        """
        if self.value_range is None:
            raise NeuroFMError(self.source or self.name, "a mask task has no worst number")
        lo, hi = self.value_range
        ref = np.asarray(reference, dtype=np.float64)
        return np.where(np.abs(ref - lo) >= np.abs(ref - hi), lo, hi)

    def select(self, available: Collection[str], where: str = "") -> list[str]:
        """Pick the input sequences (in channel order) from those available in a case."""
        have = set(available)
        missing = [s for s in self.required if s not in have]
        if missing:
            raise NeuroFMError(
                where or None, f"missing required sequence(s) {missing} for task {self.name}"
            )
        chosen = list(self.required)
        for group in self.one_of:
            pick = next((s for s in group if s in have), None)
            if pick is None:
                raise NeuroFMError(where or None, f"task {self.name} needs one of {list(group)}")
            chosen.append(pick)
        return chosen


def _field(data: Mapping[str, Any], key: str, where: str, kind: type, default: Any = None) -> Any:
    value = data.get(key, default)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise NeuroFMError(where, f"{key}: expected a {kind.__name__}, got {value!r}")
    return value


def _names(value: Any, field: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise NeuroFMError(where, f"{field}: expected a list of names, got {value!r}")
    return tuple(value)


def _sequences(
    inputs: Mapping[str, Any], where: str
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    required = _names(inputs.get("required", []), "inputs.required", where)
    groups_raw = inputs.get("one_of", [])
    if not isinstance(groups_raw, list):
        raise NeuroFMError(where, f"inputs.one_of: expected a list of lists, got {groups_raw!r}")
    one_of = tuple(_names(g, f"inputs.one_of[{i}]", where) for i, g in enumerate(groups_raw))
    if any(not g for g in one_of):
        raise NeuroFMError(where, "inputs.one_of: an empty group")
    seen: set[str] = set()
    for field, name in [("inputs.required", s) for s in required] + [
        ("inputs.one_of", s) for g in one_of for s in g
    ]:
        if name not in CANONICAL:
            raise NeuroFMError(
                where, f"{field}: unknown sequence {name!r} (known: {', '.join(CANONICAL)})"
            )
        if name in seen:
            raise NeuroFMError(where, f"{field}: sequence {name!r} listed twice")
        seen.add(name)
    if not seen:
        raise NeuroFMError(where, "inputs: the task reads no sequence")
    return required, one_of


def _metrics(section: Mapping[str, Any], kind: str, where: str) -> tuple[str, ...]:
    report = _names(section.get("report"), "metrics.report", where)
    for name in report:
        if name not in METRICS:
            raise NeuroFMError(
                where, f"metrics.report: unknown metric {name!r} (known: {', '.join(METRICS)})"
            )
        if METRICS[name].task_kind != kind:
            raise NeuroFMError(where, f"metrics.report: {name} scores {METRICS[name].task_kind}")
    primary = _field(section, "primary", where, str, report[0] if report else None)
    if primary not in report:
        raise NeuroFMError(where, f"metrics.primary: {primary!r} is not in metrics.report")
    return (primary, *(m for m in report if m != primary))


def _value_range(output: Mapping[str, Any], kind: str, where: str) -> tuple[float, float] | None:
    if kind == "segmentation":
        if "range" in output:
            raise NeuroFMError(where, "output.range: a mask has no value range")
        return None
    raw = output.get("range", [0.0, 1.0] if kind == "classification" else None)
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
        or not all(np.isfinite(raw))
        or raw[0] >= raw[1]
    ):
        raise NeuroFMError(
            where, f"output.range: expected [low, high] with low < high, got {raw!r}"
        )
    if kind == "classification" and (raw[0] < 0 or raw[1] > 1):
        raise NeuroFMError(where, "output.range: a probability lies within [0, 1]")
    return float(raw[0]), float(raw[1])


_TOP = {"name", "title", "kind", "inputs", "target", "output", "metrics"}


def parse_task(data: Mapping[str, Any], where: str) -> TaskSpec:
    """Validate a parsed task file; every problem names ``where`` and the field."""
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise NeuroFMError(where, f"unknown field(s) {', '.join(unknown)}")
    name = _field(data, "name", where, str)
    if not name.isidentifier():
        raise NeuroFMError(where, f"name: {name!r} must be letters, digits and underscores")
    kind = _field(data, "kind", where, str)
    if kind not in get_args(TaskKind):
        raise NeuroFMError(
            where, f"kind: unknown kind {kind!r} (known: {', '.join(get_args(TaskKind))})"
        )
    sections = {k: _field(data, k, where, dict, {}) for k in ("inputs", "target", "output")}
    required, one_of = _sequences(sections["inputs"], where)
    target_key = "mask" if kind == "segmentation" else "column"
    if set(sections["target"]) - {target_key}:
        raise NeuroFMError(where, f"target: a {kind} task names its target by '{target_key}'")
    target = _field(sections["target"], target_key, where, str)
    if set(sections["output"]) - {"range", "units"}:
        raise NeuroFMError(where, "output: only 'range' and 'units' are known")
    return TaskSpec(
        name=name,
        kind=cast(TaskKind, kind),
        required=required,
        one_of=one_of,
        metrics=_metrics(_field(data, "metrics", where, dict), kind, where),
        title=_field(data, "title", where, str, name),
        target=target,
        value_range=_value_range(sections["output"], kind, where),
        units=_field(sections["output"], "units", where, str, ""),
        source=where,
    )


def load_task_file(path: str | Path) -> TaskSpec:
    """Read and validate one TOML task file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise NeuroFMError(path, f"unreadable task file ({exc.__class__.__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise NeuroFMError(path, f"invalid TOML ({exc})") from exc
    return parse_task(data, str(path))


def _builtin() -> dict[str, TaskSpec]:
    folder = resources.files("neurofm") / "task_files"
    names = ("infarct", "meningioma", "brain_age")
    return {n: load_task_file(Path(str(folder / f"{n}.toml"))) for n in names}


TASKS: dict[str, TaskSpec] = _builtin()
"""The built-in FOMO25 tasks by name, in contract order."""


TaskRegistry = Mapping[str, TaskSpec]
"""Tasks a results table may hold, by name (the built-ins, plus any user task in use)."""

TaskLike = str | Path | TaskSpec
"""What functions taking a task accept: a built-in name, a task file's path, or a loaded spec."""


def get_task(name_or_path: TaskLike) -> TaskSpec:
    """A built-in task by name, or a user's task file by path; anything else is a one-line error."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    key = str(name_or_path)
    if key in TASKS:
        return TASKS[key]
    if key in _IN_USE:
        return _IN_USE[key]
    if key.endswith(".toml") or Path(key).is_file():
        return use_task(load_task_file(key))
    raise NeuroFMError(None, f"unknown task {key!r} (known: {', '.join(TASKS)}, or a .toml file)")


def with_task(spec: TaskSpec) -> dict[str, TaskSpec]:
    """The built-in tasks plus ``spec``; a task file may not reuse a built-in name for
    different facts (results of the two would be mixed up)."""
    builtin = TASKS.get(spec.name)
    if builtin is not None and replace(spec, source=builtin.source) != builtin:
        raise NeuroFMError(spec.source, f"name: {spec.name!r} is a built-in task's name")
    return {**TASKS, spec.name: spec}


_IN_USE: dict[str, TaskSpec] = {}


def use_task(spec: TaskSpec) -> TaskSpec:
    """Make a user task known by its name for the rest of the process.

    A command reads a task file once and then passes the task on by name (run configs, prepared
    manifests, results tables, package manifests), so every later ``get_task(name)`` must find
    the same facts. Every task file :func:`get_task` loads goes through here; a later file with
    the same name replaces the earlier one, a built-in's name is refused (see :func:`with_task`).
    """
    with_task(spec)
    if spec.name not in TASKS:
        _IN_USE[spec.name] = spec
    return spec


def known_tasks() -> dict[str, TaskSpec]:
    """The built-in tasks plus the user tasks in use in this process."""
    return {**TASKS, **_IN_USE}
