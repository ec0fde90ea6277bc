"""A user task file's text travels with what was made for the task: a run's ``config.json``
(``task_file``) and a package (``task.toml``).

A user's task is known only from its file, and the file stays on the machine where it was
written. Keeping its text beside the model lets ``predict --model RUN`` and ``package
verify/run`` work elsewhere, and lets a command refuse a model made for a task file that has
since changed (the facts are compared, not the path or the comments).

The writer is hand-made (about twenty lines): the format is a handful of known fields, and the
standard library reads TOML but does not write it.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

from neurofm.errors import NeuroFMError
from neurofm.tasks import TASKS, TaskLike, TaskSpec, get_task, parse_task, use_task

TASK_FILE_KEY = "task_file"
"""The run config key holding the task file's text."""

TASK_FILE_NAME = "task.toml"
"""The task file's name inside a package."""


def _value(value: object) -> str:
    return json.dumps(value)  # JSON strings, numbers and lists of them are valid TOML


def task_to_toml(spec: TaskSpec) -> str:
    """The task file that loads back into ``spec`` (same facts; comments are not kept)."""
    lines = [f"name = {_value(spec.name)}", f"title = {_value(spec.title)}"]
    lines += [f"kind = {_value(spec.kind)}", "", "[inputs]"]
    lines += [f"required = {_value(list(spec.required))}"]
    if spec.one_of:
        lines.append(f"one_of = {_value([list(g) for g in spec.one_of])}")
    key = "mask" if spec.kind == "segmentation" else "column"
    lines += ["", "[target]", f"{key} = {_value(spec.target)}"]
    if spec.value_range is not None:
        lines += ["", "[output]", f"range = {_value(list(spec.value_range))}"]
        if spec.units:
            lines.append(f"units = {_value(spec.units)}")
    lines += ["", "[metrics]", f"report = {_value(list(spec.metrics))}"]
    lines.append(f"primary = {_value(spec.primary_metric)}")
    return "\n".join(lines) + "\n"


def task_from_text(text: str, where: str | Path) -> TaskSpec:
    """Parse a recorded task file; its task is known by name from then on (``use_task``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NeuroFMError(where, f"invalid TOML ({exc})") from exc
    return use_task(parse_task(data, str(where)))


def task_file_text(spec: TaskSpec) -> str:
    """The text to record for ``spec``: its own file when that still says the same, else
    :func:`task_to_toml`."""
    source = Path(spec.source) if spec.source else None
    if source is not None and source.is_file():
        text = source.read_text(encoding="utf-8")
        try:
            if same_task(parse_task(tomllib.loads(text), spec.source), spec):
                return text
        except (tomllib.TOMLDecodeError, NeuroFMError):
            pass  # the file changed since it was read: record the facts in use
    return task_to_toml(spec)


def task_record(spec: TaskSpec) -> str | None:
    """The task file text a run or package keeps: a user task's, None for a built-in task.

    A built-in task is known wherever neurofm is installed, and recording its text would tie
    old runs to facts a later version may correct (a recorded copy that differs from the
    built-in of the same name is refused).
    """
    return None if spec.name in TASKS else task_file_text(spec)


def same_task(a: TaskSpec, b: TaskSpec) -> bool:
    """Same facts, wherever each was read from."""
    return replace(a, source="") == replace(b, source="")


def recorded_task(name: str, text: str | None, where: str | Path) -> TaskSpec:
    """The task a run or package was made for: its recorded task file, else the built-in
    ``name`` (runs made before task files were recorded)."""
    return task_from_text(text, where) if text else get_task(name)


def check_task(requested: TaskLike | None, actual: TaskSpec, where: str | Path) -> None:
    """Refuse a model made for another task, or for a task file whose facts differ."""
    if requested is None:
        return
    want = get_task(requested)
    if want.name != actual.name:
        raise NeuroFMError(where, f"made for task {actual.name}, not {want.name}")
    if not same_task(want, actual):
        raise NeuroFMError(
            where,
            f"made for a different {actual.name} task file than {want.source or want.name} "
            f"(compare with its recorded {TASK_FILE_NAME})",
        )
