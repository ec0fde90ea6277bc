"""The demo end to end on the tiny preset (slow: CI runs it after the default suite)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from neurofm.demo import DEMO_ARMS, PRETRAINED, SCRATCH, DemoSettings, run_demo
from neurofm.errors import NeuroFMError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def test_demo_tiny_end_to_end(tmp_path: Path) -> None:
    # --objective contrastive: brain age from a second pretraining run, as in the round-2 recipe
    s = DemoSettings(preset="tiny", spacing=8.0, pretrain_steps=6, finetune_steps=6,
                     segmentation_steps=6, workers=0, objective="contrastive",
                     n_boot=50)  # fmt: skip
    index = run_demo(tmp_path / "demo", s)
    assert index.exists() and index.name == "index.html"
    rows = pd.read_csv(tmp_path / "demo" / "results" / "results.csv")
    assert set(rows["task"]) == {"infarct", "meningioma", "brain_age"}
    # the models and every baseline are rows of the same table
    assert set(rows["model"]) == set(DEMO_ARMS)
    sites = set(rows["site"])
    assert {"source", "sitea", "siteb"} <= sites
    # every test case of every split has rows for every arm
    for task in ("infarct", "meningioma", "brain_age"):
        per_model = rows[rows.task == task].groupby("model")["case"].nunique()
        assert per_model.nunique() == 1 and per_model.iloc[0] > 0
    est = pd.read_csv(tmp_path / "demo" / "results" / "estimates.csv")
    assert set(est.domain) == {"in-domain", "out-of-domain"}
    comp = pd.read_csv(tmp_path / "demo" / "results" / "comparisons.csv")
    assert {("pretrained", "scratch"), ("pretrained", "hand")} <= set(
        zip(comp.a, comp.b, strict=True)
    )
    timings = json.loads((tmp_path / "demo" / "timings.json").read_text())
    assert {"synth", "prepare", "report"} <= set(timings["timings_s"])
    # brain age starts from the contrastive run, meningioma and MIL infarct from the MAE run
    assert {"pretrain contrastive (tiny)", "pretrain mae (tiny)"} <= set(timings["timings_s"])
    runs = tmp_path / "demo" / "runs"
    inits = {
        t: json.loads((runs / f"{t}-from-{o}-tiny" / "config.json").read_text())["recipe"]["init"]
        for t, o in (("infarct", "mae"), ("meningioma", "mae"), ("brain_age", "contrastive"))
    }
    assert inits["brain_age"].endswith("pretrain-contrastive-tiny")
    assert inits["infarct"].endswith("pretrain-mae-tiny")
    assert inits["meningioma"].endswith("pretrain-mae-tiny")
    viewer = json.loads((tmp_path / "demo" / "results" / "viewer.json").read_text())
    assert viewer and viewer[0]["task"] == "meningioma"
    assert set(viewer[0]["predictions"]) == {PRETRAINED, SCRATCH}
    # a second run reuses every finished stage instead of failing or redoing work
    again = run_demo(tmp_path / "demo", s)
    assert again == index
    # ... but a finished run made with other settings is refused, not mixed into the results
    with pytest.raises(NeuroFMError, match="other settings"):
        run_demo(tmp_path / "demo", replace(s, finetune_steps=7))
    assert pd.read_csv(tmp_path / "demo" / "results" / "results.csv").equals(rows)
