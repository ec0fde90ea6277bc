"""Self-describing, atomically written checkpoints.

A checkpoint is a folder with ``model.safetensors`` (weights), ``config.json`` (everything needed to
rebuild and feed the model: architecture, input sequences, spacing, normalisation, recipe, code
revision, data fingerprint) and, for resuming, ``train_state.pt`` (optimiser, step, RNG states).

Atomicity: a checkpoint is written into ``<name>.tmp-<pid>`` beside its final place and renamed
into place only when every file is complete, so a crash, ``kill -9`` or a full disk mid-write
leaves the previous checkpoint intact and no half-written one that looks valid. Reading weights
and configs back is :mod:`neurofm.runfiles`' job (prediction needs it without training).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from neurofm.atomic import DiskFull, is_disk_full, publish_dir
from neurofm.errors import NeuroFMError
from neurofm.runfiles import CONFIG, WEIGHTS, save_weights

TRAIN_STATE = "train_state.pt"


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
        save_weights(state_dict, tmp / WEIGHTS)
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
