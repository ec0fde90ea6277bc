"""A user-written task file through the whole workflow (docs/own-task.md)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

import neurofm.tasks
from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.task_text import (
    check_task,
    same_task,
    task_file_text,
    task_record,
    task_to_toml,
)
from neurofm.tasks import TASKS, get_task, known_tasks, load_task_file

torch.set_num_threads(1)

EXAMPLE = Path(__file__).parents[1] / "docs" / "examples" / "any_lesion"


def cli(*args: object) -> int:
    """Run the CLI in-process; returns the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.parametrize("name", list(TASKS))
def test_builtin_tasks_write_back_to_the_same_facts(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(task_to_toml(TASKS[name]))
    assert same_task(load_task_file(path), TASKS[name])


def test_only_a_user_task_is_recorded() -> None:
    assert all(task_record(spec) is None for spec in TASKS.values())
    assert (
        task_record(get_task(EXAMPLE / "any_lesion.toml"))
        == (EXAMPLE / "any_lesion.toml").read_text()
    )


def test_the_recorded_text_is_the_users_file_while_it_says_the_same(tmp_path: Path) -> None:
    path = tmp_path / "any_lesion.toml"
    shutil.copyfile(EXAMPLE / "any_lesion.toml", path)
    spec = get_task(path)
    assert task_file_text(spec).startswith("# A made-up task")  # comments kept
    assert get_task("any_lesion") is spec and "any_lesion" in known_tasks()
    path.write_text(path.read_text().replace('primary = "auroc"', 'primary = "ap"'))
    recorded = task_file_text(spec)  # the file changed since: the facts in use are recorded
    assert not recorded.startswith("#")
    assert 'primary = "auroc"' in recorded


def test_a_different_task_file_of_the_same_name_is_refused(tmp_path: Path) -> None:
    spec = get_task(EXAMPLE / "any_lesion.toml")
    other = tmp_path / "any_lesion.toml"
    other.write_text(task_to_toml(spec).replace('"flair"', '"t2"'))
    check_task(EXAMPLE / "any_lesion.toml", spec, "run")
    check_task("any_lesion", spec, "run")
    with pytest.raises(NeuroFMError, match="run: made for a different any_lesion task file"):
        check_task(other, spec, "run")
    with pytest.raises(NeuroFMError, match="run: made for task any_lesion, not infarct"):
        check_task("infarct", spec, "run")
    get_task(EXAMPLE / "any_lesion.toml")  # the example's facts again, for the other tests


def _make_data(bench: Path, out: Path) -> Path:
    path = EXAMPLE / "make_any_lesion.py"
    loader = importlib.util.spec_from_file_location("make_any_lesion", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return Path(module.make(bench, out))


ARMS = {  # name: finetune options (three regimes x two fusions)
    "probe_linear_early": ["--mode", "probe", "--head", "linear", "--steps", "0"],
    "probe_mlp_early": ["--mode", "probe", "--head", "mlp", "--steps", "3"],
    "full_early": ["--mode", "full", "--steps", "3"],
    "probe_linear_late": ["--fusion", "late", "--mode", "probe", "--steps", "0"],
    "probe_mlp_late": ["--fusion", "late", "--mode", "probe", "--head", "mlp", "--steps", "3"],
    "full_late": ["--fusion", "late", "--mode", "full", "--steps", "3"],
}
FAST = ["--input-size", "32", "--batch-size", "2", "--workers", "0", "--threads", "1"]


@pytest.mark.slow
def test_a_user_task_runs_end_to_end(
    tiny_benchmark: Path,
    tiny_prepared: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    task_file = tmp_path / "my_tasks" / "any_lesion.toml"
    task_file.parent.mkdir()
    shutil.copyfile(EXAMPLE / "any_lesion.toml", task_file)
    task_dir = _make_data(tiny_benchmark, tmp_path / "data")
    test_split = task_dir / "test"
    prep = tmp_path / "prep"
    assert cli("prepare", tmp_path / "data", prep, "--task", task_file, "--spacing", "8") == 0
    manifest = json.loads((prep / "any_lesion" / "train" / "manifest.json").read_text())
    assert manifest["task"] == "any_lesion"
    pre = tmp_path / "runs" / "mae"
    assert cli("pretrain", tiny_prepared, "--out", pre, "--steps", "2", "--patch", "32",
               "--batch-size", "2", "--workers", "0", "--threads", "1") == 0  # fmt: skip
    for name, options in ARMS.items():
        run = tmp_path / "runs" / name
        assert cli("finetune", prep, "--task", task_file, "--init", pre, *options, *FAST,
                   "--out", run) == 0  # fmt: skip
        config = json.loads((run / "config.json").read_text())
        assert config["task"] == "any_lesion"
        assert config["task_file"] == task_file.read_text()
        assert config["model"]["fusion"] == name.rsplit("_", 1)[1]
        assert config["recipe"]["mode"] == name.split("_", 1)[0]
    late = json.loads((tmp_path / "runs" / "probe_linear_late" / "config.json").read_text())
    assert late["head_init"].startswith("head initialised by logistic")  # closed-form probe
    assert late["model"]["backbone"]["in_channels"] == 3

    # the run predicts without the task file: the task comes from its config.json
    task_file.rename(task_file.with_suffix(".moved"))
    monkeypatch.setattr(neurofm.tasks, "_IN_USE", {})
    results = []
    for name in ARMS:
        preds = tmp_path / "preds" / name
        assert cli("predict", "--task", "any_lesion", "--model", tmp_path / "runs" / name,
                   "--input", test_split, "--output", preds) == 0  # fmt: skip
        out = tmp_path / "eval" / name
        assert cli("evaluate", "--task", "any_lesion", "--predictions", preds, "--references",
                   test_split, "--model", name, "--out", out, "--n-boot", "200") == 0  # fmt: skip
        labels = pd.read_csv(test_split / "labels.csv")
        probs = [float((preds / f"{c}.txt").read_text()) for c in labels["case"]]
        summary = json.loads((out / "summary.json").read_text())
        want = roc_auc_score(labels["any_lesion"], probs)
        assert summary["metrics"]["auroc"]["value"] == pytest.approx(want)
        strata = pd.read_csv(out / "strata.csv")
        assert set(strata["column"]) == {"(all)", "age", "source"}
        by = strata.set_index("stratum")
        assert by.loc["meningioma", "status"] == "undefined"  # every meningioma case is positive
        infarct = labels["source"] == "infarct"
        want = roc_auc_score(labels["any_lesion"][infarct], np.asarray(probs)[infarct])
        assert by.loc["infarct", "value"] == pytest.approx(want)
        assert (strata.loc[strata["column"] == "age", "n_cases"] == 4).all()
        results.append(out)
    err = capsys.readouterr().err
    assert "labels.csv: age: stratum Q1" in err and "too few for an interval" in err

    stacked = tmp_path / "results"
    stacked.mkdir()
    for f in ("results.csv", "strata.csv"):
        frames = [pd.read_csv(d / f) for d in results]
        pd.concat(frames).to_csv(stacked / f, index=False)
    task_file.with_suffix(".moved").rename(task_file)
    assert cli("report", stacked, "--task", task_file, "--out", tmp_path / "report") == 0
    page = (tmp_path / "report" / "strata.html").read_text()
    assert "any_lesion — probe_mlp_late — by age" in page and "undefined" in page

    pkg = tmp_path / "pkg"
    sample = test_split / "infarct_test_sitea_0000"
    assert cli("package", "build", tmp_path / "runs" / "probe_linear_late", "--task", task_file,
               "--out", pkg, "--sample", sample, "--isolation", "none") == 0  # fmt: skip
    assert same_task(load_task_file(pkg / "task.toml"), get_task(task_file))
    monkeypatch.setattr(neurofm.tasks, "_IN_USE", {})  # as on a machine without the file
    assert cli("package", "verify", pkg, "--isolation", "none") == 0

    changed = tmp_path / "changed" / "any_lesion.toml"
    changed.parent.mkdir()
    changed.write_text(task_file.read_text().replace('primary = "auroc"', 'primary = "ap"'))
    capsys.readouterr()
    assert cli("package", "build", tmp_path / "runs" / "probe_linear_late", "--task", changed,
               "--out", tmp_path / "pkg2", "--sample", sample) == 2  # fmt: skip
    assert "made for a different any_lesion task file" in capsys.readouterr().err
    assert not (tmp_path / "pkg2").exists()
    assert cli("predict", "--task", changed, "--model", pkg, "--input", sample,
               "--output", tmp_path / "pkg_preds") == 2  # fmt: skip
    assert "made for a different any_lesion task file" in capsys.readouterr().err
    assert not (tmp_path / "pkg_preds").exists()
