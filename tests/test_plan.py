"""Sample-size planning: power-law fit, n@target, bootstrap coverage, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import curve_fit

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.plan.curve import (
    early_slope,
    fit_many,
    fit_power_law,
    group_points,
    n_for_score,
    power_law,
)
from neurofm.plan.estimate import plan_target
from neurofm.plan.simulate import interval_coverage

SIZES = np.array([10.0, 20.0, 40.0, 80.0, 160.0])
TRUE = (0.85, 1.0, 0.6)  # c, a, b: score 0.80 needs (1 / 0.05) ** (1 / 0.6) = 147.4 cases


def _points(scores_per_size: int, noise: float, rng: np.random.Generator, sizes=SIZES):
    y = power_law(sizes, *TRUE)
    shots = np.repeat(sizes, scores_per_size)
    return group_points(
        shots, np.repeat(y, scores_per_size) + rng.normal(0, noise, shots.size), "t"
    )


def test_noise_free_curve_is_recovered_exactly() -> None:
    pts = _points(3, 0.0, np.random.default_rng(0))
    fit = fit_power_law(pts)
    assert (fit.c, fit.a, fit.b) == pytest.approx(TRUE, abs=1e-8)
    fast = fit_many(pts.sizes, pts.means[None], None)[0]
    assert fast == pytest.approx(TRUE, abs=1e-6)
    res = plan_target(pts, 0.80, n_boot=100)
    assert res.status == "ok"
    assert res.n_needed == pytest.approx(20.0 ** (1 / 0.6), rel=1e-6)
    assert res.n_ci == pytest.approx((res.n_needed, res.n_needed), rel=1e-4)


def test_fast_solver_agrees_with_curve_fit_on_noisy_points(rng: np.random.Generator) -> None:
    y = power_law(SIZES, *TRUE)[None] + rng.normal(0, 0.01, (20, SIZES.size))
    fast = fit_many(SIZES, y, None)
    for row, params in zip(y, fast, strict=True):
        ref, _ = curve_fit(power_law, SIZES, row, p0=TRUE, bounds=([-5, 0, 0.01], [5, 50, 3]))
        np.testing.assert_allclose(power_law(SIZES, *params), power_law(SIZES, *ref), atol=1e-6)


def test_n_for_score_by_hand() -> None:
    assert n_for_score(0.9, 2.0, 0.5, 0.8) == pytest.approx(400.0)  # (2 / 0.1) ** 2
    assert np.isinf(n_for_score(0.9, 2.0, 0.5, 0.9))
    assert np.isinf(n_for_score(0.7, 2.0, 0.5, 0.8))


def test_early_slope_is_score_per_doubling() -> None:
    pts = group_points(np.array([10, 20, 40, 80.0]), np.array([0.5, 0.6, 0.7, 0.72]), "t")
    assert early_slope(pts) == pytest.approx(0.1)


def test_lower_is_better_metric_is_fitted_negated() -> None:
    mae = 5.0 + 30.0 * SIZES**-0.5  # error falls towards 5 years
    pts = group_points(np.repeat(SIZES, 2), np.repeat(mae, 2), "t")
    res = plan_target(pts, 7.0, higher_is_better=False, n_boot=50)
    assert res.fit["c"] == pytest.approx(5.0, abs=1e-7)
    assert res.n_needed == pytest.approx((30.0 / 2.0) ** 2, rel=1e-6)


def test_fewer_than_three_sizes_is_an_error() -> None:
    with pytest.raises(NeuroFMError, match="at least 3 distinct sample sizes"):
        group_points(np.array([10, 10, 20, 20.0]), np.array([0.5, 0.6, 0.7, 0.7]), "c.csv")


def test_interval_covers_true_n_near_nominal_rate() -> None:
    """200 simulated experiments (5 sizes x 5 repeats, noise sd 0.01): 95 % percentile CI."""
    res = interval_coverage(sims=200, n_boot=200)
    assert res.true_n == pytest.approx(20.0 ** (1 / 0.6))
    assert res.given >= 195
    assert 0.85 <= res.coverage <= 0.99


def test_unconstrained_points_cannot_extrapolate(rng: np.random.Generator) -> None:
    # three close sizes, noisy: the asymptote is not pinned down, so no number is given
    pts = _points(3, 0.03, rng, sizes=np.array([10.0, 12.0, 14.0]))
    res = plan_target(pts, 0.80, n_boot=200)
    assert res.status == "cannot_extrapolate"
    assert res.n_needed is None and res.reasons
    assert res.n_ci is None or res.n_ci[1] is None


def _curve_csv(path: Path) -> Path:
    rows = [(n, r, power_law(n, *TRUE) + 0.005 * (r - 2)) for n in SIZES for r in (1, 2, 3)]
    pd.DataFrame(rows, columns=["shots", "repeat", "score"]).to_csv(path, index=False)
    return path


def test_cli_writes_plan_and_refuses_unreachable(tmp_path: Path) -> None:
    csv = _curve_csv(tmp_path / "curve.csv")
    out = tmp_path / "plan"
    main(["plan", "--results", str(csv), "--task", "infarct", "--target", "0.8",
          "--out", str(out), "--n-boot", "100"])  # fmt: skip
    result = json.loads((out / "plan.json").read_text())
    assert result["status"] == "ok"
    assert result["n_needed"] == pytest.approx(147.4, rel=0.02)
    assert (out / "curve.png").stat().st_size > 0
    page = (out / "index.html").read_text()
    assert f"{result['n_needed']:.0f} cases" in page and "data:image/png;base64," in page
    with pytest.raises(SystemExit) as exc:  # out exists
        main(["plan", "--results", str(csv), "--task", "infarct", "--target", "0.8",
              "--out", str(out)])  # fmt: skip
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--results", str(csv), "--task", "infarct", "--target", "0.95",
              "--out", str(tmp_path / "never")])  # fmt: skip
    assert exc.value.code == 2
    assert not (tmp_path / "never").exists()


def test_cli_reads_tidy_results_with_shot_counts_in_model_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0, 1] * 20)
    rows = []
    for n in (10, 20, 40, 80):
        for r in (1, 2):
            sep = 1.0 - 1.5 / np.sqrt(n)  # more cases, better separation
            prob = np.clip(0.5 + sep * (labels - 0.5) + rng.normal(0, 0.2, labels.size), 0, 1)
            for i, (lab, p) in enumerate(zip(labels, prob, strict=True)):
                model = f"shots{n}-r{r}"
                rows.append((model, "infarct", "a", f"c{i:02d}", "label", float(lab)))
                rows.append((model, "infarct", "a", f"c{i:02d}", "prob", float(p)))
    csv = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=["model", "task", "site", "case", "metric", "value"]).to_csv(
        csv, index=False
    )
    from sklearn.metrics import roc_auc_score

    from neurofm.plan.inputs import read_curve

    curve = read_curve([csv], "infarct", None, "all")
    assert curve.metric == "auroc" and len(curve.runs) == 8
    first = pd.read_csv(csv).query("model == 'shots10-r1'")
    lab = first[first.metric == "label"]["value"].to_numpy()
    prob = first[first.metric == "prob"]["value"].to_numpy()
    i = curve.runs.index("shots10-r1")
    assert curve.scores[i] == pytest.approx(roc_auc_score(lab, prob))


@pytest.mark.slow
def test_launch_runs_one_finetune_and_scores_it(
    tiny_benchmark: Path, tiny_prepared: Path, tmp_path: Path
) -> None:
    import torch

    from neurofm.plan.launch import launch_curve
    from neurofm.results import read_results
    from neurofm.train.finetuning import FinetuneSettings

    torch.set_num_threads(1)
    split = tiny_benchmark / "brain_age" / "test"
    base = FinetuneSettings(task="brain_age", steps=2, eval_every=1, workers=0,
                            input_size=32, patch_size=16)  # fmt: skip
    results = launch_curve(tiny_prepared, split, tmp_path / "runs", base, [4], 1)
    table = read_results(results)
    assert set(table["model"]) == {"shots4-r1"}
    cases = sorted(d.name for d in split.iterdir() if d.is_dir())
    assert sorted(table.loc[table["metric"] == "pred", "case"]) == cases
    stamp = (tmp_path / "runs" / "runs" / "shots4-r1" / "model.safetensors").stat().st_mtime_ns
    launch_curve(tiny_prepared, split, tmp_path / "runs", base, [4], 1)  # reused, not retrained
    assert (
        tmp_path / "runs" / "runs" / "shots4-r1" / "model.safetensors"
    ).stat().st_mtime_ns == stamp
