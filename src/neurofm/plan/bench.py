"""Timing of a plan: curve fit plus bootstrap on a simulated curve (``neurofm bench plan``)."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from neurofm.plan.curve import group_points, power_law
from neurofm.plan.estimate import plan_target
from neurofm.plan.simulate import interval_coverage


def coverage_json(sims: int = 200, n_boot: int = 1000) -> dict[str, Any]:
    """Interval coverage on simulated curves (see :func:`interval_coverage`), for the record."""
    t0 = time.perf_counter()
    res = interval_coverage(sims=sims, n_boot=n_boot)
    return {
        "nominal": 0.95, "coverage": res.coverage, "sims": res.sims, "given": res.given,
        "n_boot": n_boot, "true_n": res.true_n, "seconds": time.perf_counter() - t0,
        "setup": "c=0.85 a=1 b=0.6, target 0.80, sizes 10-160 x 5 repeats, noise sd 0.01",
    }  # fmt: skip


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
        "coverage": coverage_json(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
