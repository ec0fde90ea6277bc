"""Closed-form head initialisation: the head then predicts what scikit-learn's fit predicts."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from neurofm.models.heads import PooledHead
from neurofm.train.head_init import init_head


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 6)) * rng.uniform(0.01, 5, 6) + rng.normal(0, 50, 6)  # offsets
    y = x[:, 0] / x[:, 0].std() - 2 * x[:, 3] / x[:, 3].std() + rng.normal(0, 0.1, 40)
    return x, y


def test_ridge_init_matches_sklearn_on_standardised_features() -> None:
    x, y = _data()
    head = PooledHead(6, "linear", 8, 0.0, "relu")
    info = init_head(head, x, y, "regression")
    alpha = float(info.split("alpha=")[1].split()[0])
    ref = Ridge(alpha=alpha).fit(StandardScaler().fit_transform(x), y)
    z = StandardScaler().fit(x).transform(x)
    expected = ref.predict(z)
    with torch.no_grad():
        got = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)
    assert np.mean(np.abs(got - y)) < 0.3  # and it fits: a random head would be far off


def test_logistic_init_separates_classes_and_mlp_is_only_standardised() -> None:
    x, y = _data(1)
    labels = (y > np.median(y)).astype(float)
    head = PooledHead(6, "linear", 8, 0.0, "relu")
    info = init_head(head, x, labels, "classification")
    assert info.startswith("head initialised by logistic")
    c = float(info.split("C=")[1].split()[0])
    z = StandardScaler().fit_transform(x)
    ref = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, labels)
    with torch.no_grad():
        logits = head(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(logits, ref.decision_function(z), rtol=1e-2, atol=1e-2)
    mlp = PooledHead(6, "mlp", 8, 0.0, "relu")
    assert "MLP" in init_head(mlp, x, labels, "classification")
    np.testing.assert_allclose(mlp.center.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(mlp.scale.numpy(), x.std(0), rtol=1e-5)


def test_augmented_copies_are_grouped_by_case() -> None:
    x, y = _data(2)
    rng = np.random.default_rng(3)
    copies = np.concatenate([x + rng.normal(0, 0.01, x.shape) for _ in range(4)])
    targets, groups = np.tile(y, 4), np.tile(np.arange(len(y)), 4)
    head = PooledHead(6, "linear", 8, 0.0, "relu")
    info = init_head(head, copies, targets, "regression", groups)
    assert "on 160 embeddings of 40 training cases" in info
    alpha = float(info.split("alpha=")[1].split()[0])
    z = StandardScaler().fit_transform(copies)
    with torch.no_grad():
        got = head(torch.as_tensor(copies, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, Ridge(alpha=alpha).fit(z, targets).predict(z), atol=1e-3)
    # classification with too few cases of a class (counted in cases, not rows) is not fitted
    labels = (np.arange(40) < 1).astype(float)
    few = init_head(PooledHead(6, "linear", 8, 0.0, "relu"), copies, np.tile(labels, 4),
                    "classification", groups)  # fmt: skip
    assert "too few cases" in few
