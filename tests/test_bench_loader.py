"""`neurofm bench loader`: three pipelines on the same data, JSON with consistent ratios."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.throughput.loader import LoaderBenchSettings, run_loader_bench

torch.set_num_threads(1)


def _check(report: dict) -> None:
    res = report["results"]
    assert set(res) == {"neurofm", "monai", "torchio"}
    s = report["settings"]
    for r in res.values():
        assert r["patches"] == s["batches"] * s["batch_size"]
        assert r["patches_per_s"] == pytest.approx(r["patches"] / r["seconds"])
    ratios = report["ratios"]
    ours = res["neurofm"]["patches_per_s"]
    assert ratios["neurofm/monai"] == pytest.approx(ours / res["monai"]["patches_per_s"])
    assert ratios["neurofm/torchio"] == pytest.approx(ours / res["torchio"]["patches_per_s"])
    assert ratios["neurofm/max_others"] == pytest.approx(
        min(ratios["neurofm/monai"], ratios["neurofm/torchio"])
    )
    assert report["machine"]["usable_cores"] >= 1


def test_synthetic_tiny_bench(tmp_path: Path) -> None:
    s = LoaderBenchSettings(
        patch=16, workers=0, batches=2, warmup=1, batch_size=2, samples_per_volume=2
    )
    report = run_loader_bench(s, preset="tiny", cases=2, work=tmp_path / "work")
    _check(report)
    assert report["data"]["source"] == "synthetic" and report["data"]["with_mask"]
    assert report["data"]["subset"] == "meningioma/train"  # only this split was prepared
    assert (tmp_path / "work/prepared/manifest.json").is_file()
    with pytest.raises(NeuroFMError, match="smaller than the 64\\^3 patch"):
        run_loader_bench(
            LoaderBenchSettings(patch=64, workers=0), preset="tiny", cases=2, work=tmp_path / "work"
        )


def test_cli_on_own_nifti_folder(tmp_path: Path, rng) -> None:
    for i in range(2):
        for seq in ("t1", "flair"):
            path = tmp_path / "data" / f"sub{i}" / "ses1" / f"{seq}.nii.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            img = rng.gamma(4.0, 20.0, (24, 24, 20)).astype(np.float32)
            nib.save(nib.Nifti1Image(img, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    out = tmp_path / "bench.json"
    args = ["bench", "loader", "--data", str(tmp_path / "data"), "--out", str(out)]
    args += ["--patch", "12", "--workers", "1", "--batches", "2", "--batch-size", "2"]
    main([*args, "--samples-per-volume", "2", "--augment"])
    report = json.loads(out.read_text())
    _check(report)
    assert report["data"]["channels"] == ["t1", "flair"] and not report["data"]["with_mask"]
    assert report["settings"]["augment"] is True and report["settings"]["workers"] == 1


def _nifti_cases(root: Path, rng, shapes: list[tuple[int, int, int]]) -> Path:
    for i, shape in enumerate(shapes):
        path = root / f"sub{i}" / "ses1" / "t1.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        img = rng.gamma(4.0, 20.0, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return root


def test_batch_below_samples_per_volume_says_what_to_change(tmp_path: Path, rng, capsys) -> None:
    """Used to end in a bare StopIteration from MONAI's loader (batch 2, 4 patches per load)."""
    with pytest.raises(NeuroFMError, match="use --batch-size 4 or --samples-per-volume 2$"):
        LoaderBenchSettings(batch_size=2, samples_per_volume=4)
    with pytest.raises(NeuroFMError, match="use --batch-size 8 or --samples-per-volume 3$"):
        LoaderBenchSettings(batch_size=6, samples_per_volume=4)
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16)])
    args = ["bench", "loader", "--data", str(data), "--out", str(tmp_path / "b.json")]
    with pytest.raises(SystemExit) as info:
        main([*args, "--patch", "8", "--batch-size", "2", "--samples-per-volume", "4"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --batch-size: 2 is not a multiple") and "\n" not in err
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "data" / "prepared").exists()


def test_one_case_is_cycled_by_every_pipeline(tmp_path: Path, rng) -> None:
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16)])
    s = LoaderBenchSettings(
        patch=8, workers=0, batches=3, warmup=1, batch_size=4, samples_per_volume=2
    )
    assert s.volume_loads == (1 + 3 + 2) * 4 // 2  # 12 loads of the single case
    _check(run_loader_bench(s, data=data, work=tmp_path / "work"))


def test_smallest_case_named_up_front(tmp_path: Path, rng) -> None:
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16), (20, 12, 16)])
    s = LoaderBenchSettings(patch=16, workers=0, batches=1, warmup=0, batch_size=2,
                            samples_per_volume=2)  # fmt: skip
    with pytest.raises(NeuroFMError, match=r"sub1/ses1/t1\.nii\.gz: volume \(20, 12, 16\) is "
                       r"smaller than the 16\^3 patch .*use --patch 12 or less"):  # fmt: skip
        run_loader_bench(s, data=data, work=tmp_path / "work")
