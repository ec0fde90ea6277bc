"""The tidy results table: round trip, validation with one-line errors, summaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofm.errors import NeuroFMError
from neurofm.metrics.classification import auroc
from neurofm.results import (
    COLUMNS,
    SUMMARY_COLUMNS,
    case_table,
    read_results,
    summarise,
    write_results,
)
from neurofm.stats.bootstrap import bootstrap_ci, bootstrap_indices


def frame(rows: list[tuple[str, str, str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))


def infarct_rows(model: str, labels: list[int], probs: list[float], site: str = "s1") -> list:
    out = []
    for i, (y, p) in enumerate(zip(labels, probs, strict=True)):
        out += [(model, "infarct", site, f"{i:03d}", "label", y)]
        out += [(model, "infarct", site, f"{i:03d}", "prob", p)]
    return out


def write_csv(path: Path, text: str) -> Path:
    path.write_text("model,task,site,case,metric,value\n" + text)
    return path


def test_round_trip_keeps_identifiers_as_text(tmp_path: Path) -> None:
    df = frame(infarct_rows("m", [0, 1], [0.25, 0.75]))
    path = write_results(df, tmp_path / "out" / "results.csv")
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.csv"]  # no temp files
    back = read_results(path.parent)  # a folder holding results.csv
    assert back["case"].tolist() == ["000", "000", "001", "001"]
    assert back["value"].tolist() == [0.0, 0.25, 1.0, 0.75]
    pd.testing.assert_frame_equal(back, read_results([path]))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "m,infarct,s,1,label,1\nm,infarct,s,1,prob,high\n",
            "line 3: value 'high' is not a finite",
        ),
        ("m,infarct,s,1,label,1\nm,infarct,s,1,prob,nan\n", "line 3: value 'nan'"),
        ("m,tumour,s,1,label,1\n", "line 2: unknown task 'tumour'"),
        ("m,infarct,s,1,dice,1\n", "line 2: infarct has no row 'dice'"),
        ("m,infarct,s,1,label,2\n", "line 2: label must be 0 or 1"),
        ("m,infarct,s,1,label,1\nm,infarct,s,1,prob,1.5\n", "line 3: prob 1.5 outside"),
        ("m,infarct,s,1,label,1\nm,infarct,s,1,label,1\n", "line 3: duplicate row for m/infarct"),
        ("m,infarct,all,1,label,1\n", "site name 'all' is reserved"),
        ("m,infarct,,1,label,1\n", "line 2: empty site"),
        ("m,meningioma,s,1,hd95,-1\n", "hd95 -1.0 outside"),
        ("m,infarct,s,1,label,1\nm,infarct,s,2,prob,0.5\n", "prediction for unknown case"),
        (
            "m,brain_age,s,1,age,60\nm,brain_age,s,1,pred,65\nm,brain_age,s,1,abs_error,4\n",
            "abs_error is not",
        ),
        ("", "no result rows"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, body: str, problem: str) -> None:
    path = write_csv(tmp_path / "r.csv", body)
    with pytest.raises(NeuroFMError, match=problem) as info:
        read_results(path)
    assert info.value.where == str(path)


def test_bad_columns_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("model,task,case,metric,value\nm,infarct,1,label,1\n")
    with pytest.raises(NeuroFMError, match=r"missing \['site'\]"):
        read_results(bad)
    with pytest.raises(NeuroFMError, match="does not exist"):
        read_results(tmp_path / "nope")
    with pytest.raises(NeuroFMError, match="does not exist"):
        read_results(tmp_path)  # a folder without results.csv


def test_cross_file_problems_name_the_later_file(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", "m,infarct,s,1,label,1\nm,infarct,s,1,prob,0.9\n")
    b = write_csv(tmp_path / "b.csv", "m,infarct,s,1,label,1\nm,infarct,s,1,prob,0.8\n")
    with pytest.raises(NeuroFMError, match="also in .*a.csv") as info:
        read_results([a, b])
    assert info.value.where == str(b)
    c = write_csv(tmp_path / "c.csv", "n,infarct,s,1,label,0\nn,infarct,s,1,prob,0.8\n")
    with pytest.raises(NeuroFMError, match="label 0 of model n disagrees with 1 of model m"):
        read_results([a, c])
    # a reference from another model's file is enough for a prediction
    d = write_csv(tmp_path / "d.csv", "n,infarct,s,1,prob,0.8\n")
    assert len(read_results([a, d])) == 3


def test_missing_predictions_count_as_worst_case() -> None:
    labels = [0, 1, 0, 1, 1, 0]
    full = infarct_rows("full", labels, [0.1, 0.9, 0.3, 0.6, 0.8, 0.4])
    part = infarct_rows("part", labels[:4], [0.2, 0.7, 0.1, 0.9])  # cases 004, 005 missing
    table = case_table(frame(full + part), "infarct")
    m = table.models.index("part")
    np.testing.assert_allclose(table.values["prob"][m], [0.2, 0.7, 0.1, 0.9, 0.0, 1.0])
    assert table.filled["prob"][m].tolist() == [False] * 4 + [True] * 2
    summary = summarise(frame(full + part), n_boot=50, seed=0)
    row = summary[(summary.model == "part") & (summary.metric == "auroc") & (summary.site == "s1")]
    assert row["value"].item() == pytest.approx(auroc(labels, [0.2, 0.7, 0.1, 0.9, 0.0, 1.0]))
    assert row["n_missing"].item() == 2 and row["n_cases"].item() == 6

    ages = [(f"b{i}", a) for i, a in enumerate([30.0, 70.0, 55.0])]
    rows = [("x", "brain_age", "s", c, "age", a) for c, a in ages]
    rows += [("x", "brain_age", "s", c, "pred", a + 1) for c, a in ages]
    rows += [("y", "brain_age", "s", c, "pred", a - 2) for c, a in ages[:1]]
    t = case_table(frame(rows), "brain_age")
    # y misses 70 (worst: 0 years) and 55 (worst: 120 years, the task's range is 0-120)
    np.testing.assert_allclose(t.values["pred"][1], [28.0, 0.0, 120.0])
    np.testing.assert_allclose(t.values["abs_error"][1], [2.0, 70.0, 65.0])
    rows.append(("x", "brain_age", "s", "b3", "age", 20.0))
    rows.append(("x", "brain_age", "s", "b3", "pred", 21.0))
    assert case_table(frame(rows), "brain_age").values["pred"][1][-1] == 120.0

    seg = [("a", "meningioma", "s", c, "dice", d) for c, d in [("1", 0.8), ("2", 0.6)]]
    seg += [("a", "meningioma", "s", c, "hd95", h) for c, h in [("1", 3.0), ("2", 40.0)]]
    seg += [("b", "meningioma", "t", "1", "dice", 0.9), ("b", "meningioma", "t", "1", "hd95", 2.0)]
    t = case_table(frame(seg), "meningioma", "s")
    # b has nothing at site s: Dice 0, HD95 the largest value of the task (40)
    np.testing.assert_allclose(t.values["dice"][1], [0.0, 0.0])
    np.testing.assert_allclose(t.values["hd95"][1], [40.0, 40.0])


def test_summarise_shares_indices_and_pools_sites(rng: np.random.Generator) -> None:
    rows = []
    for site, n in (("s1", 12), ("s2", 8)):
        labels = [int(i % 3 == 0) for i in range(n)]
        for model in ("a", "b"):
            rows += infarct_rows(model, labels, list(rng.random(n).round(3)), site)
    df = frame(rows)
    summary = summarise(df, n_boot=200, seed=5)
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert set(summary["site"]) == {"s1", "s2", "all"}
    assert set(summary["metric"]) == {"auroc", "ap", "balanced_accuracy", "ece"}
    pooled = summary[summary.site == "all"]
    assert (pooled["n_cases"] == 20).all()
    pd.testing.assert_frame_equal(summary, summarise(df, n_boot=200, seed=5))
    assert not summary.equals(summarise(df, n_boot=200, seed=6))
    # the interval equals a direct bootstrap over the same (sorted) cases and seed
    table = case_table(df, "infarct", "s1")
    m = table.models.index("b")
    expected = bootstrap_ci(
        auroc,
        table.values["label"][m],
        table.values["prob"][m],
        indices=bootstrap_indices(table.n_cases, 200, 5),
        degenerate=lambda y, p: y.min() == y.max(),
    )
    got = summary[(summary.model == "b") & (summary.site == "s1") & (summary.metric == "auroc")]
    assert tuple(got[["value", "ci_low", "ci_high"]].iloc[0]) == pytest.approx(tuple(expected))
    assert (summary["ci_low"] <= summary["ci_high"]).all()
    assert np.isfinite(summary[["value", "ci_low", "ci_high"]].to_numpy()).all()
