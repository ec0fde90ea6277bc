"""The demo's terminal table: gain signs follow the metric's direction, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console

from neurofm.demo import SCRATCH, DemoSettings, comparison_table
from neurofm.results import summarise


def _brain_age_rows(offset: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for site in ("sitea", "siteb"):
        for i in range(30):
            age = float(rng.uniform(20, 80))
            err = float(rng.normal(0, 3))
            for model, pred in (
                ("contrastive-pretrained", age + err),
                (SCRATCH, age + err + offset),
            ):
                case = f"{site}_{i}"
                for metric, value in (("age", age), ("pred", pred), ("abs_error", abs(pred - age))):
                    rows.append(("brain_age", site, case, model, metric, value))
    return pd.DataFrame(rows, columns=["task", "site", "case", "model", "metric", "value"])


def test_lower_mae_is_a_positive_separated_gain() -> None:
    rows = _brain_age_rows(offset=10.0)  # scratch 10 years further off on every case
    summary = summarise(rows, n_boot=200, seed=0)
    table = comparison_table(rows, summary, "contrastive-pretrained", 200, 0)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    lines = [line for line in text.splitlines() if "brain_age" in line]
    assert len(lines) == 3  # all, sitea, siteb
    pooled = rows[rows.metric == "abs_error"].pivot_table(
        index="case", columns="model", values="value"
    )
    expected = (pooled[SCRATCH] - pooled["contrastive-pretrained"]).mean()
    assert f"+{expected:.3f}" in lines[0] and "│ yes" in lines[0]


def test_no_difference_is_not_separated() -> None:
    rows = _brain_age_rows(offset=0.0)
    summary = summarise(rows, n_boot=200, seed=0)
    console = Console(width=200, record=True)
    console.print(comparison_table(rows, summary, "contrastive-pretrained", 200, 0))
    lines = [line for line in console.export_text().splitlines() if "brain_age" in line]
    assert lines and all("│ no " in line for line in lines)


def test_caption_names_each_tasks_pretraining() -> None:
    s = DemoSettings()
    assert [s.objective_for(t) for t in ("infarct", "meningioma", "brain_age")] == [
        "mae", "mae", "contrastive"
    ]  # fmt: skip
    linear = DemoSettings(infarct_head="linear")
    assert linear.objective_for("infarct") == "contrastive" and not linear.has_decoder("infarct")
    assert s.pretrain_settings("mae").batch_size == s.reconstruction_batch
    assert s.pretrain_settings("contrastive").batch_size == s.pretrain_batch
    rows = _brain_age_rows(offset=0.0)
    console = Console(width=200, record=True)
    table = comparison_table(rows, summarise(rows, n_boot=50, seed=0), "contrastive-pretrained",
                             50, 0, s.describe_pretrained())  # fmt: skip
    console.print(table)
    assert "mae (infarct, meningioma); contrastive (brain_age)" in console.export_text()
