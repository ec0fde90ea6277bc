"""A run folder's files: ``model.safetensors``, ``config.json`` and the code revision.

Training writes these and prediction, packaging and the demo read them; keeping the I/O in this
low module means ``predict`` does not import ``train`` (which imports ``predict``'s inference).
Checkpoints with resume state are a training concern and live in :mod:`neurofm.train.checkpoint`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from neurofm.atomic import write_json_atomic
from neurofm.errors import NeuroFMError
from neurofm.runconfig import (
    FinetuneRunConfig,
    PretrainRunConfig,
    RunConfig,
    run_config_from_dict,
)

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def code_revision() -> str:
    """Git revision of the neurofm source tree, or the package version when not in a checkout."""
    from neurofm import __version__

    def git(*args: str) -> str:
        here = Path(__file__).resolve().parent
        done = subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        return done.stdout.strip()

    try:
        rev = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return f"{__version__}+g{rev}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def load_config(folder: Path) -> dict[str, Any]:
    """Read a run's or checkpoint's config.json as JSON, naming the file when it is bad."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise NeuroFMError(path, "checkpoint config missing (not a neurofm run or checkpoint?)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NeuroFMError(path, f"corrupt checkpoint config ({exc})") from exc
    if not isinstance(cfg, dict):
        raise NeuroFMError(path, "checkpoint config is not a JSON object")
    return cfg


def load_run_config(folder: Path) -> RunConfig:
    """A run's config.json as a :data:`~neurofm.runconfig.RunConfig`."""
    return run_config_from_dict(load_config(folder), Path(folder) / CONFIG)


def load_finetune_config(folder: Path) -> FinetuneRunConfig:
    """A finetuned run's config; any other folder is refused with a one-line error."""
    cfg = load_run_config(folder)
    if not isinstance(cfg, FinetuneRunConfig):
        raise NeuroFMError(Path(folder) / CONFIG, "not a finetuned model (kind != finetune)")
    return cfg


def load_pretrain_config(folder: Path) -> PretrainRunConfig:
    """A pretraining run's config; any other folder is refused with a one-line error."""
    path = Path(folder) / CONFIG
    raw = load_config(folder)
    if raw.get("kind") != PretrainRunConfig.kind:
        raise NeuroFMError(path, "--init must be a pretraining run or scratch")
    return PretrainRunConfig.from_dict(raw, path)


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read a run's or checkpoint's safetensors weights."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise NeuroFMError(path, "checkpoint weights missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NeuroFMError(path, f"corrupt checkpoint weights ({exc})") from exc


def save_weights(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Write safetensors weights (CPU, contiguous) to ``path``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path))


def write_model_files(
    run_dir: Path, state_dict: dict[str, torch.Tensor], config: RunConfig
) -> None:
    """Write a run's final ``model.safetensors`` and ``config.json`` (each atomically).

    The weights go first and the config last, so a folder with a config always has complete
    weights beside it.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / f".{WEIGHTS}.tmp-{os.getpid()}"
    try:
        save_weights(state_dict, tmp)
        os.replace(tmp, run_dir / WEIGHTS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json_atomic(run_dir / CONFIG, config.to_dict())
