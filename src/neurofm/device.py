"""Which torch device to run on: one rule for training, prediction and packaging."""

from __future__ import annotations

import torch

from neurofm.errors import NeuroFMError


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise NeuroFMError(None, "--device cuda requested but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise NeuroFMError(None, f"unknown device {name!r} (use auto, cpu or cuda)")
