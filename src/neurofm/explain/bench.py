"""Timing of explanations on one case: one Grad-CAM, all CAMs at every stage, one ROAD score.

Speed targets (issue: one Grad-CAM of a 4 mm demo case <= 2 s on 2 cores, a 5-fraction ROAD
score <= 30 s) are recorded beside the measurements rather than asserted in tests.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurofm.explain.cams import GRADIENT_CAMS
from neurofm.explain.case import explain_case, model_input, road_case
from neurofm.explain.road import DEFAULT_FRACTIONS
from neurofm.predict import Predictor

TARGETS_S = {"gradcam": 2.0, "road_5_fractions": 30.0}


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, lazy imports)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def run_explain_bench(predictor: Predictor, case_dir: Path, repeats: int = 5) -> dict[str, Any]:
    """Seconds (median of ``repeats``) for each measured step on ``case_dir``."""
    inp = model_input(predictor, case_dir)
    cam = explain_case(predictor, inp, ["gradcam"])[0].cam
    t = time.perf_counter()
    road = road_case(predictor, inp, cam, DEFAULT_FRACTIONS)
    road_s = time.perf_counter() - t
    return {
        "case": str(case_dir),
        "task": predictor.task.name,
        "model_input_shape": list(inp.x.shape),
        "seconds": {
            "gradcam": _median_time(lambda: explain_case(predictor, inp, ["gradcam"]), repeats),
            "all_gradient_cams_all_stages": _median_time(
                lambda: explain_case(predictor, inp, GRADIENT_CAMS, ["all"]), repeats
            ),
            "road_5_fractions": road_s,
        },
        "road_fractions": list(DEFAULT_FRACTIONS),
        "road_score": road.score,
        "targets_s": TARGETS_S,
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "device": str(predictor.device),
            "load_average_1min": os.getloadavg()[0],  # the machine is shared: context
        },
    }
