"""Pretrain / finetune / predict / evaluate through the CLI on the tiny benchmark.

Covers every objective, every adaptation mode, channel adaptation of pretrained weights,
determinism, resume after kill -9, outputs in the input geometry, and bad input.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from neurofm.cli import main
from neurofm.train.runlog import read_log

FAST = ["--steps", "3", "--batch-size", "2", "--workers", "0", "--threads", "1"]


def cli(*args: str) -> int:
    """Run the CLI in-process; returns the exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture(scope="module")
def pretrained(tiny_prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "mae"
    assert cli("pretrain", tiny_prepared, "--objective", "mae", "--out", out, *FAST) == 0
    return out


@pytest.mark.parametrize("objective", ["contrastive", "hybrid", "modality"])
def test_every_objective_trains(objective: str, tiny_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / objective
    assert cli("pretrain", tiny_prepared, "--objective", objective, "--out", out, *FAST) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "pretrain" and cfg["objective"] == objective
    rows = read_log(out, "train")
    assert rows and all(np.isfinite(r["loss"]) for r in rows)


def test_pretrain_checkpoint_describes_itself(pretrained: Path) -> None:
    cfg = json.loads((pretrained / "config.json").read_text())
    for key in ("backbone", "preprocess", "recipe", "code_revision", "data_fingerprint"):
        assert key in cfg, key
    assert cfg["preprocess"]["spacing"] == [8.0, 8.0, 8.0]
    weights = load_file(str(pretrained / "model.safetensors"))
    assert any(k.startswith("encoder.") for k in weights)
    assert weights["encoder.stem.conv.weight"].shape[1] == 1  # single-channel pretraining


def test_same_seed_same_weights(tiny_prepared: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert cli("pretrain", tiny_prepared, "--out", tmp_path / name, *FAST, "--seed", "4") == 0
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_thread_loader_trains_reproducibly_and_is_recorded(
    tiny_prepared: Path, tmp_path: Path
) -> None:
    threaded = [*FAST[:4], "--workers", "2", "--threads", "1", "--loader", "threads"]
    for name in ("a", "b"):
        assert cli("pretrain", tiny_prepared, "--out", tmp_path / name, *threaded) == 0
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["recipe"]["loader"] == "threads"


@pytest.mark.parametrize("mode", ["full", "probe", "adapter"])
def test_finetune_modes(mode: str, pretrained: Path, tiny_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / mode
    args = ["--task", "infarct", "--init", pretrained, "--mode", mode, "--out", out]
    assert cli("finetune", tiny_prepared, *args, *FAST, "--input-size", "32") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["input_sequences"] == ["dwi_b1000", "flair", "adc", "swi|t2s"]
    pre = load_file(str(pretrained / "model.safetensors"))
    # the last checkpoint, not the run's model: early stopping may keep the step-0 weights
    ft = load_file(str(out / "checkpoints" / "last" / "model.safetensors"))
    # channel adaptation: 1 pretrained input channel -> 4: DWI gets the kernel, the rest zero
    stem = "encoder.stem.conv.weight"
    assert ft[stem].shape[1] == 4
    inner = [k for k in pre if k.startswith("encoder.") and k != stem and k in ft]
    changed = [k for k in inner if not torch.equal(pre[k], ft[k])]
    if mode == "full":
        assert changed, "full finetuning must update the encoder"
    else:
        assert not changed, f"{mode} must keep the pretrained encoder frozen: {changed[:3]}"
        torch.testing.assert_close(ft[stem][:, :1], pre[stem])
        assert float(ft[stem][:, 1:].abs().sum()) == 0.0
    assert any("adapters" in k for k in ft) == (mode == "adapter")


def test_mil_head_loads_the_pretrained_decoder(
    pretrained: Path, tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path
) -> None:
    run = tmp_path / "mil"
    args = ["--task", "infarct", "--init", pretrained, "--head", "mil", "--out", run]
    # 0 steps of training: what the run saves is what it loaded
    assert (
        cli("finetune", tiny_prepared, *args, *FAST[2:], "--steps", "0", "--input-size", "32") == 0
    )
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["head"] == "mil" and cfg["head_init"] == "none (decoder head)"
    pre = load_file(str(pretrained / "model.safetensors"))
    ft = load_file(str(run / "model.safetensors"))
    decoder = [k for k in pre if k.startswith("decoder.")]
    assert decoder and all(torch.equal(pre[k], ft[k]) for k in decoder)
    split = tiny_benchmark / "infarct" / "test"
    assert cli("predict", "--task", "infarct", "--model", run, "--input", split,
               "--output", tmp_path / "p") == 0  # fmt: skip
    values = [float(p.read_text()) for p in (tmp_path / "p").glob("*.txt")]
    assert values and all(0.0 <= v <= 1.0 for v in values)


def test_select_last_keeps_the_final_step_and_best_the_validated_one(
    tiny_prepared: Path, tmp_path: Path
) -> None:
    """``--select last`` trains every step (no early stopping) and keeps the final weights;
    ``best`` keeps the validation-selected checkpoint."""
    for select in ("best", "last"):
        out = tmp_path / select
        args = ["--task", "brain_age", "--out", out, "--select", select, "--steps", "8"]
        args += ["--eval-every", "2", "--patience", "1", "--lr", "0.05", "--input-size", "32"]
        assert cli("finetune", tiny_prepared, *args, *FAST[2:]) == 0
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["recipe"]["select"] == select
        kept = load_file(str(out / "model.safetensors"))
        ckpt = load_file(str(out / "checkpoints" / select / "model.safetensors"))
        assert all(torch.equal(kept[k], ckpt[k]) for k in kept)
        if select == "last":
            assert cfg["steps"] == 8 and max(r["step"] for r in read_log(out, "train")) == 8
    assert cli("finetune", tiny_prepared, "--task", "brain_age", "--out", tmp_path / "x",
               "--select", "median", *FAST) == 2  # fmt: skip


def test_input_mix_starts_the_pretrained_kernel_on_the_named_channels(
    pretrained: Path, tiny_prepared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mix"
    base = ["--task", "infarct", "--init", pretrained, *FAST[2:], "--input-size", "32"]
    mix = ["--input-mix", "dwi_b1000=1", "--input-mix", "adc=-0.5"]
    assert cli("finetune", tiny_prepared, *base, "--out", out, "--steps", "0", *mix) == 0
    stem = "encoder.stem.conv.weight"
    pre = load_file(str(pretrained / "model.safetensors"))[stem][:, 0]
    ft = load_file(str(out / "model.safetensors"))[stem]  # 0 steps: what was loaded
    for channel, weight in enumerate((1.0, 0.0, -0.5, 0.0)):  # dwi, flair, adc, swi|t2s
        torch.testing.assert_close(ft[:, channel], pre * weight)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"]["input_mix"] == {"dwi_b1000": 1.0, "adc": -0.5}
    for bad in (["--input-mix", "adc"], ["--input-mix", "t1=1"], ["--input-mix", "adc=x"]):
        assert cli("finetune", tiny_prepared, *base, "--out", tmp_path / "x", *bad) == 2
    scratch = ["--task", "infarct", "--out", tmp_path / "y", "--input-mix", "adc=1", *FAST]
    assert cli("finetune", tiny_prepared, *scratch) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_scratch_probe_is_refused(tiny_prepared: Path, tmp_path: Path) -> None:
    args = ["--task", "infarct", "--mode", "probe", "--out", tmp_path / "x", *FAST]
    assert cli("finetune", tiny_prepared, *args) == 2


def test_predict_evaluate_geometry(
    pretrained: Path, tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path
) -> None:
    run = tmp_path / "men"
    args = ["--task", "meningioma", "--init", pretrained, "--out", run, *FAST]
    assert cli("finetune", tiny_prepared, *args) == 0
    split = tiny_benchmark / "meningioma" / "test_sitea"
    preds = tmp_path / "preds"
    assert cli("predict", "--task", "meningioma", "--model", run, "--input", split,
               "--output", preds) == 0  # fmt: skip
    cases = sorted(p.name for p in split.iterdir() if p.is_dir())
    for case in cases:
        out = nib.load(str(preds / f"{case}.nii.gz"))
        ref = nib.load(str(split / case / "flair.nii.gz"))
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-4)
    ev = tmp_path / "ev"
    assert cli("evaluate", "--task", "meningioma", "--predictions", preds, "--references",
               split, "--out", ev, "--n-boot", "50") == 0  # fmt: skip
    metrics = pd.read_csv(ev / "metrics.csv")
    assert sorted(metrics["case"]) == cases
    # independent Dice of the first case
    case = cases[0]
    p = np.asarray(nib.load(str(preds / f"{case}.nii.gz")).dataobj) > 0
    r = np.asarray(nib.load(str(split / case / "label.nii.gz")).dataobj) > 0
    expect = 1.0 if p.sum() + r.sum() == 0 else 2 * (p & r).sum() / (p.sum() + r.sum())
    got = float(metrics.loc[metrics["case"] == case, "dice"].iloc[0])
    assert got == pytest.approx(expect, abs=1e-9)
    summary = json.loads((ev / "summary.json").read_text())
    assert set(summary["metrics"]) >= {"dice", "nsd", "hd95"}
    # results are never overwritten silently
    assert cli("evaluate", "--task", "meningioma", "--predictions", preds, "--references",
               split, "--out", ev) == 2  # fmt: skip


def test_regression_and_classification_predictions(
    pretrained: Path, tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path
) -> None:
    for task in ("brain_age", "infarct"):
        run = tmp_path / task
        pool = "avgmax" if task == "infarct" else "avg"
        args = ["--task", task, "--init", pretrained, "--out", run, "--input-size", "32",
                "--pool", pool]  # fmt: skip
        assert cli("finetune", tiny_prepared, *args, *FAST) == 0
        split = tiny_benchmark / task / "test"
        assert cli("predict", "--task", task, "--model", run, "--input", split,
                   "--output", tmp_path / f"p_{task}") == 0  # fmt: skip
        assert json.loads((run / "config.json").read_text())["model"]["pool"] == pool
        values = [float(p.read_text()) for p in (tmp_path / f"p_{task}").glob("*.txt")]
        assert len(values) == len([p for p in split.iterdir() if p.is_dir()])
        if task == "infarct":
            assert all(0.0 <= v <= 1.0 for v in values)


def test_bad_input_is_one_line_error(
    pretrained: Path, tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path, capsys
) -> None:
    assert cli("finetune", tiny_prepared, "--task", "tumour", "--out", tmp_path / "t") == 2
    assert "unknown task" in capsys.readouterr().err
    # a run folder that already holds results is refused
    assert cli("pretrain", tiny_prepared, "--out", pretrained, *FAST) == 2
    assert "already holds results" in capsys.readouterr().err
    # a checkpoint whose architecture differs
    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads((pretrained / "config.json").read_text())
    cfg["backbone"]["features"] = [4, 8, 16, 32]
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "model.safetensors").write_bytes((pretrained / "model.safetensors").read_bytes())
    args = ["--task", "infarct", "--init", other, "--out", tmp_path / "o", *FAST]
    assert cli("finetune", tiny_prepared, *args) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and len(err.strip().splitlines()) == 1
    # a case missing a required sequence at prediction time
    run = tmp_path / "inf"
    assert cli("finetune", tiny_prepared, "--task", "infarct", "--out", run, *FAST,
               "--input-size", "32") == 0  # fmt: skip
    case = next(p for p in (tiny_benchmark / "infarct" / "test").iterdir() if p.is_dir())
    broken = tmp_path / "broken" / case.name
    broken.mkdir(parents=True)
    for f in case.iterdir():
        if not f.name.startswith("adc"):
            (broken / f.name).write_bytes(f.read_bytes())
    assert cli("predict", "--task", "infarct", "--model", run, "--input", broken,
               "--output", tmp_path / "bp") == 2  # fmt: skip
    assert "adc" in capsys.readouterr().err


def test_resume_after_kill_9(tiny_prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "neurofm.cli", "pretrain", str(tiny_prepared), "--out", str(out),
           "--steps", "400", "--batch-size", "2", "--workers", "0", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = out / "checkpoints" / "last" / "config.json"
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), "no checkpoint appeared before the deadline"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = json.loads(marker.read_text())["step"]
    assert 0 < step < 400
    assert not (out / "model.safetensors").exists()
    resumed = subprocess.run(
        [*cmd[:-6], "--steps", "60", "--batch-size", "2", "--workers", "0", "--resume"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["steps"] == 60
    steps = [r["step"] for r in read_log(out, "train")]
    assert steps == sorted(set(steps)) and steps[-1] == 60
