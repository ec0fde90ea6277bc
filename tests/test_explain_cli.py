"""`neurofm explain` on hand-made tiny runs over the tiny benchmark: every task, every head."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.data.preprocess import PreprocessParams
from neurofm.models import TaskModelConfig, build_task_model, get_preset
from neurofm.runconfig import FinetuneRunConfig
from neurofm.runfiles import write_model_files
from neurofm.tasks import get_task

torch.set_num_threads(1)


def make_run(
    folder: Path, task: str, head: str = "linear", *, bias: float | None = None, seed: int = 0
) -> Path:
    """A finetuned run with random weights (explaining needs no training). A fresh voxel head
    starts at a 1 % prior and predicts no region, so segmentation heads get a bias of +2 by
    default: a region to explain."""
    if bias is None:
        bias = 2.0 if get_task(task).kind == "segmentation" else 0.0
    spec = get_task(task)
    slots = list(spec.channel_slots)
    cfg = TaskModelConfig(get_preset("tiny", in_channels=len(slots)), kind=spec.kind, head=head)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    model = build_task_model(cfg)
    if bias:
        torch.nn.init.constant_(model.head.bias, bias)  # type: ignore[arg-type]
    config = FinetuneRunConfig(
        task=task,
        model=cfg,
        input_sequences=slots,
        preprocess=PreprocessParams(spacing=(8.0, 8.0, 8.0)),
        input_size=(32, 32, 32),
        patch_size=(32, 32, 32),
    )
    folder.mkdir(parents=True)
    write_model_files(folder, model.state_dict(), config)
    return folder


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def first_case(root: Path, task: str) -> Path:
    split = root / task / "test"
    return sorted(d for d in split.iterdir() if d.is_dir())[0]


@pytest.mark.parametrize(
    ("task", "head"),
    [("infarct", "linear"), ("infarct", "mil"), ("brain_age", "linear"), ("meningioma", "linear")],
)
def test_explain_writes_maps_in_the_input_geometry(
    tiny_benchmark: Path, tmp_path: Path, task: str, head: str
) -> None:
    model = make_run(tmp_path / "run", task, head)
    case = first_case(tiny_benchmark, task)
    out = tmp_path / "maps"
    methods = "gradcam,hirescam" if head == "linear" else "layercam,integrated_gradients"
    with_road = task == "meningioma"  # ROAD is the slow part: once is enough here
    args = ["explain", "--model", str(model), "--input", str(case), "--method", methods]
    args += ["--out", str(out), "--samples", "2", "--road" if with_road else "--no-road"]
    assert run(*args) == 0
    ref = nib.load(str(sorted(case.glob("*.nii.gz"))[0]))
    names = sorted(p.name for p in (out / case.name).glob("*.nii.gz"))
    assert len(names) == 2
    for name in names:
        img = nib.load(str(out / case.name / name))
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        assert (out / case.name / name.replace(".nii.gz", ".png")).stat().st_size > 1000
    rows = list(csv.DictReader((out / "maps.csv").open()))
    assert len(rows) == 2
    assert all(np.isfinite(float(r["road"])) for r in rows) if with_road else "road" not in rows[0]
    # nothing already written is overwritten
    assert run("explain", "--model", str(model), "--input", str(case), "--out", str(out)) == 2


@pytest.mark.slow  # 16 ROAD scores and a 9-frame GIF: about 40 s on the shared CPU
def test_layer_all_animates_every_stage_and_metacam_searches(
    tiny_benchmark: Path, tmp_path: Path
) -> None:
    model = make_run(tmp_path / "run", "meningioma")
    case = first_case(tiny_benchmark, "meningioma")
    out = tmp_path / "maps"
    assert (
        run(
            "explain",
            "--model",
            str(model),
            "--input",
            str(case),
            "--method",
            "gradcam,smoothgrad",
            "--layer",
            "all",
            "--metacam",
            "5,25",
            "--samples",
            "2",
            "--out",
            str(out),
        )
        == 0
    )
    gif = out / case.name / "camanim_gradcam.gif"
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 1 + 4 + 3 + 1  # stem, 4 encoder, 3 decoder stages, final up
    assert (out / case.name / "metacam.nii.gz").is_file()
    search = json.loads((out / "metacam.json").read_text())[case.name]
    assert len(search["scores"]) == 3 * 2  # 3 combinations of 2 maps x 2 values of k
    assert set(search["cre"]) == {"gradcam@decoder.final_up", "smoothgrad"}


def test_bad_method_layer_and_empty_region_are_one_line_errors(
    tiny_benchmark: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_run(tmp_path / "run", "meningioma")
    case = first_case(tiny_benchmark, "meningioma")
    out = tmp_path / "maps"
    assert (
        run(
            "explain",
            "--model",
            str(model),
            "--input",
            str(case),
            "--method",
            "guided",
            "--out",
            str(out),
        )
        == 2
    )
    assert "valid: gradcam" in capsys.readouterr().err
    assert (
        run(
            "explain",
            "--model",
            str(model),
            "--input",
            str(case),
            "--layer",
            "conv9",
            "--out",
            str(out),
        )
        == 2
    )
    assert "valid: all, encoder.stem" in capsys.readouterr().err
    wrong_task = first_case(tiny_benchmark, "brain_age")
    assert run("explain", "--model", str(model), "--input", str(wrong_task), "--out", str(out)) == 2
    capsys.readouterr()
    silent = make_run(tmp_path / "silent", "meningioma", bias=-50.0)
    assert run("explain", "--model", str(silent), "--input", str(case), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "empty region" in err and case.name in err
    assert not out.exists() and not list(tmp_path.glob(".maps.tmp-*"))


def test_bench_explain_writes_timings(tiny_benchmark: Path, tmp_path: Path) -> None:
    model = make_run(tmp_path / "run", "infarct")
    out = tmp_path / "explain.json"
    case = first_case(tiny_benchmark, "infarct")
    args = ["bench", "explain", "--model", str(model), "--case", str(case), "--out", str(out)]
    assert run(*args, "--repeats", "1") == 0
    result = json.loads(out.read_text())
    assert set(result["seconds"]) == {"gradcam", "all_gradient_cams_all_stages", "road_5_fractions"}
    assert all(v > 0 for v in result["seconds"].values())
    assert result["road_fractions"] == [0.02, 0.05, 0.1, 0.2, 0.4]
    assert result["model"] == str(model) and result["model_input_shape"] == [1, 4, 32, 32, 32]
