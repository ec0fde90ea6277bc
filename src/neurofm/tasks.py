"""The three FOMO25 tasks: which sequences they read, what they output, how they are scored."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from neurofm.errors import NeuroFMError

TaskKind = Literal["classification", "segmentation", "regression"]


@dataclass(frozen=True)
class TaskSpec:
    """Contract of one task (DESIGN.md §1).

    ``required`` sequences must all be present; from each group in ``one_of`` the first
    present sequence is used, so every model sees the same number of channels.
    """

    name: str
    kind: TaskKind
    required: tuple[str, ...]
    one_of: tuple[tuple[str, ...], ...] = ()
    primary_metric: str = ""
    higher_is_better: bool = True

    @property
    def n_channels(self) -> int:
        return len(self.required) + len(self.one_of)

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


TASKS: dict[str, TaskSpec] = {
    "infarct": TaskSpec(
        "infarct", "classification", ("dwi_b1000", "flair", "adc"), (("swi", "t2s"),), "auroc"
    ),
    "meningioma": TaskSpec(
        "meningioma", "segmentation", ("dwi_b1000", "flair"), (("swi", "t2s"),), "dice"
    ),
    "brain_age": TaskSpec("brain_age", "regression", ("t1", "t2"), (), "mae", False),
}


def get_task(name: str) -> TaskSpec:
    """Look up a task by name; unknown names are a one-line error."""
    if name not in TASKS:
        raise NeuroFMError(None, f"unknown task {name!r} (known: {', '.join(TASKS)})")
    return TASKS[name]
