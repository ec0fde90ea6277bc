"""neurofm study: recipe freeze, seed split, grid, out-of-domain pooling, findings."""

from __future__ import annotations

import inspect
import json
import tomllib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import TINY_RECIPE
from neurofm.errors import NeuroFMError
from neurofm.study.analysis import (
    IN_DOMAIN,
    OUT_OF_DOMAIN,
    Pair,
    compare,
    comparison_family,
    domain_of,
    estimates,
    findings,
)
from neurofm.study.grid import make_grid
from neurofm.study.recipe import ADDED_LATER, builtin_recipes, load_recipe, parse_recipe
from neurofm.study.study import CONFIRMATION, DEVELOPMENT, check_folder, check_shots, choose_seeds
from neurofm.tasks import get_task


def _recipe(tmp_path: Path, text: str = TINY_RECIPE, name: str = "r.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_builtin_recipe_loads_and_hash_tracks_values_not_comments(tmp_path: Path) -> None:
    builtin = load_recipe()
    assert set(builtin.development).isdisjoint(builtin.confirmation)
    assert builtin.task("brain_age").objective == "mae"
    assert builtin.task("brain_age").pool == "avg"
    a = load_recipe(_recipe(tmp_path))
    b = load_recipe(_recipe(tmp_path, "# a comment\n" + TINY_RECIPE, "b.toml"))
    c = load_recipe(
        _recipe(tmp_path, TINY_RECIPE.replace("n_boot = 200", "n_boot = 201"), "c.toml")
    )
    assert a.hash == b.hash
    assert a.hash != c.hash


def test_builtin_novel_recipe_differs_from_the_default_only_in_its_shift() -> None:
    from neurofm.study.recipe import builtin_recipes

    assert {"fomo25-demo", "fomo25-demo-novel", "fomo25-demo-round3"} <= set(builtin_recipes())
    novel, base = load_recipe("fomo25-demo-novel"), load_recipe("fomo25-demo")
    assert novel.shift == "novel" and base.shift == "matched"
    same = replace(novel, name=base.name, shift=base.shift, source=base.source)
    assert same == base and novel.hash != base.hash
    with pytest.raises(NeuroFMError, match="cannot read recipe"):
        load_recipe("fomo25-demo-nvel")


def test_default_recipe_is_round_12_unclipped_round_3_with_fresh_seeds() -> None:
    from neurofm.cli.cmd_study import study
    from neurofm.study.recipe import DEFAULT_RECIPE

    default, round3 = load_recipe(), load_recipe("fomo25-demo-round3")
    assert default.name == DEFAULT_RECIPE == "fomo25-demo-round12"
    assert inspect.signature(study).parameters["recipe"].default.default == DEFAULT_RECIPE
    # the hash its confirmation (confirm-round12-c62f0bd, docs/study.md) was started with
    assert default.hash == "c62f0bde40e0bedb"
    # round 12 changed the clip and nothing else; its confirmation seeds are new
    assert default.clip_percentiles == (0.0, 100.0) != round3.clip_percentiles
    confirmed = {
        s for n in builtin_recipes() if n != DEFAULT_RECIPE for s in load_recipe(n).confirmation
    }
    assert confirmed.isdisjoint(default.confirmation)
    same = replace(
        default, name=round3.name, confirmation=round3.confirmation,
        clip_percentiles=round3.clip_percentiles, source=round3.source,
    )  # fmt: skip
    assert same == round3


def test_round_3_is_round_2_with_brain_age_from_mae() -> None:
    round3, round2 = load_recipe("fomo25-demo-round3"), load_recipe("fomo25-demo")
    # the hash its confirmation (confirm-round3-4087b22, docs/study.md) was started with
    assert round3.hash == "4087b229d0cf0a81"
    assert round2.task("brain_age").objective == "contrastive"
    assert set(round3.confirmation).isdisjoint(round2.confirmation)
    tasks = dict(round3.tasks)
    tasks["brain_age"] = replace(tasks["brain_age"], objective="contrastive")
    same = replace(
        round3, name=round2.name, confirmation=round2.confirmation, tasks=tasks,
        source=round2.source,
    )  # fmt: skip
    assert same == round2


def test_input_sizes_are_recipe_settings_that_reach_the_runs() -> None:
    from neurofm.study.grid import Unit
    from neurofm.study.runner import finetune_settings, pretrain_settings

    base = load_recipe()
    assert (base.pretrain_patch, base.finetune_input_size, base.finetune_patch) == (32, 48, 32)
    three_mm = replace(
        base, spacing=3.0, pretrain_patch=48, finetune_input_size=64, finetune_patch=48
    )
    assert len({base.hash, three_mm.hash, replace(base, finetune_patch=48).hash}) == 3
    ps = pretrain_settings(three_mm, "mae", "tiny", seed=0, workers=0)
    assert ps.patch_size == 48
    for task, size in (("brain_age", 64), ("meningioma", 48)):
        unit = Unit("scratch", task, "tiny", None, "scratch", "tiny")
        fs = finetune_settings(three_mm, unit, seed=0, workers=0, init="scratch")
        assert (fs.input_size, fs.patch_size) == (64, 48), task
        assert size in (fs.input_size, fs.patch_size)
    text = TINY_RECIPE.replace("[finetune]\n", "[finetune]\ninput_size = 0\n")
    with pytest.raises(NeuroFMError, match=r"\[finetune\] --input-size must be positive"):
        parse_recipe(tomllib.loads(text), "r.toml")
    text = TINY_RECIPE.replace("[pretrain]\n", "[pretrain]\npatch = 40\n")
    with pytest.raises(NeuroFMError, match=r"\[pretrain\] --patch 40 must be a multiple of 16"):
        parse_recipe(tomllib.loads(text), "r.toml")


def test_the_schedule_is_a_recipe_setting_that_reaches_the_runs() -> None:
    from neurofm.study.grid import Unit
    from neurofm.study.runner import finetune_settings

    base = load_recipe()
    assert base.lr_schedule == ADDED_LATER["lr_schedule"] == "cosine"
    poly = parse_recipe(
        tomllib.loads(TINY_RECIPE.replace("[finetune]\n", '[finetune]\nschedule = "poly"\n')), "r"
    )
    assert poly.lr_schedule == "poly"
    assert replace(base, lr_schedule="poly").hash != base.hash
    unit = Unit("scratch", "brain_age", "tiny", None, "scratch", "tiny")
    assert finetune_settings(poly, unit, seed=0, workers=0, init="scratch").schedule == "poly"


def test_task_adaptation_mode_and_weight_selection_reach_the_runs_and_keep_hashes() -> None:
    from neurofm.study.grid import Unit
    from neurofm.study.runner import finetune_settings

    for name in builtin_recipes():  # every confirmed recipe's hash holds at the default "full"
        assert all(t.mode == "full" for t in load_recipe(name).tasks.values())
    assert load_recipe("fomo25-demo-round3").hash == "4087b229d0cf0a81"
    text = TINY_RECIPE.replace('head = "mil"', 'head = "mil"\nmode = "probe"')
    probe = parse_recipe(tomllib.loads(text), "r")
    full = parse_recipe(tomllib.loads(TINY_RECIPE), "r")
    assert probe.task("infarct").mode == "probe" and probe.hash != full.hash
    unit = Unit("pretrained", "infarct", "tiny", None, "mae", "tiny")
    assert finetune_settings(probe, unit, seed=0, workers=0, init="/runs/pre").mode == "probe"
    assert finetune_settings(probe, unit, seed=0, workers=0, init="scratch").mode == "full"
    assert finetune_settings(full, unit, seed=0, workers=0, init="/runs/pre").mode == "full"
    text = TINY_RECIPE.replace('head = "mil"', 'head = "mil"\nselect = "last"')
    last = parse_recipe(tomllib.loads(text), "r")
    assert last.task("infarct").select == "last" and last.hash != full.hash
    for init in ("/runs/pre", "scratch"):  # a training procedure: both arms
        assert finetune_settings(last, unit, seed=0, workers=0, init=init).select == "last"
    assert finetune_settings(full, unit, seed=0, workers=0, init="scratch").select == "best"


def test_task_input_mix_reaches_the_pretrained_arm_only_and_keeps_hashes() -> None:
    from neurofm.study.grid import Unit
    from neurofm.study.runner import finetune_settings

    for name in builtin_recipes():
        assert all(t.input_mix == () for t in load_recipe(name).tasks.values())
    assert load_recipe("fomo25-demo-round3").hash == "4087b229d0cf0a81"
    mix = 'head = "mil"\ninput_mix = { dwi_b1000 = 1, adc = -1 }'
    text = TINY_RECIPE.replace('head = "mil"', mix)
    mixed = parse_recipe(tomllib.loads(text), "r")
    plain = parse_recipe(tomllib.loads(TINY_RECIPE), "r")
    assert mixed.task("infarct").input_mix == (("dwi_b1000", 1.0), ("adc", -1.0))
    assert mixed.hash != plain.hash
    unit = Unit("pretrained", "infarct", "tiny", None, "mae", "tiny")
    pre = finetune_settings(mixed, unit, seed=0, workers=0, init="/runs/pre")
    assert pre.input_mix == {"dwi_b1000": 1.0, "adc": -1.0}
    assert finetune_settings(mixed, unit, seed=0, workers=0, init="scratch").input_mix is None
    assert finetune_settings(plain, unit, seed=0, workers=0, init="/runs/pre").input_mix is None


def test_the_intensity_clip_is_a_recipe_setting_that_reaches_prepare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from rich.console import Console

    from neurofm.data.preprocess import PreprocessParams
    from neurofm.study import runner
    from neurofm.train.distributed import DistInfo

    for name in builtin_recipes():  # every confirmed recipe ran with the 0.5 / 99.5 clip
        clip = load_recipe(name).clip_percentiles
        unclipped = name == "fomo25-demo-round12"  # round 12's candidate (docs/model-quality.md)
        assert clip == ((0.0, 100.0) if unclipped else ADDED_LATER["clip_percentiles"]), name
    assert load_recipe("fomo25-demo-round12").hash == "c62f0bde40e0bedb"
    assert load_recipe("fomo25-demo-round3").hash == "4087b229d0cf0a81"
    text = TINY_RECIPE.replace("spacing = 8.0", "spacing = 8.0\nclip_percentiles = [0, 100]")
    plain = parse_recipe(tomllib.loads(TINY_RECIPE), "r")
    unclipped = parse_recipe(tomllib.loads(text), "r")
    assert unclipped.clip_percentiles == (0.0, 100.0) and unclipped.hash != plain.hash
    seen: list[object] = []
    monkeypatch.setattr(runner, "prepare", lambda raw, dst, params, workers: seen.append(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "benchmark.json").write_text("{}")  # no synthesis
    solo = DistInfo(0, 1, 0, torch.device("cpu"))
    run = runner.SeedRun(tmp_path, 0, unclipped, solo, Console(quiet=True))
    run.prepare_data()
    assert seen == [PreprocessParams(spacing=(8.0,) * 3, clip_percentiles=(0.0, 100.0))]


def test_a_setting_added_later_keeps_earlier_hashes_until_it_is_changed() -> None:
    builtin = load_recipe("fomo25-demo")
    assert builtin.augment == ADDED_LATER["augment"]
    # the hash the round-2 confirmation (docs/study.md) was written with, before augment existed
    assert builtin.hash == "c1dc05dca83215e0"
    assert replace(builtin, augment="none").hash != builtin.hash
    assert replace(builtin, augment="geometric").hash != replace(builtin, augment="none").hash


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("confirmation = [7, 8]", "confirmation = [1, 8]"), "overlap"),
        (("[evaluation]", "[evaluation]\nfoo = 1"), "unknown key"),
        (('objective = "contrastive"', 'objective = "jigsaw"'), "objective"),
        (('head = "mil"', 'head = "gigantic"'), "head"),
        (('head = "mil"', 'head = "linear"\npool = "median"'), "pool"),
        (('head = "mil"', 'head = "mil"\nlargest_component = true'), "segmentation"),
        (('head = "mil"', 'head = "linear"\nmil_head_only = true'), "needs --head mil"),
        (('head = "mil"', 'head = "mil"\nmil_head_only = 1'), "must be bool"),
        (("steps = 4\ncontrastive", 'steps = "four"\ncontrastive'), "must be int"),
        (("[tasks.infarct]", "[tasks.flu]"), "unknown task"),
        (("patience = 2", 'patience = 2\naugment = "heavy"'), "unknown augment"),
        (("patience = 2", 'patience = 2\nschedule = "step"'), "unknown schedule"),
        (('head = "mil"', 'head = "mil"\nmode = "lora"'), r"\[tasks.infarct\].*mode"),
        (('head = "mil"', 'head = "mil"\nselect = "median"'), r"\[tasks.infarct\].*select"),
        (('head = "mil"', 'head = "mil"\ninput_mix = { t1 = 1 }'), "not among the task"),
        (('head = "mil"', 'head = "mil"\ninput_mix = { adc = "-1" }'), "channel = number"),
        (('head = "mil"', 'head = "mil"\ninput_mix = { adc = 0 }'), "not all zero"),
        (("spacing = 8.0", "spacing = 8.0\nclip_percentiles = [99, 1]"), r"\[benchmark\] clip"),
        (("spacing = 8.0", "spacing = 8.0\nclip_percentiles = [1]"), "must be 2 numbers"),
    ],
)
def test_bad_recipes_are_one_line_errors(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    with pytest.raises(NeuroFMError, match=message):
        load_recipe(_recipe(tmp_path, TINY_RECIPE.replace(*edit)))


def test_seed_split_is_enforced() -> None:
    r = parse_recipe(
        {"name": "x", "seeds": {"development": [0], "confirmation": [5, 6]},
         "tasks": {"infarct": {}}}, "x.toml",
    )  # fmt: skip
    assert choose_seeds(r, None, confirm=False) == (0,)
    assert choose_seeds(r, None, confirm=True) == (5, 6)
    assert choose_seeds(r, [3], confirm=False) == (3,)
    with pytest.raises(NeuroFMError, match="confirmation seeds"):
        choose_seeds(r, [5], confirm=False)
    with pytest.raises(NeuroFMError, match="confirmation seeds only"):
        choose_seeds(r, [0], confirm=True)


def test_recipe_is_frozen_once_confirmation_results_exist(tmp_path: Path) -> None:
    r1 = load_recipe(_recipe(tmp_path))
    r2 = load_recipe(
        _recipe(tmp_path, TINY_RECIPE.replace("n_boot = 200", "n_boot = 300"), "r2.toml")
    )
    out = tmp_path / "study"
    assert check_folder(out, r1, CONFIRMATION) is None
    out.mkdir()
    state = {"recipe_hash": r1.hash, "phase": CONFIRMATION, "confirmation_first_written": None}
    (out / "study.json").write_text(json.dumps(state))
    assert check_folder(out, r1, CONFIRMATION) is not None
    with pytest.raises(NeuroFMError, match="written by recipe"):
        check_folder(out, r2, CONFIRMATION)
    state["confirmation_first_written"] = "2026-11-30T00:00:00"
    (out / "study.json").write_text(json.dumps(state))
    with pytest.raises(NeuroFMError, match="frozen once confirmed"):
        check_folder(out, r2, CONFIRMATION)
    with pytest.raises(NeuroFMError, match="holds confirmation results"):
        check_folder(out, r1, DEVELOPMENT)
    other = tmp_path / "not_a_study"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    with pytest.raises(NeuroFMError, match="not a study folder"):
        check_folder(other, r1, DEVELOPMENT)


def test_grid_validation_and_shared_runs(tmp_path: Path) -> None:
    r = load_recipe(_recipe(tmp_path))
    with pytest.raises(NeuroFMError, match="unknown arm"):
        make_grid(["scratch", "bert"], ["tiny"], ["all"], ["infarct"], r)
    with pytest.raises(NeuroFMError, match="preset"):
        make_grid(["scratch"], ["huge"], ["all"], ["infarct"], r)
    with pytest.raises(NeuroFMError, match="unknown task"):
        make_grid(["scratch"], ["tiny"], ["all"], ["flu"], r)
    with pytest.raises(NeuroFMError, match="at least 4"):
        make_grid(["scratch"], ["tiny"], ["2"], ["infarct"], r)
    grid = make_grid(["pretrained", "mae", "scratch"], ["tiny"], ["all", "5"], ["infarct"], r)
    units = grid.units(r)
    by_label = {(u.label, u.shots): u.run_name for u in units}
    # the recipe pretrains infarct with MAE: "pretrained" and "mae" are one run, scratch another
    assert by_label[("pretrained", None)] == by_label[("mae", None)]
    assert by_label[("pretrained", None)] != by_label[("scratch", None)]
    assert {u.label for u in units if u.shots == 5} == {"pretrained/n5", "mae/n5", "scratch/n5"}
    assert grid.pretraining_runs(r) == [("mae", "tiny")]
    big = make_grid(["pretrained"], ["tiny", "small"], ["all"], ["infarct"], r)
    assert [u.label for u in big.units(r)] == ["pretrained", "pretrained@small"]
    # a shot count above the training split is refused before anything runs (tiny: 4 cases)
    with pytest.raises(NeuroFMError, match="training cases"):
        check_shots(make_grid(["scratch"], ["tiny"], ["5"], ["infarct"], r), r, None)


def _rows(rng: np.random.Generator, n_seeds: int = 3) -> pd.DataFrame:
    """Infarct rows: target-site cases separable for 'good', random for 'bad'; the source split
    is made perfectly separable for 'bad' so it would change any figure that pooled it."""
    out = []
    for seed in range(n_seeds):
        for site, n in (("source", 10), ("sitea", 20), ("siteb", 20)):
            labels = rng.integers(0, 2, n)
            labels[:2] = (0, 1)
            for arm in ("good", "bad"):
                if arm == "good":
                    prob = 0.3 + 0.4 * labels + rng.normal(0, 0.15, n)
                elif site == "source":
                    prob = labels.astype(float)
                else:
                    prob = rng.random(n)
                for i in range(n):
                    case = f"{site}_{i}"
                    out.append((seed, arm, "infarct", site, case, "label", float(labels[i])))
                    p = float(np.clip(prob[i], 0, 1))
                    out.append((seed, arm, "infarct", site, case, "prob", p))
    rows = pd.DataFrame(out, columns=["seed", "arm", "task", "site", "case", "metric", "value"])
    rows["domain"] = domain_of(rows, {"infarct": {"source"}})
    return rows


def test_out_of_domain_pools_target_sites_only() -> None:
    rows = _rows(np.random.default_rng(0))
    assert set(rows[rows.domain == IN_DOMAIN].site) == {"source"}
    est = estimates(rows, ["good", "bad"], n_boot=300, seed=0)
    bad_ood = est[(est.arm == "bad") & (est.domain == OUT_OF_DOMAIN)].iloc[0]
    bad_in = est[(est.arm == "bad") & (est.domain == IN_DOMAIN)].iloc[0]
    assert bad_in.value == pytest.approx(1.0)
    # independent: AUROC per seed on the target sites only, with scikit-learn, then the mean
    per_seed = []
    for _, part in rows[(rows.arm == "bad") & (rows.site != "source")].groupby("seed"):
        wide = part.pivot_table(index=["site", "case"], columns="metric", values="value")
        per_seed.append(roc_auc_score(wide["label"], wide["prob"]))
    assert bad_ood.value == pytest.approx(np.mean(per_seed))
    assert bad_ood.ci_low <= bad_ood.value <= bad_ood.ci_high
    assert bad_ood.n_seeds == 3


def test_comparisons_holm_and_findings_sentences() -> None:
    rows = _rows(np.random.default_rng(1)).replace(
        {"arm": {"good": "pretrained", "bad": "scratch"}}
    )
    pairs = comparison_family(["infarct"], ["pretrained", "scratch"], [], [], rows)
    assert [(p.a, p.b, p.domain) for p in pairs] == [
        ("pretrained", "scratch", OUT_OF_DOMAIN),
        ("pretrained", "scratch", IN_DOMAIN),
    ]
    comp = compare(rows, pairs, n_boot=500, seed=0)
    ood = comp[comp.domain == OUT_OF_DOMAIN].iloc[0]
    assert ood.effect > 0.2 and ood.ci_low > 0
    assert ood.p_holm == pytest.approx(min(1.0, 2 * ood.p))  # two tests in the family
    assert ood.seeds_favouring_a == 3
    found = findings(comp, ["infarct"])
    text = found[found.finding.str.startswith("a")].text.iloc[0]
    assert text.startswith("pretrained vs scratch out of domain: better")
    assert "3 seeds" in text
    assert "not run" in found[found.finding.str.startswith("c")].text.iloc[0]
    # a study of baselines only (nothing to compare) still writes its findings table
    none = findings(compare(rows, [], n_boot=10, seed=0), ["infarct"])
    assert len(none) == 3 and none.text.str.startswith("not run").all()


def test_arms_scored_on_different_cases_are_refused() -> None:
    rows = _rows(np.random.default_rng(2))
    rows = rows[~((rows.arm == "bad") & (rows.case == "sitea_3"))]
    with pytest.raises(NeuroFMError, match="same seeds and cases"):
        compare(rows, [Pair("infarct", OUT_OF_DOMAIN, "good", "bad", "ssl")], 50, 0)


def test_a_task_of_your_own_joins_the_grid_from_its_file(tmp_path: Path) -> None:
    task_file = Path(__file__).parents[1] / "docs" / "examples" / "any_lesion" / "any_lesion.toml"
    recipe_file = _recipe(
        tmp_path, TINY_RECIPE + '[tasks.any_lesion]\nobjective = "mae"\nhead = "linear"\n'
    )
    with pytest.raises(NeuroFMError, match="unknown task"):
        text = TINY_RECIPE.replace("[tasks.infarct]", "[tasks.glioma]")
        load_recipe(_recipe(tmp_path, text, "glioma.toml"))
    get_task(str(task_file))  # as `neurofm study --tasks FILE` does before reading the recipe
    recipe = load_recipe(recipe_file)
    grid = make_grid(["scratch", "prior"], ["tiny"], ["all"], [str(task_file)], recipe)
    assert grid.tasks == ("any_lesion",)
    with pytest.raises(NeuroFMError, match="no hand-feature rule"):
        make_grid(["scratch", "hand"], ["tiny"], ["all"], [str(task_file)], recipe)


def test_cli_default_arms_are_the_grid_default() -> None:
    """The CLI spells its default without importing torch; it must not drift from the grid's."""
    import inspect

    from neurofm.cli.cmd_study import study
    from neurofm.study.grid import DEFAULT_ARMS

    default = inspect.signature(study).parameters["arms"].default.default
    assert default.split(",") == list(DEFAULT_ARMS)


def test_a_run_made_before_a_setting_existed_is_reused_at_its_default(tmp_path: Path) -> None:
    """Adding a FinetuneSettings field must not make every finished run look 'other settings'."""
    from dataclasses import asdict, replace

    from safetensors.torch import load_file

    from neurofm.runfiles import load_finetune_config, write_model_files
    from neurofm.study.runner import reusable
    from neurofm.train.settings import FinetuneSettings
    from test_explain_cli import make_run

    run = make_run(tmp_path / "run", "infarct", "mil")
    old = asdict(FinetuneSettings(head="mil"))
    del old["mil_head_only"]  # as written before the field was added
    weights = load_file(run / "model.safetensors")
    write_model_files(run, weights, replace(load_finetune_config(run), recipe=old))
    assert reusable(run, FinetuneSettings(head="mil"))
    with pytest.raises(NeuroFMError, match="mil_head_only False"):
        reusable(run, FinetuneSettings(head="mil", mil_head_only=True))


def test_a_run_started_from_the_same_weights_elsewhere_is_reused(tmp_path: Path) -> None:
    """A study folder reusing another's pretraining runs (links, copies) reuses its finetunings;
    a pretraining run with other weights under the same name is refused."""
    import shutil
    from dataclasses import asdict, replace

    from safetensors.torch import load_file

    from neurofm.runfiles import load_finetune_config, write_model_files
    from neurofm.study.runner import reusable
    from neurofm.train.settings import FinetuneSettings
    from test_explain_cli import make_run

    made_from = make_run(tmp_path / "a" / "pretrain", "infarct", "mil")
    copy = tmp_path / "b" / "pretrain"
    shutil.copytree(made_from, copy)
    other = make_run(tmp_path / "c" / "pretrain", "infarct", "mil", seed=1)
    run = make_run(tmp_path / "run", "infarct", "mil")
    weights = load_file(run / "model.safetensors")
    recipe = asdict(FinetuneSettings(head="mil", init=str(made_from)))
    write_model_files(run, weights, replace(load_finetune_config(run), recipe=recipe))
    assert reusable(run, FinetuneSettings(head="mil", init=str(copy)))
    with pytest.raises(NeuroFMError, match="init"):
        reusable(run, FinetuneSettings(head="mil", init=str(other)))
    with pytest.raises(NeuroFMError, match="init"):
        reusable(run, FinetuneSettings(head="mil", init="scratch"))


def test_a_recipe_at_another_spacing_keeps_its_field_of_view() -> None:
    from neurofm.demo import DemoSettings

    base = load_recipe()
    assert base.at_spacing(4.0) == base and base.at_spacing(4.0).hash == base.hash
    three = base.at_spacing(3.0)
    sizes = (three.pretrain_patch, three.finetune_input_size, three.finetune_patch)
    assert sizes == (48, 64, 48)  # 128/192/128 mm at 4 mm -> 144/192/144 mm (multiples of 16)
    coarse = base.at_spacing(8.0)  # never below the backbones' smallest patch
    assert (coarse.pretrain_patch, coarse.finetune_input_size, coarse.finetune_patch) == (32,) * 3
    two = base.at_spacing(2.0)
    assert (two.pretrain_patch, two.finetune_input_size, two.finetune_patch) == (64, 96, 64)
    # development round 5's 3 mm variant recipe is exactly this for its base (docs/model-quality.md)
    variant = load_recipe(
        str(Path(__file__).parents[1] / "docs/examples/dev-round-5/resolution-3mm.toml")
    )
    round3 = load_recipe("fomo25-demo-round3")
    assert replace(variant, name=round3.name, source=round3.source) == round3.at_spacing(3.0)
    demo = DemoSettings(spacing=3.0).recipe()
    assert (demo.spacing, demo.finetune_input_size, demo.finetune_patch) == (3.0, 64, 48)
    large = replace(base, backbone="large").at_spacing(3.0)  # the large preset's divisor is 32
    assert (large.pretrain_patch, large.finetune_input_size, large.finetune_patch) == (64, 64, 64)
    with pytest.raises(NeuroFMError, match="--spacing"):
        base.at_spacing(0.0)
