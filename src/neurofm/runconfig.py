"""The typed content of a run's ``config.json``.

Training writes it and prediction, packaging and the demo read it, so the keys are named once,
here: a finetuned run is a :class:`FinetuneRunConfig`, a pretraining run a
:class:`PretrainRunConfig`. ``recipe`` stays a plain mapping because it records the settings as
given (it is provenance, nobody feeds a model from it). Keys this version does not know (for
example ``loop`` and ``step`` that the training loop adds to checkpoint configs) are kept in
``extra`` and written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from neurofm.data.preprocess import CLIP_BEFORE_THE_SETTING, PreprocessParams
from neurofm.errors import NeuroFMError
from neurofm.models import TaskModelConfig, UNetConfig

Triple = tuple[int, int, int]
Value = TypeVar("Value", float, np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class TargetScale:
    """Regression targets are learned standardised: ``years = output * std + mean``."""

    mean: float = 0.0
    std: float = 1.0

    def to_units(self, output: Value) -> Value:
        return output * self.std + self.mean

    def standardise(self, value: Value) -> Value:
        return (value - self.mean) / self.std


@dataclass
class FinetuneRunConfig:
    """How to rebuild and feed a finetuned model, and where it came from."""

    kind: ClassVar[str] = "finetune"

    task: str
    model: TaskModelConfig
    input_sequences: list[str]
    preprocess: PreprocessParams
    input_size: Triple
    patch_size: Triple
    target: TargetScale = TargetScale()
    threshold: float = 0.5
    largest_component: bool = False  # masks: keep only the largest connected component
    init: str = "scratch"
    head_init: str = ""
    recipe: dict[str, Any] = field(default_factory=dict)
    train_cases: list[str] = field(default_factory=list)
    val_cases: list[str] = field(default_factory=list)
    code_revision: str = ""
    data_fingerprint: str = ""
    steps: int | None = None  # set once training is done
    best_step: int | None = None
    best: dict[str, float] = field(default_factory=dict)  # validation scores at best_step
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "kind": self.kind,
            "task": self.task,
            "model": self.model.to_dict(),
            "input_sequences": list(self.input_sequences),
            "preprocess": self.preprocess.to_dict(),
            "input_size": list(self.input_size),
            "patch_size": list(self.patch_size),
            "target": {"mean": self.target.mean, "std": self.target.std},
            "threshold": self.threshold,
            "largest_component": self.largest_component,
            "init": self.init,
            "head_init": self.head_init,
            "recipe": dict(self.recipe),
            "train_cases": list(self.train_cases),
            "val_cases": list(self.val_cases),
            "code_revision": self.code_revision,
            "data_fingerprint": self.data_fingerprint,
            "steps": self.steps,
            "best_step": self.best_step,
            "best": dict(self.best),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path | str | None = None) -> FinetuneRunConfig:
        known = {f.name for f in fields(cls)} | {"kind"}
        try:
            target = data.get("target") or {}
            return cls(
                task=str(data["task"]),
                model=TaskModelConfig.from_dict(data["model"]),
                input_sequences=[str(s) for s in data["input_sequences"]],
                preprocess=preprocess_from_dict(data["preprocess"]),
                input_size=_triple(data["input_size"]),
                patch_size=_triple(data["patch_size"]),
                target=TargetScale(float(target.get("mean", 0.0)), float(target.get("std", 1.0))),
                threshold=float(data.get("threshold", 0.5)),
                largest_component=bool(data.get("largest_component", False)),
                init=str(data.get("init", "scratch")),
                head_init=str(data.get("head_init", "")),
                recipe=dict(data.get("recipe") or {}),
                train_cases=[str(c) for c in data.get("train_cases") or []],
                val_cases=[str(c) for c in data.get("val_cases") or []],
                code_revision=str(data.get("code_revision", "")),
                data_fingerprint=str(data.get("data_fingerprint", "")),
                steps=_opt_int(data.get("steps")),
                best_step=_opt_int(data.get("best_step")),
                best={str(k): float(v) for k, v in (data.get("best") or {}).items()},
                extra={k: v for k, v in data.items() if k not in known},
            )
        except NeuroFMError as exc:  # a nested config's check: say which file it came from
            raise NeuroFMError(where, str(exc)) from exc
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            problem = f"finetuned run config is incomplete or malformed ({exc!r})"
            raise NeuroFMError(where, problem) from exc


@dataclass
class PretrainRunConfig:
    """A pretraining run: the backbone it trained and the recipe that trained it."""

    kind: ClassVar[str] = "pretrain"

    objective: str
    backbone: UNetConfig
    preprocess: PreprocessParams
    input_sequences: list[str] = field(default_factory=lambda: ["any"])
    input_rule: str = "one sequence per sample (two for modality); pretrained single-channel"
    recipe: dict[str, Any] = field(default_factory=dict)
    code_revision: str = ""
    data_fingerprint: str = ""
    world_size: int = 1
    steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "kind": self.kind,
            "objective": self.objective,
            "backbone": self.backbone.to_dict(),
            "input_sequences": list(self.input_sequences),
            "input_rule": self.input_rule,
            "preprocess": self.preprocess.to_dict(),
            "recipe": dict(self.recipe),
            "code_revision": self.code_revision,
            "data_fingerprint": self.data_fingerprint,
            "world_size": self.world_size,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path | str | None = None) -> PretrainRunConfig:
        known = {f.name for f in fields(cls)} | {"kind"}
        try:
            return cls(
                objective=str(data["objective"]),
                backbone=UNetConfig.from_dict(data["backbone"]),
                preprocess=preprocess_from_dict(data["preprocess"]),
                input_sequences=[str(s) for s in data.get("input_sequences") or ["any"]],
                input_rule=str(data.get("input_rule", "")),
                recipe=dict(data.get("recipe") or {}),
                code_revision=str(data.get("code_revision", "")),
                data_fingerprint=str(data.get("data_fingerprint", "")),
                world_size=int(data.get("world_size", 1)),
                steps=_opt_int(data.get("steps")),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except NeuroFMError as exc:  # a nested config's check: say which file it came from
            raise NeuroFMError(where, str(exc)) from exc
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            problem = f"pretraining run config is incomplete or malformed ({exc!r})"
            raise NeuroFMError(where, problem) from exc


RunConfig = FinetuneRunConfig | PretrainRunConfig


def run_config_from_dict(data: dict[str, Any], where: Path | str | None = None) -> RunConfig:
    """Parse a config by its ``kind``; anything else is not a neurofm run."""
    kind = data.get("kind")
    if kind == FinetuneRunConfig.kind:
        return FinetuneRunConfig.from_dict(data, where)
    if kind == PretrainRunConfig.kind:
        return PretrainRunConfig.from_dict(data, where)
    raise NeuroFMError(where, f"unknown run kind {kind!r} (expected finetune or pretrain)")


def preprocess_from_dict(data: dict[str, Any]) -> PreprocessParams:
    """JSON lists back into the tuples :class:`PreprocessParams` holds; a form stored before the
    clip setting existed gets the clip that made it, not today's default."""
    values = dict(data)
    spacing = values.get("spacing")
    values["spacing"] = tuple(float(v) for v in spacing) if spacing else None
    lo, hi = values.get("clip_percentiles", CLIP_BEFORE_THE_SETTING)
    values["clip_percentiles"] = (float(lo), float(hi))
    return PreprocessParams(**values)


def _triple(value: Any) -> Triple:
    a, b, c = (int(v) for v in value)
    return (a, b, c)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
