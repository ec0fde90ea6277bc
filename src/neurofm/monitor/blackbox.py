"""Where a black-box classifier errs, learned from embedding neighbourhoods, and a new threshold.

Any tool's case probabilities are combined with what a foundation model's embedding says about
the case's neighbourhood in a labelled validation set: the fraction of neighbours that are
positive, and the fraction the black box got wrong at its own threshold (its local error rate).
A balanced logistic regression on ``[logit(p), neighbour positive rate, neighbour error rate]``
gives a new score; its threshold is the lowest that keeps the validation false-positive rate at
or under a bound (chosen on cross-validated scores, so the validation cases never score
themselves). Validation cases' neighbourhoods leave the case itself out.

Judged on a separate labelled test set against two references: the black box at its own
threshold, and the black box re-thresholded alone at the same false-positive bound (so any gain
is what the embedding adds, not just a lower threshold). Sensitivity and specificity carry
Wilson 95 % intervals (``scipy.stats.binomtest``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofm.errors import NeuroFMError

FEATURES = ("logit_p", "neighbour_positive", "neighbour_error")
_EPS = 1e-4


def threshold_at_fpr(scores: np.ndarray, labels: np.ndarray, max_fpr: float) -> float:
    """Lowest threshold ``t`` (flag ``score >= t``) whose false-positive rate on these cases is
    at most ``max_fpr``: just above the ``floor(max_fpr * n_neg) + 1``-th highest negative."""
    neg = np.sort(np.asarray(scores)[np.asarray(labels) == 0])[::-1]
    if len(neg) == 0:
        raise NeuroFMError(None, "no negative validation cases to bound the false-positive rate")
    allowed = int(np.floor(max_fpr * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(-np.inf)
    return float(np.nextafter(neg[allowed], np.inf))


@dataclass(frozen=True)
class Rates:
    """Sensitivity and specificity with Wilson 95 % intervals."""

    sensitivity: float
    sens_ci: tuple[float, float]
    specificity: float
    spec_ci: tuple[float, float]
    n_pos: int
    n_neg: int


def rates(flags: np.ndarray, labels: np.ndarray) -> Rates:
    """Sensitivity / specificity of binary ``flags`` against 0/1 ``labels``."""
    flags, labels = np.asarray(flags, bool), np.asarray(labels, int)
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        raise NeuroFMError(None, "the test set needs positive and negative cases")
    tp, tn = int(flags[pos].sum()), int((~flags[neg]).sum())
    s_ci = binomtest(tp, int(pos.sum())).proportion_ci(method="wilson")
    p_ci = binomtest(tn, int(neg.sum())).proportion_ci(method="wilson")
    return Rates(
        tp / int(pos.sum()),
        (float(s_ci.low), float(s_ci.high)),
        tn / int(neg.sum()),
        (float(p_ci.low), float(p_ci.high)),
        int(pos.sum()),
        int(neg.sum()),
    )


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, float), _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)))


@dataclass
class ErrorDetector:
    """Validation neighbourhoods + the stacked model and its threshold."""

    scaler: StandardScaler
    nn: NearestNeighbors
    k: int
    val_labels: np.ndarray
    val_wrong: np.ndarray
    bb_threshold: float
    model: Pipeline
    threshold: float
    bb_rethreshold: float

    def features(self, embeddings: np.ndarray, probs: np.ndarray, loo: bool = False) -> np.ndarray:
        """``(N, 3)`` features of cases; ``loo``: the cases are the validation set (skip self)."""
        z = self.scaler.transform(embeddings)
        _, idx = self.nn.kneighbors(z, n_neighbors=self.k + int(loo))
        if loo:
            idx = idx[:, 1:]
        return np.column_stack(
            [_logit(probs), self.val_labels[idx].mean(1), self.val_wrong[idx].mean(1)]
        )

    def score(self, embeddings: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """Embedding-assisted probability of each case being positive."""
        return np.asarray(self.model.predict_proba(self.features(embeddings, probs))[:, 1])


def fit_error_detector(
    embeddings: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    max_fpr: float = 0.2,
    bb_threshold: float = 0.5,
    k: int = 5,
    seed: int = 0,
) -> ErrorDetector:
    """Learn the black box's error neighbourhoods on labelled validation cases."""
    emb, p, y = np.asarray(embeddings, float), np.asarray(probs, float), np.asarray(labels, int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if min(n_pos, n_neg) < 3:
        raise NeuroFMError(None, f"validation needs >= 3 positives and negatives ({n_pos}/{n_neg})")
    scaler = StandardScaler().fit(emb)
    scaler.scale_ = np.where(scaler.scale_ > 1e-12, scaler.scale_, 1.0)
    k = max(1, min(k, len(y) - 2))
    nn = NearestNeighbors().fit(scaler.transform(emb))
    wrong = ((p >= bb_threshold).astype(int) != y).astype(float)
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000)
    )
    det = ErrorDetector(scaler, nn, k, y.astype(float), wrong, bb_threshold, model, 0.5, 0.5)
    x = det.features(emb, p, loo=True)
    folds = StratifiedKFold(min(5, n_pos, n_neg), shuffle=True, random_state=seed)
    cv_scores = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    model.fit(x, y)
    det.threshold = threshold_at_fpr(cv_scores, y, max_fpr)
    det.bb_rethreshold = threshold_at_fpr(p, y, max_fpr)
    return det


def compare_on_test(
    det: ErrorDetector, embeddings: np.ndarray, probs: np.ndarray, labels: np.ndarray
) -> pd.DataFrame:
    """Sensitivity/specificity on test cases: black box as is, re-thresholded, with embedding."""
    p, y = np.asarray(probs, float), np.asarray(labels, int)
    rows = []
    for name, flags, thr in (
        ("black box, own threshold", p >= det.bb_threshold, det.bb_threshold),
        ("black box, re-thresholded", p >= det.bb_rethreshold, det.bb_rethreshold),
        ("embedding-assisted", det.score(embeddings, p) >= det.threshold, det.threshold),
    ):
        r = rates(flags, y)
        rows.append(
            {
                "rule": name,
                "threshold": thr,
                "sensitivity": r.sensitivity,
                "sens_low": r.sens_ci[0],
                "sens_high": r.sens_ci[1],
                "specificity": r.specificity,
                "spec_low": r.spec_ci[0],
                "spec_high": r.spec_ci[1],
                "n_pos": r.n_pos,
                "n_neg": r.n_neg,
            }
        )
    return pd.DataFrame(rows)
