"""The honest comparison: diffusion classifier vs a discriminative run on the same test cases.

Both models predict every case of the given splits; metrics (AUROC, Brier score, expected
calibration error) get case-bootstrap 95% intervals computed on the *same* resampled cases for
both models (:func:`neurofm.stats.bootstrap.bootstrap_indices`). The diffusion rule is applied
once at the largest budget ``K x T``; smaller budgets are read from the same draws
(:meth:`~neurofm.diffusion.classify.Verdict.subset`: the first ``k`` noise draws at ``t`` evenly
spread of the timesteps), which gives the AUROC-against-evaluations curve without re-running
the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import track
from scipy.stats import rankdata
from sklearn.metrics import brier_score_loss

from neurofm.atomic import write_json_atomic, write_text_atomic
from neurofm.data.preprocess import preprocess
from neurofm.diffusion.classify import ClassifierSettings, Verdict
from neurofm.diffusion.predictor import DiffusionPredictor
from neurofm.errors import NeuroFMError
from neurofm.io.splits import read_split
from neurofm.metrics import auroc
from neurofm.metrics.classification import expected_calibration_error
from neurofm.predict import Predictor, case_inputs
from neurofm.stats.bootstrap import bootstrap_ci, bootstrap_indices

OUTPUTS = ("cases.csv", "metrics.csv", "curve.csv", "curve.png", "summary.json")
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc,
    "brier": lambda y, p: float(brier_score_loss(y, p)),
    "ece": expected_calibration_error,
}


def _single_class(y: np.ndarray, p: np.ndarray) -> bool:
    return len(np.unique(y)) < 2


def metric_rows(
    labels: np.ndarray, probs: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per model and metric: point value and 95% interval on shared resamples."""
    y = np.asarray(labels, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise NeuroFMError("comparison", "the test cases need both classes")
    idx = bootstrap_indices(len(y), n_boot, seed)
    rows = []
    for name, p in probs.items():
        for metric, fn in METRICS.items():
            degenerate = _single_class if metric == "auroc" else None
            ci = bootstrap_ci(fn, y, np.asarray(p), indices=idx, degenerate=degenerate)
            rows.append({"model": name, "metric": metric, "value": ci.point,
                         "low": ci.low, "high": ci.high})  # fmt: skip
    return pd.DataFrame(rows)


def spread(n: int, m: int) -> list[int]:
    """``m`` indices spread evenly over ``range(n)`` (all of them when ``m >= n``)."""
    if m >= n:
        return list(range(n))
    return sorted({round((i + 0.5) * n / m - 0.5) for i in range(m)})


def budget_curve(
    labels: np.ndarray,
    verdicts: Sequence[Verdict],
    ks: Sequence[int],
    ts: Sequence[int],
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """AUROC (with 95% interval) of the vote probability and of the mean error gap for every
    sub-budget ``k x t`` of the draws in ``verdicts``."""
    y = np.asarray(labels, dtype=np.float64)
    idx = bootstrap_indices(len(y), n_boot, seed)
    rows = []
    t_full = len(verdicts[0].timesteps)
    for k in ks:
        for t in ts:
            subs = [v.subset(k, spread(t_full, t)) for v in verdicts]
            probs = np.asarray([s.probability for s in subs])
            # AUROC only reads the order: ranks put the unbounded gap into [0, 1] unchanged
            gaps = rankdata([s.mean_gap for s in subs]) / len(subs)
            vote = bootstrap_ci(auroc, y, probs, indices=idx, degenerate=_single_class)
            gap = bootstrap_ci(auroc, y, gaps, indices=idx, degenerate=_single_class)
            rows.append({
                "k": k, "t": len(subs[0].timesteps), "evaluations": k * len(subs[0].timesteps),
                "auroc_vote": vote.point, "low_vote": vote.low, "high_vote": vote.high,
                "auroc_gap": gap.point, "low_gap": gap.low, "high_gap": gap.high,
                "mean_vote_entropy": float(np.mean([s.entropy for s in subs])),
            })  # fmt: skip
    return pd.DataFrame(rows)


@dataclass
class CasePredictions:
    """Per-case outputs of both models on the comparison splits."""

    table: pd.DataFrame  # case, split, label, p_diffusion, p_baseline, seconds_*
    verdicts: list[Verdict]


def predict_both(
    diffusion: DiffusionPredictor,
    baseline: Predictor,
    splits: Sequence[Path],
    rule: ClassifierSettings,
    show_progress: bool = True,
) -> CasePredictions:
    """Both models on every labelled case of ``splits``, timed per case."""
    cases = [c for s in splits for c in read_split(s, diffusion.task.name)]
    rows, verdicts = [], []
    for case in track(cases, description="diffusion vs baseline", disable=not show_progress):
        volume, file_affine = case_inputs(case.folder, diffusion)
        t0 = time.perf_counter()
        prep = preprocess(volume, diffusion.params, file_affine=file_affine)
        v = diffusion.verdict(prep, rule)
        t1 = time.perf_counter()
        p_base = baseline.predict_volume(volume, file_affine)
        t2 = time.perf_counter()
        verdicts.append(v)
        rows.append({
            "case": case.case_id, "split": case.split_dir.name, "label": case.label,
            "p_diffusion": v.probability, "vote_entropy": v.entropy, "mean_gap": v.mean_gap,
            "p_baseline": float(p_base), "seconds_diffusion": t1 - t0, "seconds_baseline": t2 - t1,
        })  # fmt: skip
    return CasePredictions(pd.DataFrame(rows), verdicts)


def plot_curve(curve: pd.DataFrame, baseline_auroc: float, baseline_name: str, path: Path) -> None:
    """AUROC against ``K x T`` for every sub-budget (vote probability and mean error gap,
    side by side), the baseline's AUROC as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, marker, shift in (("vote", "diffusion: vote share", "o", 0.97),
                                      ("gap", "diffusion: mean error gap", "s", 1.03)):  # fmt: skip
        ax.errorbar(
            curve["evaluations"] * shift, curve[f"auroc_{key}"],
            yerr=[curve[f"auroc_{key}"] - curve[f"low_{key}"],
                  curve[f"high_{key}"] - curve[f"auroc_{key}"]],
            fmt=marker, capsize=2, alpha=0.7, label=label,
        )  # fmt: skip
    ax.axhline(baseline_auroc, color="k", linestyle="--", label=baseline_name)
    ax.axhline(0.5, color="grey", linestyle=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("denoising evaluations per class (K x T)")
    ax.set_ylabel("AUROC (95% case-bootstrap CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_comparison(
    out: Path,
    got: CasePredictions,
    rule: ClassifierSettings,
    diffusion_run: Path,
    baseline_run: Path,
    splits: Sequence[Path],
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Score both models and write :data:`OUTPUTS` into ``out`` (the report's "Diffusion
    classifier" page reads them, :mod:`neurofm.diffusion.report`); returns the metric table."""
    y = got.table["label"].to_numpy(dtype=float)
    probs = {"diffusion": got.table["p_diffusion"].to_numpy(),
             "baseline": got.table["p_baseline"].to_numpy()}  # fmt: skip
    metrics = metric_rows(y, probs, n_boot)
    ks = sorted({1, 2, 4, 8, rule.k} & set(range(1, rule.k + 1)))
    ts = sorted({1, 2, 4, 8, rule.t} & set(range(1, rule.t + 1)))
    curve = budget_curve(y, got.verdicts, ks, ts, n_boot)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "cases.csv", got.table.to_csv(index=False))
    write_text_atomic(out / "metrics.csv", metrics.to_csv(index=False))
    write_text_atomic(out / "curve.csv", curve.to_csv(index=False))
    base_auroc = float(metrics.query("model == 'baseline' and metric == 'auroc'")["value"].iloc[0])
    plot_curve(curve, base_auroc, f"baseline ({baseline_run.name})", out / "curve.png")
    summary = {
        "diffusion_run": str(diffusion_run), "baseline_run": str(baseline_run),
        "splits": [str(p) for p in splits], "cases": len(y), "k": rule.k, "t": rule.t,
        "seconds_per_case": {
            "diffusion": float(np.mean(got.table["seconds_diffusion"])),
            "baseline": float(np.mean(got.table["seconds_baseline"])),
        },
        "metrics": metrics.to_dict(orient="records"),
    }  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    return metrics
