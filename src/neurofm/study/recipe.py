"""The study recipe: one TOML file holding every choice, hashed and frozen before confirmation.

A recipe fixes the benchmark, the pretraining runs, the finetuning recipe, which pretraining
run and head each task's pretrained arm uses, and the split of seeds into *development* seeds
(look at them to choose) and *confirmation* seeds (never used for a choice). The hash is the
SHA-256 of the parsed recipe in canonical JSON, so comments and layout do not change it, any
value does. The built-in recipes ship with the package (``recipes/*.toml``; the default is
``recipes/fomo25-demo-round12.toml``); the demo reads the same file.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from neurofm.data.preprocess import CLIP_BEFORE_THE_SETTING, PreprocessParams
from neurofm.errors import NeuroFMError
from neurofm.models import HeadKind, PoolKind, get_preset
from neurofm.models.adapters import AdaptMode
from neurofm.synth import SHIFTS
from neurofm.tasks import get_task, known_tasks
from neurofm.train.settings import FinetuneSettings, PretrainSettings, check_input_mix

OBJECTIVES = ("mae", "contrastive", "hybrid", "modality")
"""Pretraining objectives a recipe or an arm may name."""
DEFAULT_RECIPE = "fomo25-demo-round12"
QUALITY_RECIPE = "fomo25-demo-3mm"  # `neurofm demo --quality`: 3 mm, ~3x the CPU time
ADDED_LATER: dict[str, Any] = {
    "augment": "full",
    "pretrain_patch": 32,
    "finetune_input_size": 48,
    "finetune_patch": 32,
    "lr_schedule": "cosine",
    "clip_percentiles": CLIP_BEFORE_THE_SETTING,
}
"""Recipe settings newer than the first confirmed recipes, with the value those recipes had."""
TASK_ADDED_LATER: dict[str, Any] = {"mode": "full", "select": "best", "input_mix": ()}
"""The same for the per-task settings (``[tasks.<name>]``)."""


@dataclass(frozen=True)
class TaskRecipe:
    """Which pretraining run a task's pretrained arm starts from, its head, how a pooled head's
    embedding is pooled (ignored by decoder heads), whether a MIL head ranks only voxels inside
    the head, whether a segmentation keeps only its largest predicted component, and how the
    pretrained arm adapts (``full``, ``probe``: frozen encoder, ``adapter``: frozen encoder with
    low-rank adapters; scratch models always train in full), which weights finetuning keeps
    (``best``: validation-selected with early stopping, ``last``: the final step), and how the
    pretrained first conv is spread over the task's channels (``input_mix``, pairs of channel
    and weight; empty: the default rule of :mod:`neurofm.models.channels`)."""

    objective: str = "mae"
    head: HeadKind = "linear"
    pool: PoolKind = "avg"
    mil_head_only: bool = False
    largest_component: bool = False
    mode: AdaptMode = "full"
    select: str = "best"
    input_mix: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Recipe:
    """Every choice of a study; ``recipes/fomo25-demo-round12.toml`` says what each field means."""

    name: str
    development: tuple[int, ...]
    confirmation: tuple[int, ...]
    preset: str = "demo"
    spacing: float = 4.0
    clip_percentiles: tuple[float, float] = CLIP_BEFORE_THE_SETTING
    shift: str = "matched"
    backbone: str = "tiny"
    pretrain_steps: int = 300
    contrastive_batch: int = 24
    reconstruction_batch: int = 8
    pretrain_patch: int = 32
    finetune_steps: int = 300
    segmentation_steps: int = 600
    lr: float = 3e-3
    pretrained_encoder_lr_scale: float = 0.1
    patience: int = 5
    augment: str = "full"
    lr_schedule: str = "cosine"
    finetune_input_size: int = 48
    finetune_patch: int = 32
    tasks: dict[str, TaskRecipe] = field(default_factory=dict)
    n_boot: int = 1000
    source: str = ""

    @property
    def hash(self) -> str:
        """SHA-256 (first 16 hex digits) of the recipe's values in canonical JSON.

        A setting added after recipes were confirmed is left out while it holds the value those
        recipes were run with (:data:`ADDED_LATER`), so their hashes, recorded with their
        results, stay valid; any other value enters the hash.
        """
        values = _unless_legacy(asdict(self), ADDED_LATER)
        del values["source"]
        values["tasks"] = {
            name: _unless_legacy(spec, TASK_ADDED_LATER) for name, spec in values["tasks"].items()
        }
        blob = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def at_spacing(self, spacing: float) -> Recipe:
        """This recipe prepared at ``spacing`` mm with the same field of view: the pretraining
        patch, classification input and finetuning patch scale by the spacing ratio, rounded up
        to the backbone's divisor and at least twice it, the sizes its patches must have
        (``tiny``, 4 -> 3 mm: 32/48/32 -> 48/64/48)."""
        if spacing <= 0:
            raise NeuroFMError("--spacing", f"must be > 0 mm (got {spacing:g})")
        divisor = get_preset(self.backbone).divisor

        def side(n: int) -> int:
            return divisor * max(2, math.ceil(n * self.spacing / spacing / divisor - 1e-6))

        return replace(
            self, spacing=spacing, pretrain_patch=side(self.pretrain_patch),
            finetune_input_size=side(self.finetune_input_size),
            finetune_patch=side(self.finetune_patch),
        )  # fmt: skip

    def preprocess_params(self) -> PreprocessParams:
        """How every case of a study is prepared: the recipe's grid and intensity clip."""
        return PreprocessParams(spacing=(self.spacing,) * 3, clip_percentiles=self.clip_percentiles)

    def task(self, name: str) -> TaskRecipe:
        if name not in self.tasks:
            raise NeuroFMError(self.source or "recipe", f"no [tasks.{name}] section")
        return self.tasks[name]


def _unless_legacy(values: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the later-added settings that still hold their legacy value."""
    return {k: v for k, v in values.items() if not (k in added and v == added[k])}


_SECTIONS: dict[str, dict[str, str]] = {
    "seeds": {"development": "development", "confirmation": "confirmation"},
    "benchmark": {
        "preset": "preset",
        "spacing": "spacing",
        "clip_percentiles": "clip_percentiles",
        "shift": "shift",
    },
    "pretrain": {
        "backbone": "backbone",
        "steps": "pretrain_steps",
        "contrastive_batch": "contrastive_batch",
        "reconstruction_batch": "reconstruction_batch",
        "patch": "pretrain_patch",
    },
    "finetune": {
        "steps": "finetune_steps",
        "segmentation_steps": "segmentation_steps",
        "lr": "lr",
        "pretrained_encoder_lr_scale": "pretrained_encoder_lr_scale",
        "patience": "patience",
        "augment": "augment",
        "schedule": "lr_schedule",
        "input_size": "finetune_input_size",
        "patch": "finetune_patch",
    },
    "evaluation": {"n_boot": "n_boot"},
}


def _typed(where: str, key: str, value: Any, like: Any) -> Any:
    """``value`` checked against the type of the default ``like`` (ints allowed for floats)."""
    if isinstance(like, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(like, bool)
    elif isinstance(like, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    elif isinstance(like, tuple) and like and isinstance(like[0], float):
        ok = isinstance(value, list) and len(value) == len(like)
        if not (ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise NeuroFMError(where, f"{key} must be {len(like)} numbers, got {value!r}")
        value = tuple(float(v) for v in value)
    elif isinstance(like, tuple):
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(like))
    if not ok:
        raise NeuroFMError(where, f"{key} must be {type(like).__name__}, got {value!r}")
    return value


def parse_recipe(data: dict[str, Any], where: str) -> Recipe:
    """Validate a parsed recipe (unknown sections or keys, types, seeds, objectives, heads)."""
    defaults = Recipe(name="", development=(0,), confirmation=(1,))
    values: dict[str, Any] = {"source": where}
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise NeuroFMError(where, "name must be a non-empty string")
    values["name"] = name
    unknown = set(data) - {"name", "tasks", *_SECTIONS}
    if unknown:
        raise NeuroFMError(where, f"unknown section(s) {sorted(unknown)}")
    for section, keys in _SECTIONS.items():
        body = data.get(section, {})
        if not isinstance(body, dict):
            raise NeuroFMError(where, f"[{section}] must be a table")
        extra = set(body) - set(keys)
        if extra:
            raise NeuroFMError(where, f"[{section}] has unknown key(s) {sorted(extra)}")
        for key, attr in keys.items():
            if key in body:
                values[attr] = _typed(where, f"{section}.{key}", body[key], getattr(defaults, attr))
            elif section == "seeds":
                raise NeuroFMError(where, f"[seeds] needs {key}")
    values["tasks"] = _parse_tasks(data.get("tasks", {}), where)
    recipe = Recipe(**values)
    _check(recipe, where)
    return recipe


def _parse_tasks(body: Any, where: str) -> dict[str, TaskRecipe]:
    if not isinstance(body, dict) or not body:
        raise NeuroFMError(where, "[tasks.<name>] sections are required")
    out: dict[str, TaskRecipe] = {}
    for task, spec in body.items():
        if task not in known_tasks():
            known = ", ".join(known_tasks())
            raise NeuroFMError(
                where, f"unknown task [tasks.{task}] (known: {known}; a task of your own is "
                "known once its file is given in --tasks)",
            )  # fmt: skip
        keys = {
            "objective", "head", "pool", "mil_head_only", "largest_component", "mode", "select",
            "input_mix",
        }  # fmt: skip
        if not isinstance(spec, dict) or set(spec) - keys:
            raise NeuroFMError(where, f"[tasks.{task}] takes only {', '.join(sorted(keys))}")
        objective = spec.get("objective", "mae")
        head = spec.get("head", "linear")
        pool = spec.get("pool", "avg")
        mode = spec.get("mode", "full")
        select = spec.get("select", "best")
        if objective not in OBJECTIVES:
            raise NeuroFMError(
                where, f"tasks.{task}.objective {objective!r} unknown (known: {OBJECTIVES})"
            )
        head_only = _typed(
            where, f"tasks.{task}.mil_head_only", spec.get("mil_head_only", False), False
        )
        largest = _typed(
            where, f"tasks.{task}.largest_component", spec.get("largest_component", False), False
        )
        mix = _input_mix(spec.get("input_mix", {}), f"{where}: tasks.{task}.input_mix")
        try:  # the finetuning settings' own rules (known head and pool, switches that fit them)
            FinetuneSettings(
                task=task, head=head, pool=pool, mil_head_only=head_only,
                largest_component=largest, mode=mode, select=select,
            )  # fmt: skip
            if mix:
                check_input_mix(dict(mix), get_task(task).channel_slots)
        except NeuroFMError as e:
            raise NeuroFMError(where, f"[tasks.{task}] {e}") from None
        out[task] = TaskRecipe(objective, head, pool, head_only, largest, mode, select, mix)
    return out


def _input_mix(body: Any, where: str) -> tuple[tuple[str, float], ...]:
    """``{channel = weight, ...}`` as pairs in the file's order (weights as floats)."""
    if not isinstance(body, dict) or not all(
        isinstance(w, int | float) and not isinstance(w, bool) for w in body.values()
    ):
        raise NeuroFMError(where, f"must be a table of channel = number (got {body!r})")
    return tuple((str(k), float(w)) for k, w in body.items())


def _check(r: Recipe, where: str) -> None:
    overlap = sorted(set(r.development) & set(r.confirmation))
    if overlap:
        raise NeuroFMError(where, f"development and confirmation seeds overlap: {overlap}")
    if not r.development or not r.confirmation:
        raise NeuroFMError(where, "need at least one development and one confirmation seed")
    if len(set(r.confirmation)) != len(r.confirmation):
        raise NeuroFMError(where, "confirmation seeds repeat")
    if r.shift not in SHIFTS:
        raise NeuroFMError(where, f"benchmark.shift must be one of {SHIFTS}, got {r.shift!r}")
    positive = {
        "pretrain.steps": r.pretrain_steps,
        "finetune.steps": r.finetune_steps,
        "finetune.segmentation_steps": r.segmentation_steps,
        "pretrain.contrastive_batch": r.contrastive_batch,
        "pretrain.reconstruction_batch": r.reconstruction_batch,
        "evaluation.n_boot": r.n_boot,
    }
    for key, value in positive.items():
        if value < 1:
            raise NeuroFMError(where, f"{key} must be >= 1, got {value}")
    try:  # the settings' own rules (profile, schedule, positive sizes; pretraining patch below)
        FinetuneSettings(
            augment=r.augment, schedule=r.lr_schedule, input_size=r.finetune_input_size,
            patch_size=r.finetune_patch,
        )  # fmt: skip
    except NeuroFMError as e:
        raise NeuroFMError(where, f"[finetune] {e}") from None
    try:
        PretrainSettings(preset=r.backbone, patch_size=r.pretrain_patch)
    except NeuroFMError as e:
        raise NeuroFMError(where, f"[pretrain] {e}") from None
    if r.spacing <= 0 or r.lr <= 0:
        raise NeuroFMError(where, "benchmark.spacing and finetune.lr must be > 0")
    try:
        r.preprocess_params()
    except NeuroFMError as e:
        raise NeuroFMError(where, f"[benchmark] clip_percentiles: {e.problem}") from None


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with the package (``recipes/<name>.toml``)."""
    folder = resources.files("neurofm.study") / "recipes"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(path: str | Path | None = None) -> Recipe:
    """Read a recipe file, or a built-in recipe by name (the default one when ``path`` is None).

    A path that exists as a file wins over a built-in name."""
    name = DEFAULT_RECIPE if path is None else str(path)
    if path is None or (not Path(name).is_file() and name in builtin_recipes()):
        ref = resources.files("neurofm.study") / "recipes" / f"{name}.toml"
        text, where = ref.read_text(), f"{name}.toml (built in)"
    else:
        p = Path(path)
        where = str(p)
        try:
            text = p.read_text()
        except OSError as e:
            raise NeuroFMError(p, f"cannot read recipe: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise NeuroFMError(where, f"not valid TOML: {e}") from None
    return parse_recipe(data, where)
