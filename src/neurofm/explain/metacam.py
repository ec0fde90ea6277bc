"""MetaCAM in 3D (Kaczmarek et al. 2023): an ensemble of maps by consensus of their top voxels.

Each component map is min-max scaled to [0, 1], everything below its own top-``k`` % is zeroed,
and the kept parts are averaged: voxels that several methods rank highly stay bright, the
idiosyncratic tail of each method drops out. Which maps to combine and which ``k`` are chosen by
a search scored with 3D ROAD (any scorer can be passed). The search is summarised by each
component's *cumulative residual effect* (CRE): the mean change in score when that map joins a
combination of size ``s - 1``, accumulated over ``s`` = 2, 3, …; a curve rising with ``s`` means
the method keeps helping larger ensembles. The adaptive threshold is the same top-``k`` search for
one map alone. Hand-written: the reference code is 2D and tied to its CAM library.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.explain.cams import is_constant

MapScore = Callable[[np.ndarray], float]
"""Scores one map (higher is better), e.g. its ROAD score on the case."""

DEFAULT_KS: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0)
"""Top-k percentages searched (lesions are a few per cent of a head)."""


def scaled(cam: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1]; a constant map becomes all zero (it carries no ranking)."""
    if is_constant(cam):
        return np.zeros(cam.shape, dtype=np.float32)
    lo, hi = float(cam.min()), float(cam.max())
    return ((cam - lo) / (hi - lo)).astype(np.float32)


def top_k(cam: np.ndarray, k: float) -> np.ndarray:
    """The map scaled to [0, 1] with everything outside its top ``k`` % of voxels set to 0."""
    if not 0.0 < k <= 100.0:
        raise NeuroFMError("MetaCAM", f"k must be a percentage in (0, 100], got {k}")
    s = scaled(cam)
    n = max(1, round(k / 100.0 * s.size))
    keep = np.zeros(s.size, dtype=bool)
    keep[np.argsort(-s.reshape(-1), kind="stable")[:n]] = True
    return np.where(keep.reshape(s.shape), s, 0.0).astype(np.float32)


def metacam(cams: Sequence[np.ndarray], k: float) -> np.ndarray:
    """Consensus of the top-``k`` % voxels of each map (mean of the thresholded, scaled maps)."""
    if not cams:
        raise NeuroFMError("MetaCAM", "needs at least one map")
    return np.mean([top_k(c, k) for c in cams], axis=0).astype(np.float32)


@dataclass(frozen=True)
class Search:
    """Every combination's best ``k`` and score, the winner, and each method's CRE curve."""

    scores: dict[tuple[tuple[str, ...], float], float]
    best: tuple[tuple[str, ...], float]
    cre: dict[str, list[float]]

    @property
    def best_score(self) -> float:
        return self.scores[self.best]


def cre_curves(
    scores: Mapping[tuple[str, ...], float], names: Sequence[str]
) -> dict[str, list[float]]:
    """Cumulative residual effect of each method for combination sizes 2..n (see module)."""
    curves: dict[str, list[float]] = {}
    for m in names:
        others = [n for n in names if n != m]
        total, curve = 0.0, []
        for size in range(1, len(names)):
            deltas = [
                scores[tuple(sorted((*base, m)))] - scores[tuple(sorted(base))]
                for base in itertools.combinations(others, size)
            ]
            total += float(np.mean(deltas))
            curve.append(total)
        curves[m] = curve
    return curves


def search(
    cams: Mapping[str, np.ndarray], score: MapScore, ks: Sequence[float] = DEFAULT_KS
) -> Search:
    """Score MetaCAM of every non-empty combination of ``cams`` at every ``k``."""
    names = sorted(cams)
    if not names:
        raise NeuroFMError("MetaCAM", "needs at least one map")
    scores: dict[tuple[tuple[str, ...], float], float] = {}
    for size in range(1, len(names) + 1):
        for combo in itertools.combinations(names, size):
            for k in ks:
                scores[(combo, float(k))] = float(score(metacam([cams[n] for n in combo], k)))
    best = max(scores, key=lambda key: scores[key])
    per_combo = {
        combo: max(v for (c, _), v in scores.items() if c == combo)
        for combo in {c for c, _ in scores}
    }
    return Search(scores, best, cre_curves(per_combo, names))


def adaptive_threshold(
    cam: np.ndarray, score: MapScore, ks: Sequence[float] = DEFAULT_KS
) -> tuple[float, np.ndarray]:
    """The top-``k`` % threshold of one map that scores best, and the thresholded map."""
    scored = {float(k): float(score(top_k(cam, k))) for k in ks}
    k = max(scored, key=lambda v: scored[v])
    return k, top_k(cam, k)
