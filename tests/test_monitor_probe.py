"""Nested-CV probe on hand-made embeddings: real signal is found, noise is not rewarded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from neurofm.errors import NeuroFMError
from neurofm.monitor.probe import nested_cv


def test_signal_is_found_and_noise_is_not_inflated() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(30), np.ones(30)]
    noise = rng.normal(size=(60, 300))
    # selecting dimensions on all cases first looks good on pure noise (the leak nesting avoids)
    leaky = SelectKBest(f_classif, k=8).fit_transform(noise, y)
    leaked = cross_val_score(LogisticRegression(), leaky, y, cv=5, scoring="roc_auc").mean()
    honest = nested_cv(noise, y, "classification", outer=3, inner=3, forest=False)
    assert leaked > 0.8
    assert honest.mean < 0.7
    signal = noise.copy()
    signal[:, :3] += 1.5 * y[:, None]
    found = nested_cv(signal[:, :20], y, "classification", outer=2, inner=2)
    assert found.mean > 0.9 and len(found.fold_scores) == 2 and len(found.choices) == 2


def test_regression_mae_and_fold_checks() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 10))
    age = 50 + 10 * x[:, 0]
    res = nested_cv(x, age, "regression", outer=3, inner=3, forest=False)
    assert res.metric == "mae" and res.mean < 3.0
    assert np.mean(np.abs(res.oof - age)) == pytest.approx(res.mean, rel=0.1)
    with pytest.raises(NeuroFMError, match="outer folds"):
        nested_cv(x[:5], np.r_[0, 0, 0, 1, 1], "classification", outer=3)
