"""Regression metrics for brain age: absolute error per case; MAE, RMSE, Pearson r, bias per set.

All take ``(true, pred)`` in years, sklearn's argument order. Each set-level metric has a
row-wise kernel (``*_rows``: 2-D inputs, one case set per row, no checks) that the public function
and the bootstrap share. Pearson r is a few lines of numpy rather than ``scipy.stats.pearsonr``
because it is recomputed on every bootstrap resample in one vectorised call, and because scipy
returns NaN (with a warning) for constant input; here constant input gives 0.0 (no linear
association can be shown), documented and tested against scipy on non-degenerate input.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from neurofm.errors import NeuroFMError


def check_pair(true: ArrayLike, pred: ArrayLike, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``(true, pred)``: same non-zero length, finite values."""
    t = np.asarray(true, dtype=np.float64).ravel()
    p = np.asarray(pred, dtype=np.float64).ravel()
    if t.size == 0 or t.size != p.size:
        raise NeuroFMError(where, f"got {t.size} true and {p.size} predicted values")
    if not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise NeuroFMError(where, "values must be finite")
    return t, p


def absolute_error(true: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """Per-case ``|pred - true|``; its mean is :func:`mae`."""
    t, p = check_pair(true, pred, "absolute_error")
    return np.abs(p - t)


def mae_rows(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise mean absolute error."""
    return np.asarray(np.abs(pred - true).mean(axis=-1))


def mae(true: ArrayLike, pred: ArrayLike) -> float:
    """Mean absolute error."""
    t, p = check_pair(true, pred, "mae")
    return float(mae_rows(t, p))


def rmse_rows(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise root mean squared error."""
    return np.asarray(np.sqrt(((pred - true) ** 2).mean(axis=-1)))


def rmse(true: ArrayLike, pred: ArrayLike) -> float:
    """Root mean squared error."""
    t, p = check_pair(true, pred, "rmse")
    return float(rmse_rows(t, p))


def bias_rows(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise mean signed error."""
    return np.asarray((pred - true).mean(axis=-1))


def bias(true: ArrayLike, pred: ArrayLike) -> float:
    """Mean signed error ``mean(pred - true)``: positive means the model over-estimates age."""
    t, p = check_pair(true, pred, "bias")
    return float(bias_rows(t, p))


def constant_rows(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per row: either side constant (or a single case), where Pearson r is undefined."""
    if true.shape[-1] < 2:
        return np.ones(true.shape[:-1], dtype=bool)
    return np.asarray((np.ptp(true, axis=-1) == 0) | (np.ptp(pred, axis=-1) == 0))


def pearson_rows(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r, 0.0 where undefined (see :func:`pearson`)."""
    tc = true - true.mean(axis=-1, keepdims=True)
    pc = pred - pred.mean(axis=-1, keepdims=True)
    denom = np.sqrt((tc * tc).sum(axis=-1) * (pc * pc).sum(axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (tc * pc).sum(axis=-1) / denom
    ok = (denom > 0) & ~constant_rows(true, pred)
    return np.where(ok, np.clip(r, -1.0, 1.0), 0.0)


def pearson(true: ArrayLike, pred: ArrayLike) -> float:
    """Pearson correlation coefficient; 0.0 when either side is constant (or a single case)."""
    t, p = check_pair(true, pred, "pearson")
    return float(pearson_rows(t[None], p[None])[0])
