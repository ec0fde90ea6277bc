"""A fitted monitor: reference embeddings, density estimators and calibrated thresholds.

The reference cases are split once (seeded) into a fitting part and a held-out calibration
part; each density method's threshold is the split-conformal quantile of the calibration
scores at the requested false-alarm rate. On disk a monitor is ``monitor.json`` (settings,
thresholds, the model's weight hash) plus ``embeddings.npz`` (the reference embeddings); the
estimators are refitted from them on load (deterministic and fast), so no pickled objects are
read back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurofm.atomic import publish_dir, sibling_tmp_dir, write_json_atomic
from neurofm.errors import NeuroFMError
from neurofm.monitor.density import (
    METHODS,
    DensityModel,
    Method,
    calibrate_threshold,
    fit_density,
)

MONITOR_JSON = "monitor.json"
EMBEDDINGS = "embeddings.npz"


@dataclass(frozen=True)
class MonitorSettings:
    """How a monitor was fitted."""

    false_alarm: float = 0.05
    calibration_fraction: float = 0.3
    k: int = 5
    method: Method = "knn"
    """The method whose flag is the case's flag (all three are scored and reported)."""
    seed: int = 0


@dataclass
class Monitor:
    """Density of a reference set in one model's embedding space, with thresholds."""

    settings: MonitorSettings
    model: str
    weights: str
    fit_ids: list[str]
    fit_embeddings: np.ndarray
    calib_ids: list[str]
    calib_embeddings: np.ndarray
    density: DensityModel
    thresholds: dict[str, float] = field(default_factory=dict)

    def score(self, ids: list[str], embeddings: np.ndarray, n_neighbours: int = 3) -> pd.DataFrame:
        """One row per case: every method's score and flag, the flag, nearest reference cases."""
        table: dict[str, Any] = {"case": list(ids)}
        for m in METHODS:
            s = self.density.score(embeddings, m)
            table[f"{m}_score"] = s
            table[f"{m}_flag"] = s > self.thresholds[m]
        table["score"] = table[f"{self.settings.method}_score"]
        table["flag"] = table[f"{self.settings.method}_flag"]
        dist, idx = self.density.neighbours(embeddings, n_neighbours)
        table["nearest"] = [";".join(self.fit_ids[j] for j in row) for row in idx]
        table["nearest_distance"] = [";".join(f"{d:.3f}" for d in row) for row in dist]
        return pd.DataFrame(table)

    def check_weights(self, weights: str, where: Path) -> None:
        """Refuse embeddings from a model other than the one the monitor was fitted on."""
        if weights != self.weights:
            raise NeuroFMError(
                where,
                f"the monitor was fitted on another model's embeddings (weights "
                f"{self.weights[:12]}, this model {weights[:12]})",
            )

    def save(self, out: Path) -> Path:
        """Write the monitor folder atomically."""
        tmp = sibling_tmp_dir(out)
        np.savez(
            tmp / EMBEDDINGS,
            fit=self.fit_embeddings,
            calib=self.calib_embeddings,
        )
        write_json_atomic(
            tmp / MONITOR_JSON,
            {
                "model": self.model,
                "weights_sha256": self.weights,
                "settings": asdict(self.settings),
                "thresholds": self.thresholds,
                "fit_ids": self.fit_ids,
                "calib_ids": self.calib_ids,
                "embedding_dim": int(self.fit_embeddings.shape[1]),
            },
        )
        return publish_dir(tmp, out)


def split_reference(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the fitting and calibration parts (at least 3 fitting, 1 calibration)."""
    if n < 4:
        raise NeuroFMError(None, f"a reference set needs at least 4 cases, got {n}")
    n_cal = min(max(1, round(fraction * n)), n - 3)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def fit_monitor(
    ids: list[str], embeddings: np.ndarray, model: str, weights: str, s: MonitorSettings
) -> Monitor:
    """Fit the density estimators on part of the reference set, thresholds on the rest."""
    emb = np.asarray(embeddings, dtype=np.float64)
    fit_idx, cal_idx = split_reference(len(ids), s.calibration_fraction, s.seed)
    density = fit_density(emb[fit_idx], s.k, s.seed)
    thresholds: dict[str, float] = {
        m: calibrate_threshold(density.score(emb[cal_idx], m), s.false_alarm) for m in METHODS
    }
    return Monitor(
        s,
        model,
        weights,
        [ids[i] for i in fit_idx],
        emb[fit_idx],
        [ids[i] for i in cal_idx],
        emb[cal_idx],
        density,
        thresholds,
    )


def load_monitor(folder: Path) -> Monitor:
    """Read a monitor folder and refit its estimators from the stored embeddings."""
    meta_path = Path(folder) / MONITOR_JSON
    if not meta_path.is_file():
        raise NeuroFMError(folder, f"not a monitor folder (no {MONITOR_JSON})")
    try:
        meta = json.loads(meta_path.read_text())
        arrays = np.load(Path(folder) / EMBEDDINGS)
        fit, calib = arrays["fit"], arrays["calib"]
    except (OSError, ValueError, KeyError) as exc:
        raise NeuroFMError(folder, f"unreadable monitor ({exc.__class__.__name__}: {exc})") from exc
    s = MonitorSettings(**meta["settings"])
    density = fit_density(fit, s.k, s.seed)
    return Monitor(
        s,
        str(meta["model"]),
        str(meta["weights_sha256"]),
        list(meta["fit_ids"]),
        fit,
        list(meta["calib_ids"]),
        calib,
        density,
        {k: float(v) for k, v in meta["thresholds"].items()},
    )
