"""Inference with a finetuned run or package: raw case in, output in the input's geometry out.

The run's ``config.json`` says how to feed the model (task, input sequences, preprocessing,
input size, target scaling), so prediction needs nothing but the run folder. Segmentation uses
MONAI's sliding-window inference with Gaussian blending on the preprocessed grid, then
:func:`~neurofm.data.preprocess.restore_geometry` maps the probability map back onto the file's
grid before thresholding, so the mask has exactly the input's shape and affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.inferers import sliding_window_inference

from neurofm.atomic import write_text_atomic
from neurofm.data.preprocess import PreprocessParams, preprocess, restore_geometry
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import Volume, load_volume, save_nifti
from neurofm.io.splits import read_case_dir
from neurofm.models import TaskModel, TaskModelConfig, build_task_model
from neurofm.tasks import TaskSpec, get_task
from neurofm.train.checkpoint import load_config, load_weights
from neurofm.train.distributed import select_device


def fit_to_shape(image: np.ndarray, shape: tuple[int, ...], pad_values: list[float]) -> np.ndarray:
    """Centre-crop or pad ``(C, X, Y, Z)`` to ``shape`` (spatial), padding channel c with
    ``pad_values[c]`` (the normalised value of air) so padding looks like background."""
    out = np.empty((image.shape[0], *shape), dtype=np.float32)
    for c, v in enumerate(pad_values):
        out[c] = v
    src, dst = [], []
    for n, m in zip(image.shape[1:], shape, strict=True):
        if n >= m:
            a = (n - m) // 2
            src.append(slice(a, a + m))
            dst.append(slice(0, m))
        else:
            a = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    return out


def pad_to_at_least(
    image: np.ndarray, shape: tuple[int, ...], pad_values: list[float]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad ``(C, X, Y, Z)`` to spatial sizes >= ``shape``; returns the crop that undoes it."""
    target = tuple(max(n, m) for n, m in zip(image.shape[1:], shape, strict=True))
    if target == image.shape[1:]:
        return image, tuple(slice(0, n) for n in image.shape[1:])
    out = fit_to_shape(image, target, pad_values)
    starts = [(t - n) // 2 for t, n in zip(target, image.shape[1:], strict=True)]
    return out, tuple(slice(a, a + n) for a, n in zip(starts, image.shape[1:], strict=True))


def channel_slots(task: TaskSpec) -> list[str]:
    """Names of a task's input channels; a one-of group is written ``swi|t2s``."""
    return list(task.required) + ["|".join(g) for g in task.one_of]


@dataclass
class Predictor:
    """A loaded finetuned model and everything needed to feed it."""

    model: TaskModel
    task: TaskSpec
    config: dict[str, Any]
    device: torch.device

    @property
    def input_sequences(self) -> list[str]:
        return list(self.config["input_sequences"])

    @property
    def params(self) -> PreprocessParams:
        p = dict(self.config["preprocess"])
        p["spacing"] = tuple(p["spacing"]) if p.get("spacing") else None
        p["clip_percentiles"] = tuple(p["clip_percentiles"])
        return PreprocessParams(**p)

    @torch.no_grad()
    def predict_volume(
        self, volume: Volume, file_affine: np.ndarray | None = None
    ) -> float | np.ndarray:
        """Probability (infarct), age in years (brain_age) or a uint8 mask on the file's grid."""
        prep = preprocess(volume, self.params, file_affine=file_affine)
        pads = [n.pad_value for n in prep.norms]
        self.model.eval()
        if self.task.kind == "segmentation":
            roi = tuple(int(v) for v in self.config["patch_size"])
            image, crop = pad_to_at_least(prep.image, roi, pads)
            x = torch.from_numpy(image)[None].to(self.device)
            logits = sliding_window_inference(
                x, roi, sw_batch_size=2, predictor=self.model, overlap=0.5, mode="gaussian"
            )
            assert isinstance(logits, torch.Tensor)
            prob = torch.sigmoid(logits)[0, 0].float().cpu().numpy()[crop]
            on_file, _ = restore_geometry(prob, prep.geometry, order=1)
            return (on_file >= float(self.config.get("threshold", 0.5))).astype(np.uint8)
        size = tuple(int(v) for v in self.config["input_size"])
        x = torch.from_numpy(fit_to_shape(prep.image, size, pads))[None].to(self.device)
        out = float(self.model(x).float().reshape(-1)[0].cpu())
        if self.task.kind == "classification":
            return float(1.0 / (1.0 + np.exp(-out)))
        target = self.config["target"]
        return float(out * target["std"] + target["mean"])


def load_predictor(model_dir: str | Path, device: str = "auto") -> Predictor:
    """Load a finetuned run (``config.json`` + ``model.safetensors``) for inference."""
    folder = Path(model_dir)
    cfg = load_config(folder)
    if cfg.get("kind") != "finetune":
        raise NeuroFMError(folder / "config.json", "not a finetuned model (kind != finetune)")
    task = get_task(str(cfg["task"]))
    model = build_task_model(TaskModelConfig.from_dict(cfg["model"]))
    state = load_weights(folder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        bad = (missing + unexpected)[:3]
        raise NeuroFMError(
            folder / "model.safetensors",
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
    """Write one prediction in the DESIGN §9 format: ``<case>.txt`` or ``<case>.nii.gz``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, np.ndarray):
        return save_nifti(value, affine, out.with_name(out.name + ".nii.gz"), dtype=np.uint8)
    return write_text_atomic(out.with_name(out.name + ".txt"), f"{value:.6f}\n")


def predict_case_dir(predictor: Predictor, case_dir: Path, out_dir: Path) -> Path:
    """Predict one case folder into ``out_dir/<case>.txt`` or ``out_dir/<case>.nii.gz``."""
    volume, file_affine = case_inputs(Path(case_dir), predictor)
    value = predictor.predict_volume(volume, file_affine)
    return write_prediction(value, file_affine, Path(out_dir) / Path(case_dir).name)
