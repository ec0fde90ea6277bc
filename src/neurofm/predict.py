"""Inference with a finetuned run or package: raw case in, output in the input's geometry out.

The run's ``config.json`` (a :class:`~neurofm.runconfig.FinetuneRunConfig`) says how to feed the
model (task, input sequences, preprocessing, input size, target scaling), so prediction needs
nothing but the run folder. The model is applied by :func:`neurofm.inference.infer`, the same
function finetuning validates with; for segmentation
:func:`~neurofm.data.preprocess.restore_geometry` then maps the probability map back onto the
file's grid before thresholding, so the mask has exactly the input's shape and affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from neurofm.atomic import write_text_atomic
from neurofm.data.preprocess import Preprocessed, PreprocessParams, preprocess, restore_geometry
from neurofm.device import select_device
from neurofm.errors import NeuroFMError
from neurofm.inference import infer
from neurofm.io.nifti import Volume, load_volume, save_nifti
from neurofm.io.splits import read_case_dir
from neurofm.models import TaskModel, build_task_model
from neurofm.postprocess import keep_largest_component
from neurofm.runconfig import FinetuneRunConfig
from neurofm.runfiles import CONFIG, WEIGHTS, load_finetune_config, load_weights
from neurofm.task_text import TASK_FILE_KEY, recorded_task
from neurofm.tasks import TaskSpec


@dataclass
class Predictor:
    """A loaded finetuned model and everything needed to feed it."""

    model: TaskModel
    task: TaskSpec
    config: FinetuneRunConfig
    device: torch.device

    @property
    def input_sequences(self) -> list[str]:
        return list(self.config.input_sequences)

    @property
    def params(self) -> PreprocessParams:
        return self.config.preprocess

    def model_output(
        self, volume: Volume, file_affine: np.ndarray | None = None
    ) -> tuple[float | np.ndarray, Preprocessed]:
        """What :func:`~neurofm.inference.infer` returns for the preprocessed volume (the
        number finetuning validation sees), with the preprocessing that produced it."""
        prep = preprocess(volume, self.params, file_affine=file_affine)
        out = infer(
            self.model,
            self.task.kind,
            prep.image,
            [n.pad_value for n in prep.norms],
            input_size=self.config.input_size,
            patch_size=self.config.patch_size,
            device=self.device,
        )
        return out, prep

    def predict_volume(
        self, volume: Volume, file_affine: np.ndarray | None = None
    ) -> float | np.ndarray:
        """Probability (infarct), age in years (brain_age) or a uint8 mask on the file's grid."""
        out, prep = self.model_output(volume, file_affine)
        if isinstance(out, np.ndarray):
            on_file, _ = restore_geometry(out, prep.geometry, order=1)
            mask = (on_file >= self.config.threshold).astype(np.uint8)
            return keep_largest_component(mask) if self.config.largest_component else mask
        if self.task.kind == "classification":
            return float(1.0 / (1.0 + np.exp(-out)))
        return self.config.target.to_units(out)


def load_predictor(model_dir: str | Path, device: str = "auto") -> Predictor:
    """Load a finetuned run (``config.json`` + ``model.safetensors``) for inference."""
    folder = Path(model_dir)
    cfg = load_finetune_config(folder)
    if cfg.extra.get("head") == "diffusion":  # classifies by denoising error (neurofm.diffusion)
        from neurofm.diffusion.predictor import load_diffusion_predictor

        return load_diffusion_predictor(folder, cfg, device)
    task = recorded_task(cfg.task, cfg.extra.get(TASK_FILE_KEY), folder / CONFIG)
    model = build_task_model(cfg.model)
    state = load_weights(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        bad = (missing + unexpected)[:3]
        raise NeuroFMError(
            folder / WEIGHTS,
            f"weights do not fit the architecture in config.json ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {bad})",
        )
    dev = select_device(device)
    model.to(dev)
    return Predictor(model, task, cfg, dev)


def case_inputs(case_dir: Path, predictor: Predictor) -> tuple[Volume, np.ndarray]:
    """Load the sequences a predictor needs from a case folder, plus the first file's affine."""
    case = read_case_dir(case_dir, predictor.task.name)
    chosen = predictor.task.select(case.sequences, str(case_dir))
    files = {s: case.sequences[s] for s in chosen}
    volume = load_volume(files)
    img = nib.load(str(files[chosen[0]]))
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)  # load_volume checked it
    file_affine = np.asarray(img.affine, dtype=np.float64)
    return volume, file_affine


def write_prediction(value: float | np.ndarray, affine: np.ndarray, out: Path) -> Path:
    """Write one prediction: ``<case>.txt`` or ``<case>.nii.gz`` (docs/architecture.md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, np.ndarray):
        return save_nifti(value, affine, out.with_name(out.name + ".nii.gz"), dtype=np.uint8)
    return write_text_atomic(out.with_name(out.name + ".txt"), f"{value:.6f}\n")


def predict_case_dir(predictor: Predictor, case_dir: Path, out_dir: Path) -> Path:
    """Predict one case folder into ``out_dir/<case>.txt`` or ``out_dir/<case>.nii.gz``."""
    volume, file_affine = case_inputs(Path(case_dir), predictor)
    value = predictor.predict_volume(volume, file_affine)
    return write_prediction(value, file_affine, Path(out_dir) / Path(case_dir).name)
