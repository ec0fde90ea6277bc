"""`neurofm bench diffusion`: training seconds (as the run recorded them) and inference seconds
per case of the diffusion classifier at its default ``K x T``, on the machine it runs on."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import track

from neurofm.diffusion.predictor import DiffusionPredictor
from neurofm.diffusion.settings import DiffusionSettings
from neurofm.diffusion.training import finetune_diffusion
from neurofm.errors import NeuroFMError
from neurofm.predict import case_inputs, load_predictor
from neurofm.train.distributed import DistInfo
from neurofm.train.runs import case_dirs


def train_run(data: Path, work: Path, settings: DiffusionSettings) -> Path:
    """Train a benchmark run in ``work/run`` (refusing a folder that already holds one)."""
    run = Path(work) / "run"
    if (run / "config.json").exists():
        raise NeuroFMError(run, "already holds a run (give an empty --work folder)")
    run.mkdir(parents=True, exist_ok=True)
    dist = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    finetune_diffusion(data, run, settings, dist)
    return run


def run_diffusion_bench(run: Path, split: Path, cases: int) -> dict[str, Any]:
    """Time prediction with ``run`` on the first ``cases`` case folders of ``split`` (after one
    warm-up case); training time and steps as the run recorded them."""
    predictor = load_predictor(run, "cpu")
    assert isinstance(predictor, DiffusionPredictor)
    folders = case_dirs(split)[: cases + 1]
    if len(folders) < 2:
        raise NeuroFMError(split, "needs at least 2 case folders (one warm-up, one timed)")
    seconds = []
    for i, folder in enumerate(track(folders, description="diffusion inference")):
        volume, affine = case_inputs(folder, predictor)
        t1 = time.perf_counter()
        predictor.predict_volume(volume, affine)
        if i:
            seconds.append(time.perf_counter() - t1)
    return {
        "benchmark": "diffusion classifier: train + predict",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}",
        # the machine may be shared: the 1-minute load average says how contended the timing was
        "load_average_1min_after": os.getloadavg()[0],
        "run": str(run),
        "recipe": predictor.config.recipe,
        "train_steps": predictor.config.steps,
        "train_seconds": predictor.config.extra["diffusion"].get("train_seconds"),
        "k": predictor.rule.k,
        "t": predictor.rule.t,
        "network_evaluations_per_case": 2 * predictor.rule.evaluations,
        "predict_cases_timed": len(seconds),
        "predict_seconds_per_case": sum(seconds) / len(seconds),
        "predict_seconds_max": max(seconds),
    }
