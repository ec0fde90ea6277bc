"""The demo end to end on the tiny preset (slow: CI runs it after the default suite)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from neurofm.demo import PRETRAINED, SCRATCH, DemoSettings, run_demo
from neurofm.errors import NeuroFMError

pytestmark = pytest.mark.slow


def test_demo_tiny_end_to_end(tmp_path: Path) -> None:
    s = DemoSettings(preset="tiny", spacing=8.0, pretrain_steps=6, finetune_steps=6,
                     segmentation_steps=6, workers=0,
                     n_boot=50)  # fmt: skip
    index = run_demo(tmp_path / "demo", s)
    assert index.exists() and index.name == "index.html"
    rows = pd.read_csv(tmp_path / "demo" / "results" / "results.csv")
    assert set(rows["task"]) == {"infarct", "meningioma", "brain_age"}
    assert set(rows["model"]) == {PRETRAINED, SCRATCH}
    sites = set(rows["site"])
    assert {"source", "sitea", "siteb"} <= sites
    # every test case of every split has rows for both models
    for task in ("infarct", "meningioma", "brain_age"):
        per_model = rows[rows.task == task].groupby("model")["case"].nunique()
        assert per_model[PRETRAINED] == per_model[SCRATCH] > 0
    timings = json.loads((tmp_path / "demo" / "timings.json").read_text())
    assert {"synth", "prepare", "report"} <= set(timings["timings_s"])
    # brain age starts from the contrastive run, meningioma and MIL infarct from the MAE run
    assert {"pretrain contrastive", "pretrain mae"} <= set(timings["timings_s"])
    runs = tmp_path / "demo" / "runs"
    inits = {
        t: json.loads((runs / f"{t}-pretrained" / "config.json").read_text())["recipe"]["init"]
        for t in ("infarct", "meningioma", "brain_age")
    }
    assert inits["brain_age"].endswith("pretrain-contrastive")
    assert inits["infarct"].endswith("pretrain-mae") and inits["meningioma"].endswith(
        "pretrain-mae"
    )
    viewer = json.loads((tmp_path / "demo" / "results" / "viewer.json").read_text())
    assert viewer and viewer[0]["task"] == "meningioma"
    # a second run reuses every finished stage instead of failing or redoing work
    again = run_demo(tmp_path / "demo", s)
    assert again == index
    # ... but a finished run made with other settings is refused, not mixed into the results
    with pytest.raises(NeuroFMError, match="other settings"):
        run_demo(tmp_path / "demo", replace(s, finetune_steps=7))
    assert pd.read_csv(tmp_path / "demo" / "results" / "results.csv").equals(rows)
