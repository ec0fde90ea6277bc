"""`neurofm report --diffusion DIR`: the "Diffusion classifier" page from a compare folder.

The comparison folder is written by the same function `neurofm diffusion compare` uses
(:func:`~neurofm.diffusion.compare.write_comparison`), from hand-made verdicts, so the page is
checked against numbers computed here with sklearn, not against the code that wrote them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from neurofm.diffusion.classify import ClassifierSettings, Verdict
from neurofm.diffusion.compare import CasePredictions, write_comparison
from neurofm.diffusion.report import read_comparison
from neurofm.errors import NeuroFMError
from test_baselines import cli as run
from test_report import _parse, write_results_folder

K, T, N_CASES = 4, 4, 14


def write_compare_folder(out: Path, seed: int = 0) -> pd.DataFrame:
    """A compare folder whose diffusion errors carry a weak class signal; returns cases.csv."""
    rng = np.random.default_rng(seed)
    labels = np.arange(N_CASES) % 2
    verdicts, rows = [], []
    for i, y in enumerate(labels):
        errors = rng.normal(1.0, 0.05, (K, T, 2))
        errors[..., 1] -= 0.03 * (2 * y - 1)  # class 1 denoises a positive case a little better
        v = Verdict(errors, None, list(range(T)))
        verdicts.append(v)
        p_base = float(np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2), 0.01, 0.99))
        rows.append({
            "case": f"c{i:02d}", "split": "test", "label": int(y), "p_diffusion": v.probability,
            "vote_entropy": v.entropy, "mean_gap": v.mean_gap, "p_baseline": p_base,
            "seconds_diffusion": 2.0 + i, "seconds_baseline": 0.5,
        })  # fmt: skip
    table = pd.DataFrame(rows)
    rule = ClassifierSettings(k=K, t=T)
    splits = [Path("data/infarct/test")]
    write_comparison(out, CasePredictions(table, verdicts), rule, Path("runs/diff"),
                     Path("runs/mil"), splits, n_boot=100)  # fmt: skip
    return table


@pytest.fixture(scope="module")
def compare_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("compare") / "cmp"
    return folder, write_compare_folder(folder)


def test_comparison_numbers_match_sklearn(compare_dir: tuple[Path, pd.DataFrame]) -> None:
    folder, table = compare_dir
    c = read_comparison(folder, "figures/x.png")
    y = table["label"].to_numpy()
    assert [r.model for r in c.rows] == ["diffusion classifier (K 4 × T 4)", "baseline: mil"]
    for row, col in zip(c.rows, ("p_diffusion", "p_baseline"), strict=True):
        auroc, brier, ece = row.metrics
        assert auroc.value == pytest.approx(roc_auc_score(y, table[col]))
        assert brier.value == pytest.approx(brier_score_loss(y, table[col]))
        for iv in row.metrics:
            assert iv.low <= iv.value <= iv.high
        assert 0 <= ece.value <= 1
    assert c.rows[0].seconds_per_case == pytest.approx(np.mean(2.0 + np.arange(N_CASES)))
    # curve: one row per sub-budget, cheapest first, the full budget flagged as the table's
    assert [b.evaluations for b in c.curve] == sorted(b.evaluations for b in c.curve)
    assert {(b.k, b.t) for b in c.curve} == {(k, t) for k in (1, 2, 4) for t in (1, 2, 4)}
    assert [(b.k, b.t) for b in c.curve if b.default] == [(K, T)]
    full = next(b for b in c.curve if b.default)
    assert full.vote.value == pytest.approx(roc_auc_score(y, table["p_diffusion"]))
    assert full.gap.value == pytest.approx(roc_auc_score(y, table["mean_gap"]))


def test_report_has_the_diffusion_page(
    compare_dir: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    folder, table = compare_dir
    results = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("infarct",))
    out = tmp_path / "report"
    assert run("report", str(results), "--out", str(out), "--n-boot", "100",
               "--diffusion", str(folder)) == 0  # fmt: skip
    page = out / "diffusion.html"
    assert page.is_file()
    assert "diffusion.html" in _parse(out / "index.html").links  # linked from the navigation
    parsed = _parse(page)
    assert parsed.rows["diffusion-metrics-1"] == 2
    assert parsed.rows["diffusion-curve-1"] == len(pd.read_csv(folder / "curve.csv"))
    figure = out / "figures" / "diffusion-0.png"
    assert "figures/diffusion-0.png" in parsed.links
    assert figure.read_bytes() == (folder / "curve.png").read_bytes()
    text = page.read_text(encoding="utf-8")
    auroc = roc_auc_score(table["label"], table["p_diffusion"])
    assert f"{auroc:.3f}" in text
    assert "runs/mil" in text and "test — 14 cases" in text


def test_report_without_diffusion_has_no_page(tmp_path: Path) -> None:
    results = write_results_folder(tmp_path / "run", n_per_site=4, tasks=("infarct",))
    assert run("report", str(results), "--out", str(tmp_path / "r"), "--n-boot", "100") == 0
    assert not (tmp_path / "r" / "diffusion.html").exists()
    assert "diffusion.html" not in _parse(tmp_path / "r" / "index.html").links


@pytest.mark.parametrize("broken", ["summary.json", "curve.png", "curve.csv"])
def test_a_broken_compare_folder_is_one_line_and_writes_nothing(
    compare_dir: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    broken: str,
) -> None:
    folder = tmp_path / "cmp"
    folder.mkdir()
    for f in compare_dir[0].iterdir():
        if f.name != broken:
            (folder / f.name).write_bytes(f.read_bytes())
    if broken == "curve.csv":  # present but garbled: a column missing
        curve = pd.read_csv(compare_dir[0] / "curve.csv").drop(columns="auroc_gap")
        curve.to_csv(folder / "curve.csv", index=False)
    results = write_results_folder(tmp_path / "run", n_per_site=2, tasks=("infarct",))
    out = tmp_path / "report"
    assert run("report", str(results), "--out", str(out), "--diffusion", str(folder)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and broken in err
    assert not out.exists()
    with pytest.raises(NeuroFMError, match="not a folder"):
        read_comparison(tmp_path / "nowhere", "figures/x.png")
