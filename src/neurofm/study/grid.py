"""What a study trains and scores: arms x backbones x shot counts x tasks, per seed (pure).

Arm names a user gives:

- ``scratch``: the task model trained from random weights;
- ``pretrained``: finetuned from the pretraining run the recipe names for each task;
- ``mae`` / ``contrastive`` / ``hybrid`` / ``modality``: every task finetuned from that
  objective's run (the comparison of objectives);
- baselines ``prior`` (training mean / prevalence / empty mask), ``hand`` (a one-line hand
  feature per task) and ``random`` (a frozen randomly initialised encoder with the same head and
  probe training as the models).

A *unit* is one model (or baseline) of one task; units that train the same thing share one run
(``pretrained`` is the ``mae`` run for a task whose recipe objective is MAE), so asking for both
costs nothing extra. Labels in the results read ``arm``, ``arm@small`` for a backbone other than
the recipe's, and ``arm/n10`` for a 10-case subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neurofm.baselines.baseline import FEATURE_SEQUENCES
from neurofm.errors import NeuroFMError
from neurofm.models import get_preset
from neurofm.study.recipe import OBJECTIVES, Recipe
from neurofm.tasks import get_task

MODEL_ARMS = ("scratch", "pretrained", *OBJECTIVES)
"""Arms that finetune a network."""
BASELINE_ARMS = ("prior", "hand", "random")
"""Reference rows every table shows beside the models."""
ARMS = (*MODEL_ARMS, *BASELINE_ARMS)
DEFAULT_ARMS = ("scratch", "pretrained", "mae", "contrastive", *BASELINE_ARMS)
"""The confirmation grid: scratch, two objectives for every task (finding b; ``pretrained`` is
the one the recipe names per task, so it shares that run), and the three baselines."""
SCRATCH, PRETRAINED = "scratch", "pretrained"


@dataclass(frozen=True)
class Unit:
    """One model or baseline of one task in one seed's grid."""

    arm: str
    task: str
    backbone: str
    shots: int | None
    init: str
    """``scratch``, ``random``, ``none`` (baselines) or the pretraining objective it starts from."""
    recipe_backbone: str

    @property
    def label(self) -> str:
        """The arm's name in results: ``arm[@backbone][/nSHOTS]``."""
        tail = f"@{self.backbone}" if self.backbone != self.recipe_backbone else ""
        return self.arm + tail + (f"/n{self.shots}" if self.shots is not None else "")

    @property
    def is_baseline(self) -> bool:
        return self.arm in ("prior", "hand")

    @property
    def run_name(self) -> str:
        """Folder of the finetuning run; equal for units that train the same model."""
        parts = [self.task, f"from-{self.init}", self.backbone]
        if self.shots is not None:
            parts.append(f"n{self.shots}")
        return "-".join(parts)


@dataclass(frozen=True)
class Grid:
    """The arms, backbones, shot counts and tasks a study runs for every seed."""

    arms: tuple[str, ...]
    backbones: tuple[str, ...]
    shots: tuple[int | None, ...]
    tasks: tuple[str, ...]

    def units(self, recipe: Recipe) -> list[Unit]:
        """Every unit of one seed, baselines once per shot count (they have no backbone)."""
        out: list[Unit] = []
        for task in self.tasks:
            for shots in self.shots:
                for arm in self.arms:
                    backbones = (recipe.backbone,) if arm in ("prior", "hand") else self.backbones
                    for backbone in backbones:
                        init = _init(arm, task, recipe)
                        out.append(Unit(arm, task, backbone, shots, init, recipe.backbone))
        return out

    def pretraining_runs(self, recipe: Recipe) -> list[tuple[str, str]]:
        """(objective, backbone) of every pretraining run the grid needs, in first-use order."""
        needed = {
            (u.init, u.backbone): None
            for u in self.units(recipe)
            if u.init not in ("scratch", "random", "none")
        }
        return list(needed)


def _init(arm: str, task: str, recipe: Recipe) -> str:
    if arm == PRETRAINED:
        return recipe.task(task).objective
    if arm in OBJECTIVES or arm in ("scratch", "random"):
        return arm
    return "none"  # prior and hand baselines train nothing


def parse_list(text: str, what: str) -> list[str]:
    """Comma-separated names, stripped, none empty."""
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise NeuroFMError(None, f"--{what}: expected a comma-separated list, got {text!r}")
    return items


def make_grid(
    arms: Sequence[str],
    backbones: Sequence[str],
    shots: Sequence[str],
    tasks: Sequence[str],
    recipe: Recipe,
) -> Grid:
    """Validate the user's grid (unknown arm, backbone, task; bad shot counts)."""
    for arm in arms:
        if arm not in ARMS:
            raise NeuroFMError(None, f"unknown arm {arm!r} (known: {', '.join(ARMS)})")
    for b in backbones:
        get_preset(b)  # one-line error for an unknown preset
    names = [get_task(t).name for t in tasks]  # a name or a task file (registers it)
    ruleless = [t for t in names if t not in FEATURE_SEQUENCES]
    if "hand" in arms and ruleless:
        raise NeuroFMError(
            None, f"arm hand: no hand-feature rule for {ruleless}; leave hand out of --arms"
        )
    for t in names:
        if t not in recipe.tasks:
            raise NeuroFMError(recipe.source, f"no [tasks.{t}] section for task {t}")
    counts: list[int | None] = []
    for s in shots:
        if s == "all":
            counts.append(None)
            continue
        try:
            n = int(s)
        except ValueError:
            raise NeuroFMError(None, f"--shots: {s!r} is not a number or 'all'") from None
        if n < 4:
            raise NeuroFMError(None, f"--shots {n}: need at least 4 cases (train + validation)")
        counts.append(n)
    return Grid(
        tuple(dict.fromkeys(arms)),
        tuple(dict.fromkeys(backbones)),
        tuple(dict.fromkeys(counts)),
        tuple(dict.fromkeys(names)),
    )
