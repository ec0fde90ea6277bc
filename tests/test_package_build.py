"""End to end with a real (tiny, untrained) finetuned run, from the command line:
build -> info -> verify -> run -> export (FOMO25 predict.py) -> benchmark with a broken entrant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from neurofm.cli import app
from neurofm.data.preprocess import PreprocessParams
from neurofm.models import build_task_model
from neurofm.models.config import TaskModelConfig, UNetConfig
from neurofm.tasks import get_task
from neurofm.train.checkpoint import save_checkpoint
from test_package_runner import MASK_SCRIPT, make_package

pytestmark = pytest.mark.slow  # five model loads in fresh sandboxed interpreters
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])


def tiny_run(folder: Path, task: str) -> Path:
    """A finetuned run folder as ``neurofm finetune`` writes it, with random tiny weights."""
    spec = get_task(task)
    torch.manual_seed(0)
    backbone = UNetConfig(in_channels=spec.n_channels, features=(4, 8), blocks=(1, 1))
    cfg = TaskModelConfig(backbone, kind=spec.kind)
    config = {
        "kind": "finetune",
        "task": task,
        "model": cfg.to_dict(),
        "input_sequences": list(spec.channel_slots),
        "preprocess": PreprocessParams(spacing=(4.0, 4.0, 4.0)).to_dict(),
        "input_size": [16, 16, 16],
        "patch_size": [16, 16, 16],
        "target": {"mean": 50.0, "std": 10.0},
        "threshold": 0.5,
        "init": "scratch",
    }
    return save_checkpoint(folder, build_task_model(cfg).state_dict(), config)


def mening_case(folder: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    head = np.zeros((20, 22, 18), np.float32)
    head[3:-3, 3:-3, 3:-3] = 1
    for seq in ("dwi_b1000", "flair", "t2s"):
        data = head * rng.uniform(40, 100, head.shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, AFFINE), str(folder / f"{seq}.nii.gz"))
    label = np.zeros(head.shape, np.uint8)
    label[8:12, 8:12, 6:10] = 1
    nib.save(nib.Nifti1Image(label, AFFINE), str(folder / "label.nii.gz"))
    return folder


def cli(*args: str | Path) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def test_build_verify_run_export_benchmark(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run", "meningioma")
    split = tmp_path / "data" / "test"
    for i in range(2):
        mening_case(split / f"case{i}", seed=i)
    (split / "labels.csv").write_text("case,site\ncase0,A\ncase1,B\n")
    sample = mening_case(tmp_path / "sample", seed=9)
    pkg = tmp_path / "pkg"

    out = cli("package", "build", run, "--out", pkg, "--sample", sample, "--id", "tiny-men")
    assert "built package tiny-men 1.0.0 (meningioma)" in out
    manifest = (pkg / "manifest.yaml").read_text()
    assert "- - swi\n    - t2s" in manifest  # the run's "swi|t2s" channel is a one-of group
    assert "label.nii.gz" not in manifest  # the sample carries inputs only
    assert "entrypoint:\n  - python\n  - -m\n  - neurofm.packages.infer" in manifest

    archive = tmp_path / "pkg.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(pkg, arcname="tiny-men")
    assert "ok (6 files match their sha256)" in cli("package", "info", archive)
    assert "verified" in cli("package", "verify", archive)

    preds = tmp_path / "preds"
    out = cli("package", "run", pkg, "--input", split, "--output", preds)
    assert "2 output(s) written" in out
    got = nib.load(str(preds / "case0.nii.gz"))
    assert got.shape == (20, 22, 18)
    np.testing.assert_allclose(got.affine, AFFINE)

    # The same model run in this process, outside any sandbox, gives the same mask.
    from neurofm.predict import load_predictor, predict_case_dir

    direct = predict_case_dir(load_predictor(run, "cpu"), split / "case0", tmp_path / "direct")
    np.testing.assert_array_equal(np.asarray(nib.load(str(direct)).dataobj), got.get_fdata())

    fomo = tmp_path / "fomo"
    cli("package", "export", pkg, "--fomo25", "--out", fomo, "--no-build-wheel")
    assert {p.name for p in fomo.iterdir()} == {
        "predict.py", "Apptainer.def", "README.md", "manifest.yaml", "model", "wheels",
        "selftest", "requirements.txt",
    }  # fmt: skip
    definition = (fomo / "Apptainer.def").read_text()
    assert "From: python:3.11-slim" in definition
    assert "pip install --no-cache-dir --no-deps /app/wheels/*.whl" in definition
    assert "predict.py /app/predict.py" in definition
    assert "Arguments: --dwi_b1000 PATH --flair PATH [--swi PATH | --t2s PATH]" in definition
    case = split / "case1"
    challenge = tmp_path / "challenge" / "case1_seg.nii.gz"
    proc = subprocess.run(
        [sys.executable, fomo / "predict.py", "--flair", case / "flair.nii.gz",
         "--dwi_b1000", case / "dwi_b1000.nii.gz", "--t2s", case / "t2s.nii.gz",
         "--output", challenge, "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    exported = nib.load(str(challenge))
    np.testing.assert_array_equal(
        exported.get_fdata(), nib.load(str(preds / "case1.nii.gz")).get_fdata()
    )
    np.testing.assert_allclose(exported.affine, AFFINE)

    # Benchmark: the real package, a different (fake) one, and a tampered copy.
    fake = make_package(tmp_path, MASK_SCRIPT, task="meningioma")
    tampered = tmp_path / "tampered"
    subprocess.run(["cp", "-r", str(pkg), str(tampered)], check=True)
    (tampered / "model" / "model.safetensors").write_bytes(b"not the weights")
    bench = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        ["benchmark", str(pkg), str(fake), str(tampered), "--data", str(split),
         "--out", str(bench), "--n-boot", "20"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runtime = pd.read_csv(bench / "results" / "runtime.csv")
    assert list(runtime["model"]) == ["tiny-men", "fake", "tiny-men-2"]
    assert list(runtime["status"]) == ["ok", "ok", "refused"]
    assert "model/model.safetensors: sha256" in runtime["error"].iloc[2]
    assert (runtime["peak_rss_mb"].iloc[:2] > 0).all()
    assert runtime["s_per_case"].iloc[0] > 0
    scores = pd.read_csv(bench / "results" / "results.csv", dtype={"case": str})
    assert set(scores["model"]) == {"tiny-men", "fake"}
    assert set(scores["case"]) == {"case0", "case1"}
    dice = scores[(scores.model == "fake") & (scores.metric == "dice")].set_index("case")["value"]
    flair = nib.load(str(split / "case0" / "flair.nii.gz")).get_fdata()
    label = nib.load(str(split / "case0" / "label.nii.gz")).get_fdata() > 0
    pred = flair > flair.mean()
    assert dice["case0"] == pytest.approx(2 * (pred & label).sum() / (pred.sum() + label.sum()))
    assert (bench / "leaderboard" / "leaderboard.csv").is_file()
    assert (bench / "report" / "index.html").is_file()
    info = json.loads((bench / "results" / "run.json").read_text())
    assert info["packages"]["tiny-men-2"]["status"] == "refused"
