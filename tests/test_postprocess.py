"""Keeping the largest predicted component (segmentation post-processing chosen per run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from neurofm.errors import NeuroFMError
from neurofm.io.nifti import Volume
from neurofm.postprocess import keep_largest_component
from neurofm.predict import load_predictor
from neurofm.runconfig import FinetuneRunConfig
from neurofm.runfiles import load_finetune_config
from neurofm.train.settings import FinetuneSettings
from test_explain_cli import make_run


def _two_blobs(shape: tuple[int, int, int] = (12, 12, 12)) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[1:3, 1:3, 1:3] = 1  # 8 voxels
    m[6:9, 6:9, 6:9] = 1  # 27 voxels
    m[0, 11, 0] = 1  # 1 voxel, only edge-connected to nothing
    return m


def test_keeps_only_the_largest_component() -> None:
    m = _two_blobs()
    out = keep_largest_component(m)
    assert out.dtype == m.dtype and int(out.sum()) == 27 and out[7, 7, 7] == 1
    assert ndimage.label(out)[1] == 1
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    assert not keep_largest_component(empty).any()
    one = np.zeros((4, 4, 4), dtype=np.uint8)
    one[1:3, 1:3, 1:3] = 1
    assert np.array_equal(keep_largest_component(one), one)


def test_diagonal_voxels_are_separate_components() -> None:
    m = np.zeros((5, 5, 5), dtype=np.uint8)
    m[1, 1, 1] = m[2, 2, 2] = m[3, 3, 3] = 1  # touch only at corners
    m[0, 4, 0:2] = 1  # two face-connected voxels win
    out = keep_largest_component(m)
    assert int(out.sum()) == 2 and out[0, 4, 0] == 1


def test_predictor_applies_it_only_when_the_run_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = make_run(tmp_path / "run", "meningioma")
    predictor = load_predictor(run, "cpu")
    rng = np.random.default_rng(0)
    volume = Volume(
        rng.random((3, 32, 32, 32), dtype=np.float32) + 1.0,
        np.eye(4) * 8.0,
        list(predictor.input_sequences),
    )
    volume.affine[3, 3] = 1.0
    _, prep = predictor.model_output(volume)
    prob = np.zeros(prep.image.shape[1:], dtype=np.float32)
    prob[1:3, 1:3, 1:3] = 0.9
    prob[-4:-1, -4:-1, -4:-1] = 0.9
    monkeypatch.setattr(type(predictor), "model_output", lambda self, v, a=None: (prob, prep))
    raw = predictor.predict_volume(volume)
    assert isinstance(raw, np.ndarray) and ndimage.label(raw)[1] == 2
    predictor.config = replace(predictor.config, largest_component=True)
    kept = predictor.predict_volume(volume)
    assert isinstance(kept, np.ndarray) and ndimage.label(kept)[1] == 1
    assert 0 < int(kept.sum()) < int(raw.sum())


def test_setting_round_trips_and_is_checked(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", "meningioma")
    cfg = replace(load_finetune_config(run), largest_component=True)
    assert FinetuneRunConfig.from_dict(cfg.to_dict()).largest_component
    assert FinetuneSettings(task="meningioma", largest_component=True).largest_component
    with pytest.raises(NeuroFMError, match="segmentation"):
        FinetuneSettings(task="brain_age", largest_component=True)
    with pytest.raises(NeuroFMError, match="head mil"):
        FinetuneSettings(task="infarct", head="linear", mil_head_only=True)
