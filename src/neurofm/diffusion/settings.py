"""The recipe of a diffusion-classifier run, checked before a run folder is touched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

from neurofm.diffusion.classify import ClassifierSettings
from neurofm.diffusion.schedule import ScheduleKind
from neurofm.errors import NeuroFMError
from neurofm.tasks import get_task
from neurofm.train.settings import FinetuneSettings, require_at_least, require_positive

# the fields a diffusion recipe shares with a finetuning recipe (same names, same meaning)
SHARED_WITH_FINETUNE = ("task", "init", "preset", "input_size", "batch_size", "steps", "lr",
                        "weight_decay", "warmup_steps", "workers", "seed", "log_every")  # fmt: skip


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
        from neurofm.models import get_preset
        from neurofm.models.diffusion_unet import DiffusionUNetConfig

        task = get_task(self.task)
        if task.kind != "classification":
            raise NeuroFMError(
                None, f"--task {task.name}: the diffusion head classifies (task kind {task.kind})"
            )
        # the options shared with finetuning obey its rules: checked by its recipe, not copied
        FinetuneSettings(**{name: getattr(self, name) for name in SHARED_WITH_FINETUNE})
        if self.schedule not in get_args(ScheduleKind):
            raise NeuroFMError(None, f"unknown schedule {self.schedule!r} (linear, cosine)")
        self.classifier()  # K, T, t_max
        divisor = get_preset(self.preset).divisor
        if self.input_size % divisor or self.input_size < 2 * divisor:
            raise NeuroFMError(
                None, f"--input-size {self.input_size} must be a multiple of {divisor} "
                f"and at least {2 * divisor} for preset {self.preset}",
            )  # fmt: skip
        # embed_dim and class_dropout: the network's own rules, before a run folder is touched
        DiffusionUNetConfig(get_preset(self.preset), 2, self.embed_dim, self.class_dropout)
        require_positive("checkpoint_every", self.checkpoint_every)
        require_at_least("--diffusion-steps", self.diffusion_steps, 2)

    def classifier(self, **overrides: float) -> ClassifierSettings:
        """The default classification rule of this run (K, T, t_max, seed)."""
        values = {"k": self.k, "t": self.t, "t_max": self.t_max, "seed": self.seed, **overrides}
        return ClassifierSettings(
            k=int(values["k"]), t=int(values["t"]), t_max=float(values["t_max"]),
            seed=int(values["seed"]),
        )  # fmt: skip


def settings_from_finetune(given: Mapping[str, Any]) -> DiffusionSettings:
    """The recipe of ``neurofm finetune --head diffusion`` from the options the user gave there.

    Options of the finetuning recipe that mean the same for the diffusion head are taken; any
    other (``--mode``, ``--pool``, ``--patience`` ...) is a one-line error rather than silently
    ignored. Everything not given keeps the diffusion recipe's own default.
    """
    foreign = [name for name in given if name not in SHARED_WITH_FINETUNE and name != "head"]
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise NeuroFMError(
            "--head diffusion", f"{flags} do(es) not apply to the diffusion head "
            "(its own options: neurofm finetune-diffusion --help)",
        )  # fmt: skip
    return DiffusionSettings(**{name: given[name] for name in given if name != "head"})
