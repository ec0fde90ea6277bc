"""Timing of ``monitor score`` once embeddings exist (``neurofm bench monitor``)."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np

from neurofm.monitor.monitor import MonitorSettings, fit_monitor


def bench_monitor(
    dim: int = 64, n_reference: int = 200, n_cases: int = 2000, rounds: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Cases/s of :meth:`Monitor.score` (every method, flags, 3 nearest reference cases) on
    random embeddings; the issue's target is at least 5 cases/s on 2 cores."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n_reference, dim))
    t0 = time.perf_counter()
    mon = fit_monitor([f"r{i}" for i in range(n_reference)], ref, "bench", "bench",
                      MonitorSettings(seed=seed))  # fmt: skip
    fit_s = time.perf_counter() - t0
    cases = rng.normal(size=(n_cases, dim))
    ids = [f"c{i}" for i in range(n_cases)]
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        mon.score(ids, cases)
        rates.append(n_cases / (time.perf_counter() - t0))
    single = []
    for i in range(20):  # one case at a time, as a case arriving in deployment is scored
        t0 = time.perf_counter()
        mon.score(ids[i : i + 1], cases[i : i + 1])
        single.append(time.perf_counter() - t0)
    return {
        "benchmark": "monitor score after embedding",
        "embedding_dim": dim,
        "n_reference": n_reference,
        "n_cases": n_cases,
        "fit_seconds": fit_s,
        "cases_per_s_batch_best": max(rates),
        "cases_per_s_one_at_a_time": 1.0 / float(np.median(single)),
        "target_cases_per_s": 5.0,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
