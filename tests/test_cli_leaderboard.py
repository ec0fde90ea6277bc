"""`neurofm leaderboard` end to end through neurofm.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofm.cli import main
from neurofm.results import COLUMNS, write_results


def results(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for model, skill in (("alpha", 0.5), ("beta", 0.3), ("gamma", 0.0)):
        for site in ("north", "south"):
            for i in range(15):
                case = f"{site[0]}{i:02d}"
                label = int(i % 3 == 0)
                prob = float(np.clip(skill * label + rng.random() * (1 - skill), 0, 1))
                rows += [(model, "infarct", site, case, "label", label)]
                rows += [(model, "infarct", site, case, "prob", prob)]
                age = 20.0 + 4 * i
                pred = age + rng.normal(0, 3 + 10 * (0.5 - skill))
                rows += [(model, "brain_age", site, case, "age", age)]
                rows += [(model, "brain_age", site, case, "pred", pred)]
                if model == "gamma" and i < 2:
                    continue  # gamma misses two meningioma cases per site
                dice = float(np.clip(0.4 + skill + rng.normal(0, 0.1), 0, 1))
                for metric, value in (("dice", dice), ("nsd", dice), ("hd95", 10 * (1 - dice))):
                    rows += [(model, "meningioma", site, case, metric, value + 0.0)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def test_leaderboard_writes_tables(
    tmp_path: Path, rng: np.random.Generator, capsys: pytest.CaptureFixture[str]
) -> None:
    df = results(rng)
    write_results(df[df.model != "gamma"], tmp_path / "run1" / "results.csv")
    write_results(df[df.model == "gamma"], tmp_path / "gamma.csv")
    out = tmp_path / "board"
    main(["leaderboard", str(tmp_path / "run1"), str(tmp_path / "gamma.csv"), "--out", str(out),
          "--n-boot", "200", "--seed", "1"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "final ranking" in printed and "Kendall" in printed and "alpha" in printed

    board = pd.read_csv(out / "leaderboard.csv")
    assert set(board["task"]) == {"infarct", "meningioma", "brain_age"}
    assert set(board["metric"]) == {"auroc", "dice", "mae"}
    assert len(board) == 9
    menin = board[board.task == "meningioma"].set_index("model")
    assert menin.loc["gamma", "n_missing"] == 4 and menin.loc["alpha", "n_missing"] == 0
    assert (board["n_cases"] == 30).all()
    assert (board["ci_low"] <= board["ci_high"]).all()
    assert board.loc[board.task == "brain_age", "rank_aggregate"].min() == 1

    stab = pd.read_csv(out / "rank_stability.csv")
    assert list(stab.columns) == ["task", "metric", "model", "rank", "frequency"]
    sums = stab.groupby(["task", "model"])["frequency"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)
    p1 = stab[stab["rank"] == 1].set_index(["task", "model"])["frequency"]
    for _, row in board.iterrows():
        assert row["p_rank1"] == pytest.approx(p1[(row["task"], row["model"])])

    doc = json.loads((out / "leaderboard.json").read_text())
    assert doc["n_boot"] == 200 and doc["seed"] == 1
    assert [r["rank"] for r in doc["final"]] == sorted(r["rank"] for r in doc["final"])
    assert set(doc["tasks"]["infarct"]["kendall_tau"]) == {
        "aggregate_vs_case",
        "aggregate_vs_test",
        "case_vs_test",
    }
    # same seed, same files: identical output
    main(["leaderboard", str(tmp_path / "run1"), str(tmp_path / "gamma.csv"), "--out",
          str(tmp_path / "again"), "--n-boot", "200", "--seed", "1"])  # fmt: skip
    assert (tmp_path / "again" / "leaderboard.csv").read_text() == (
        out / "leaderboard.csv"
    ).read_text()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("m,tumour,s,1,label,1\n", "unknown task 'tumour'"),
        ("m,infarct,s,1,label,1\nm,infarct,s,1,prob,abc\n", "value 'abc' is not a finite number"),
        ("m,infarct,s,1,label,1\nm,infarct,s,9,prob,0.4\n", "prediction for unknown case"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, problem: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("model,task,site,case,metric,value\n" + body)
    with pytest.raises(SystemExit) as info:
        main(["leaderboard", str(path), "--out", str(tmp_path / "o"), "--n-boot", "10"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and problem in err and str(path) in err
    assert not (tmp_path / "o").exists()
