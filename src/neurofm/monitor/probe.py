"""Frozen-embedding probes scored by nested cross-validation (scikit-learn pipelines).

For users who want embeddings plus a classical model: the inner loop (``GridSearchCV``) picks
the probe (logistic regression or random forest; ridge or random forest for regression), its
regularisation and how many embedding dimensions to keep (``SelectKBest``); the outer loop
scores that whole selection procedure on folds it never saw, so the reported score is not
inflated by the choice. Class imbalance is handled by balanced class weights and stratified
folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.feature_selection import SelectKBest, f_classif, f_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import mean_absolute_error, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from neurofm.errors import NeuroFMError


def probe_search(
    kind: str, n_features: int, inner: int, seed: int, forest: bool = True
) -> GridSearchCV:
    """The inner-loop search: scaler -> k best dimensions -> probe, over a small grid
    (``forest=False``: linear probes only, several times faster)."""
    ks = sorted({k for k in (8, 32, n_features) if k <= n_features})
    if kind == "classification":
        score, select = "roc_auc", f_classif
        grid: list[dict[str, Any]] = [
            {"probe": [LogisticRegression(class_weight="balanced", max_iter=5000)],
             "probe__C": [0.01, 0.1, 1.0], "select__k": ks},
            {"probe": [RandomForestClassifier(100, class_weight="balanced", random_state=seed)],
             "probe__max_depth": [3, None], "select__k": ks},
        ][: 2 if forest else 1]  # fmt: skip
        cv: StratifiedKFold | KFold = StratifiedKFold(inner, shuffle=True, random_state=seed)
    else:
        score, select = "neg_mean_absolute_error", f_regression
        grid = [
            {"probe": [Ridge()], "probe__alpha": [0.1, 10.0, 1000.0], "select__k": ks},
            {"probe": [RandomForestRegressor(100, random_state=seed)],
             "probe__max_depth": [3, None], "select__k": ks},
        ][: 2 if forest else 1]  # fmt: skip
        cv = KFold(inner, shuffle=True, random_state=seed)
    pipe = Pipeline(
        [("scale", StandardScaler()), ("select", SelectKBest(select)), ("probe", Ridge())]
    )
    return GridSearchCV(pipe, grid, scoring=score, cv=cv)


@dataclass(frozen=True)
class ProbeResult:
    """Outer-fold scores (AUROC or MAE), out-of-fold predictions and each fold's choice."""

    metric: str
    fold_scores: list[float]
    oof: np.ndarray
    choices: list[str]

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))


def nested_cv(
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    *,
    outer: int = 10,
    inner: int = 5,
    seed: int = 0,
    forest: bool = True,
) -> ProbeResult:
    """Nested cross-validation of :func:`probe_search` on embeddings ``x`` and targets ``y``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if kind == "classification":
        y = y.astype(int)
        smallest = int(np.bincount(y).min()) if len(np.unique(y)) == 2 else 0
        if smallest < outer or smallest < 2:
            raise NeuroFMError(
                None, f"{outer} outer folds need >= {outer} cases of each class, got {smallest}"
            )
        folds: StratifiedKFold | KFold = StratifiedKFold(outer, shuffle=True, random_state=seed)
    else:
        if len(y) < 2 * outer:
            raise NeuroFMError(None, f"{outer} outer folds need >= {2 * outer} cases, got {len(y)}")
        folds = KFold(outer, shuffle=True, random_state=seed)
    oof = np.zeros(len(y))
    scores, choices = [], []
    for train, test in folds.split(x, y):
        search = clone(probe_search(kind, x.shape[1], inner, seed, forest)).fit(x[train], y[train])
        if kind == "classification":
            oof[test] = search.predict_proba(x[test])[:, 1]
            scores.append(float(roc_auc_score(y[test], oof[test])))
        else:
            oof[test] = search.predict(x[test])
            scores.append(float(mean_absolute_error(y[test], oof[test])))
        best = search.best_params_
        choices.append(
            f"{type(best['probe']).__name__} k={best['select__k']} "
            + " ".join(f"{k[7:]}={v}" for k, v in best.items() if k.startswith("probe__"))
        )
    return ProbeResult("auroc" if kind == "classification" else "mae", scores, oof, choices)
