"""Classification metrics against scikit-learn (random cases with ties) and their edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

from neurofm.errors import NeuroFMError
from neurofm.metrics.classification import (
    auroc,
    auroc_rows,
    average_precision,
    average_precision_rows,
    balanced_accuracy,
    balanced_accuracy_rows,
    expected_calibration_error,
    expected_calibration_error_rows,
    single_class_rows,
)


def cases(rng: np.random.Generator, n: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Random labels and informative probabilities; rounding creates ties."""
    y = (rng.random(n) < 0.35).astype(float)
    y[:2] = (0.0, 1.0)
    p = np.clip(0.25 * y + rng.random(n) * 0.75, 0, 1)
    return y, (np.round(p, decimals) if decimals is not None else p)


@pytest.mark.parametrize("decimals", [None, 1, 2])
@pytest.mark.parametrize("n", [5, 40, 301])
def test_against_sklearn(rng: np.random.Generator, n: int, decimals: int | None) -> None:
    for _ in range(5):
        y, p = cases(rng, n, decimals)
        assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
        called = (p >= 0.5).astype(int)
        assert balanced_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, called))
        called = (p >= 0.3).astype(int)
        assert balanced_accuracy(y, p, 0.3) == pytest.approx(balanced_accuracy_score(y, called))


def test_ties_at_the_threshold_count_as_positive() -> None:
    assert balanced_accuracy([0, 1], [0.5, 0.5]) == 0.5
    assert balanced_accuracy([0, 1], [0.49, 0.5]) == 1.0


def test_ece_against_explicit_bins_and_sklearn(rng: np.random.Generator) -> None:
    y, p = cases(rng, 500, None)
    # explicit loop over the documented bins [0, .1], (.1, .2], ..., (.9, 1]
    expected = 0.0
    for k in range(10):
        lo, hi = k / 10, (k + 1) / 10
        in_bin = (p <= hi) & ((p > lo) if k else (p >= lo))
        if in_bin.any():
            expected += in_bin.sum() / p.size * abs(y[in_bin].mean() - p[in_bin].mean())
    assert expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    # sklearn's reliability curve (no probability lies on a bin edge here)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.histogram(p, bins=10, range=(0, 1))[0]
    counts = counts[counts > 0]
    sk = float(np.sum(counts / p.size * np.abs(frac_pos - mean_pred)))
    assert expected_calibration_error(y, p) == pytest.approx(sk, abs=1e-12)
    # boundary values follow the documented closed-right bins
    assert expected_calibration_error([1, 0], [0.1, 0.1], n_bins=10) == pytest.approx(0.4)
    assert expected_calibration_error([1], [0.1], n_bins=10) == pytest.approx(0.9)


def test_ece_extremes() -> None:
    assert expected_calibration_error([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0]) == 0.0
    assert expected_calibration_error([1, 0], [0.0, 1.0]) == 1.0
    assert expected_calibration_error([1, 0, 1, 0], [0.5] * 4) == 0.0


def test_degenerate_inputs_are_defined() -> None:
    for y in ([0, 0, 0], [1, 1, 1]):
        p = [0.2, 0.6, 0.9]
        assert auroc(y, p) == 0.5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert balanced_accuracy(y, p) == pytest.approx(
                balanced_accuracy_score(y, (np.array(p) >= 0.5).astype(int))
            )
        assert np.isfinite(expected_calibration_error(y, p))
    assert average_precision([0, 0, 0], [0.2, 0.6, 0.9]) == 0.0
    assert average_precision([1, 1, 1], [0.2, 0.6, 0.9]) == 1.0
    assert auroc([1], [0.3]) == 0.5
    assert auroc([0, 1], [0.7, 0.7]) == 0.5  # a tie counts one half
    assert auroc([0, 1], [0.9, 0.1]) == 0.0


@pytest.mark.parametrize(
    ("labels", "probs", "problem"),
    [
        ([0, 2], [0.1, 0.2], "labels"),
        ([0, 1], [0.1, 1.2], "probabilities"),
        ([0, 1], [0.1, np.nan], "probabilities"),
        ([0, 1], [0.1], "labels"),
        ([], [], "labels"),
    ],
)
def test_bad_input(labels: list[float], probs: list[float], problem: str) -> None:
    for fn in (auroc, average_precision, balanced_accuracy, expected_calibration_error):
        with pytest.raises(NeuroFMError, match=problem):
            fn(labels, probs)


def test_row_kernels_equal_the_functions(rng: np.random.Generator) -> None:
    ys, ps = zip(*(cases(rng, 30, 1) for _ in range(6)), strict=True)
    y, p = np.stack(ys), np.stack(ps)
    y[0] = 0  # a single-class row
    pairs = [
        (auroc_rows, auroc),
        (average_precision_rows, average_precision),
        (balanced_accuracy_rows, balanced_accuracy),
        (expected_calibration_error_rows, expected_calibration_error),
    ]
    for rows, fn in pairs:
        expected = [fn(a, b) for a, b in zip(y, p, strict=True)]
        np.testing.assert_allclose(rows(y, p), expected, atol=1e-12)
    assert single_class_rows(y, p).tolist() == [True] + [False] * 5
