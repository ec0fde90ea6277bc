"""Regression metrics against scipy / scikit-learn, and the registry's per-case scoring."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import mean_absolute_error, root_mean_squared_error

from neurofm.errors import NeuroFMError
from neurofm.metrics import METRICS, case_metrics
from neurofm.metrics.regression import (
    absolute_error,
    bias,
    constant_rows,
    mae,
    pearson,
    pearson_rows,
    rmse,
)
from neurofm.tasks import TASKS


def test_against_scipy_and_sklearn(rng: np.random.Generator) -> None:
    for n in (3, 20, 500):
        age = rng.uniform(18, 90, n)
        pred = age + rng.normal(2.0, 6.0, n)
        assert mae(age, pred) == pytest.approx(mean_absolute_error(age, pred))
        assert rmse(age, pred) == pytest.approx(root_mean_squared_error(age, pred))
        assert pearson(age, pred) == pytest.approx(pearsonr(age, pred).statistic, abs=1e-12)
        assert bias(age, pred) == pytest.approx(float(np.mean(pred - age)))
        np.testing.assert_allclose(absolute_error(age, pred), np.abs(pred - age))


def test_hand_values() -> None:
    age, pred = [30.0, 50.0, 70.0], [32.0, 47.0, 70.0]
    assert mae(age, pred) == pytest.approx(5 / 3)
    assert rmse(age, pred) == pytest.approx(np.sqrt(13 / 3))
    assert bias(age, pred) == pytest.approx(-1 / 3)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_degenerate_is_zero() -> None:
    assert pearson([40.0, 50.0, 60.0], [55.0, 55.0, 55.0]) == 0.0
    assert pearson([50.0, 50.0], [40.0, 60.0]) == 0.0
    assert pearson([50.0], [40.0]) == 0.0
    rows = pearson_rows(
        np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), np.array([[1.0, 2, 4], [1, 2, 3]])
    )
    assert rows[1] == 0.0 and rows[0] == pytest.approx(pearsonr([1, 2, 3], [1, 2, 4]).statistic)
    assert constant_rows(np.array([[1.0, 2.0], [1.0, 1.0]]), np.ones((2, 2)) * [1, 2]).tolist() == [
        False,
        True,
    ]


def test_bad_input() -> None:
    with pytest.raises(NeuroFMError, match="finite"):
        mae([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(NeuroFMError, match="2 true and 1 predicted"):
        pearson([1.0, 2.0], [1.0])


def test_registry_covers_every_task() -> None:
    for spec in TASKS.values():
        specs = spec.metric_specs
        assert specs[0].name == spec.primary_metric == spec.metrics[0]
        assert specs[0].higher_is_better == spec.higher_is_better
        assert all(s.task_kind == spec.kind for s in specs)
    assert {n for n, s in METRICS.items() if s.per_case} == {"dice", "nsd", "hd95", "assd", "mae"}
    assert METRICS["bias"].goodness([-3.0, 1.0]).tolist() == [-3.0, -1.0]
    assert METRICS["hd95"].goodness([2.0]).tolist() == [-2.0]


def test_case_metrics() -> None:
    assert case_metrics("classification", 0.8, 1) == {"label": 1.0, "prob": 0.8}
    want = {"age": 60.0, "pred": 61.5, "abs_error": 1.5}
    assert case_metrics("regression", 61.5, 60) == want
    ref = np.zeros((6, 6, 6), dtype=bool)
    ref[2:4, 2:4, 2:4] = True
    out = case_metrics("segmentation", ref, ref, spacing=np.diag([1.0, 1.0, 2.0, 1.0]))
    assert out == {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "assd": 0.0}
    with pytest.raises(NeuroFMError, match="spacing"):
        case_metrics("segmentation", ref, ref)
    with pytest.raises(NeuroFMError, match="probabilities"):
        case_metrics("classification", 1.3, 1)
    with pytest.raises(NeuroFMError, match="unknown task kind"):
        case_metrics("tumour", 1.0, 1.0)
