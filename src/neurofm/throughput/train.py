"""Training throughput: patches per second and the share of step time spent waiting for data.

Runs a short MAE pretraining on a prepared dataset (the tiny benchmark by default) and reads the
loop's own timing: ``data_wait_fraction`` is the time spent in ``next(batches)`` over the whole
run. The first ``warmup`` steps (worker start-up, allocator warm-up) are excluded by timing a
second run that resumes after them.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from neurofm.errors import NeuroFMError
from neurofm.train.distributed import init_distributed
from neurofm.train.pretraining import PretrainSettings, pretrain


@dataclass
class TrainBenchSettings:
    """What is measured: one objective, batch and patch size, worker count and step count."""

    objective: str = "mae"
    batch_size: int = 8
    patch_size: int = 32
    workers: int = 2
    steps: int = 30
    warmup: int = 5
    spacing: float = 8.0
    threads: int = 0

    def __post_init__(self) -> None:
        """Refuse a run that would time nothing (the result would read 0 patches/s)."""
        if self.steps < 1:
            raise NeuroFMError("--steps", f"must be at least 1 (got {self.steps}): nothing to time")
        if self.warmup < 0:
            raise NeuroFMError("warmup", f"must be at least 0 (got {self.warmup})")


def _dataset(work: Path, spacing: float) -> Path:
    from neurofm.data.prepare import prepare
    from neurofm.data.preprocess import PreprocessParams
    from neurofm.synth import build_benchmark

    raw = work / "raw"
    if not (raw / "benchmark.json").exists():
        build_benchmark(raw, "tiny", seed=0, progress=False)
    prepare(raw, work / "prepared", params=PreprocessParams(spacing=(spacing,) * 3))
    return work / "prepared"


def run_train_bench(
    s: TrainBenchSettings, *, data: Path | None = None, work: Path | None = None
) -> dict[str, Any]:
    """Measure training throughput; returns the JSON-ready result."""
    if s.threads:
        torch.set_num_threads(s.threads)
    with tempfile.TemporaryDirectory(prefix="neurofm-bench-") as tmp:
        base = Path(work) if work else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        prepared = Path(data) if data else _dataset(base, s.spacing)
        dist = init_distributed("auto")
        run = base / f"run-{os.getpid()}-{time.time_ns()}"
        settings = PretrainSettings(
            objective=s.objective, batch_size=s.batch_size, patch_size=s.patch_size,
            workers=s.workers, steps=s.warmup, checkpoint_every=s.warmup, log_every=1,
        )  # fmt: skip
        pretrain(prepared, run, settings, dist)
        settings.steps = s.warmup + s.steps
        settings.checkpoint_every = settings.steps
        timed = pretrain(prepared, run, settings, dist, resume=True)
    patches = s.steps * s.batch_size * dist.world_size
    return {
        "settings": asdict(s),
        "device": str(dist.device),
        "steps_timed": s.steps,
        "seconds": round(timed.seconds, 3),
        "patches_per_s": round(patches / timed.seconds, 2),
        "data_wait_fraction": round(timed.data_wait_fraction, 4),
        "target_data_wait_fraction": 0.10,
        "meets_target": timed.data_wait_fraction < 0.10,
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }


def write_result(result: dict[str, Any], out: Path) -> Path:
    """Write the benchmark JSON (atomically)."""
    from neurofm.atomic import write_json_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, result)
    return out
