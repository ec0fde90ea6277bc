"""Monitor evaluation: corruptions, shift-detection AUROC, ICC, travelling heads."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from neurofm.io.nifti import Volume
from neurofm.monitor.corruptions import CORRUPTIONS
from neurofm.monitor.monitor import MonitorSettings
from neurofm.monitor.reliability import icc_2_1
from neurofm.monitor.shift import shift_table
from test_monitor import _run, make_run

torch.set_num_threads(1)


@pytest.fixture
def volume() -> Volume:
    rng = np.random.default_rng(0)
    data = np.zeros((3, 20, 22, 24), np.float32)
    data[:, 5:15, 6:16, 4:20] = rng.uniform(100, 200, (3, 10, 10, 16))
    return Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), ["a", "b", "c"])


def test_corruptions_do_what_they_say(volume: Volume) -> None:
    d = volume.data
    out = {name: f(volume, 0).data for name, f in CORRUPTIONS.items()}
    for name, arr in out.items():
        assert arr.shape == d.shape and arr.dtype == np.float32, name
        assert not np.array_equal(arr, d), name
    np.testing.assert_array_equal(out["wrong_sequence"][0], d[1])
    np.testing.assert_array_equal(out["lr_flip"][:, ::-1], d)
    np.testing.assert_allclose(out["intensity_scale"], 5 * d)
    assert not out["truncated_fov"][..., -7:].any()  # round(0.3 * 24) = 7 slices
    np.testing.assert_array_equal(out["truncated_fov"][..., :-7], d[..., :-7])
    outside = ~(d > 0).any(axis=0)
    assert (out["no_skull_strip"][:, outside] > 200).any()  # a shell brighter than the brain
    assert (out["rician_noise"][:, outside] > 0).all()  # Rician background is never zero
    assert abs(out["gaussian_noise"][:, outside].mean()) < 1.0  # Gaussian background: mean 0
    assert CORRUPTIONS["motion_ghosting"](volume, 3).data.tolist() == (
        CORRUPTIONS["motion_ghosting"](volume, 3).data.tolist()
    )


def test_icc_matches_shrout_fleiss_worked_example() -> None:
    # Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges; ICC(2,1) = 0.29
    x = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
        float,
    )
    assert icc_2_1(x)[0] == pytest.approx(0.2898, abs=1e-4)
    rng = np.random.default_rng(0)
    subject = rng.normal(size=(2000, 1, 1))
    stacked = subject + rng.normal(size=(2000, 3, 2)) * np.array([1.0, 3.0])  # noise var 1, 9
    assert icc_2_1(stacked) == pytest.approx([0.5, 0.1], abs=0.03)


def test_shift_auroc_separates_shifted_from_clean() -> None:
    rng = np.random.default_rng(0)
    ref = {"enc": rng.normal(size=(100, 5))}
    clean = {"enc": rng.normal(size=(200, 5))}
    shifted = {"enc": {"far": rng.normal(size=(200, 5)) + 4.0, "same": rng.normal(size=(200, 5))}}
    table = shift_table(ref, clean, shifted, {"far": "corruption", "same": "site"},
                        MonitorSettings())  # fmt: skip
    far = table[table["shift"] == "far"]
    same = table[table["shift"] == "same"]
    assert (far["auroc"] > 0.99).all() and (far["flagged"] > 0.9).all()
    assert (same["auroc"].between(0.4, 0.6)).all()
    assert (same["flagged"] < 0.2).all()


def test_cli_icc_renders_the_same_heads_at_every_site(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "brain_age", seed=0)
    out = tmp_path / "icc"
    assert _run("monitor", "icc", "--model", str(run), "--out", str(out), "--subjects", "3",
                "--preset", "tiny") == 0  # fmt: skip
    table = pd.read_csv(out / "icc.csv")
    assert table["encoder"].tolist() == ["run", "random-init"]
    assert (table["sites"] >= 2).all() and (table["subjects"] == 3).all()
    assert table["icc_median"].between(-1, 1).all()
    sites = sorted((out / "heads" / "brain_age").iterdir())
    assert [sorted(d.name for d in s.iterdir()) for s in sites] == [
        [f"head_{i:03d}" for i in range(3)]
    ] * len(sites)
    # the same head: brain volume (mL) agrees across scanners far better than between heads
    vols = np.array([[_brain_ml(s / f"head_{i:03d}" / "t1.nii.gz") for i in range(3)]
                     for s in sites])  # fmt: skip
    across_sites = np.ptp(vols, axis=0).max()
    assert across_sites < 0.1 * vols.mean()


def _brain_ml(path: Path) -> float:
    img = nib.load(str(path))
    voxel = float(np.prod(img.header.get_zooms()[:3]))
    return float((np.asarray(img.dataobj) > 0).sum() * voxel / 1000.0)
