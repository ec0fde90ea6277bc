"""Set-level metrics of a binary classifier: AUROC, average precision, balanced accuracy, ECE.

All take ``(labels, probs)``: labels in {0, 1}, probabilities of the positive class in [0, 1],
sklearn's argument order. Each metric has a row-wise kernel (``*_rows``: 2-D inputs, one case set
per row, no input checks) that the public function and the bootstrap share. They are hand-written
in numpy rather than calling scikit-learn because a bootstrap recomputes them on thousands of
resamples per model — the kernels do all resamples in one vectorised call — and because sklearn
raises or warns on single-class input, which resampling a rare-positive test set produces
routinely. The tests compare every function with scikit-learn on random inputs with ties.

Degenerate input never gives NaN and never raises; the value is documented per function
(single-class input returns the metric's chance level). The bootstrap drops single-class
resamples separately (:func:`single_class_rows`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from neurofm.errors import NeuroFMError

ECE_BINS = 10
"""Default number of equal-width probability bins for :func:`expected_calibration_error`."""


def check_binary(labels: ArrayLike, probs: ArrayLike, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float arrays: equal non-zero length, labels 0/1, probabilities in [0, 1]."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.size == 0 or y.size != p.size:
        raise NeuroFMError(where, f"got {y.size} labels and {p.size} probabilities")
    if not np.isin(y, (0.0, 1.0)).all():
        raise NeuroFMError(where, "labels must be 0 or 1")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise NeuroFMError(where, "probabilities must be finite and within [0, 1]")
    return y, p


def single_class_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per row: only one class present, where AUROC/AP/balanced accuracy are undefined."""
    return np.asarray(labels.min(axis=-1) == labels.max(axis=-1))


def auroc_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Row-wise AUROC (see :func:`auroc`)."""
    n_pos = labels.sum(axis=-1)
    n_neg = labels.shape[-1] - n_pos
    ranks = rankdata(probs, axis=-1)
    u = (ranks * labels).sum(axis=-1) - n_pos * (n_pos + 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = u / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, 0.5)


def auroc(labels: ArrayLike, probs: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks; equals sklearn's roc_auc_score).

    Ties in the probabilities count one half, as in the trapezoidal ROC. Single-class input
    returns 0.5, the chance level, instead of raising.
    """
    y, p = check_binary(labels, probs, "auroc")
    return float(auroc_rows(y[None], p[None])[0])


def average_precision_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Row-wise average precision (see :func:`average_precision`).

    ``AP = sum_i y_i * precision(end of i's threshold group) / n_pos``, which is the step sum
    ``sum_k (R_k - R_k-1) P_k`` regrouped by case.
    """
    n = labels.shape[-1]
    order = np.argsort(-probs, axis=-1, kind="stable")
    y = np.take_along_axis(labels, order, axis=-1)
    p = np.take_along_axis(probs, order, axis=-1)
    precision = np.cumsum(y, axis=-1) / np.arange(1, n + 1)
    group_end = np.ones(p.shape, dtype=bool)
    group_end[..., :-1] = p[..., 1:] != p[..., :-1]
    end_index = np.where(group_end, np.arange(n), n)
    end_index = np.minimum.accumulate(end_index[..., ::-1], axis=-1)[..., ::-1]
    at_end = np.take_along_axis(precision, end_index, axis=-1)
    n_pos = y.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = (y * at_end).sum(axis=-1) / n_pos
    return np.where(n_pos > 0, ap, 0.0)


def average_precision(labels: ArrayLike, probs: ArrayLike) -> float:
    """Average precision ``sum_k (R_k - R_k-1) * P_k`` over distinct thresholds (as sklearn).

    No interpolation; tied probabilities form one threshold. Input without a positive case returns
    0.0, its chance level (the prevalence); all-positive input gives 1.0 by the formula.
    """
    y, p = check_binary(labels, probs, "average_precision")
    return float(average_precision_rows(y[None], p[None])[0])


def balanced_accuracy_rows(
    labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Row-wise balanced accuracy (see :func:`balanced_accuracy`)."""
    pos = labels == 1
    called = probs >= threshold
    n_pos = pos.sum(axis=-1)
    n_neg = pos.shape[-1] - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = (called & pos).sum(axis=-1) / n_pos
        specificity = (~called & ~pos).sum(axis=-1) / n_neg
    both = (sensitivity + specificity) / 2
    return np.where(n_pos == 0, specificity, np.where(n_neg == 0, sensitivity, both))


def balanced_accuracy(labels: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> float:
    """Mean of sensitivity and specificity with ``prob >= threshold`` called positive.

    As in sklearn's balanced_accuracy_score, only classes present in ``labels`` are averaged, so
    single-class input returns the recall of that class.
    """
    y, p = check_binary(labels, probs, "balanced_accuracy")
    return float(balanced_accuracy_rows(y[None], p[None], threshold)[0])


def expected_calibration_error_rows(
    labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS
) -> np.ndarray:
    """Row-wise ECE (see :func:`expected_calibration_error`)."""
    rows = int(np.prod(labels.shape[:-1], dtype=np.int64))
    y = labels.reshape(rows, -1)
    bins = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], probs.reshape(rows, -1))
    flat = (np.arange(rows)[:, None] * n_bins + bins).ravel()
    gap = np.bincount(flat, weights=(y - probs.reshape(rows, -1)).ravel(), minlength=rows * n_bins)
    ece = np.abs(gap.reshape(rows, n_bins)).sum(axis=1) / y.shape[1]
    return ece.reshape(labels.shape[:-1])


def expected_calibration_error(
    labels: ArrayLike, probs: ArrayLike, n_bins: int = ECE_BINS
) -> float:
    """Expected calibration error of the positive-class probability over equal-width bins.

    ``ECE = sum_k n_k/N * |mean(label in bin k) - mean(prob in bin k)|`` with bins
    ``[0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1]`` — the reliability-diagram binning of sklearn's
    ``calibration_curve(strategy="uniform")``. Binary-outcome calibration (not top-label
    confidence), because the task output is a risk probability. Empty bins contribute nothing.
    """
    y, p = check_binary(labels, probs, "expected_calibration_error")
    if n_bins < 1:
        raise NeuroFMError("expected_calibration_error", f"n_bins must be >= 1, got {n_bins}")
    return float(expected_calibration_error_rows(y[None], p[None], n_bins)[0])
