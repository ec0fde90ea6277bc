"""Coverage of the n@target interval on simulated learning curves with known parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.plan.curve import group_points, n_for_score, power_law
from neurofm.plan.estimate import plan_target


@dataclass(frozen=True)
class CoverageResult:
    """How often the interval held the true n, among simulations that gave one."""

    true_n: float
    sims: int
    given: int
    covered: int

    @property
    def coverage(self) -> float:
        return self.covered / self.given if self.given else float("nan")


def interval_coverage(
    sizes: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0, 160.0),
    params: tuple[float, float, float] = (0.85, 1.0, 0.6),
    target: float = 0.80,
    repeats: int = 5,
    noise: float = 0.01,
    sims: int = 200,
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 1,
) -> CoverageResult:
    """Simulate ``sims`` experiments (``repeats`` runs per size, Gaussian noise sd ``noise``
    around ``c - a n^-b``) and count how often the (1 - alpha) interval covers the true n."""
    rng = np.random.default_rng(seed)
    n = np.asarray(sizes)
    true_n = float(n_for_score(*params, target))
    shots = np.repeat(n, repeats)
    clean = power_law(shots, *params)
    given = covered = 0
    for s in range(sims):
        pts = group_points(shots, clean + rng.normal(0.0, noise, shots.size), "simulation")
        res = plan_target(pts, target, n_boot=n_boot, alpha=alpha, seed=s)
        if res.status == "ok" and res.n_ci is not None and res.n_ci[1] is not None:
            given += 1
            covered += int(res.n_ci[0] <= true_n <= res.n_ci[1])
    return CoverageResult(true_n, sims, given, covered)
