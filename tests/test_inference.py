"""Finetuning validation and deployed prediction are one inference path.

A model with random weights is written as a finetuned run; for a case of the prepared tiny
benchmark, what validation computes on the prepared copy must equal what ``load_predictor``
computes from the raw NIfTI files, and the validation loss must equal the loss computed by hand
from the predictor's outputs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from neurofm.data.cache import PreparedDataset
from neurofm.io.nifti import load_volume
from neurofm.metrics import dice
from neurofm.models import TaskModelConfig, build_task_model, get_preset
from neurofm.predict import load_predictor
from neurofm.runconfig import FinetuneRunConfig, TargetScale, preprocess_from_dict
from neurofm.runfiles import load_finetune_config, write_model_files
from neurofm.tasks import get_task
from neurofm.train.finetuning import validate, validation_outputs


def _run(tmp_path: Path, prepared: PreparedDataset, task: str) -> tuple[Path, FinetuneRunConfig]:
    torch.manual_seed(0)
    spec = get_task(task)
    # a shallow U-Net (divisor 4) so a 16-voxel window slides over the ~24-voxel volumes: the
    # overlap and blending then change the output, and would show any difference of inferer
    net = get_preset("tiny", in_channels=spec.n_channels, features=(8, 16, 32), blocks=(1, 1, 1))
    cfg = TaskModelConfig(replace(net, stem_stride=1), kind=spec.kind)
    run = FinetuneRunConfig(
        task=task,
        model=cfg,
        input_sequences=list(spec.channel_slots),
        preprocess=preprocess_from_dict(prepared.params),
        input_size=(32, 32, 32),
        patch_size=(16, 16, 16),
        target=TargetScale(50.0, 10.0),
        threshold=0.5,
    )
    folder = tmp_path / task
    folder.mkdir()
    write_model_files(folder, build_task_model(cfg).state_dict(), run)
    return folder, run


def _raw_case(prepared: PreparedDataset, cid: str, task: str) -> tuple[object, np.ndarray]:
    case = prepared.case(cid)
    chosen = get_task(task).select(case.channels, cid)
    files = {s: Path(case.sources[s]) for s in chosen}
    img = nib.load(str(files[chosen[0]]))
    assert isinstance(img, nib.Nifti1Image)
    return load_volume(files), np.asarray(img.affine, dtype=np.float64)


@pytest.mark.parametrize("task", ["meningioma", "brain_age", "infarct"])
def test_validation_and_prediction_agree(task: str, tiny_prepared: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    prepared = PreparedDataset(tiny_prepared / task / "train")
    ids = [c.case_id for c in prepared.cases][:2]
    folder, run = _run(tmp_path, prepared, task)
    assert load_finetune_config(folder) == run  # the typed config survives the JSON round trip
    predictor = load_predictor(folder, device="cpu")
    model = predictor.model  # the very weights prediction uses
    val = validation_outputs(model, run, prepared, ids)
    served = [predictor.model_output(*_raw_case(prepared, cid, task))[0] for cid in ids]
    for v, p in zip(val, served, strict=True):
        if task == "meningioma":
            assert isinstance(v, np.ndarray) and isinstance(p, np.ndarray)
            assert v.shape == p.shape
            np.testing.assert_allclose(v, p, atol=1e-5)
            assert any(n > 16 for n in v.shape)  # more than one window
        else:
            assert v == pytest.approx(p, abs=1e-5)

    # the validation loss, recomputed from what prediction serves
    score = validate(model, run, prepared, ids)
    if task == "brain_age":
        years = [float(predictor.predict_volume(*_raw_case(prepared, c, task))) for c in ids]
        ages = [float(prepared.case(c).age or 0.0) for c in ids]
        assert score["val_loss"] == pytest.approx(np.mean(np.abs(np.subtract(years, ages))), 1e-5)
    elif task == "infarct":
        probs = np.asarray(
            [float(predictor.predict_volume(*_raw_case(prepared, c, task))) for c in ids]
        )
        labels = np.asarray([float(prepared.case(c).label or 0.0) for c in ids])
        bce = -np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
        assert score["val_loss"] == pytest.approx(bce, rel=1e-5)
    else:
        hard = [
            dice(np.asarray(p) >= 0.5, prepared.read_mask(c) > 0)
            for c, p in zip(ids, served, strict=True)
        ]
        assert score["val_dice"] == pytest.approx(np.mean(hard))


def test_malformed_run_config_is_one_line_error(tiny_prepared: Path, tmp_path: Path) -> None:
    from neurofm.errors import NeuroFMError

    prepared = PreparedDataset(tiny_prepared / "brain_age" / "train")
    folder, _ = _run(tmp_path, prepared, "brain_age")
    cfg = (folder / "config.json").read_text().replace('"input_size"', '"input_sides"')
    (folder / "config.json").write_text(cfg)
    with pytest.raises(NeuroFMError, match="incomplete or malformed") as err:
        load_predictor(folder, device="cpu")
    assert "config.json" in str(err.value) and "\n" not in str(err.value)
