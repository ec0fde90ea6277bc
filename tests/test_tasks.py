"""Tasks as data: the task-file loader, what derives from a TaskSpec, and the worst case."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofm.errors import NeuroFMError
from neurofm.evaluate import evaluate_predictions
from neurofm.metrics import METRICS
from neurofm.metrics.segmentation import missing_mask_metrics, segmentation_metrics
from neurofm.results import COLUMNS, case_table
from neurofm.tasks import TASKS, TaskSpec, get_task, load_task_file, with_task

WriteNifti = Callable[..., Path]

USER_TASK = """
name = "mgmt"
title = "MGMT promoter methylation"
kind = "classification"

[inputs]
required = ["t1", "flair"]
one_of = [["t2", "swi"]]

[target]
column = "methylated"

[metrics]
report = ["ap", "auroc"]
primary = "auroc"
"""


def test_builtin_tasks_load_from_their_files() -> None:
    assert list(TASKS) == ["infarct", "meningioma", "brain_age"]
    infarct, men, age = TASKS.values()
    assert infarct.source.endswith("task_files/infarct.toml")
    assert (infarct.kind, infarct.required, infarct.one_of) == (
        "classification",
        ("dwi_b1000", "flair", "adc"),
        (("swi", "t2s"),),
    )
    assert infarct.channel_slots == ("dwi_b1000", "flair", "adc", "swi|t2s")
    assert (infarct.target_column, infarct.value_range, infarct.output_kind) == (
        "label",
        (0.0, 1.0),
        "probability",
    )
    assert (men.mask_name, men.target_column, men.value_range, men.prediction_suffix) == (
        "label.nii.gz",
        None,
        None,
        ".nii.gz",
    )
    assert (age.target_column, age.value_range, age.units) == ("age", (0.0, 120.0), "years")
    # primary metric and its direction come from the file and the metric registry
    assert [t.primary_metric for t in TASKS.values()] == ["auroc", "dice", "mae"]
    assert [t.higher_is_better for t in TASKS.values()] == [True, True, False]
    for spec in TASKS.values():
        assert spec.higher_is_better == METRICS[spec.primary_metric].higher_is_better
        assert all(METRICS[m].task_kind == spec.kind for m in spec.metrics)
    with pytest.raises(AttributeError):
        infarct.name = "x"  # type: ignore[misc]


def test_user_task_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.toml"
    path.write_text(USER_TASK)
    spec = get_task(path)
    assert spec == get_task(str(path)) == load_task_file(path)
    assert get_task(spec) is spec
    # the primary metric goes first whatever order the report lists
    assert (spec.name, spec.metrics, spec.target_column) == ("mgmt", ("auroc", "ap"), "methylated")
    assert spec.value_range == (0.0, 1.0)  # a probability's range when the file gives none
    assert spec.select({"t1", "flair", "swi", "adc"}) == ["t1", "flair", "swi"]
    with pytest.raises(NeuroFMError, match=r"unknown task 'nope' \(known: infarct, meningioma"):
        get_task("nope")
    with pytest.raises(NeuroFMError, match=r"absent.toml: unreadable task file"):
        get_task(tmp_path / "absent.toml")
    # a copy of a built-in file may keep its name; different facts under that name may not
    copy = tmp_path / "infarct.toml"
    copy.write_text(Path(TASKS["infarct"].source).read_text())
    assert with_task(get_task(copy))["infarct"] == get_task(copy)
    copy.write_text(copy.read_text().replace('primary = "auroc"', 'primary = "ap"'))
    with pytest.raises(NeuroFMError, match=r"infarct.toml: name: 'infarct' is a built-in task"):
        with_task(get_task(copy))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('kind = "classification"', 'kind = "ranking"', r"kind: unknown kind 'ranking'"),
        ('"ap", "auroc"]', '"ap", "dice_score"]', r"metrics.report: unknown metric 'dice_score'"),
        ('"ap", "auroc"]', '"ap", "auroc", "mae"]', r"metrics.report: mae scores regression"),
        ('primary = "auroc"', 'primary = "ece"', r"metrics.primary: 'ece' is not in"),
        ('["t1", "flair"]', '["t1", "pd"]', r"inputs.required: unknown sequence 'pd'"),
        ('[["t2", "swi"]]', '[["t2", "t1"]]', r"inputs.one_of: sequence 't1' listed twice"),
        ('column = "methylated"', 'mask = "m.nii.gz"', r"target: a classification task names"),
        ("[target]", "[output]\nrange = [0, 2]\n[target]", r"output.range: a probability lies"),
        ('name = "mgmt"', 'name = "mgmt task"', r"name: 'mgmt task' must be"),
        ('title = "MGMT', 'ttle = "MGMT', r"unknown field\(s\) ttle"),
        ("[metrics]", "[metrics", r"invalid TOML"),
    ],
)
def test_bad_task_file_names_file_and_field(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in USER_TASK
    path = tmp_path / "bad.toml"
    path.write_text(USER_TASK.replace(old, new))
    with pytest.raises(NeuroFMError, match=message) as info:
        load_task_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_regression_range_is_checked(tmp_path: Path) -> None:
    body = (
        Path(TASKS["brain_age"].source)
        .read_text()
        .replace("range = [0.0, 120.0]", "range = [50.0, 10.0]")
    )
    path = tmp_path / "age.toml"
    path.write_text(body)
    with pytest.raises(NeuroFMError, match=r"output.range: expected \[low, high\]"):
        load_task_file(path)
    path.write_text(body.replace("range = [50.0, 10.0]\n", ""))  # a number needs a range
    with pytest.raises(NeuroFMError, match=r"output.range: expected .* got None"):
        load_task_file(path)


# --- the worst case: a missing prediction never scores better than any allowed one -----------


def _number_tasks() -> list[TaskSpec]:
    return [t for t in TASKS.values() if t.value_range is not None]


@pytest.mark.parametrize("task", _number_tasks(), ids=lambda t: t.name)
def test_missing_number_is_never_better_than_an_allowed_one(task: TaskSpec) -> None:
    assert task.value_range is not None
    lo, hi = task.value_range
    allowed = np.linspace(lo, hi, 241)
    refs = np.unique(np.r_[allowed, np.random.default_rng(1).uniform(lo, hi, 200)])
    if task.kind == "classification":
        refs = np.array([0.0, 1.0])
    worst = task.worst_prediction(refs)
    assert ((worst == lo) | (worst == hi)).all()
    # the farthest any allowed prediction can be from each reference
    farthest = np.abs(allowed[None, :] - refs[:, None]).max(axis=1)
    np.testing.assert_allclose(np.abs(worst - refs), farthest)


def _tidy(rows: list[tuple[str, str, str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(COLUMNS))


@pytest.mark.parametrize("task", _number_tasks(), ids=lambda t: t.name)
def test_missing_row_fill_scores_at_most_the_worst_allowed(task: TaskSpec) -> None:
    """Through the results table: a model missing every case against one at the extremes."""
    assert task.value_range is not None and task.reference_row is not None
    lo, hi = task.value_range
    refs = [0.0, 1.0, 1.0, 0.0] if task.kind == "classification" else [lo, hi, 30.0, 90.0, 61.0]
    ref_row, pred_row = task.reference_row, task.case_rows[1]
    rows = []
    for i, r in enumerate(refs):
        for model, pred in (("edge_lo", lo), ("edge_hi", hi)):
            rows.append((model, task.name, "s", f"c{i}", ref_row, r))
            rows.append((model, task.name, "s", f"c{i}", pred_row, pred))
            if task.kind == "regression":
                rows.append((model, task.name, "s", f"c{i}", "abs_error", abs(pred - r)))
    rows.append(("absent", task.name, "s", "c0", ref_row, refs[0]))
    rows.append(("absent", task.name, "s", "c0", pred_row, refs[0]))  # one perfect case
    table = case_table(_tidy(rows), task.name)
    absent = table.models.index("absent")
    assert table.filled[pred_row][absent].tolist() == [False] + [True] * (len(refs) - 1)
    error = np.abs(table.values[pred_row] - table.values[ref_row])
    for i in range(1, len(refs)):
        assert error[absent, i] >= error[:, i].max()


def test_missing_mask_is_never_better_than_any_mask(rng: np.random.Generator) -> None:
    shape, spacing = (9, 8, 5), (1.0, 1.5, 4.0)
    worst = missing_mask_metrics(shape, spacing)
    for _ in range(30):
        ref = rng.random(shape) < rng.uniform(0.0, 0.4)
        pred = rng.random(shape) < rng.uniform(0.0, 0.4)
        got = segmentation_metrics(pred, ref, spacing)
        for name in TASKS["meningioma"].metrics:
            spec = METRICS[name]
            assert spec.goodness([worst[name]])[0] <= spec.goodness([got[name]])[0] + 1e-9


# --- evaluate reads only what it scores -------------------------------------------------------


def test_evaluate_labels_only_reference(tmp_path: Path, write_nifti: WriteNifti) -> None:
    """A FOMO25-style reference: labels.csv (and masks), no input images anywhere."""
    ref = tmp_path / "ref_age"
    ref.mkdir()
    (ref / "labels.csv").write_text("case,site,age\nb1,A,30\nb2,A,70\nb3,B,55\n")
    pred = tmp_path / "pred_age"
    pred.mkdir()
    (pred / "b1.txt").write_text("120\n")  # the farthest allowed prediction for age 30
    (pred / "b2.txt").write_text("72.5")
    ev = evaluate_predictions("brain_age", pred, ref, "m")
    assert ev.missing == ["b3"]
    err = ev.rows[ev.rows.metric == "abs_error"].set_index("case")["value"]
    # b3 (55 years) is missing: scored at 120, the farther end of 0-120, error 65
    assert err.to_dict() == {"b1": 90.0, "b2": 2.5, "b3": 65.0}
    assert set(ev.rows.site) == {"A", "B"}

    ref = tmp_path / "ref_inf"
    ref.mkdir()
    (ref / "labels.csv").write_text("case,site,label\ni1,A,1\ni2,A,0\n")
    pred = tmp_path / "pred_inf"
    pred.mkdir()
    (pred / "i1.txt").write_text("0.75")
    ev = evaluate_predictions(get_task("infarct"), pred, ref)
    probs = ev.rows[ev.rows.metric == "prob"].set_index("case")["value"].to_dict()
    assert probs == {"i1": 0.75, "i2": 1.0} and ev.missing == ["i2"]
    (pred / "i1.txt").write_text("1.5")
    with pytest.raises(NeuroFMError, match=r"i1.txt: output 1.5 outside the allowed range"):
        evaluate_predictions("infarct", pred, ref)

    a = np.zeros((6, 6, 4))
    a[1:4, 1:4, 1:3] = 1
    b = np.zeros((6, 6, 4))
    b[2:5, 1:4, 1:3] = 1
    write_nifti("ref_men/m1/label.nii.gz", a)
    write_nifti("ref_men/m2/label.nii.gz", a)
    (tmp_path / "ref_men" / "labels.csv").write_text("case,site\nm1,A\nm2,A\n")
    write_nifti("pred_men/m1.nii.gz", b)
    ev = evaluate_predictions("meningioma", tmp_path / "pred_men", tmp_path / "ref_men")
    wide = ev.rows.pivot_table(index="case", columns="metric", values="value")
    assert wide.loc["m1", "dice"] == pytest.approx(2 * 12 / (18 + 18))  # hand count
    diagonal = float(np.sqrt((6 * 2.0) ** 2 + (6 * 2.0) ** 2 + (4 * 3.0) ** 2))
    assert (wide.loc["m2", "dice"], wide.loc["m2", "hd95"]) == (0.0, pytest.approx(diagonal))
    write_nifti("pred_men/m1.nii.gz", b[:, :, :3])
    with pytest.raises(NeuroFMError, match=r"m1.nii.gz: mask shape \(6, 6, 3\) differs"):
        evaluate_predictions("meningioma", tmp_path / "pred_men", tmp_path / "ref_men")
    (tmp_path / "ref_men" / "m2" / "label.nii.gz").unlink()
    with pytest.raises(NeuroFMError, match=r"m2/label.nii.gz: file does not exist"):
        evaluate_predictions("meningioma", tmp_path / "pred_men", tmp_path / "ref_men")


# --- --task NAME_OR_FILE in evaluate and leaderboard ------------------------------------------


def test_evaluate_and_leaderboard_take_a_task_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from neurofm.cli import main

    task_file = tmp_path / "mgmt.toml"
    task_file.write_text(USER_TASK)
    ref = tmp_path / "ref"
    ref.mkdir()
    labels = [1, 0, 1, 0, 1, 0, 0, 1]
    rows = "".join(f"p{i},A,{y}\n" for i, y in enumerate(labels))
    (ref / "labels.csv").write_text("case,site,methylated\n" + rows)
    outs = []
    for model, probs in (("good", [0.9, 0.2, 0.7, 0.4, 0.8, 0.1, 0.3, 0.6]), ("flip", None)):
        pred = tmp_path / f"pred_{model}"
        pred.mkdir()
        for i, y in enumerate(labels):
            (pred / f"p{i}.txt").write_text(str(probs[i] if probs else 1 - y))
        out = tmp_path / f"eval_{model}"
        argv = ["evaluate", "--task", str(task_file), "--predictions", str(pred)]
        main([*argv, "--references", str(ref), "--out", str(out), "--model", model])
        outs.append(out)
    summary = json.loads((outs[0] / "summary.json").read_text())
    assert summary["task"] == "mgmt" and summary["metrics"]["auroc"]["value"] == 1.0
    assert list(summary["metrics"]) == ["auroc", "ap"]  # the task file's metrics, primary first
    board = tmp_path / "board"
    argv = ["leaderboard", *map(str, outs), "--task", str(task_file), "--out", str(board)]
    main([*argv, "--n-boot", "20"])
    ranked = json.loads((board / "leaderboard.json").read_text())
    assert "mgmt" in json.dumps(ranked) and "auroc" in capsys.readouterr().out
    # without the task file the tidy table's task is unknown: one line, exit 2
    with pytest.raises(SystemExit) as info:
        main(["leaderboard", str(outs[0]), "--out", str(tmp_path / "b2"), "--n-boot", "20"])
    assert info.value.code == 2
    assert "unknown task 'mgmt'" in capsys.readouterr().err
