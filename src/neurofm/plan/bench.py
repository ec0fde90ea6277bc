"""Timing of a plan: curve fit plus bootstrap on a simulated curve (``neurofm bench plan``)."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from neurofm.plan.curve import group_points, power_law
from neurofm.plan.estimate import plan_target


def bench_plan(
    n_boot: int = 1000, repeats: int = 5, rounds: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Seconds per ``plan_target`` (5 sizes x ``repeats`` runs, ``n_boot`` resamples), best and
    median of ``rounds``; the issue's target is under 10 s."""
    rng = np.random.default_rng(seed)
    sizes = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
    shots = np.repeat(sizes, repeats)
    times = []
    for r in range(rounds):
        scores = power_law(shots, 0.85, 1.0, 0.6) + rng.normal(0, 0.01, shots.size)
        t0 = time.perf_counter()
        plan_target(group_points(shots, scores, "bench"), 0.8, n_boot=n_boot, seed=r)
        times.append(time.perf_counter() - t0)
    return {
        "benchmark": "plan fit + bootstrap",
        "n_boot": n_boot,
        "sizes": sizes.tolist(),
        "repeats": repeats,
        "rounds": rounds,
        "seconds_best": min(times),
        "seconds_median": float(np.median(times)),
        "target_seconds": 10.0,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
