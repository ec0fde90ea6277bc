"""How unusual an embedding is relative to a reference set: three scikit-learn estimators.

All work on standardised embeddings (per-dimension z-scores of the reference set) and return a
score that grows with distance from the reference (``higher = more unusual``):

- ``knn``: mean Euclidean distance to the ``k`` nearest reference embeddings;
- ``mahalanobis``: Mahalanobis distance under a Ledoit-Wolf shrunk covariance (embeddings have
  more dimensions than a reference set has cases, so the sample covariance is singular);
- ``gmm``: negative log-density of a Gaussian mixture fitted in a PCA space of at most
  :data:`GMM_MAX_DIMS` dimensions (a mixture in hundreds of dimensions on tens of cases is not
  estimable), components chosen by BIC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from neurofm.errors import NeuroFMError

Method = Literal["knn", "mahalanobis", "gmm"]
METHODS: tuple[Method, ...] = ("knn", "mahalanobis", "gmm")
GMM_MAX_DIMS = 8
GMM_MAX_COMPONENTS = 4


@dataclass
class DensityModel:
    """Fitted estimators of one reference set."""

    scaler: StandardScaler
    knn: NearestNeighbors
    k: int
    lw: LedoitWolf
    pca: PCA
    gmm: GaussianMixture

    def score(self, embeddings: np.ndarray, method: Method) -> np.ndarray:
        """Unusualness of each row of ``embeddings`` ``(N, D)`` by ``method``."""
        z = self.scaler.transform(np.atleast_2d(embeddings))
        if method == "knn":
            dist, _ = self.knn.kneighbors(z, n_neighbors=self.k)
            return np.asarray(dist.mean(axis=1))
        if method == "mahalanobis":
            return np.sqrt(np.maximum(self.lw.mahalanobis(z), 0.0))
        if method == "gmm":
            return np.asarray(-self.gmm.score_samples(self.pca.transform(z)))
        raise NeuroFMError(None, f"unknown density method {method!r} (known: {METHODS})")

    def neighbours(self, embeddings: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices ``(N, n)`` of the nearest reference embeddings."""
        z = self.scaler.transform(np.atleast_2d(embeddings))
        dist, idx = self.knn.kneighbors(z, n_neighbors=min(n, self.knn.n_samples_fit_))
        return np.asarray(dist), np.asarray(idx)


def fit_density(reference: np.ndarray, k: int = 5, seed: int = 0) -> DensityModel:
    """Fit every estimator on reference embeddings ``(N, D)``; needs at least 3 cases."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 2 or len(ref) < 3:
        raise NeuroFMError(None, f"a reference set needs at least 3 embedded cases, got {len(ref)}")
    scaler = StandardScaler().fit(ref)
    scaler.scale_ = np.where(scaler.scale_ > 1e-12, scaler.scale_, 1.0)
    z = scaler.transform(ref)
    k = max(1, min(k, len(z) - 1))
    knn = NearestNeighbors().fit(z)
    lw = LedoitWolf().fit(z)
    dims = max(1, min(GMM_MAX_DIMS, len(z) // 5, z.shape[1]))
    pca = PCA(n_components=dims, random_state=seed).fit(z)
    p = pca.transform(z)
    best: GaussianMixture | None = None
    for m in range(1, min(GMM_MAX_COMPONENTS, max(1, len(z) // (2 * dims + 2))) + 1):
        gmm = GaussianMixture(m, covariance_type="full", reg_covar=1e-3, random_state=seed)
        gmm.fit(p)
        if best is None or gmm.bic(p) < best.bic(p):
            best = gmm
    assert best is not None
    return DensityModel(scaler, knn, k, lw, pca, best)


def calibrate_threshold(scores: np.ndarray, false_alarm: float) -> float:
    """Score above which a held-out reference case is flagged with probability at most
    ``false_alarm``: the ``ceil((n + 1)(1 - rate))``-th smallest of ``n`` held-out scores (the
    split-conformal quantile, valid in finite samples for exchangeable cases)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if not 0.0 < false_alarm < 1.0:
        raise NeuroFMError(None, f"false-alarm rate must be in (0, 1), got {false_alarm}")
    if len(s) == 0:
        raise NeuroFMError(None, "no held-out reference cases to calibrate on")
    rank = int(np.ceil((len(s) + 1) * (1.0 - false_alarm)))
    return float(s[rank - 1]) if rank <= len(s) else float("inf")
