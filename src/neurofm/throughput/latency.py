"""`neurofm bench latency`: inference time per case of the demo models and a FOMO25-sized U-Net.

Every task runs :func:`neurofm.inference.infer` (the one inferer of validation and prediction) on
the same preprocessed case twice: with the task's demo-size model (the built-in recipe's backbone,
head and pooling; finetuning's input and patch size) and with a U-Net the size of the FOMO25
baseline's ``unet_b`` (5 stages of 32..512 channels, two 3x3x3 convolutions per encoder stage;
neurofm's layout has one convolution per decoder stage where ``unet_b`` has two, so it is a
little smaller). Segmentation uses the same MONAI sliding window (roi = patch size, overlap,
Gaussian blending, window batch) for both; the other kinds read one centre-cropped input. The
case is random data with a clinical brain's extent (197 x 233 x 189 mm) on the recipe's grid.
Weights are random: latency does not depend on them. Counted forward FLOPs per case are reported
beside the time, so the ratio stays meaningful on a loaded machine.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from neurofm.errors import NeuroFMError
from neurofm.inference import SW_BATCH, SW_MODE, SW_OVERLAP, infer
from neurofm.models import TaskModel, build_task_model, get_preset
from neurofm.models.config import TaskModelConfig, UNetConfig
from neurofm.models.flops import count_parameters
from neurofm.tasks import get_task, known_tasks
from neurofm.train.settings import require_at_least, require_positive

FOMO25_UNET_B = UNetConfig(features=(32, 64, 128, 256, 512), blocks=(1, 1, 1, 1, 1))
"""FOMO25 baseline ``unet_b``: starting_filters 32, 5 stages (finetuning at patch 96)."""

CLINICAL_EXTENT_MM = (197, 233, 189)


@dataclass(frozen=True)
class LatencySettings:
    """The case grid and the inferer's sizes; both models see exactly these."""

    spacing: float = 4.0
    input_size: int = 48
    patch_size: int = 32
    repeats: int = 3
    threads: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        """Sizes the models cannot take are refused before any model is built."""
        require_positive("--spacing", self.spacing)
        require_at_least("--repeats", self.repeats, 1)
        for size, name in ((self.input_size, "--input-size"), (self.patch_size, "--patch")):
            if size % 16 or size < 32:
                raise NeuroFMError(name, f"{size} must be a multiple of 16 and at least 32")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The case's grid: the clinical extent at ``spacing``."""
        x, y, z = (math.ceil(mm / self.spacing) for mm in CLINICAL_EXTENT_MM)
        return x, y, z


def demo_config(task: str) -> TaskModelConfig:
    """The task's model as the built-in recipe finetunes it (backbone, head, pooling)."""
    from neurofm.study.recipe import load_recipe

    recipe = load_recipe()
    spec = get_task(task)
    r = recipe.task(task)
    return TaskModelConfig(
        get_preset(recipe.backbone, in_channels=spec.n_channels),
        kind=spec.kind,
        head=r.head,
        pool=r.pool,
        mil_head_only=r.mil_head_only and r.head == "mil",
    )


def baseline_config(demo: TaskModelConfig) -> TaskModelConfig:
    """The same task model with the FOMO25-baseline-sized backbone."""
    backbone = replace(FOMO25_UNET_B, in_channels=demo.backbone.in_channels)
    return replace(demo, backbone=backbone)


def windows(shape: tuple[int, ...], roi: int, overlap: float = SW_OVERLAP) -> int:
    """Sliding windows MONAI runs over ``shape`` (padded to the roi), as its scan-interval rule."""
    step = max(1, int(roi * (1 - overlap)))
    return math.prod(
        1 if n <= roi else math.ceil((n - roi) / step) + 1 for n in (max(n, roi) for n in shape)
    )


def forward_flops(model: TaskModel, channels: int, size: int) -> int:
    """Counted forward FLOPs of one ``size``^3 input."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, channels, size, size, size))
    return int(counter.get_total_flops())


def time_case(
    model: TaskModel, kind: str, image: np.ndarray, s: LatencySettings
) -> dict[str, float]:
    """Seconds per case over ``s.repeats`` runs after one warm-up run (best and median)."""
    args: dict[str, Any] = {
        "input_size": (s.input_size,) * 3,
        "patch_size": (s.patch_size,) * 3,
        "device": torch.device("cpu"),
    }
    pad = [0.0] * image.shape[0]
    infer(model, kind, image, pad, **args)
    times = []
    for _ in range(s.repeats):
        t0 = time.perf_counter()
        infer(model, kind, image, pad, **args)
        times.append(time.perf_counter() - t0)
    return {"seconds_best": min(times), "seconds_median": statistics.median(times)}


def measure_task(task: str, s: LatencySettings) -> dict[str, Any]:
    """Demo model and FOMO25-sized U-Net on one case of ``task``: time, parameters, FLOPs."""
    demo = demo_config(task)
    spec = get_task(task)
    rng = np.random.default_rng(s.seed)
    image = rng.standard_normal((spec.n_channels, *s.shape), dtype=np.float32)
    dense = spec.kind == "segmentation"
    size = s.patch_size if dense else s.input_size
    per_case = windows(s.shape, size) if dense else 1
    out: dict[str, Any] = {"kind": spec.kind, "channels": spec.n_channels, "models": {}}
    for name, cfg in (("demo", demo), ("fomo25_unet_b_sized", baseline_config(demo))):
        torch.manual_seed(s.seed)
        model = build_task_model(cfg).eval()
        flops = forward_flops(model, spec.n_channels, size) * per_case
        out["models"][name] = {
            "features": list(cfg.backbone.features),
            "blocks": list(cfg.backbone.blocks),
            "stem_stride": cfg.backbone.stem_stride,
            "head": cfg.head,
            "parameters": count_parameters(model),
            "forward_flops_per_case": flops,
            "windows_per_case": per_case,
            **time_case(model, spec.kind, image, s),
        }
    d, b = out["models"]["demo"], out["models"]["fomo25_unet_b_sized"]
    out["baseline_over_demo"] = {
        "seconds": b["seconds_best"] / d["seconds_best"],
        "flops": b["forward_flops_per_case"] / d["forward_flops_per_case"],
        "parameters": b["parameters"] / d["parameters"],
    }
    return out


def run_latency_bench(s: LatencySettings, tasks: list[str] | None = None) -> dict[str, Any]:
    """Every (or the given) task's latency pair, with the settings that produced it."""
    names = tasks or list(known_tasks())
    for t in names:
        get_task(t)  # an unknown name is a one-line error before any timing
    if s.threads:
        torch.set_num_threads(s.threads)
    return {
        "settings": asdict(s) | {"case_shape": list(s.shape)},
        "sliding_window": {"overlap": SW_OVERLAP, "mode": SW_MODE, "sw_batch_size": SW_BATCH},
        "threads": torch.get_num_threads(),
        "tasks": {t: measure_task(t, s) for t in names},
    }
