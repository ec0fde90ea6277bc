"""Self-describing, atomically written checkpoints.

A checkpoint is a folder with ``model.safetensors`` (weights), ``config.json`` (everything needed to
rebuild and feed the model: architecture, input sequences, spacing, normalisation, recipe, code
revision, data fingerprint) and, for resuming, ``train_state.pt`` (optimiser, step, RNG states).

Atomicity: a checkpoint is written into ``<name>.tmp-<pid>`` beside its final place and renamed
into place only when every file is complete, so a crash, ``kill -9`` or a full disk mid-write
leaves the previous checkpoint intact and no half-written one that looks valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from neurofm.atomic import DiskFull, is_disk_full, publish_dir, write_json_atomic
from neurofm.errors import NeuroFMError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"


def code_revision() -> str:
    """Git revision of the neurofm source tree, or the package version when not in a checkout."""
    from neurofm import __version__

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{rev}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def save_checkpoint(
    folder: Path,
    state_dict: dict[str, torch.Tensor],
    config: dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically (replacing an existing one only once complete)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS))
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        publish_dir(tmp, folder)
    except BaseException as exc:
        full = is_disk_full(exc, tmp)  # asked before the partial files that fill it are deleted
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise DiskFull(folder.parent, "free space and run again with --resume") from exc
        raise
    return folder


def load_config(folder: Path) -> dict[str, Any]:
    """Read a checkpoint's config.json, with a one-line error naming the file when it is bad."""
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


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint's safetensors weights."""
    path = Path(folder) / WEIGHTS
    if not path.is_file():
        raise NeuroFMError(path, "checkpoint weights missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NeuroFMError(path, f"corrupt checkpoint weights ({exc})") from exc


def load_train_state(folder: Path) -> dict[str, Any] | None:
    """Read the resume state of a checkpoint, or None when it has none."""
    path = Path(folder) / TRAIN_STATE
    if not path.is_file():
        return None
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise NeuroFMError(path, f"corrupt training state ({exc.__class__.__name__})") from exc
    return state


def clean_stale_temporaries(folder: Path) -> None:
    """Remove ``*.tmp-*`` / ``*.old-*`` leftovers of a killed writer in ``folder``."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if ".tmp-" in p.name or ".old-" in p.name:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def write_model_files(
    run_dir: Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]
) -> None:
    """Write a run's final ``model.safetensors`` and ``config.json`` (each atomically).

    The weights go first and the config last, so a folder with a config always has complete
    weights beside it.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / f".{WEIGHTS}.tmp-{os.getpid()}"
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp))
        os.replace(tmp, run_dir / WEIGHTS)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_json_atomic(run_dir / CONFIG, config)
