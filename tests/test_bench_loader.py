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
from neurofm.throughput.loader import LoaderBenchSettings, clinical_data, run_loader_bench

torch.set_num_threads(1)


def _check(report: dict) -> None:
    res = report["results"]
    assert set(res) == {"neurofm", "neurofm_default", "monai", "monai_persistent", "torchio"}
    s = report["settings"]
    for r in res.values():
        assert r["patches"] == s["batches"] * s["batch_size"]
        assert r["patches_per_s"] == pytest.approx(r["patches"] / r["seconds"])
    assert res["monai_persistent"]["cache_build_s"] > 0
    ratios = report["ratios"]
    ours = res["neurofm"]["patches_per_s"]
    for peer in ("monai", "monai_persistent", "torchio"):
        assert ratios[f"neurofm/{peer}"] == pytest.approx(ours / res[peer]["patches_per_s"])
    assert ratios["neurofm/max_others"] == pytest.approx(
        min(ratios[f"neurofm/{p}"] for p in ("monai", "monai_persistent", "torchio"))
    )
    limit = report["copy_limit"]
    channels = len(report["data"]["channels"])
    assert limit["patch_bytes"] == channels * s["patch"] ** 3 * 4
    assert limit["patches_per_s"] == pytest.approx(limit["bytes_per_s"] / limit["patch_bytes"])
    assert ratios["neurofm/copy_limit"] == pytest.approx(ours / limit["patches_per_s"])
    default = res["neurofm_default"]["patches_per_s"]
    assert ratios["neurofm/neurofm_default"] == pytest.approx(ours / default)
    assert ratios["neurofm_default/max_others"] == pytest.approx(
        ratios["neurofm/max_others"] * default / ours
    )
    assert report["targets"]["met"]["copy_limit"] == (ratios["neurofm/copy_limit"] >= 0.25)
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


@pytest.mark.parametrize(("batch", "spv"), [(2, 4), (3, 2), (4, 2)])
def test_batch_below_and_above_samples_per_volume(
    tmp_path: Path, rng, batch: int, spv: int
) -> None:
    """Batch 2 with 4 patches per load used to end in a bare StopIteration from MONAI's loader;
    now MONAI's whole-load batches are cut to the batch size and every peer delivers them all."""
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16)])
    s = LoaderBenchSettings(
        patch=8, workers=0, batches=3, warmup=1, batch_size=batch, samples_per_volume=spv
    )
    assert s.volume_loads == -(-(1 + 3 + 2) * batch // spv) + 1
    report = run_loader_bench(s, data=data, work=tmp_path / "work")
    _check(report)


def test_settings_that_draw_nothing_are_one_line_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(NeuroFMError, match="--samples-per-volume: must be at least 1"):
        LoaderBenchSettings(samples_per_volume=0)
    out = tmp_path / "b.json"
    with pytest.raises(SystemExit) as info:
        main(["bench", "loader", "--data", str(tmp_path / "none"), "--out", str(out)])
    assert info.value.code == 2 and "\n" not in capsys.readouterr().err.strip()
    assert not out.exists()


def test_one_case_is_cycled_by_every_pipeline(tmp_path: Path, rng) -> None:
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16)])
    s = LoaderBenchSettings(
        patch=8, workers=0, batches=3, warmup=1, batch_size=4, samples_per_volume=2
    )
    assert s.volume_loads == (1 + 3 + 2) * 4 // 2 + 1  # 13 loads of the single case
    _check(run_loader_bench(s, data=data, work=tmp_path / "work"))


def test_smallest_case_named_up_front(tmp_path: Path, rng) -> None:
    data = _nifti_cases(tmp_path / "data", rng, [(20, 20, 16), (20, 12, 16)])
    s = LoaderBenchSettings(patch=16, workers=0, batches=1, warmup=0, batch_size=2,
                            samples_per_volume=2)  # fmt: skip
    with pytest.raises(NeuroFMError, match=r"sub1/ses1/t1\.nii\.gz: volume \(20, 12, 16\) is "
                       r"smaller than the 16\^3 patch .*use --patch 12 or less"):  # fmt: skip
        run_loader_bench(s, data=data, work=tmp_path / "work")


def test_clinical_data_layout_and_reuse(tmp_path: Path) -> None:
    root = clinical_data(tmp_path / "c", cases=2, shape=(12, 14, 10))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.nii.gz"))
    assert files == [f"sub_{i:03d}/ses_1/{q}.nii.gz" for i in range(2)
                     for q in ("dwi_b1000", "flair", "t1", "t2")]  # fmt: skip
    img = nib.load(root / "sub_000/ses_1/t2.nii.gz")
    assert img.shape == (12, 14, 10) and img.get_data_dtype() == np.int16
    data = np.asarray(img.dataobj)
    assert data[6, 7, 5] > 0 and data[0, 0, 0] == 0  # a head inside, air at the corner
    before = (root / "sub_000/ses_1/t1.nii.gz").stat().st_mtime_ns
    clinical_data(tmp_path / "c", cases=2, shape=(12, 14, 10))
    assert (root / "sub_000/ses_1/t1.nii.gz").stat().st_mtime_ns == before  # reused
