"""Where a map points, scored against a known lesion mask, and whether it depends on the model.

* pointing game: is the map's maximum inside the lesion (Zhang et al. 2018, without tolerance);
* energy inside the lesion: ``sum(map+ in lesion) / sum(map+)`` (Score-CAM's energy-based
  pointing game);
* model-randomisation sanity (Adebayo et al. 2018): Spearman rank correlation, inside the head,
  between the map of the trained model and of the same architecture re-initialised; a map that
  barely changes explains the input, not the model.

A constant map (dead layer) points nowhere: pointing 0 and energy 0 — never a random argmax.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from neurofm.errors import NeuroFMError
from neurofm.explain.cams import is_constant


def _check(cam: np.ndarray, mask: np.ndarray) -> None:
    if cam.shape != mask.shape:
        raise NeuroFMError("localisation", f"map {cam.shape} and mask {mask.shape} differ")


def pointing_game(cam: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the map's (first) maximum lies in the mask, else 0.0."""
    _check(cam, mask)
    if is_constant(cam):
        return 0.0
    return float(np.asarray(mask, dtype=bool).reshape(-1)[int(np.argmax(cam))])


def energy_in_lesion(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive mass inside the mask (0 for a map with no positive mass)."""
    _check(cam, mask)
    pos = np.clip(np.nan_to_num(cam, nan=0.0), 0.0, None)
    total = float(pos.sum())
    if total <= 0.0 or is_constant(cam):
        return 0.0
    return float(pos[np.asarray(mask, dtype=bool)].sum() / total)


def rank_correlation(a: np.ndarray, b: np.ndarray, within: np.ndarray | None = None) -> float:
    """Spearman correlation of two maps over the voxels of ``within`` (all when None); 0 when
    either map is constant there (no ranking to compare)."""
    if a.shape != b.shape:
        raise NeuroFMError("localisation", f"maps {a.shape} and {b.shape} differ")
    sel = np.ones(a.shape, dtype=bool) if within is None else np.asarray(within, dtype=bool)
    x, y = a[sel], b[sel]
    if x.size < 3 or is_constant(x) or is_constant(y):
        return 0.0
    return float(spearmanr(x, y).statistic)
