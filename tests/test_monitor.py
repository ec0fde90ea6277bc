"""Monitor: density scores, threshold calibration, black-box error detection, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chi2

from neurofm.errors import NeuroFMError
from neurofm.monitor.blackbox import compare_on_test, fit_error_detector, threshold_at_fpr
from neurofm.monitor.cases import read_predictions
from neurofm.monitor.density import METHODS, calibrate_threshold, fit_density
from neurofm.monitor.monitor import MonitorSettings, fit_monitor, load_monitor
from test_explain_cli import make_run
from test_explain_cli import run as _run

torch.set_num_threads(1)


def test_conformal_threshold_by_hand() -> None:
    scores = np.arange(1.0, 20.0)  # 19 held-out scores
    assert calibrate_threshold(scores, 0.1) == 18.0  # ceil(20 * 0.9) = 18th smallest
    assert calibrate_threshold(scores[:5], 0.1) == np.inf  # too few cases to ever flag
    with pytest.raises(NeuroFMError):
        calibrate_threshold(scores, 1.5)


def test_thresholds_hold_the_requested_false_alarm_rate() -> None:
    rng = np.random.default_rng(0)
    d = 4
    dm = fit_density(rng.normal(size=(400, d)))
    calib, new = rng.normal(size=(2000, d)), rng.normal(size=(20000, d))
    shifted = rng.normal(size=(2000, d)) + 3.0
    for method in METHODS:
        thr = calibrate_threshold(dm.score(calib, method), 0.05)
        assert abs(np.mean(dm.score(new, method) > thr) - 0.05) < 0.015, method
        assert np.mean(dm.score(shifted, method) > thr) > 0.9, method
    # Mahalanobis distance of a standard normal: sqrt of chi-square with d degrees of freedom
    thr = calibrate_threshold(dm.score(calib, "mahalanobis"), 0.05)
    assert thr == pytest.approx(np.sqrt(chi2.ppf(0.95, d)), rel=0.06)


def test_monitor_roundtrip_neighbours_and_model_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(40, 6))
    ids = [f"ref{i:02d}" for i in range(40)]
    mon = fit_monitor(ids, emb, "run", "abc123", MonitorSettings(false_alarm=0.1))
    assert len(mon.calib_ids) == 12 and not set(mon.calib_ids) & set(mon.fit_ids)
    query = np.vstack([mon.fit_embeddings[3], emb[0] + 50.0])
    table = mon.score(["same", "far"], query)
    assert table.loc[0, "nearest"].split(";")[0] == mon.fit_ids[3]
    assert float(table.loc[0, "nearest_distance"].split(";")[0]) == pytest.approx(0.0)
    assert table["flag"].tolist() == [False, True]
    mon.save(tmp_path / "mon")
    again = load_monitor(tmp_path / "mon")
    assert again.thresholds == mon.thresholds
    pd.testing.assert_frame_equal(again.score(["same", "far"], query), table)
    with pytest.raises(NeuroFMError, match="another model"):
        again.check_weights("def456", tmp_path)


def test_empty_or_tiny_reference_is_an_error() -> None:
    with pytest.raises(NeuroFMError, match="at least 4 cases"):
        fit_monitor(["a", "b"], np.zeros((2, 3)), "run", "h", MonitorSettings())


def test_threshold_at_fpr_by_hand() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.9, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1])
    t = threshold_at_fpr(scores, labels, 0.25)  # one of four negatives may be flagged
    assert 0.3 < t <= 0.4 and np.mean(scores[labels == 0] >= t) == 0.25


def _clusters(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two embedding clusters; the black box is right in A and misses every positive in B
    (B positives 0.15 < A negatives 0.2, so no single threshold of the black box helps)."""
    cluster = rng.integers(0, 2, n)
    labels = rng.integers(0, 2, n)
    emb = np.column_stack([5.0 * cluster, np.zeros(n)]) + rng.normal(0, 0.5, (n, 2))
    p = np.where(cluster == 0, np.where(labels == 1, 0.8, 0.2), np.where(labels == 1, 0.15, 0.05))
    return emb, np.clip(p + rng.normal(0, 0.02, n), 0.001, 0.999), labels


def test_embedding_neighbourhoods_raise_black_box_sensitivity() -> None:
    rng = np.random.default_rng(0)
    det = fit_error_detector(*_clusters(200, rng), max_fpr=0.1)
    emb, p, y = _clusters(400, rng)
    table = compare_on_test(det, emb, p, y).set_index("rule")
    before = table.loc["black box, own threshold"]
    rethresholded = table.loc["black box, re-thresholded"]
    after = table.loc["embedding-assisted"]
    in_b_pos = np.sum((emb[:, 0] > 2.5) & (y == 1))
    assert before["sensitivity"] == pytest.approx(1 - in_b_pos / y.sum())  # misses B positives
    assert rethresholded["sensitivity"] < 0.6
    assert after["sensitivity"] > 0.95 and after["specificity"] > 0.8
    assert after["sens_low"] < after["sensitivity"] < after["sens_high"]


def test_predictions_for_unknown_cases_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("0.3\n")
    (tmp_path / "zz.txt").write_text("0.3\n")
    with pytest.raises(NeuroFMError, match="unknown case 'zz'"):
        read_predictions(tmp_path, ["a", "b"])
    (tmp_path / "zz.txt").unlink()
    with pytest.raises(NeuroFMError, match="no prediction for case 'b'"):
        read_predictions(tmp_path, ["a", "b"])


def test_cli_fit_and_score_end_to_end(tiny_benchmark: Path, tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "brain_age", seed=0)
    other = make_run(tmp_path / "other", "brain_age", seed=1)
    ref, test = tiny_benchmark / "brain_age" / "train", tiny_benchmark / "brain_age" / "test"
    mon = tmp_path / "mon"
    assert _run("monitor", "fit", "--model", str(run), "--reference", str(ref),
                "--out", str(mon)) == 0  # fmt: skip
    assert _run("monitor", "fit", "--model", str(run), "--reference", str(ref),
                "--out", str(mon)) == 2  # fmt: skip
    out = tmp_path / "scores.csv"
    assert _run("monitor", "score", str(mon), "--input", str(test), "--out", str(out)) == 0
    table = pd.read_csv(out)
    cases = sorted(d.name for d in test.iterdir() if d.is_dir())
    assert table["case"].tolist() == cases
    assert {f"{m}_score" for m in METHODS} <= set(table.columns)
    assert table["nearest"].str.count(";").eq(2).all()
    refused = tmp_path / "refused.csv"
    assert _run("monitor", "score", str(mon), "--input", str(test), "--out", str(refused),
                "--model", str(other)) == 2  # fmt: skip
    assert not refused.exists()
    page = tmp_path / "monitor.html"
    assert _run("monitor", "report", str(mon), "--scores", str(out), "--out", str(page)) == 0
    html = page.read_text()
    assert "data:image/png;base64," in html and f"/ {len(cases)}</td>" in html


def _infarct_split(root: Path, n: int, rng: np.random.Generator) -> Path:
    """A labelled infarct split of small random volumes (labels alternate 0/1)."""
    import nibabel as nib

    rows = ["case,site,label"]
    for i in range(n):
        case = root / f"c{i:02d}"
        case.mkdir(parents=True)
        for seq in ("dwi_b1000", "flair", "adc", "swi"):
            data = rng.uniform(0, 100, (16, 16, 16)).astype(np.float32) * (1 + i % 2)
            nib.save(nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0])), case / f"{seq}.nii.gz")
        rows.append(f"c{i:02d},source,{i % 2}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_cli_errors_writes_before_after_and_refuses_unknown_cases(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    run = make_run(tmp_path / "run", "infarct", seed=0)
    splits = {s: _infarct_split(tmp_path / s, 10, rng) for s in ("val", "test")}
    preds = {}
    for s in splits:
        preds[s] = tmp_path / f"pred_{s}"
        preds[s].mkdir()
        for i in range(10):
            (preds[s] / f"c{i:02d}.txt").write_text(f"{0.3 + 0.4 * (i % 2) * (i % 4 != 1):.2f}\n")
    out = tmp_path / "errors"
    args = ["monitor", "errors", "--model", str(run), "--val", str(splits["val"]),
            "--val-predictions", str(preds["val"]), "--test", str(splits["test"]),
            "--test-predictions", str(preds["test"]), "--k", "3"]  # fmt: skip
    assert _run(*args, "--out", str(out)) == 0
    table = pd.read_csv(out / "before_after.csv")
    assert table["rule"].tolist() == [
        "black box, own threshold",
        "black box, re-thresholded",
        "embedding-assisted",
    ]
    # at 0.5 the black box flags odd cases except i % 4 == 1 (1, 5, 9): 2 of 5 positives
    assert table.loc[0, "sensitivity"] == pytest.approx(2 / 5)
    assert table.loc[0, "specificity"] == pytest.approx(1.0)
    (preds["test"] / "stranger.txt").write_text("0.5\n")
    assert _run(*args, "--out", str(tmp_path / "never")) == 2
    assert not (tmp_path / "never").exists()
