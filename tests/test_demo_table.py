"""The demo's settings and terminal table: recipe overrides, gain signs checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console

from neurofm.demo import SCRATCH, DemoSettings, demo_table
from neurofm.study.analysis import compare, comparison_family, domain_of, estimates
from neurofm.study.recipe import QUALITY_RECIPE, builtin_recipes, load_recipe


def _brain_age_rows(offset: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for site in ("source", "sitea", "siteb"):
        for i in range(30):
            age = float(rng.uniform(20, 80))
            err = float(rng.normal(0, 3))
            for arm, pred in (("pretrained", age + err), (SCRATCH, age + err + offset)):
                case = f"{site}_{i}"
                for metric, value in (("age", age), ("pred", pred), ("abs_error", abs(pred - age))):
                    rows.append((0, arm, "brain_age", site, case, metric, value))
    out = pd.DataFrame(rows, columns=["seed", "arm", "task", "site", "case", "metric", "value"])
    out["domain"] = domain_of(out, {"brain_age": {"source"}})
    return out


def _text(rows: pd.DataFrame) -> list[str]:
    est = estimates(rows, ["pretrained", SCRATCH], 200, 0)
    pairs = comparison_family(["brain_age"], ["pretrained", SCRATCH], [], [], rows)
    comp = compare(rows, pairs, 200, 0)
    console = Console(width=220, record=True)
    console.print(demo_table(est, comp, ["pretrained", SCRATCH], "caption"))
    return [line for line in console.export_text().splitlines() if "brain_age" in line]


def test_lower_mae_is_a_positive_gain_on_target_sites_only() -> None:
    rows = _brain_age_rows(offset=10.0)  # scratch 10 years further off on every case
    lines = _text(rows)
    assert len(lines) == 2  # one row per arm
    scratch_line = next(line for line in lines if f"│ {SCRATCH}" in line)
    ood = rows[(rows.metric == "abs_error") & (rows.site != "source")].pivot_table(
        index=["site", "case"], columns="arm", values="value"
    )
    expected = (ood[SCRATCH] - ood["pretrained"]).mean()
    assert f"+{expected:.3f}" in scratch_line


def test_no_difference_is_not_significant() -> None:
    lines = _text(_brain_age_rows(offset=0.0))
    scratch_line = next(line for line in lines if f"│ {SCRATCH}" in line)
    assert "+0.000" in scratch_line and "p_holm 1" in scratch_line


def test_demo_overrides_apply_to_the_study_recipe() -> None:
    base = load_recipe()
    assert DemoSettings().recipe() == base
    linear = DemoSettings(infarct_head="linear", objective="mae", finetune_steps=7).recipe()
    # a linear infarct head reads a pooled embedding, so --objective (not the decoder one) sets it
    assert linear.task("infarct").head == "linear"
    assert linear.task("infarct").objective == "mae"
    assert linear.task("brain_age").objective == "mae"
    assert linear.task("meningioma").objective == base.task("meningioma").objective
    assert linear.finetune_steps == 7 and linear.hash != base.hash
    caption = DemoSettings().describe_pretrained(base)
    assert caption == "mae (infarct, meningioma, brain_age)"
    mixed = DemoSettings(objective="contrastive")
    assert mixed.describe_pretrained(mixed.recipe()) == (
        "mae (infarct, meningioma); contrastive (brain_age)"
    )


def test_demo_help_states_the_default_recipes_values() -> None:
    """The demo's option help names the recipe's values; a recipe change must not leave it
    stating old ones (it said 'contrastive (default)' after the default became MAE)."""
    import inspect

    from neurofm.cli.cmd_demo import demo

    r = load_recipe()
    params = inspect.signature(demo).parameters.items()
    helps = {n: p.default.help for n, p in params if hasattr(p.default, "help")}
    assert f"({r.pretrain_steps})" in helps["pretrain_steps"]
    assert f"({r.finetune_steps})" in helps["finetune_steps"]
    assert f", {r.segmentation_steps})" in helps["segmentation_steps"]
    assert f", {r.n_boot})" in helps["n_boot"]
    assert f", {r.spacing:g})" in helps["spacing"]
    pooled, decoder = r.task("brain_age").objective, r.task("meningioma").objective
    assert helps["objective"].endswith(f"the recipe's, {pooled})")
    assert helps["decoder_objective"].endswith(f"the recipe's, {decoder})")
    assert helps["infarct_head"].startswith(f"{r.task('infarct').head} (the recipe's)")


def test_quality_preset_is_round_3_at_3_mm_with_fresh_seeds(tmp_path, monkeypatch) -> None:
    from dataclasses import replace

    from typer.testing import CliRunner

    import neurofm.demo
    from neurofm.cli import app

    # round 3 at 3 mm: it keeps round 3's intensity clip until round 12's change is tested at 3 mm
    base, quality = load_recipe("fomo25-demo-round3"), DemoSettings(quality=True).recipe()
    assert quality.name == QUALITY_RECIPE and quality.spacing == 3.0
    same = replace(quality, name=base.name, source=base.source, confirmation=base.confirmation)
    assert same == base.at_spacing(3.0)  # nothing else differs from round 3
    for other in set(builtin_recipes()) - {QUALITY_RECIPE}:
        assert set(quality.confirmation).isdisjoint(load_recipe(other).confirmation), other
    seen: list[DemoSettings] = []
    monkeypatch.setattr(neurofm.demo, "run_demo", lambda out, s, overwrite: seen.append(s))
    result = CliRunner().invoke(app, ["demo", "--quality", "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert seen[0].quality and seen[0].recipe() == quality
    assert DemoSettings(quality=True, spacing=4.0).recipe().finetune_input_size == 48
