"""The localisation table: bootstrap summary by hand, and the command on the tiny benchmark."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.explain.table import CaseScore, markdown, summarise
from neurofm.stats.bootstrap import bootstrap_indices

torch.set_num_threads(1)


def test_summary_means_and_shared_case_resampling() -> None:
    road = {"a": 0.1, "b": 0.3, "c": 0.8}
    scores = [
        CaseScore("pre", c, m, road[c] * (2 if m == "x" else 1), float(c == "a"), 0.5, 0.2, False)
        for c in "abc"
        for m in ("x", "y")
    ]
    rows = summarise(scores, n_boot=200, seed=3)
    assert [(r["arm"], r["method"], r["cases"]) for r in rows] == [("pre", "x", 3), ("pre", "y", 3)]
    x = rows[0]
    assert x["road"] == pytest.approx(2 * (0.1 + 0.3 + 0.8) / 3)
    assert x["pointing_game"] == pytest.approx(1 / 3)
    idx = bootstrap_indices(3, 200, 3)
    means = (2 * np.array([0.1, 0.3, 0.8]))[idx].mean(axis=1)
    assert x["road_low"] == pytest.approx(np.percentile(means, 2.5))
    assert x["road_high"] == pytest.approx(np.percentile(means, 97.5))
    # same resampled case sets for both methods: method y's bounds are exactly half of x's
    assert rows[1]["road_low"] == pytest.approx(x["road_low"] / 2)
    assert "| pre | x | 3 | 0.800 [" in markdown(rows)


@pytest.mark.slow  # maps of a trained and a re-initialised model, ROAD, a CAManim: ~20-80 s
def test_explain_table_command_writes_table_and_page(tiny_benchmark: Path, tmp_path: Path) -> None:
    from test_explain_cli import make_run

    run = make_run(tmp_path / "run", "meningioma")
    out = tmp_path / "table"
    args = [
        "explain-table",
        "--model",
        f"scratch={run}",
        "--data",
        str(tiny_benchmark / "meningioma"),
    ]
    args += ["--splits", "test", "--cases", "1", "--method", "hirescam", "--animate", "1"]
    try:
        main([*args, "--out", str(out)])
    except SystemExit as exc:
        assert exc.code in (0, None)
    rows = list(csv.DictReader((out / "cases.csv").open()))
    assert len(rows) == 1 and rows[0]["method"] == "hirescam"
    assert 0.0 <= float(rows[0]["energy_in_lesion"]) <= 1.0
    assert -1.0 <= float(rows[0]["randomisation_corr"]) < 1.0
    html = (out / "index.html").read_text()
    assert "randomisation corr." in html and ".gif" in html
    assert len(list(out.glob("camanim_scratch_*.gif"))) == 1
    manifest = json.loads((out / "explain.json").read_text())
    assert manifest["scored"] == {"scratch": 1} and manifest["seconds"] > 0


def test_lesion_masks_are_found_for_infarct_and_meningioma(tiny_benchmark: Path) -> None:
    from neurofm.explain.case import lesion_mask
    from neurofm.explain.table import lesion_cases

    split = tiny_benchmark / "infarct" / "test"
    labels = {r["case"]: float(r["label"]) for r in csv.DictReader((split / "labels.csv").open())}
    for case, label in labels.items():
        found = lesion_mask(split / case, "infarct")
        assert (found is not None) == (label == 1.0), case
    chosen = lesion_cases([split], "infarct", per_split=1)
    assert len(chosen) == 1 and labels[chosen[0].name] == 1.0
    men = sorted(d for d in (tiny_benchmark / "meningioma" / "test").iterdir() if d.is_dir())
    assert lesion_mask(men[0], "meningioma") == men[0] / "label.nii.gz"
