"""Subgroup analysis: strata from labels.csv columns, per-stratum metric and flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score
from typer.testing import CliRunner

from neurofm.cli import app, main
from neurofm.evaluate import evaluate_predictions, evaluate_strata
from neurofm.metrics.registry import METRICS
from neurofm.report.strata import strata_page
from neurofm.stats.strata import (
    MISSING,
    below,
    read_case_strata,
    strata_columns,
    stratify,
    stratum_labels,
)
from neurofm.tasks import TASKS, get_task


def test_numeric_columns_are_cut_into_labelled_quartiles() -> None:
    ages = pd.Series([str(a) for a in range(20, 100, 5)] + [""])  # 16 ages and one empty
    labels = stratum_labels(ages)
    assert labels.iloc[-1] == MISSING
    counts = labels.iloc[:-1].value_counts()
    assert sorted(counts.index) == [
        "Q1 [20, 38.75]",
        "Q2 [38.75, 57.5]",
        "Q3 [57.5, 76.25]",
        "Q4 [76.25, 95]",
    ]  # fmt: skip  (numpy's quartiles of 20..95: 38.75, 57.5, 76.25)
    assert (counts == 4).all()


def test_categorical_and_few_valued_columns_stratify_by_value() -> None:
    assert list(stratum_labels(pd.Series(["F", "M", " F", ""]))) == ["F", "M", "F", MISSING]
    # four distinct numbers are categories, not quartiles
    assert list(stratum_labels(pd.Series(["1", "2", "3", "4", "1"]))) == ["1", "2", "3", "4", "1"]


def test_strata_columns_leave_out_case_site_and_the_target() -> None:
    header = ["case", "site", "age", "sex", "label"]
    assert strata_columns(header, TASKS["infarct"]) == ["age", "sex"]
    assert strata_columns(header, TASKS["brain_age"]) == ["sex", "label"]


def test_below_compares_on_the_worse_side_of_each_metric() -> None:
    auroc, mae, bias = METRICS["auroc"], METRICS["mae"], METRICS["bias"]
    assert below(auroc, (0.40, 0.55), (0.60, 0.80))
    assert not below(auroc, (0.40, 0.65), (0.60, 0.80))  # overlapping
    assert below(mae, (9.0, 12.0), (4.0, 8.0))  # larger error is worse
    assert not below(mae, (1.0, 3.0), (4.0, 8.0))
    assert below(bias, (5.0, 7.0), (-1.0, 2.0))  # farther from 0 is worse
    assert not below(bias, (-0.5, 0.5), (1.0, 2.0))


def _classification_rows(labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    rows = []
    for i, (y, p) in enumerate(zip(labels, probs, strict=True)):
        rows += [("m", "infarct", "s", f"c{i:02d}", "label", float(y))]
        rows += [("m", "infarct", "s", f"c{i:02d}", "prob", float(p))]
    return pd.DataFrame(rows, columns=["model", "task", "site", "case", "metric", "value"])


def test_stratify_matches_sklearn_per_stratum_and_flags_the_bad_one() -> None:
    rng = np.random.default_rng(0)
    n = 60
    labels = np.tile([0, 1], n // 2)
    good = labels * 0.6 + rng.uniform(0, 0.4, n)  # separable
    bad = (1 - labels) * 0.3 + rng.uniform(0, 0.7, n)  # worse than chance
    group = np.array(["young"] * 30 + ["old"] * 30)
    probs = np.where(group == "young", good, bad)
    rows = _classification_rows(labels, probs)
    strata = pd.DataFrame({"agegroup": group}, index=[f"c{i:02d}" for i in range(n)])
    out = stratify(rows, TASKS["infarct"], strata, n_boot=300, seed=0)
    by = out.set_index("stratum")
    assert by.loc["(all)", "value"] == pytest.approx(roc_auc_score(labels, probs))
    for name in ("young", "old"):
        mask = group == name
        assert by.loc[name, "value"] == pytest.approx(roc_auc_score(labels[mask], probs[mask]))
        assert by.loc[name, "n_cases"] == mask.sum()
    assert by.loc["young", "status"] == "ok"
    assert by.loc["old", "status"] == "below"
    assert by.loc["old", "ci_high"] < by.loc["(all)", "ci_low"]


def test_tiny_and_single_class_strata_are_reported_not_hidden() -> None:
    labels = np.array([0, 1] * 10 + [1, 1, 1])
    probs = np.linspace(0, 1, 23)
    rows = _classification_rows(labels, probs)
    group = ["a"] * 20 + ["b"] * 2 + ["c"]
    strata = pd.DataFrame({"g": group}, index=[f"c{i:02d}" for i in range(23)])
    out = stratify(rows, TASKS["infarct"], strata, n_boot=100, seed=0, min_cases=5).set_index(
        "stratum"
    )
    assert list(out.index) == ["(all)", "a", "b", "c"]
    assert out.loc["a", "status"] == "ok"
    assert out.loc["b", "status"] == "undefined"  # two positives: AUROC undefined
    assert math.isnan(out.loc["b", "value"])
    assert out.loc["c", "n_cases"] == 1


def test_regression_strata_match_hand_computed_mae(tmp_path: Path) -> None:
    split = tmp_path / "test"
    split.mkdir()
    ages = [30, 40, 50, 60, 70, 80]
    sexes = ["F", "M", "F", "M", "F", "M"]
    lines = ["case,site,age,sex"] + [
        f"c{i},s,{a},{x}" for i, (a, x) in enumerate(zip(ages, sexes, strict=True))
    ]
    (split / "labels.csv").write_text("\n".join(lines) + "\n")
    preds = tmp_path / "preds"
    preds.mkdir()
    guesses = [32, 40, 45, 66, 70, 90]
    for i, g in enumerate(guesses):
        (preds / f"c{i}.txt").write_text(f"{g}\n")
    ev = evaluate_predictions("brain_age", preds, split)
    table, warnings = evaluate_strata(ev.rows, "brain_age", split, n_boot=50, min_cases=4)
    by = table.set_index("stratum")
    assert list(read_case_strata(split / "labels.csv", TASKS["brain_age"]).columns) == ["sex"]
    for sex in ("F", "M"):
        idx = [i for i, x in enumerate(sexes) if x == sex]
        want = mean_absolute_error([ages[i] for i in idx], [guesses[i] for i in idx])
        assert by.loc[sex, "value"] == pytest.approx(want)
        assert by.loc[sex, "status"] == "too_few"
    assert len(warnings) == 2
    assert warnings[0].startswith(f"{split / 'labels.csv'}: sex: stratum F (model) has 3 case(s)")


def test_evaluate_cli_writes_strata_and_warns(tmp_path: Path) -> None:
    split = tmp_path / "test"
    split.mkdir()
    rng = np.random.default_rng(1)
    rows = ["case,site,label,scanner"]
    for i in range(24):
        rows.append(f"c{i:02d},s,{i % 2},{'A' if i < 20 else 'B'}")
    (split / "labels.csv").write_text("\n".join(rows) + "\n")
    preds = tmp_path / "preds"
    preds.mkdir()
    for i in range(24):
        (preds / f"c{i:02d}.txt").write_text(f"{rng.uniform():.3f}\n")
    out = tmp_path / "eval"
    res = CliRunner().invoke(
        app,
        ["evaluate", "--task", "infarct", "--predictions", str(preds), "--references",
         str(split), "--out", str(out), "--n-boot", "100"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    strata = pd.read_csv(out / "strata.csv")
    assert list(strata["stratum"]) == ["(all)", "A", "B"]
    assert list(strata["status"])[2] == "too_few"
    assert "labels.csv: scanner: stratum B (model) has 4 case(s)" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stratum"] for s in summary["strata"]] == ["(all)", "A", "B"]
    assert summary["strata"][2]["ci_low"] is None  # no interval: null, not NaN
    page = strata_page(out)
    assert page is not None and page.filename == "strata.html"
    (table,) = page.context["tables"]
    assert (table.column, table.overall.n_cases) == ("scanner", 24)
    assert [(r.stratum, r.n_cases, r.status) for r in table.rows] == [
        ("A", 20, strata["status"][1]), ("B", 4, "too_few")
    ]  # fmt: skip


def test_target_column_absent_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = tmp_path / "test"
    split.mkdir()
    (split / "labels.csv").write_text("case,site,age\nc0,s,50\n")
    (tmp_path / "p").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["evaluate", "--task", "infarct", "--predictions", str(tmp_path / "p"),
             "--references", str(split), "--out", str(tmp_path / "e")]
        )  # fmt: skip
    assert exit_info.value.code == 2
    assert "labels.csv: missing column(s) label" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert get_task("infarct").target_column == "label"
