"""The recipes of pretraining and finetuning runs, checked when they are made.

The CLI takes its defaults from these classes (class attributes, so reading them imports no
torch) and builds them from the user's strings; ``__post_init__`` then refuses anything out of
range with a one-line :class:`~neurofm.errors.NeuroFMError` before a run folder is touched. The
choice lists (objectives, presets, heads, pools) come from their registries, imported only when
a recipe is checked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from neurofm.errors import NeuroFMError
from neurofm.tasks import get_task

if TYPE_CHECKING:
    from neurofm.data.patches import LoaderBackend
    from neurofm.models.adapters import AdaptMode
    from neurofm.models.config import FusionKind, HeadKind, PoolKind


def require_choice(option: str, value: Any, known: tuple[Any, ...] | list[str]) -> None:
    """One-line error naming the option unless ``value`` is one of ``known``."""
    if value not in known:
        raise NeuroFMError(None, f"unknown {option} {value!r} (known: {', '.join(known)})")


def require_at_least(option: str, value: float, low: float) -> None:
    """One-line error naming the option unless ``value >= low`` (NaN fails too)."""
    if not value >= low:
        raise NeuroFMError(None, f"{option} must be at least {low:g} (got {value:g})")


def require_positive(option: str, value: float) -> None:
    """One-line error naming the option unless ``value > 0`` (NaN fails too)."""
    if not value > 0:
        raise NeuroFMError(None, f"{option} must be positive (got {value:g})")


@dataclass
class PretrainSettings:
    """Recipe of a pretraining run (stored in its config.json)."""

    objective: str = "mae"
    preset: str = "tiny"
    patch_size: int = 32
    batch_size: int = 8
    steps: int = 300
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    workers: int = 2
    loader: LoaderBackend = "processes"
    seed: int = 0
    probe_every: int = 0  # 0: no online brain-age probe
    probe_size: int = 48
    checkpoint_every: int = 50
    log_every: int = 10

    def __post_init__(self) -> None:
        from neurofm.data.patches import LOADER_BACKENDS
        from neurofm.models import get_preset
        from neurofm.pretrain.objectives import OBJECTIVES

        require_choice("objective", self.objective, list(OBJECTIVES))
        require_choice("loader", self.loader, LOADER_BACKENDS)
        divisor = get_preset(self.preset).divisor
        if self.patch_size < 2 * divisor or self.patch_size % divisor:
            raise NeuroFMError(
                None,
                f"--patch {self.patch_size} must be a multiple of {divisor} "
                f"and at least {2 * divisor} for preset {self.preset}",
            )
        for option, value in (("--batch-size", self.batch_size),
                              ("--lr", self.lr), ("--probe-size", self.probe_size),
                              ("checkpoint_every", self.checkpoint_every),
                              ("log_every", self.log_every)):  # fmt: skip
            require_positive(option, value)
        for option, value in (("--steps", self.steps), ("--workers", self.workers),
                              ("--probe-every", self.probe_every),
                              ("weight_decay", self.weight_decay),
                              ("warmup_steps", self.warmup_steps)):  # fmt: skip
            require_at_least(option, value, 0)


@dataclass
class FinetuneSettings:
    """Recipe of a finetuning run (stored in its config.json)."""

    task: str = "infarct"
    init: str = "scratch"  # or a pretraining run folder
    mode: AdaptMode = "full"
    shots: int | None = None  # None: every training case
    preset: str = "tiny"
    head: HeadKind = "linear"
    pool: PoolKind = "avg"
    mil_head_only: bool = False  # MIL head: rank only voxels inside the head
    largest_component: bool = False  # segmentation: keep the largest predicted component
    fusion: FusionKind = "early"  # early: sequences as channels; late: an encoder pass each
    input_mix: dict[str, float] | None = None  # pretrained first conv per channel (models.channels)
    adapter_rank: int = 8
    input_size: int = 48
    patch_size: int = 32
    batch_size: int = 4
    steps: int = 150
    lr: float = 1e-3
    encoder_lr_scale: float = 1.0  # encoder (and decoder) learning rate = lr x this
    probe_augmented: int = 3  # augmented copies per case in the closed-form head fit
    augment: str = "full"  # a profile of neurofm.data.augment.AUGMENT_PROFILES
    schedule: str = "cosine"  # learning-rate decay after the warm-up (train.loop.LR_SCHEDULES)
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    val_fraction: float = 0.25
    eval_every: int = 15
    patience: int = 4
    select: str = "best"  # final weights: best (validation-selected, early stopping) | last
    workers: int = 2
    loader: LoaderBackend = "processes"
    seed: int = 0
    log_every: int = 5

    def __post_init__(self) -> None:
        from neurofm.data.augment import AUGMENT_PROFILES
        from neurofm.data.patches import LOADER_BACKENDS
        from neurofm.models import MODEL_PRESETS
        from neurofm.models.adapters import AdaptMode
        from neurofm.models.config import FusionKind, HeadKind, PoolKind
        from neurofm.train.loop import LR_SCHEDULES, WEIGHT_SELECTIONS

        task = get_task(self.task)
        require_choice("augment", self.augment, list(AUGMENT_PROFILES))
        require_choice("schedule", self.schedule, LR_SCHEDULES)
        require_choice("select", self.select, WEIGHT_SELECTIONS)
        require_choice("loader", self.loader, LOADER_BACKENDS)
        require_choice("mode", self.mode, get_args(AdaptMode))
        require_choice("head", self.head, get_args(HeadKind))
        require_choice("pool", self.pool, get_args(PoolKind))
        require_choice("fusion", self.fusion, get_args(FusionKind))
        if self.fusion == "late" and (task.kind == "segmentation" or self.head == "mil"):
            raise NeuroFMError(
                "--fusion", "late fusion needs a pooled head (classification or regression)"
            )
        if self.largest_component and task.kind != "segmentation":
            raise NeuroFMError("--largest-component", f"is for segmentation, not {task.name}")
        if self.mil_head_only and self.head != "mil":
            raise NeuroFMError("--mil-head-only", f"needs --head mil (got {self.head})")
        if self.input_mix is not None:
            if self.init == "scratch" or self.fusion != "early":
                raise NeuroFMError("--input-mix", "needs a pretrained --init and early fusion")
            check_input_mix(self.input_mix, task.channel_slots)
        require_choice("preset", self.preset, list(MODEL_PRESETS))
        if self.shots is not None:
            require_positive("--shots", self.shots)
        if not 0.0 < self.val_fraction < 1.0:
            raise NeuroFMError(None, f"val_fraction must be in (0, 1) (got {self.val_fraction:g})")
        for option, value in (("--batch-size", self.batch_size),
                              ("--input-size", self.input_size), ("--patch", self.patch_size),
                              ("--lr", self.lr), ("--eval-every", self.eval_every),
                              ("adapter_rank", self.adapter_rank),
                              ("log_every", self.log_every)):  # fmt: skip
            require_positive(option, value)
        for option, value in (("--steps", self.steps),
                              ("--encoder-lr-scale", self.encoder_lr_scale),
                              ("--patience", self.patience), ("--workers", self.workers),
                              ("probe_augmented", self.probe_augmented),
                              ("weight_decay", self.weight_decay),
                              ("warmup_steps", self.warmup_steps)):  # fmt: skip
            require_at_least(option, value, 0)


def check_input_mix(mix: dict[str, float], channels: tuple[str, ...]) -> None:
    """One-line error unless ``mix`` weights some of a task's ``channels`` with finite weights,
    not all zero (:func:`neurofm.models.channels.adapt_input_kernel`)."""
    unknown = sorted(set(mix) - set(channels))
    if unknown:
        raise NeuroFMError("--input-mix", f"{unknown} not among the task's channels {channels}")
    if not mix or not all(math.isfinite(w) for w in mix.values()) or not any(mix.values()):
        raise NeuroFMError("--input-mix", f"needs finite weights, not all zero (got {mix})")
