"""The recipe of a diffusion-classifier run, checked before a run folder is touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from neurofm.diffusion.classify import ClassifierSettings
from neurofm.diffusion.schedule import ScheduleKind
from neurofm.errors import NeuroFMError
from neurofm.tasks import get_task
from neurofm.train.settings import require_at_least, require_positive


@dataclass
class DiffusionSettings:
    """Training recipe plus the classification rule's defaults (stored in config.json)."""

    task: str = "infarct"
    init: str = "scratch"  # or a pretraining run folder
    preset: str = "tiny"
    input_size: int = 48
    schedule: ScheduleKind = "linear"
    diffusion_steps: int = 1000
    k: int = 4
    t: int = 8
    t_max: float = 0.5
    embed_dim: int = 64
    class_dropout: float = 0.1
    steps: int = 500
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    workers: int = 2
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        from neurofm.models import MODEL_PRESETS, get_preset

        task = get_task(self.task)
        if task.kind != "classification":
            raise NeuroFMError(
                None, f"--task {task.name}: the diffusion head classifies (task kind {task.kind})"
            )
        if self.preset not in MODEL_PRESETS:
            raise NeuroFMError(None, f"unknown preset {self.preset!r} ({', '.join(MODEL_PRESETS)})")
        if self.schedule not in get_args(ScheduleKind):
            raise NeuroFMError(None, f"unknown schedule {self.schedule!r} (linear, cosine)")
        self.classifier()  # K, T, t_max
        divisor = get_preset(self.preset).divisor
        if self.input_size % divisor or self.input_size < 2 * divisor:
            raise NeuroFMError(
                None, f"--input-size {self.input_size} must be a multiple of {divisor} "
                f"and at least {2 * divisor} for preset {self.preset}",
            )  # fmt: skip
        for option, value in (("--batch-size", self.batch_size), ("--lr", self.lr),
                              ("log_every", self.log_every),
                              ("checkpoint_every", self.checkpoint_every)):  # fmt: skip
            require_positive(option, value)
        for option, value in (("--steps", self.steps), ("--workers", self.workers),
                              ("weight_decay", self.weight_decay),
                              ("warmup_steps", self.warmup_steps)):  # fmt: skip
            require_at_least(option, value, 0)
        require_at_least("--diffusion-steps", self.diffusion_steps, 2)

    def classifier(self, **overrides: float) -> ClassifierSettings:
        """The default classification rule of this run (K, T, t_max, seed)."""
        values = {"k": self.k, "t": self.t, "t_max": self.t_max, "seed": self.seed, **overrides}
        return ClassifierSettings(
            k=int(values["k"]), t=int(values["t"]), t_max=float(values["t_max"]),
            seed=int(values["seed"]),
        )  # fmt: skip
